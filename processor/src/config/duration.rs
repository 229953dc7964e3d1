//! Durations as written in configs and custom resources: `500ms`, `30s`, `5m`, `1h30m`, `7d`.
//!
//! The grammar is the one the CRD schema's pattern enforces (`^([0-9]+(ms|s|m|h|d))+$`), so a
//! value the API server accepted always parses here, and the same text round-trips.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The regular expression a duration must match; the CRD schemas carry the same pattern.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h|d))+$";

/// A non-negative span of time with millisecond resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    millis: u64,
}

impl Duration {
    pub const ZERO: Duration = Duration { millis: 0 };

    pub const fn from_millis(millis: u64) -> Self {
        Duration { millis }
    }
    pub const fn from_secs(secs: u64) -> Self {
        Duration { millis: secs * 1000 }
    }
    pub const fn from_mins(mins: u64) -> Self {
        Duration::from_secs(mins * 60)
    }
    pub const fn from_hours(hours: u64) -> Self {
        Duration::from_mins(hours * 60)
    }
    pub const fn from_days(days: u64) -> Self {
        Duration::from_hours(days * 24)
    }
    pub const fn as_millis(self) -> u64 {
        self.millis
    }
    /// Milliseconds as a signed value, for arithmetic on event-time timestamps.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.millis).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {why} (expected e.g. 500ms, 30s, 5m, 1h30m, 7d)")]
pub struct ParseDurationError {
    text: String,
    why: &'static str,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |why| ParseDurationError { text: text.to_string(), why };
        if text.is_empty() {
            return Err(fail("empty"));
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        let mut total: u64 = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(fail("each part must start with a number"));
            }
            let number: u64 = text[start..i].parse().map_err(|_| fail("number too large"))?;
            let unit_ms: u64 = if bytes[i..].starts_with(b"ms") {
                i += 2;
                1
            } else {
                let unit = match bytes.get(i) {
                    Some(b's') => 1_000,
                    Some(b'm') => 60_000,
                    Some(b'h') => 3_600_000,
                    Some(b'd') => 86_400_000,
                    Some(_) => return Err(fail("unknown unit")),
                    None => return Err(fail("missing unit")),
                };
                i += 1;
                unit
            };
            total = number
                .checked_mul(unit_ms)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| fail("too large"))?;
        }
        Ok(Duration { millis: total })
    }
}

impl fmt::Display for Duration {
    /// The shortest canonical form: `90s` prints as `1m30s`, zero as `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.millis;
        for (unit, ms) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if rest >= ms {
                write!(f, "{}{}", rest / ms, unit)?;
                rest %= ms;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_compounds() {
        assert_eq!("250ms".parse::<Duration>().unwrap().as_millis(), 250);
        assert_eq!("30s".parse::<Duration>().unwrap().as_millis(), 30_000);
        assert_eq!("5m".parse::<Duration>().unwrap().as_millis(), 300_000);
        assert_eq!("1h30m".parse::<Duration>().unwrap().as_millis(), 5_400_000);
        assert_eq!("7d".parse::<Duration>().unwrap().as_millis(), 604_800_000);
        assert_eq!("1m500ms".parse::<Duration>().unwrap().as_millis(), 60_500);
    }

    #[test]
    fn refuses_malformed_text_with_a_reason() {
        for bad in ["", "5", "m", "5x", "-5m", "5 m", "1.5h", "99999999999999999999d"] {
            let err = bad.parse::<Duration>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        assert_eq!(Duration::from_secs(90).to_string(), "1m30s");
        assert_eq!(Duration::from_millis(3_600_250).to_string(), "1h250ms");
        assert_eq!(Duration::ZERO.to_string(), "0s");
        for text in ["5m", "1h", "1d2h3m4s5ms", "45s"] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
    }
}

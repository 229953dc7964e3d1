//! Event time as milliseconds since the Unix epoch, and its RFC 3339 text form.
//!
//! Parsing takes a strict fast path for the form producers write (`2026-11-27T10:00:00Z`,
//! `...:00.123Z`, `...:00+01:00`) and hands anything else to chrono, so both agree; a
//! property test holds them equal.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 timestamp (UTC or with an offset) to epoch milliseconds.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    fast_rfc3339_millis(text.as_bytes())
        .or_else(|| DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis()))
}

/// Two ASCII digits at `at` as a number.
#[inline(always)]
fn two_digits(b: &[u8], at: usize) -> Option<i64> {
    let (hi, lo) = (b[at].wrapping_sub(b'0'), b[at + 1].wrapping_sub(b'0'));
    (hi < 10 && lo < 10).then_some(i64::from(hi) * 10 + i64::from(lo))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`; `None` for anything else (chrono decides).
pub(super) fn fast_rfc3339_millis(b: &[u8]) -> Option<i64> {
    let (head, mut rest) = b.split_first_chunk::<19>()?;
    if head[4] != b'-' || head[7] != b'-' || head[10] != b'T' || head[13] != b':' || head[16] != b':' {
        return None;
    }
    let year = two_digits(head, 0)? * 100 + two_digits(head, 2)?;
    let (month, day) = (two_digits(head, 5)?, two_digits(head, 8)?);
    let (hour, minute, second) = (two_digits(head, 11)?, two_digits(head, 14)?, two_digits(head, 17)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut millis = 0;
    if let [b'.', fraction @ ..] = rest {
        let count = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&count) {
            return None;
        }
        // Milliseconds: the first three fraction digits, padded with zeros.
        for at in 0..3 {
            millis = millis * 10 + fraction.get(at).filter(|_| at < count).map_or(0, |d| i64::from(d - b'0'));
        }
        rest = &fraction[count..];
    }
    let offset_minutes = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (two_digits(rest, 1)?, two_digits(rest, 4)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'+' { h * 60 + m } else { -(h * 60 + m) }
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// Formats epoch milliseconds as RFC 3339 UTC, with milliseconds only when they are not zero.
pub fn format_rfc3339_millis(millis: i64) -> String {
    Rfc3339Millis(millis).to_string()
}

/// Epoch milliseconds shown as RFC 3339 in UTC: `2026-11-27T10:00:00Z`, with `.250` when
/// the milliseconds are not zero (chrono's `AutoSi`, which it equals; a property test holds
/// them equal). Years 0 to 9999 are written digit by digit, without allocating: outputs
/// carry one to three of these each, on the hot path. Others go through chrono.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339Millis(pub i64);

/// Epoch milliseconds of 0000-01-01 and of 10000-01-01.
const YEAR_0_MILLIS: i64 = -62_167_219_200_000;
const YEAR_10000_MILLIS: i64 = 253_402_300_800_000;

impl std::fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let millis = self.0;
        if !(YEAR_0_MILLIS..YEAR_10000_MILLIS).contains(&millis) {
            return match DateTime::<Utc>::from_timestamp_millis(millis) {
                Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                None => write!(f, "out-of-range:{millis}"),
            };
        }
        let days = millis.div_euclid(86_400_000);
        let in_day = millis.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let (hms, ms) = (in_day / 1000, in_day % 1000);
        let mut text = *b"0000-00-00T00:00:00.000Z";
        put_digits(&mut text[0..4], year);
        put_digits(&mut text[5..7], month);
        put_digits(&mut text[8..10], day);
        put_digits(&mut text[11..13], hms / 3600);
        put_digits(&mut text[14..16], hms / 60 % 60);
        put_digits(&mut text[17..19], hms % 60);
        let end = if ms == 0 {
            text[19] = b'Z';
            20
        } else {
            put_digits(&mut text[20..23], ms);
            24
        };
        // Only ASCII digits and separators were written.
        f.write_str(std::str::from_utf8(&text[..end]).map_err(|_| std::fmt::Error)?)
    }
}

/// Writes `value` (non-negative, fitting) as decimal digits filling `out`.
fn put_digits(out: &mut [u8], mut value: i64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01), after Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The UTC calendar date (`YYYY-MM-DD`) of epoch milliseconds.
pub fn format_date(millis: i64) -> String {
    DateOf(millis).to_string()
}

/// The UTC calendar date (`YYYY-MM-DD`) of epoch milliseconds, written without allocating
/// for years 0 to 9999 (chrono's `%Y-%m-%d` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateOf(pub i64);

impl std::fmt::Display for DateOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let millis = self.0;
        if !(YEAR_0_MILLIS..YEAR_10000_MILLIS).contains(&millis) {
            return match DateTime::<Utc>::from_timestamp_millis(millis) {
                Some(t) => write!(f, "{}", t.format("%Y-%m-%d")),
                None => write!(f, "out-of-range:{millis}"),
            };
        }
        let (year, month, day) = civil_from_days(millis.div_euclid(86_400_000));
        let mut text = *b"0000-00-00";
        put_digits(&mut text[0..4], year);
        put_digits(&mut text[5..7], month);
        put_digits(&mut text[8..10], day);
        f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339_millis("2026-11-27T10:00:00Z"), Some(1_795_773_600_000));
        assert_eq!(parse_rfc3339_millis("2026-11-27T11:00:00.250+01:00"), Some(1_795_773_600_250));
        assert_eq!(parse_rfc3339_millis("2026-11-27T10:00:00.2509Z"), Some(1_795_773_600_250));
        assert_eq!(parse_rfc3339_millis("2026-11-27t10:00:00z"), Some(1_795_773_600_000), "chrono takes lower case");
        assert_eq!(parse_rfc3339_millis("2026-11-27 10:00:00"), None);
        assert_eq!(parse_rfc3339_millis("2026-13-27T10:00:00Z"), None);
        assert_eq!(parse_rfc3339_millis("2026-02-29T10:00:00Z"), None);
        assert_eq!(parse_rfc3339_millis("2028-02-29T10:00:00Z"), Some(1_835_431_200_000));
    }

    #[test]
    fn formats_seconds_or_millis() {
        assert_eq!(format_rfc3339_millis(1_795_773_600_000), "2026-11-27T10:00:00Z");
        assert_eq!(format_rfc3339_millis(1_795_773_600_250), "2026-11-27T10:00:00.250Z");
        assert_eq!(format_date(1_795_773_600_000), "2026-11-27");
    }

    #[test]
    fn formats_the_edges_of_the_fast_path_as_chrono_does() {
        for millis in
            [YEAR_0_MILLIS, YEAR_0_MILLIS - 1, YEAR_10000_MILLIS - 1, YEAR_10000_MILLIS, -1, 0, 951_782_400_000]
        {
            let chrono = DateTime::<Utc>::from_timestamp_millis(millis)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .unwrap_or_else(|| format!("out-of-range:{millis}"));
            assert_eq!(format_rfc3339_millis(millis), chrono, "{millis}");
        }
        assert_eq!(format_rfc3339_millis(i64::MAX), format!("out-of-range:{}", i64::MAX));
    }

    fn chrono_millis(text: &str) -> Option<i64> {
        DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// The fast path reads every timestamp it accepts as chrono does.
        #[test]
        fn fast_path_agrees_with_chrono(
            y in 1900i64..2200, mo in 0i64..14, d in 0i64..33, h in 0i64..25, mi in 0i64..61, s in 0i64..61,
            frac in proptest::option::of("[0-9]{1,10}"), zone in prop_oneof![Just("Z".to_string()), "[+-][0-2][0-9]:[0-6][0-9]"],
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}{zone}", frac.map(|f| format!(".{f}")).unwrap_or_default());
            if let Some(fast) = fast_rfc3339_millis(text.as_bytes()) {
                prop_assert_eq!(Some(fast), chrono_millis(&text), "{}", text);
            }
            prop_assert_eq!(parse_rfc3339_millis(&text), chrono_millis(&text), "{}", text);
        }

        /// The allocation-free formatter writes every instant as chrono does.
        #[test]
        fn formatting_agrees_with_chrono(millis in -70_000_000_000_000i64..260_000_000_000_000, whole in any::<bool>()) {
            let millis = if whole { millis - millis.rem_euclid(1000) } else { millis };
            let chrono = DateTime::<Utc>::from_timestamp_millis(millis).unwrap().to_rfc3339_opts(SecondsFormat::AutoSi, true);
            prop_assert_eq!(format_rfc3339_millis(millis), chrono);
            let date = DateTime::<Utc>::from_timestamp_millis(millis).unwrap().format("%Y-%m-%d").to_string();
            prop_assert_eq!(format_date(millis), date);
        }
    }
}

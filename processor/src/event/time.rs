//! Event time as milliseconds since the Unix epoch, and its RFC 3339 text form.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 timestamp (UTC or with an offset) to epoch milliseconds.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

/// Formats epoch milliseconds as RFC 3339 UTC, with milliseconds only when they are not zero.
pub fn format_rfc3339_millis(millis: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(millis) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("out-of-range:{millis}"),
    }
}

/// The UTC calendar date (`YYYY-MM-DD`) of epoch milliseconds.
pub fn format_date(millis: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(millis) {
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => format!("out-of-range:{millis}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339_millis("2026-11-27T10:00:00Z"), Some(1_795_773_600_000));
        assert_eq!(parse_rfc3339_millis("2026-11-27T11:00:00.250+01:00"), Some(1_795_773_600_250));
        assert_eq!(parse_rfc3339_millis("2026-11-27 10:00:00"), None);
        assert_eq!(parse_rfc3339_millis("2026-13-27T10:00:00Z"), None);
    }

    #[test]
    fn formats_seconds_or_millis() {
        assert_eq!(format_rfc3339_millis(1_795_773_600_000), "2026-11-27T10:00:00Z");
        assert_eq!(format_rfc3339_millis(1_795_773_600_250), "2026-11-27T10:00:00.250Z");
        assert_eq!(format_date(1_795_773_600_000), "2026-11-27");
    }
}

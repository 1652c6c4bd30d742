//! Instants on the command line: RFC 3339 (`2022-05-01T00:00:00Z`,
//! `2022-05-01T08:00:00+08:00`), a plain date `2022-05-01` (midnight UTC),
//! unix milliseconds, or `now`. Parsing is jiff's: RFC 3339 and the ISO 8601
//! forms Temporal accepts beside it (`+0800`, a `[zone]` annotation).

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// A TIME argument in none of the accepted forms.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not RFC 3339, a date, unix milliseconds or `now`")]
pub struct TimeError {
    /// The argument, trimmed.
    pub text: String,
    /// What jiff found wrong with it.
    #[source]
    pub source: jiff::Error,
}

/// Parses a TIME argument into unix milliseconds; `now_ms` answers `now`.
///
/// # Errors
/// [`TimeError`] names the argument, with jiff's reason as its source.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, TimeError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    // Without a time of day it is a date, at midnight UTC; with one, the
    // offset is required (a bare local time would depend on the machine).
    let instant = if text.contains(['T', 't', ' ']) {
        text.parse::<Timestamp>()
    } else {
        text.parse::<Date>()
            .and_then(|date| TimeZone::UTC.to_timestamp(DateTime::from(date)))
    };
    instant.map(Timestamp::as_millisecond).map_err(|source| TimeError {
        text: text.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (text, ms) in [
            ("1650812741436", 1_650_812_741_436),
            ("-5", -5),
            ("now", 42),
            (" NOW ", 42),
            ("1970-01-01T00:00:00Z", 0),
            ("2024-01-01T00:00:00Z", 1_704_067_200_000),
            ("2024-01-01", 1_704_067_200_000),
            ("2024-01-01T08:00:00+08:00", 1_704_067_200_000),
            ("2024-01-01t08:00:00+08:00", 1_704_067_200_000),
            ("2024-01-01 08:00:00+08:00", 1_704_067_200_000),
            ("2023-12-31T19:00:00-05:00", 1_704_067_200_000),
            ("2022-05-02T00:00:00.5Z", 1_651_449_600_500),
            ("2022-05-02T00:00:00.123456789Z", 1_651_449_600_123),
            ("2000-02-29T23:59:59Z", 951_868_799_000),
            ("2000-02-29", 951_782_400_000),
            ("1969-12-31", -86_400_000),
        ] {
            assert_eq!(parse_time(text, 42).ok(), Some(ms), "{text}");
        }
    }

    #[test]
    fn rejects_everything_else_and_says_what() {
        for bad in [
            "",
            "2024-13-01",
            "2023-02-29",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00",
            "yesterday",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+99:00",
            "1.5",
        ] {
            let error = parse_time(bad, 0).expect_err(bad);
            assert_eq!(
                error.to_string(),
                format!("`{bad}` is not RFC 3339, a date, unix milliseconds or `now`")
            );
        }
    }
}

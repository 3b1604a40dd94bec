//! Timestamps as they travel (Unix milliseconds on the wire, RFC 3339 UTC in
//! the control protocol) and durations as people write them (`90s`, `5m`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch for a wall-clock time.
pub fn to_unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The wall-clock time for Unix milliseconds.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    to_unix_ms(SystemTime::now())
}

/// RFC 3339 UTC with seconds precision, e.g. `2026-11-23T18:00:00Z`.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(from_unix_ms(ms)).to_string()
}

/// Parses `90s`, `5m`, `1h 30m`, `250ms` (for clap's `value_parser`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write durations like 90s, 5m or 30m)"))
}

/// Formats a duration compactly for people: `45s`, `3m 20s`.
pub fn human_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_round_trips() {
        for ms in [0, 1, 1_795_000_000_123, -5_000] {
            assert_eq!(to_unix_ms(from_unix_ms(ms)), ms);
        }
    }

    #[test]
    fn rfc3339_is_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01Z");
    }

    #[test]
    fn durations_parse_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(human_duration(Duration::from_millis(200_900)), "3m 20s");
    }
}

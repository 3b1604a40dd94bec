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

/// Earliest time this system accepts or shows: the Unix epoch. RFC 3339
/// formatting (humantime) cannot show anything before it.
pub const MIN_MS: i64 = 0;

/// Latest time this system accepts or shows: the last millisecond of the
/// year 9999, the last one RFC 3339 can write with a four-digit year.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// Whether `ms` is a time this system can store and show (see [`MIN_MS`],
/// [`MAX_MS`]). Every time that comes from the network is checked with this
/// where it enters.
pub fn in_range(ms: i64) -> bool {
    (MIN_MS..=MAX_MS).contains(&ms)
}

/// `ms` moved into [`MIN_MS`]`..=`[`MAX_MS`].
pub fn clamp_ms(ms: i64) -> i64 {
    ms.clamp(MIN_MS, MAX_MS)
}

/// The offset of the server's clock from ours, `server_ms - local_ms`, or
/// `None` when the server's time is out of range (a broken or hostile
/// server: its clock is then ignored rather than trusted).
pub fn clock_skew_ms(server_ms: i64, local_ms: i64) -> Option<i64> {
    in_range(server_ms).then(|| server_ms.saturating_sub(clamp_ms(local_ms)))
}

/// RFC 3339 UTC with seconds precision, e.g. `2026-11-23T18:00:00Z`.
///
/// Never panics: a time out of range (an old inbox row, a peer's bogus
/// clock) is shown clamped to the nearest time that can be written,
/// `1970-01-01T00:00:00Z` or `9999-12-31T23:59:59Z`.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(from_unix_ms(clamp_ms(ms))).to_string()
}

/// Parses `90s`, `5m`, `1h 30m`, `250ms` (for clap's `value_parser`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write durations like 90s, 5m or 30m)"))
}

/// Formats a duration compactly for people: `45s`, `3m 20s`.
pub fn human_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// A wait for people, as in "try again in 58m 10s": whole seconds rounded
/// up and at least one (never "in 0s"), in hours, minutes and seconds
/// rather than a count of seconds nobody can read at a glance.
pub fn wait_text(d: Duration) -> String {
    let secs = (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_as_people_say_them() {
        assert_eq!(wait_text(Duration::from_secs(3490)), "58m 10s");
        assert_eq!(wait_text(Duration::from_secs(30)), "30s");
        assert_eq!(wait_text(Duration::from_millis(200)), "1s");
        assert_eq!(wait_text(Duration::ZERO), "1s");
        assert_eq!(wait_text(Duration::from_millis(59_001)), "1m");
        assert_eq!(wait_text(Duration::from_secs(2 * 3600 + 5)), "2h 5s");
    }

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
    fn rfc3339_never_panics_and_clamps() {
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_MS), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(MAX_MS + 1), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn range_and_skew() {
        assert!(in_range(0) && in_range(MAX_MS) && in_range(1_795_000_000_000));
        assert!(!in_range(-1) && !in_range(MAX_MS + 1) && !in_range(i64::MIN));
        assert_eq!(clock_skew_ms(5_000, 2_000), Some(3_000));
        assert_eq!(clock_skew_ms(-1, 2_000), None);
        assert_eq!(clock_skew_ms(i64::MAX, 2_000), None);
        assert_eq!(clock_skew_ms(MAX_MS, i64::MIN), Some(MAX_MS));
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_of_any_time_is_a_valid_time(ms in proptest::num::i64::ANY) {
            let s = rfc3339(ms);
            proptest::prop_assert!(humantime::parse_rfc3339(&s).is_ok(), "{}", s);
        }
    }

    #[test]
    fn durations_parse_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(human_duration(Duration::from_millis(200_900)), "3m 20s");
    }
}

//! Times for people (SPEC §11): every human-mode output shows local time,
//! honouring `TZ`, in one format; JSON keeps the daemon's RFC 3339 UTC.
//!
//! The format is `YYYY-MM-DD HH:MM:SS ZONE` (`2026-11-30 13:35:17 EST`):
//! sortable, unambiguous across days, and with the zone named so a time
//! read from a log or a screenshot still means one instant.

use jiff::{tz::TimeZone, Timestamp};

/// `strftime` pattern of [`human`].
const FORMAT: &str = "%Y-%m-%d %H:%M:%S %Z";

/// `rfc3339` (from the daemon) as local time; a value that does not parse
/// is returned as it came (the caller escapes it like any other text).
pub fn human(rfc3339: &str) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(t) => in_zone(t, &TimeZone::system()),
        Err(_) => rfc3339.to_string(),
    }
}

/// The time now, as [`human`] shows times (the chat's own lines).
pub fn now() -> String {
    in_zone(Timestamp::now(), &TimeZone::system())
}

/// How long until `rfc3339`, in words for people: `in 4m 10s`, `in 2h 5m`,
/// `in 12s`, or `expired`; `None` if it does not parse.
pub fn left(rfc3339: &str) -> Option<String> {
    let at = rfc3339.parse::<Timestamp>().ok()?;
    Some(left_at(at, Timestamp::now()))
}

/// [`left`] from `now` (injected for tests).
fn left_at(at: Timestamp, now: Timestamp) -> String {
    let secs = at.as_second() - now.as_second();
    if secs <= 0 {
        return "expired".into();
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    // Two units are enough to act on; seconds stop mattering past an hour.
    match (h, m) {
        (0, 0) => format!("in {s}s"),
        (0, _) => format!("in {m}m {s}s"),
        _ => format!("in {h}h {m}m"),
    }
}

fn in_zone(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime(FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_becomes_the_zone_given() {
        let t: Timestamp = "2026-11-30T18:35:17Z".parse().unwrap();
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(in_zone(t, &ny), "2026-11-30 13:35:17 EST");
        let summer: Timestamp = "2026-07-01T12:00:00Z".parse().unwrap();
        assert_eq!(in_zone(summer, &ny), "2026-07-01 08:00:00 EDT");
        assert_eq!(in_zone(t, &TimeZone::UTC), "2026-11-30 18:35:17 UTC");
    }

    #[test]
    fn what_does_not_parse_is_kept() {
        assert_eq!(human("soon"), "soon");
        assert_eq!(left("soon"), None);
    }

    #[test]
    fn time_left_in_words() {
        let now: Timestamp = "2026-11-30T18:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(left_at(at("2026-11-30T18:04:10Z"), now), "in 4m 10s");
        assert_eq!(left_at(at("2026-11-30T18:00:12Z"), now), "in 12s");
        assert_eq!(left_at(at("2026-11-30T20:05:59Z"), now), "in 2h 5m");
        assert_eq!(left_at(now, now), "expired");
        assert_eq!(left_at(at("2026-11-30T17:59:00Z"), now), "expired");
    }
}

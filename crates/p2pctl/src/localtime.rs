//! Times for people (SPEC §11): every human-mode output shows local time,
//! honouring `TZ`, in one format; JSON keeps the daemon's RFC 3339 UTC.
//!
//! The format is `YYYY-MM-DD HH:MM:SS ZONE` (`2026-11-30 13:35:17 EST`):
//! sortable, unambiguous across days, and with the zone named so a time
//! read from a log or a screenshot still means one instant.

// Used by the human outputs as they move to local time (issue 10).
#![allow(dead_code)]

use jiff::{tz::TimeZone, Timestamp};

/// `strftime` pattern of [`human`].
const FORMAT: &str = "%Y-%m-%d %H:%M:%S %Z";

/// `rfc3339` (from the daemon) as local time; a value that does not parse
/// is returned as it came (the caller escapes it like any other text).
pub(crate) fn human(rfc3339: &str) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(t) => in_zone(t, &TimeZone::system()),
        Err(_) => rfc3339.to_string(),
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
    }
}

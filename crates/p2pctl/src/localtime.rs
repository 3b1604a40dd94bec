//! Times for people in p2pctl: [`p2p_sys::localtime`] (local time,
//! honouring `TZ`, one format), escaped for the terminal like any text that
//! came from the daemon.

pub(crate) use p2p_sys::localtime::{human, left, now};

use crate::safe;

/// An RFC 3339 UTC time from the daemon as local time for people, escaped
/// for the terminal (a time that does not parse is shown as it came).
pub(crate) fn when(at: &str) -> String {
    safe::line(&human(at)).to_string()
}

/// An expiry for people: local time and how long is left.
pub(crate) fn expires(at: &str) -> String {
    match left(at) {
        Some(left) => format!("{} ({left})", when(at)),
        None => when(at),
    }
}

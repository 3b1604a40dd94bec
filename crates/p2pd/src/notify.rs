//! Desktop notifications (SPEC §11 "being told"): for each invitation that
//! waits for a person's answer, one freedesktop notification
//! (`org.freedesktop.Notifications.Notify` on the session D-Bus) saying who
//! wants to talk and the command that accepts.
//!
//! Flow: one task reads the daemon's event bus; a `request` event is
//! checked ([`Switch`] on, still pending, not a contact the daemon answers
//! by itself, not blocked) and shown. The bus connection is made on the
//! first notification, not at start, and dropped on any error, so the next
//! invitation tries again: a desktop session that starts after the daemon
//! is picked up, and no bus at all (a server, a test, an SSH login) costs one
//! debug line per invitation and nothing else. Every bus operation has a
//! deadline ([`BUS_TIMEOUT`]); the task is the only one waiting on it, so a
//! stuck notification service delays notifications, never the daemon.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use p2p_proto::ctl::Event;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::peer::Peers;

/// Connecting to the session bus, and each `Notify` call, give up after
/// this: a notification service answers in milliseconds, and one that does
/// not is stuck (the invitation is still listed by `p2pctl requests`).
pub(crate) const BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Inviters whose last notification id is remembered, so a new invitation
/// from the same user replaces their notification instead of stacking a
/// second one. The server limits what one user receives far below this;
/// past it the memory starts over (a new notification is merely added).
pub(crate) const MAX_REMEMBERED: usize = 256;

/// The notification service's well-known name, object and interface.
const SERVICE: &str = "org.freedesktop.Notifications";
const OBJECT: &str = "/org/freedesktop/Notifications";
/// Shown as the sending application.
const APP_NAME: &str = "p2pd";
/// `expire_timeout` -1: the notification service's own default.
const DEFAULT_EXPIRY: i32 = -1;

/// The `notify` setting, shared with the SIGHUP reload. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    /// A switch in position `on`.
    pub fn new(on: bool) -> Self {
        Switch(Arc::new(AtomicBool::new(on)))
    }

    /// Whether notifications are shown.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Turns notifications on or off from the next invitation on.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }
}

/// Why a notification was not shown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotifyError {
    /// No session bus to connect to (or it refused us).
    #[error("no session bus: {0}")]
    NoBus(#[source] zbus::Error),
    /// The bus or the notification service did not answer in time.
    #[error("the session bus did not answer within {BUS_TIMEOUT:?}")]
    Timeout,
    /// The call failed (often: nobody serves notifications on this bus).
    #[error("Notify failed: {0}")]
    Call(#[source] zbus::Error),
}

/// What one notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    /// The line shown in bold: plain text.
    pub(crate) summary: String,
    /// The text below it: the spec allows simple markup here, so it is
    /// escaped.
    pub(crate) body: String,
}

/// The notification for an invitation from `from`. Names come from the
/// server: the summary is plain text by the notification spec, the body is
/// escaped so a name can never be read as markup.
pub(crate) fn invitation_note(from: &str) -> Note {
    Note {
        summary: format!("{from} wants to talk"),
        body: escape_markup(&format!("p2pctl accept {from}")),
    }
}

/// Escapes the three characters the notification spec's body markup gives
/// meaning to.
pub(crate) fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Why an invitation gets no notification, or `None` if it gets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// `notify = false`.
    Off,
    /// Already answered (auto_accept answers at once) or withdrawn.
    NotPending,
    /// A contact: the daemon answers by itself (standing consent).
    Contact,
    /// Blocked users' invitations are never shown.
    Blocked,
}

/// The facts [`quiet`] decides on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    /// `notify` is on.
    pub(crate) on: bool,
    /// The invitation still waits for an answer.
    pub(crate) pending: bool,
    /// The inviter is a contact that is not held for a key change (a held
    /// one needs a person: `trust` first).
    pub(crate) answered_by_daemon: bool,
    /// The inviter is blocked.
    pub(crate) blocked: bool,
}

/// Whether (and why not) an invitation is shown.
pub(crate) fn quiet(f: Facts) -> Option<Quiet> {
    if !f.on {
        Some(Quiet::Off)
    } else if f.blocked {
        Some(Quiet::Blocked)
    } else if f.answered_by_daemon {
        Some(Quiet::Contact)
    } else if !f.pending {
        Some(Quiet::NotPending)
    } else {
        None
    }
}

/// The session-bus side: a lazily made connection and the ids of the
/// notifications shown, by inviter.
#[derive(Default)]
struct Bus {
    conn: Option<zbus::Connection>,
    shown: HashMap<String, u32>,
}

impl Bus {
    async fn connection(&mut self) -> Result<zbus::Connection, NotifyError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let connect = async {
            zbus::connection::Builder::session()?
                .method_timeout(BUS_TIMEOUT)
                .build()
                .await
        };
        let conn = tokio::time::timeout(BUS_TIMEOUT, connect)
            .await
            .map_err(|_| NotifyError::Timeout)?
            .map_err(NotifyError::NoBus)?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Shows `note` for `from`, replacing `from`'s last one if any.
    async fn show(&mut self, from: &str, note: &Note) -> Result<u32, NotifyError> {
        let conn = self.connection().await?;
        let replaces = self.shown.get(from).copied().unwrap_or(0);
        let hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
        let body = (
            APP_NAME,
            replaces,
            "",
            note.summary.as_str(),
            note.body.as_str(),
            Vec::<&str>::new(),
            hints,
            DEFAULT_EXPIRY,
        );
        let call = conn.call_method(Some(SERVICE), OBJECT, Some(SERVICE), "Notify", &body);
        let result = match tokio::time::timeout(BUS_TIMEOUT, call).await {
            Err(_) => Err(NotifyError::Timeout),
            Ok(Err(e)) => Err(NotifyError::Call(e)),
            Ok(Ok(reply)) => reply.body().deserialize::<u32>().map_err(NotifyError::Call),
        };
        match result {
            Ok(id) => {
                if self.shown.len() >= MAX_REMEMBERED && !self.shown.contains_key(from) {
                    self.shown.clear();
                }
                self.shown.insert(from.to_string(), id);
                Ok(id)
            }
            Err(e) => {
                // Made again at the next invitation: the bus may have
                // restarted, or a desktop session begun.
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// The facts about an invitation from `from` now.
async fn facts(peers: &Peers, switch: &Switch, from: &str) -> Facts {
    let pending = peers.requests().iter().any(|r| r.from == from);
    let contacts = peers.contacts.clone();
    let user = from.to_string();
    // SQLite reads block: off the runtime threads.
    let stored = tokio::task::spawn_blocking(move || {
        let contact = contacts.get(&user).ok().flatten();
        let blocked = contacts.is_blocked(&user).unwrap_or(false);
        (contact, blocked)
    })
    .await
    .unwrap_or((None, false));
    Facts {
        on: switch.is_on(),
        pending,
        answered_by_daemon: stored.0.is_some_and(|c| !c.held),
        blocked: stored.1,
    }
}

/// Shows a notification for each invitation on `events` that waits for a
/// person, until `shutdown`.
pub(crate) async fn run(
    peers: Arc<Peers>,
    switch: Switch,
    mut events: broadcast::Receiver<Event>,
    shutdown: CancellationToken,
) {
    let mut bus = Bus::default();
    // A failing notification service is logged at info once, then at debug.
    let mut told_broken = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.recv() => e,
        };
        let from = match event {
            Ok(Event::Request(r)) => r.from,
            Ok(_) => continue,
            // A burst of events overflowed the buffer: the missed requests
            // are still listed by `p2pctl requests`.
            Err(RecvError::Lagged(n)) => {
                debug!(missed = n, "notifications: missed some events");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if let Some(why) = quiet(facts(&peers, &switch, &from).await) {
            debug!(from = %from, ?why, "invitation: no desktop notification");
            continue;
        }
        let note = invitation_note(&from);
        let shown = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = bus.show(&from, &note) => r,
        };
        match shown {
            Ok(id) => debug!(from = %from, id, "invitation: desktop notification shown"),
            // No bus is the normal case off a desktop: debug only.
            Err(e @ NotifyError::NoBus(_)) => {
                debug!(cause = %e, "invitation: no desktop notification")
            }
            // A bus that is there but fails is worth one line at info.
            Err(e) if !told_broken => {
                told_broken = true;
                info!(cause = %e, "desktop notifications are not working");
            }
            Err(e) => debug!(cause = %e, "invitation: no desktop notification"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_become_markup() {
        assert_eq!(escape_markup("a<b>&c"), "a&lt;b&gt;&amp;c");
        let n = invitation_note("alice");
        assert_eq!(n.summary, "alice wants to talk");
        assert_eq!(n.body, "p2pctl accept alice");
        assert_eq!(
            invitation_note("<i>x&").body,
            "p2pctl accept &lt;i&gt;x&amp;"
        );
    }

    #[test]
    fn only_invitations_waiting_for_a_person_are_shown() {
        let shown = Facts {
            on: true,
            pending: true,
            answered_by_daemon: false,
            blocked: false,
        };
        assert_eq!(quiet(shown), None);
        assert_eq!(quiet(Facts { on: false, ..shown }), Some(Quiet::Off));
        assert_eq!(
            quiet(Facts {
                pending: false,
                ..shown
            }),
            Some(Quiet::NotPending)
        );
        assert_eq!(
            quiet(Facts {
                answered_by_daemon: true,
                ..shown
            }),
            Some(Quiet::Contact)
        );
        assert_eq!(
            quiet(Facts {
                blocked: true,
                ..shown
            }),
            Some(Quiet::Blocked)
        );
    }

    #[test]
    fn the_switch_flips() {
        let s = Switch::new(true);
        let other = s.clone();
        other.set(false);
        assert!(!s.is_on());
    }
}

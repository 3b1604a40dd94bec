//! Who is online right now: one entry per user, each holding what its
//! connection task needs to be told (replaced, removed, shutting down).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use p2p_proto::wire::{CloseReason, Contact, OnlineUser, ServerMsg};
use tokio::sync::{mpsc, watch};

/// Unsolicited messages queued for one session. A session that lets this
/// many pile up is not reading; further pushes fail and the sender treats
/// the user as unreachable, so one slow client cannot grow server memory.
pub(crate) const OUTBOUND_QUEUE: usize = 64;

/// A logged-in session as presence knows it.
#[derive(Debug)]
pub(crate) struct Online {
    /// Unique per connection, so a late unregister of a replaced session
    /// cannot remove its successor.
    pub(crate) session: u64,
    /// Login time, Unix ms.
    pub(crate) since_ms: i64,
    /// Where peers reach this user's daemon.
    pub(crate) peer_addr: SocketAddr,
    /// The daemon's X25519 public key, hex.
    pub(crate) public_key: String,
    /// Tells the connection task to close, and why.
    pub(crate) kick: watch::Sender<Option<CloseReason>>,
    /// Unsolicited messages for the connection task to write.
    pub(crate) outbound: mpsc::Sender<ServerMsg>,
}

/// The online-user registry.
#[derive(Debug, Default)]
pub struct Presence {
    online: Mutex<HashMap<String, Online>>,
}

impl Presence {
    /// Registers `user`; an earlier session of the same user is told it was
    /// replaced.
    pub(crate) fn register(&self, user: &str, entry: Online) {
        let old = self
            .online
            .lock()
            .expect("presence poisoned")
            .insert(user.to_string(), entry);
        if let Some(old) = old {
            let _ = old.kick.send(Some(CloseReason::Replaced));
        }
    }

    /// Removes `user` if `session` is still the registered one.
    pub(crate) fn unregister(&self, user: &str, session: u64) {
        let mut online = self.online.lock().expect("presence poisoned");
        if online.get(user).is_some_and(|o| o.session == session) {
            online.remove(user);
        }
    }

    /// Online users, sorted by name.
    pub fn list(&self) -> Vec<OnlineUser> {
        let online = self.online.lock().expect("presence poisoned");
        let mut users: Vec<_> = online
            .iter()
            .map(|(user, o)| OnlineUser {
                user: user.clone(),
                since_ms: o.since_ms,
            })
            .collect();
        users.sort_by(|a, b| a.user.cmp(&b.user));
        users
    }

    /// The session id and contact details of `user`, if online.
    pub(crate) fn contact(&self, user: &str) -> Option<(u64, Contact)> {
        let online = self.online.lock().expect("presence poisoned");
        online.get(user).map(|o| {
            let contact = Contact {
                user: user.to_string(),
                addr: o.peer_addr.to_string(),
                public_key: o.public_key.clone(),
            };
            (o.session, contact)
        })
    }

    /// Queues `msg` for `user`'s session `session`; false if that session is
    /// gone or not reading.
    pub(crate) fn push(&self, user: &str, session: u64, msg: ServerMsg) -> bool {
        let online = self.online.lock().expect("presence poisoned");
        match online.get(user) {
            Some(o) if o.session == session => o.outbound.try_send(msg).is_ok(),
            _ => false,
        }
    }

    /// Number of online users.
    pub(crate) fn count(&self) -> usize {
        self.online.lock().expect("presence poisoned").len()
    }

    /// Closes the sessions of users for whom `keep` is false (accounts
    /// removed while online).
    pub(crate) fn kick_unless(&self, keep: impl Fn(&str) -> bool) {
        let online = self.online.lock().expect("presence poisoned");
        for (user, o) in online.iter().filter(|(u, _)| !keep(u)) {
            tracing::info!(user = %user, "account removed; closing its session");
            let _ = o.kick.send(Some(CloseReason::AccountRemoved));
        }
    }
}

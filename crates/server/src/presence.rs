//! Who is online right now: one entry per user, each holding what its
//! connection task needs to be told (replaced, removed, shutting down).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use p2p_proto::wire::{CloseReason, OnlineUser, ServerMsg};

use crate::mailbox::Mailbox;
use crate::reach::Reach;

/// A logged-in session as presence knows it.
#[derive(Debug)]
pub(crate) struct Online {
    /// Unique per connection, so a late unregister of a replaced session
    /// cannot remove its successor.
    pub(crate) session: u64,
    /// Login time, Unix ms.
    pub(crate) since_ms: i64,
    /// Where peers reach this user's daemon.
    pub(crate) reach: Reach,
    /// The daemon's X25519 public key, hex.
    pub(crate) public_key: String,
    /// Unsolicited messages for the connection task to write, and the
    /// reason to close when it must.
    pub(crate) mailbox: Arc<Mailbox>,
}

/// What invitations need of an online user (a copy).
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Its session id.
    pub(crate) session: u64,
    /// The daemon's X25519 public key, hex.
    pub(crate) public_key: String,
    /// Where it may be reached.
    pub(crate) reach: Reach,
    /// Login time, Unix ms.
    pub(crate) since_ms: i64,
}

/// The online-user registry.
#[derive(Debug, Default)]
pub struct Presence {
    online: Mutex<HashMap<String, Online>>,
    /// Set by [`Presence::shut`]: a session registered afterwards is told
    /// at once.
    shut: std::sync::atomic::AtomicBool,
}

impl Presence {
    /// Registers `user`; an earlier session of the same user is told it was
    /// replaced.
    pub(crate) fn register(&self, user: &str, entry: Online) {
        let mut online = self.online.lock().expect("presence poisoned");
        if self.shut.load(std::sync::atomic::Ordering::Relaxed) {
            entry.mailbox.close(CloseReason::Shutdown);
        }
        if let Some(old) = online.insert(user.to_string(), entry) {
            old.mailbox.close(CloseReason::Replaced);
        }
    }

    /// Tells every session, and every one that registers from now on, that
    /// the server is shutting down. The shutdown reaches sessions through
    /// their mailboxes: a session's loop looks at nothing else for it, one
    /// branch fewer on each of its wake-ups (one per delivery).
    pub(crate) fn shut(&self) {
        let online = self.online.lock().expect("presence poisoned");
        self.shut.store(true, std::sync::atomic::Ordering::Relaxed);
        for o in online.values() {
            o.mailbox.close(CloseReason::Shutdown);
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

    /// `user`'s session id, key and reach, if online.
    pub(crate) fn peer(&self, user: &str) -> Option<Peer> {
        let online = self.online.lock().expect("presence poisoned");
        online.get(user).map(|o| Peer {
            session: o.session,
            since_ms: o.since_ms,
            public_key: o.public_key.clone(),
            reach: o.reach.clone(),
        })
    }

    /// Queues `msg` for `user`'s session `session`; false if that session is
    /// gone or not reading.
    pub(crate) fn push(&self, user: &str, session: u64, msg: ServerMsg) -> bool {
        let online = self.online.lock().expect("presence poisoned");
        match online.get(user) {
            Some(o) if o.session == session => o.mailbox.push(msg),
            _ => false,
        }
    }

    /// Number of online users.
    pub(crate) fn count(&self) -> usize {
        self.online.lock().expect("presence poisoned").len()
    }

    /// Closes the sessions of users for whom `keep` is false (accounts
    /// removed while online).
    /// Every session for the admin socket: user, login time (Unix ms) and
    /// the address it connects from, sorted by user.
    pub(crate) fn sessions(&self) -> Vec<(String, i64, std::net::SocketAddr)> {
        let online = self.online.lock().expect("presence poisoned");
        let mut all: Vec<_> = online
            .iter()
            .map(|(user, o)| (user.clone(), o.since_ms, o.reach.link))
            .collect();
        all.sort();
        all
    }

    /// Ends `user`'s session as a logout made by the operator (`p2p-server
    /// kick`): the daemon stops and shows why. False if not online.
    pub(crate) fn kick(&self, user: &str) -> bool {
        let online = self.online.lock().expect("presence poisoned");
        match online.get(user) {
            Some(o) => {
                tracing::info!(user = %user, "kicked by the operator; closing its session");
                o.mailbox.close(CloseReason::LoggedOut);
                true
            }
            None => false,
        }
    }

    /// Closes `user`'s session `session` with `reason` (another instance
    /// took the user over); false if that session is not here.
    pub(crate) fn kick_session(&self, user: &str, session: u64, reason: CloseReason) -> bool {
        let online = self.online.lock().expect("presence poisoned");
        match online.get(user) {
            Some(o) if o.session == session => {
                tracing::info!(user = %user, ?reason, "closing a session for another instance");
                o.mailbox.close(reason);
                true
            }
            _ => false,
        }
    }

    /// Whether `user`'s session here is `session`.
    pub(crate) fn holds(&self, user: &str, session: u64) -> bool {
        let online = self.online.lock().expect("presence poisoned");
        online.get(user).is_some_and(|o| o.session == session)
    }

    /// The users online here.
    pub(crate) fn users(&self) -> Vec<String> {
        let online = self.online.lock().expect("presence poisoned");
        online.keys().cloned().collect()
    }

    pub(crate) fn kick_unless(&self, keep: impl Fn(&str) -> bool) {
        let online = self.online.lock().expect("presence poisoned");
        for (user, o) in online.iter().filter(|(u, _)| !keep(u)) {
            tracing::info!(user = %user, "account removed; closing its session");
            o.mailbox.close(CloseReason::AccountRemoved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::{Mail, OUTBOUND_QUEUE};

    fn online(session: u64, since_ms: i64, port: u16) -> (Online, Arc<Mailbox>) {
        let mailbox = Arc::new(Mailbox::default());
        let entry = Online {
            session,
            since_ms,
            reach: Reach {
                link: ([127, 0, 0, 1], port).into(),
                listen_port: port,
                advertise: None,
                lan: Vec::new(),
            },
            public_key: format!("key{session}"),
            mailbox: mailbox.clone(),
        };
        (entry, mailbox)
    }

    fn names(p: &Presence) -> Vec<String> {
        p.list().into_iter().map(|u| u.user).collect()
    }

    fn msg() -> ServerMsg {
        ServerMsg::Event {
            event: p2p_proto::wire::ServerEvent::InvitationClosed {
                invite: 1,
                reason: p2p_proto::wire::InviteEnd::Expired,
            },
        }
    }

    #[test]
    fn register_makes_a_user_reachable_and_listed_by_name() {
        let p = Presence::default();
        let (carol, _c) = online(3, 30, 3000);
        let (alice, _a) = online(1, 10, 1000);
        let (bob, _b) = online(2, 20, 2000);
        p.register("carol", carol);
        p.register("alice", alice);
        p.register("bob", bob);
        assert_eq!(names(&p), ["alice", "bob", "carol"]);
        assert_eq!(p.list()[1].since_ms, 20);
        assert_eq!(p.count(), 3);
        let bob = p.peer("bob").expect("bob online");
        assert_eq!(bob.session, 2);
        assert_eq!(bob.reach.link.to_string(), "127.0.0.1:2000");
        assert_eq!(bob.public_key, "key2");
        assert!(p.peer("dave").is_none());
    }

    #[test]
    fn a_second_login_replaces_the_first_which_is_told() {
        let p = Presence::default();
        let (first, first_ends) = online(1, 10, 1000);
        let (second, second_ends) = online(2, 20, 2000);
        p.register("alice", first);
        p.register("alice", second);
        assert_eq!(
            first_ends.try_take(),
            Some(Mail::Close(CloseReason::Replaced))
        );
        assert_eq!(second_ends.try_take(), None);
        assert_eq!(p.count(), 1);
        assert_eq!(p.peer("alice").map(|p| p.session), Some(2));
        // Pushes reach only the current session.
        assert!(!p.push("alice", 1, msg()));
        assert!(p.push("alice", 2, msg()));
    }

    #[test]
    fn a_late_unregister_of_a_replaced_session_keeps_its_successor() {
        let p = Presence::default();
        let (first, _f) = online(1, 10, 1000);
        let (second, _s) = online(2, 20, 2000);
        p.register("alice", first);
        p.register("alice", second);
        p.unregister("alice", 1);
        assert_eq!(p.peer("alice").map(|p| p.session), Some(2));
        p.unregister("alice", 2);
        assert!(p.peer("alice").is_none());
        assert!(names(&p).is_empty());
    }

    #[test]
    fn push_fails_once_the_session_stops_reading() {
        let p = Presence::default();
        let (alice, ends) = online(1, 10, 1000);
        p.register("alice", alice);
        for _ in 0..OUTBOUND_QUEUE {
            assert!(p.push("alice", 1, msg()));
        }
        assert!(!p.push("alice", 1, msg()), "queue full: not reading");
        assert!(matches!(ends.try_take(), Some(Mail::Push(_))));
        assert!(p.push("alice", 1, msg()), "room again after a read");
        assert!(!p.push("bob", 1, msg()), "offline user");
    }

    #[test]
    fn shut_tells_every_session_and_any_that_registers_later() {
        let p = Presence::default();
        let (alice, a) = online(1, 10, 1000);
        p.register("alice", alice);
        p.shut();
        assert_eq!(a.try_take(), Some(Mail::Close(CloseReason::Shutdown)));
        let (bob, b) = online(2, 20, 2000);
        p.register("bob", bob);
        assert_eq!(b.try_take(), Some(Mail::Close(CloseReason::Shutdown)));
    }

    #[test]
    fn kick_unless_closes_only_removed_accounts() {
        let p = Presence::default();
        let (alice, a) = online(1, 10, 1000);
        let (bob, b) = online(2, 20, 2000);
        p.register("alice", alice);
        p.register("bob", bob);
        p.kick_unless(|u| u == "alice");
        assert_eq!(a.try_take(), None);
        assert_eq!(b.try_take(), Some(Mail::Close(CloseReason::AccountRemoved)));
    }
}

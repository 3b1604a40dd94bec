//! The open peer sessions: one [`SessionHandle`] per peer. Pure
//! bookkeeping (the session tasks themselves are started by `peer/mod.rs`):
//! who replaces whom, and the crossed-invitation tie-break.

use std::collections::HashMap;

use p2p_proto::ctl::{SessionInfo, SessionPath};
use p2p_proto::time::rfc3339;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::session::{PathCell, SessionCmd, SessionHandle, SESSION_QUEUE};

/// Two sessions with the same peer, in opposite directions, set up within
/// this time of each other are crossed invitations, not a reconnect.
pub(crate) const CROSSING_WINDOW_MS: i64 = 10_000;

/// Whether `new` crosses `old` (opposite directions, close in time).
fn crossed(old: &SessionHandle, new: &SessionHandle) -> bool {
    old.initiator != new.initiator && new.since_ms - old.since_ms < CROSSING_WINDOW_MS
}

/// Whether the session `initiator`ed by us (or by `peer`) is the one both
/// sides keep: the one invited by the smaller account name.
fn wins(me: &str, peer: &str, initiator: bool) -> bool {
    let inviter = if initiator { me } else { peer };
    let other = if initiator { peer } else { me };
    inviter < other
}

fn session_info(peer: &str, h: &SessionHandle) -> SessionInfo {
    SessionInfo {
        peer: peer.to_string(),
        since: rfc3339(h.since_ms),
        initiator: h.initiator,
        path: h.path.get(),
    }
}

/// What a session runs on: the invitation that named it (links for it in
/// `PeerHello.invite`), the peer's proven key, and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// The invitation.
    pub(crate) invite: u64,
    /// The peer's static key.
    pub(crate) key: Vec<u8>,
    /// Direct or relayed when it was set up (the session's path now is
    /// its [`PathCell`]).
    pub(crate) path: SessionPath,
}

/// A session that [`Sessions::install`] registered: its task is to be
/// started with these.
pub(crate) struct Installed {
    /// The session's id (for [`Sessions::ended`]).
    pub(crate) id: u64,
    /// What `sessions` shows.
    pub(crate) info: SessionInfo,
    /// The task's command queue.
    pub(crate) cmds: mpsc::Receiver<SessionCmd>,
    /// Cancelled when a newer session replaces this one.
    pub(crate) closer: CancellationToken,
    /// Its path, which the task changes on a switch.
    pub(crate) path: PathCell,
}

/// The registry.
#[derive(Default)]
pub(crate) struct Sessions {
    by_peer: HashMap<String, SessionHandle>,
    next_id: u64,
    /// Our account name (for the crossed-invitation tie-break).
    me: String,
}

impl Sessions {
    /// Our account name changed (a login).
    pub(crate) fn set_me(&mut self, me: &str) {
        self.me = me.to_string();
    }

    /// Open sessions, by peer name.
    pub(crate) fn list(&self) -> Vec<SessionInfo> {
        let mut v: Vec<_> = self
            .by_peer
            .iter()
            .map(|(p, h)| session_info(p, h))
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    /// The session with `peer`, if any.
    pub(crate) fn get(&self, peer: &str) -> Option<(SessionInfo, mpsc::Sender<SessionCmd>)> {
        self.by_peer
            .get(peer)
            .map(|h| (session_info(peer, h), h.cmds.clone()))
    }

    /// The session with `peer`, if any: its id and command queue (`send`
    /// hands its messages to that session's outbox flusher).
    pub(crate) fn sender(&self, peer: &str) -> Option<(u64, mpsc::Sender<SessionCmd>)> {
        self.by_peer.get(peer).map(|h| (h.id, h.cmds.clone()))
    }

    /// The invitation, key and path of the session with `peer`, if any.
    pub(crate) fn link_of(&self, peer: &str) -> Option<(u64, Vec<u8>, SessionPath)> {
        self.by_peer
            .get(peer)
            .map(|h| (h.link.invite, h.link.key.clone(), h.path.get()))
    }

    /// Sessions by path: (direct, relayed).
    pub(crate) fn counts(&self) -> (u64, u64) {
        let relayed = self
            .by_peer
            .values()
            .filter(|h| h.path.get() == SessionPath::Relayed)
            .count() as u64;
        (self.by_peer.len() as u64 - relayed, relayed)
    }

    /// Registers a new session with `peer` over `link`, set up at `now_ms`; a previous
    /// one is told to close. `Err` with the kept session when this one
    /// lost a crossing (both daemons keep the same one, see [`wins`]).
    pub(crate) fn install(
        &mut self,
        peer: &str,
        link: Link,
        initiator: bool,
        now_ms: i64,
    ) -> Result<Installed, SessionInfo> {
        self.next_id += 1;
        let (cmds, rx) = mpsc::channel(SESSION_QUEUE);
        let closer = CancellationToken::new();
        let path = PathCell::new(link.path);
        let handle = SessionHandle {
            id: self.next_id,
            since_ms: now_ms,
            initiator,
            path: path.clone(),
            link,
            cmds,
            closer: closer.clone(),
        };
        if let Some(old) = self.by_peer.get(peer) {
            if crossed(old, &handle) && !wins(&self.me, peer, initiator) {
                return Err(session_info(peer, old));
            }
        }
        let info = session_info(peer, &handle);
        if let Some(old) = self.by_peer.insert(peer.to_string(), handle) {
            old.closer.cancel();
        }
        Ok(Installed {
            id: self.next_id,
            info,
            cmds: rx,
            closer,
            path,
        })
    }

    /// Session `id` with `peer` ended; true if it was still the current one
    /// (a late end never removes a successor).
    pub(crate) fn ended(&mut self, peer: &str, id: u64) -> bool {
        if self.by_peer.get(peer).is_some_and(|h| h.id == id) {
            self.by_peer.remove(peer);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(path: SessionPath) -> Link {
        Link {
            invite: 1,
            key: vec![1],
            path,
        }
    }

    fn handle(initiator: bool, since_ms: i64) -> SessionHandle {
        let (cmds, _) = mpsc::channel(1);
        SessionHandle {
            id: 1,
            since_ms,
            initiator,
            link: link(SessionPath::Direct),
            cmds,
            closer: CancellationToken::new(),
            path: PathCell::new(SessionPath::Direct),
        }
    }

    /// alice and bob each see both sessions; both must keep the same one
    /// (the one alice invited), whatever order they arrive in.
    #[test]
    fn both_sides_keep_the_same_crossed_session() {
        // At alice: her own dial (initiator) vs bob's (not).
        assert!(wins("alice", "bob", true));
        assert!(!wins("alice", "bob", false));
        // At bob: alice's dial (not initiator here) wins, his own loses.
        assert!(wins("bob", "alice", false));
        assert!(!wins("bob", "alice", true));
    }

    #[test]
    fn only_opposite_and_close_sessions_are_crossed() {
        assert!(crossed(&handle(true, 0), &handle(false, 50)));
        assert!(
            !crossed(&handle(true, 0), &handle(true, 50)),
            "same direction: a reconnect"
        );
        assert!(
            !crossed(&handle(true, 0), &handle(false, CROSSING_WINDOW_MS)),
            "long after: a reconnect"
        );
    }

    /// Crossed invitations through the registry, on both daemons: whatever
    /// order the two links arrive in, each side ends with the session alice
    /// invited, and the losing link is refused, not installed.
    #[test]
    fn crossed_sessions_settle_on_the_same_link_at_both_ends() {
        let mut alice = Sessions::default();
        alice.set_me("alice");
        let mine = alice
            .install("bob", link(SessionPath::Direct), true, 0)
            .unwrap();
        assert!(
            alice
                .install("bob", link(SessionPath::Direct), false, 50)
                .is_err(),
            "bob's link loses"
        );
        assert!(alice.get("bob").unwrap().0.initiator);
        assert!(!mine.closer.is_cancelled());

        let mut bob = Sessions::default();
        bob.set_me("bob");
        let his = bob
            .install("alice", link(SessionPath::Direct), true, 0)
            .unwrap();
        let hers = bob
            .install("alice", link(SessionPath::Direct), false, 50)
            .unwrap();
        assert!(his.closer.is_cancelled(), "bob drops his own link");
        assert!(!bob.get("alice").unwrap().0.initiator);
        // The replaced session's late end leaves its successor alone.
        assert!(!bob.ended("alice", his.id));
        assert!(bob.ended("alice", hers.id));
        assert!(bob.list().is_empty());
    }

    #[test]
    fn a_later_session_replaces_the_old_one() {
        let mut s = Sessions::default();
        s.set_me("alice");
        let old = s
            .install("bob", link(SessionPath::Direct), false, 0)
            .unwrap();
        let new = s
            .install(
                "bob",
                link(SessionPath::Direct),
                true,
                CROSSING_WINDOW_MS + 1,
            )
            .unwrap();
        assert!(old.closer.is_cancelled());
        assert_ne!(old.id, new.id);
        assert_eq!(s.list().len(), 1);
    }

    /// `sessions` shows each session's path and `status` counts both.
    #[test]
    fn sessions_carry_their_path() {
        let mut s = Sessions::default();
        s.set_me("alice");
        s.install("bob", link(SessionPath::Relayed), true, 0)
            .unwrap();
        s.install("carol", link(SessionPath::Direct), true, 0)
            .unwrap();
        assert_eq!(s.counts(), (1, 1));
        assert_eq!(s.get("bob").unwrap().0.path, SessionPath::Relayed);
        assert_eq!(s.link_of("carol"), Some((1, vec![1], SessionPath::Direct)));
    }

    /// `sessions` and `status` read each session's path as its task sets it.
    #[test]
    fn the_path_shown_is_the_sessions_current_one() {
        let mut s = Sessions::default();
        s.set_me("alice");
        let bob = s
            .install("bob", link(SessionPath::Relayed), true, 0)
            .unwrap();
        assert_eq!(s.get("bob").unwrap().0.path, SessionPath::Relayed);
        bob.path.set(SessionPath::Direct);
        assert_eq!(s.list()[0].path, SessionPath::Direct);
        assert_eq!(s.counts(), (1, 0));
    }
}

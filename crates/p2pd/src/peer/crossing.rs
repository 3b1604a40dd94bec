//! Crossed invitations: alice and bob invite each other at the same time,
//! each ends up with two sessions, and both must keep the same one.

use super::session::SessionHandle;

/// Two sessions with the same peer, in opposite directions, set up within
/// this time of each other are crossed invitations, not a reconnect.
pub const CROSSING_WINDOW_MS: i64 = 10_000;

/// Whether `new` crosses `old` (opposite directions, close in time).
pub(super) fn crossed(old: &SessionHandle, new: &SessionHandle) -> bool {
    old.initiator != new.initiator && new.since_ms - old.since_ms < CROSSING_WINDOW_MS
}

/// Whether the session `initiator`ed by us (or by `peer`) is the one both
/// sides keep: the one invited by the smaller account name.
pub(super) fn wins(me: &str, peer: &str, initiator: bool) -> bool {
    let inviter = if initiator { me } else { peer };
    let other = if initiator { peer } else { me };
    inviter < other
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn handle(initiator: bool, since_ms: i64) -> SessionHandle {
        let (cmds, _) = mpsc::channel(1);
        SessionHandle {
            id: 1,
            since_ms,
            initiator,
            cmds,
            closer: tokio_util::sync::CancellationToken::new(),
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
}

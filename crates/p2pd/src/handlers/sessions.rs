//! `sessions`: open peer sessions.

use p2p_proto::ctl::SessionList;

use crate::Daemon;

/// Runs `sessions`.
pub(crate) fn run(daemon: &Daemon) -> SessionList {
    SessionList {
        sessions: daemon.peers.sessions(),
    }
}

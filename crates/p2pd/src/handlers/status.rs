//! `status`: the server session and local counters.

use p2p_proto::ctl::StatusReport;

use crate::Daemon;

/// Reports without touching the network.
pub fn run(daemon: &Daemon) -> StatusReport {
    StatusReport {
        server: daemon.link.status().report(),
        peer_listen: daemon.peer_listen.to_string(),
        sessions: daemon.peers.sessions().len() as u64,
        pending: daemon.peers.requests().len() as u64,
        unread: daemon.peers.inbox.unread().unwrap_or(0),
        public_key: daemon.public_key.clone(),
    }
}

//! `status`: the server session and local counters.

use p2p_proto::ctl::StatusReport;

use crate::Daemon;

/// Reports without touching the network (the unread count is a database
/// query, run off the async threads).
pub(crate) async fn run(daemon: &Daemon) -> StatusReport {
    let inbox = daemon.inbox.clone();
    let unread = tokio::task::spawn_blocking(move || inbox.unread())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let (direct, relayed) = daemon.peers.session_counts();
    StatusReport {
        server: daemon.link.status().report(),
        peer_listen: daemon.peer_listen.to_string(),
        sessions: direct + relayed,
        direct,
        relayed,
        pending: daemon.peers.requests().len() as u64,
        unread,
        public_key: daemon.public_key.clone(),
    }
}

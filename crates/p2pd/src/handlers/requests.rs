//! `requests`: invitations waiting for our answer.

use p2p_proto::ctl::RequestList;

use crate::Daemon;

/// Runs `requests`.
pub(crate) fn run(daemon: &Daemon) -> RequestList {
    RequestList {
        requests: daemon.peers.requests(),
    }
}

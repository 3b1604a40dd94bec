//! `broadcast TEXT`: answered once the server has the broadcast on disk.

use p2p_proto::ctl::{BroadcastDone, BroadcastInfo, CtlError, ErrorCode};
use p2p_proto::limits::MAX_BROADCAST_BYTES;
use p2p_proto::time::rfc3339;
use p2p_proto::wire::{Reply, Request};

use crate::Daemon;

/// Runs `broadcast`.
pub(crate) async fn run(daemon: &Daemon, text: String) -> Result<BroadcastDone, CtlError> {
    if text.len() > MAX_BROADCAST_BYTES {
        return Err(CtlError::new(
            ErrorCode::TooLarge,
            format!(
                "broadcast is {} bytes; the limit is {MAX_BROADCAST_BYTES}. Nothing was sent",
                text.len()
            ),
        ));
    }
    match daemon.link.request(Request::Broadcast { text }).await? {
        Reply::BroadcastStored { id, expires_ms } => Ok(BroadcastDone {
            broadcast: BroadcastInfo {
                id,
                expires_at: rfc3339(expires_ms),
            },
        }),
        other => Err(super::reply_error(other).into()),
    }
}

//! `inbox`: stored messages; the unread ones shown become read.

use p2p_proto::ctl::{CtlError, ErrorCode, InboxList};

use crate::Daemon;

/// Runs `inbox` (the `--follow` stream is the control connection's job).
pub async fn run(daemon: &Daemon, all: bool, from: Option<String>) -> Result<InboxList, CtlError> {
    let inbox = daemon.peers.inbox.clone();
    let messages = tokio::task::spawn_blocking(move || inbox.take(all, from.as_deref()))
        .await
        .map_err(|e| CtlError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| CtlError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(InboxList { messages })
}

//! `inbox`: one page of stored messages. Asking with `after` acknowledges
//! everything up to it: only then do those entries become read, so a client
//! that dies before it asks again loses nothing.

use p2p_proto::ctl::{CtlError, ErrorCode, InboxList};
use p2p_proto::limits::MAX_INBOX_PAGE_BYTES;

use crate::Daemon;

/// Runs `inbox` (the `--follow` stream is the control connection's job).
pub async fn run(
    daemon: &Daemon,
    all: bool,
    from: Option<String>,
    after: Option<u64>,
) -> Result<InboxList, CtlError> {
    let inbox = daemon.inbox.clone();
    let (messages, more) = tokio::task::spawn_blocking(move || {
        if let Some(received) = after {
            inbox.mark_read_upto(from.as_deref(), received)?;
        }
        inbox.page(
            all,
            from.as_deref(),
            after.unwrap_or(0),
            MAX_INBOX_PAGE_BYTES,
        )
    })
    .await
    .map_err(|e| CtlError::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|e| CtlError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(InboxList { messages, more })
}

//! `inbox`: one page of stored messages. Asking with `after` acknowledges
//! everything up to it: only then do those entries become read, so a client
//! that dies before it asks again loses nothing.

use p2p_proto::ctl::{CtlError, ErrorCode, InboxEntry, InboxKind, InboxList};
use p2p_proto::limits::MAX_INBOX_PAGE_BYTES;
use p2p_proto::time::rfc3339;

use crate::inbox::{Kind, Stored};
use crate::Daemon;

/// The control protocol's view of a stored entry (for pages and for the
/// `message`/`broadcast` events). The time is formatted here, clamped:
/// old rows may hold any value.
impl From<Stored> for InboxEntry {
    fn from(s: Stored) -> InboxEntry {
        InboxEntry {
            kind: match s.kind {
                Kind::Message => InboxKind::Message,
                Kind::Broadcast => InboxKind::Broadcast,
            },
            from: s.from,
            text: s.text,
            id: s.id,
            at: rfc3339(s.at_ms),
            seq: s.seq,
        }
    }
}

/// Runs `inbox` (the `--follow` stream is the control connection's job).
pub(crate) async fn run(
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
    Ok(InboxList {
        messages: messages.into_iter().map(InboxEntry::from).collect(),
        more,
    })
}

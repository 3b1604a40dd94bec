//! `outbox`: messages queued for contacts without a session, oldest first.

use p2p_proto::ctl::{CtlError, ErrorCode, OutboxEntry, OutboxList};
use p2p_proto::time::rfc3339;

use crate::Daemon;

/// Runs `outbox`.
pub(crate) async fn run(daemon: &Daemon) -> Result<OutboxList, CtlError> {
    let rows = daemon
        .outbox
        .queued()
        .await
        .map_err(|e| CtlError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(OutboxList {
        outbox: rows
            .into_iter()
            .map(|r| OutboxEntry {
                to: r.peer,
                id: r.seq,
                text: r.text,
                at: rfc3339(r.at_ms),
            })
            .collect(),
    })
}

//! `history USER [--limit N]`: both directions of the conversation with
//! USER, the newest N, oldest first. Anyone without messages (not a
//! contact, never talked to) has an empty history.

use p2p_proto::ctl::{CtlError, ErrorCode, HistoryList};

use crate::outbox::history::{conversation, DEFAULT_LIMIT, MAX_LIMIT};
use crate::outbox::{blocking, LIST_MAX_BYTES};
use crate::Daemon;

/// Runs `history`.
pub(crate) async fn run(
    daemon: &Daemon,
    user: String,
    limit: Option<u64>,
) -> Result<HistoryList, CtlError> {
    super::check_user(&user)?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            format!("--limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let db = daemon.inbox.clone();
    let items = blocking(move || conversation(&db, &user, limit, LIST_MAX_BYTES))
        .await
        .map_err(|e| CtlError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(HistoryList {
        history: items.into_iter().map(|i| i.entry()).collect(),
    })
}

//! `send USER TEXT...`: messages over an open session, answered only once
//! the peer stored and acknowledged the last one.

use p2p_proto::ctl::{CtlError, ErrorCode, SentList, SentMessage};
use p2p_proto::limits::MAX_MESSAGE_BYTES;
use tokio::sync::oneshot;

use crate::peer::session::SessionCmd;
use crate::Daemon;

/// Runs `send`.
pub(crate) async fn run(
    daemon: &Daemon,
    user: String,
    texts: Vec<String>,
) -> Result<SentList, CtlError> {
    super::check_user(&user)?;
    if texts.is_empty() {
        return Err(CtlError::new(ErrorCode::BadRequest, "nothing to send"));
    }
    if let Some(t) = texts.iter().find(|t| t.len() > MAX_MESSAGE_BYTES) {
        return Err(CtlError::new(
            ErrorCode::TooLarge,
            format!(
                "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}. Nothing was sent",
                t.len()
            ),
        ));
    }
    let no_session = || {
        CtlError::new(
            ErrorCode::NoSession,
            format!("no session with {user}; run p2pctl connect {user}"),
        )
    };
    let (_, cmds) = daemon.peers.session(&user).ok_or_else(no_session)?;
    let (reply, rx) = oneshot::channel();
    cmds.send(SessionCmd::Send { texts, reply })
        .await
        .map_err(|_| no_session())?;
    let ids = rx.await.map_err(|_| no_session())??;
    Ok(SentList {
        sent: ids
            .into_iter()
            .map(|id| SentMessage {
                to: user.clone(),
                id,
                status: p2p_proto::ctl::SendStatus::Delivered,
            })
            .collect(),
    })
}

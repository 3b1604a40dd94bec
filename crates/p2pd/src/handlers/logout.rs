//! `logout`: end the server session, revoke its token, forget it on disk.

use p2p_proto::ctl::{CtlError, ErrorCode, LogoutDone};
use tokio::sync::oneshot;

use crate::link::LinkCmd;
use crate::Daemon;

/// Logs out (a no-op success when not logged in).
pub(crate) async fn run(daemon: &Daemon) -> Result<LogoutDone, CtlError> {
    let (reply, rx) = oneshot::channel();
    daemon.link.send(LinkCmd::Logout { reply }).await?;
    let done = rx
        .await
        .map_err(|_| CtlError::new(ErrorCode::Internal, "daemon is shutting down"))??;
    Ok(done)
}

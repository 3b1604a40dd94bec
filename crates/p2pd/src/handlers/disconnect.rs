//! `disconnect USER`: close a peer session (both sides see `disconnected`).

use p2p_proto::ctl::{CtlError, Disconnected, ErrorCode};

use crate::peer::session::SessionCmd;
use crate::Daemon;

/// Runs `disconnect`.
pub(crate) async fn run(daemon: &Daemon, user: String) -> Result<Disconnected, CtlError> {
    super::check_user(&user)?;
    // No automatic session with them until `connect` or a restart.
    daemon.peers.pause(&user);
    let (_, cmds) = daemon
        .peers
        .session(&user)
        .ok_or_else(|| CtlError::new(ErrorCode::NoSession, format!("no session with {user}")))?;
    let _ = cmds.send(SessionCmd::Close).await;
    Ok(Disconnected { disconnected: user })
}

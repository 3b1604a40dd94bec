//! `accept USER` / `reject USER`: answer a pending invitation.

use p2p_proto::ctl::{Answered, CtlError};

use crate::Daemon;

/// Runs `accept` (`accept = true`) or `reject`.
pub(crate) async fn run(daemon: &Daemon, user: String, accept: bool) -> Result<Answered, CtlError> {
    super::check_user(&user)?;
    Ok(daemon.peers.answer(&user, accept).await?)
}

//! `chat` notice: tell USER's daemon that our chat with them opened or
//! closed, so their chat shows "alice opened the chat" / "alice left the
//! chat" (SPEC §11, "leaving tells the peer").

use p2p_proto::ctl::{ChatDone, CtlError};

use crate::peer::session::SessionCmd;
use crate::Daemon;

/// Runs `chat`: passes the notice to the session with `user`. Without one
/// (or if it ends meanwhile) nobody is told, which is not an error: the
/// notice only matters to a peer that is there to see it.
pub(crate) async fn run(daemon: &Daemon, user: String, open: bool) -> Result<ChatDone, CtlError> {
    super::check_user(&user)?;
    let told = match daemon.peers.session(&user) {
        Some((_, cmds)) => cmds.send(SessionCmd::Chat { open }).await.is_ok(),
        None => false,
    };
    Ok(ChatDone { peer: user, told })
}

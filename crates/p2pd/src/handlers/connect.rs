//! `connect USER`: invite, wait for the answer, open the encrypted session.

use std::time::Duration;

use p2p_proto::ctl::{ConnectDone, CtlError, ErrorCode};
use p2p_proto::names::validate_username;

use crate::Daemon;

/// Runs `connect`.
pub(crate) async fn run(
    daemon: &Daemon,
    user: String,
    timeout_ms: Option<u64>,
    no_wait: bool,
) -> Result<ConnectDone, CtlError> {
    validate_username(&user).map_err(|e| CtlError::new(ErrorCode::BadRequest, e.to_string()))?;
    // A connect typed by the user resumes automatic sessions that
    // `disconnect` paused; a contact held for a changed key stays closed
    // until `trust` (SPEC §11).
    daemon.peers.resume(&user);
    if daemon.peers.contact_view(&user).is_some_and(|c| c.held) {
        return Err(crate::peer::PeerError::KeyChanged { user }.into());
    }
    // Without --timeout: until the invitation expires (Peers::connect).
    let wait = timeout_ms.map(Duration::from_millis);
    Ok(daemon.peers.connect(&user, wait, no_wait).await?)
}

//! `probe`: the certificate a server presents, for `p2pctl login` to show
//! before a first login sends the password (issue 11, first-use pinning).

use p2p_proto::ctl::{CtlError, ErrorCode, ProbeReport};

use crate::Daemon;

/// Checks the address, then asks the link for the pin or the certificate.
pub(crate) async fn run(daemon: &Daemon, server: String) -> Result<ProbeReport, CtlError> {
    let server = p2p_proto::address::parse_server_list(&server)
        .map_err(|e| CtlError::new(ErrorCode::BadRequest, format!("server: {e}")))?;
    Ok(daemon.link.probe(&server).await?)
}

//! Extra connections to the server the link is logged in to (the relay,
//! address probes): same server, same pin, no login.

use std::net::SocketAddr;

use p2p_proto::ctl::ServerState;

use super::LinkHandle;
use crate::handshake::{self, HandshakeError, ServerConn};
use crate::tlsclient::PinVerifier;

/// Why an extra connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuxError {
    /// There is no online session whose server and pin to use.
    #[error("not connected to the server")]
    NotOnline,
    /// Reaching the server failed (the pin is checked as for the login).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

impl LinkHandle {
    /// A fresh TLS connection to the server of the online session, held to
    /// the certificate that session checked; from `from` if given (see
    /// [`handshake::connect`] for sharing the listener's port).
    pub async fn open_aux(&self, from: Option<SocketAddr>) -> Result<ServerConn, AuxError> {
        let status = self.status();
        let (ServerState::Online, Some(server), Some(fingerprint)) =
            (status.state, status.server, status.fingerprint)
        else {
            return Err(AuxError::NotOnline);
        };
        let verifier = PinVerifier::new(Some(fingerprint));
        Ok(handshake::connect(&server, from, verifier).await?)
    }
}

//! Extra connections to the server the link is logged in to (the relay,
//! address probes): same server, same pin, no login.

use std::net::SocketAddr;

use p2p_proto::ctl::{ProbeReport, ServerState};

use super::error::LoginError;
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
        // The instance the session is on, not the whole list.
        let (ServerState::Online, Some(server), Some(fingerprint)) =
            (status.state, status.current, status.fingerprint)
        else {
            return Err(AuxError::NotOnline);
        };
        let verifier = PinVerifier::new(Some(fingerprint));
        Ok(handshake::connect(&server, from, verifier).await?)
    }
}

impl LinkHandle {
    /// The pin on file for `server` (`host:port`), or, when there is none,
    /// the certificate it presents now (TCP, preamble and TLS only: no
    /// login is sent, nothing is pinned). Nothing there that answers as a
    /// p2p-server is [`LoginError::FirstContact`], as for a first login.
    pub(crate) async fn probe(&self, server: &str) -> Result<ProbeReport, LoginError> {
        let name = server.to_string();
        let pinned = self
            .state
            .blocking(move |s| s.pin(&name))
            .await
            .map_err(LoginError::PinFileDamaged)?;
        if pinned.is_some() {
            return Ok(ProbeReport {
                server: server.to_string(),
                pinned,
                fingerprint: None,
            });
        }
        // A cluster's instances present one certificate: the first that
        // answers shows it.
        let all = p2p_proto::address::servers(server);
        let mut verifier = PinVerifier::new(None);
        let mut result = handshake::connect(
            all.first().copied().unwrap_or(server),
            None,
            verifier.clone(),
        )
        .await;
        for addr in all.iter().skip(1) {
            if !matches!(
                result,
                Err(HandshakeError::Connect { .. } | HandshakeError::ConnectTimeout(_))
            ) {
                break;
            }
            verifier = PinVerifier::new(None);
            result = handshake::connect(addr, None, verifier.clone()).await;
        }
        match result {
            Ok(_conn) => Ok(ProbeReport {
                server: server.to_string(),
                pinned: None,
                fingerprint: verifier.seen(),
            }),
            Err(e @ HandshakeError::NotOurServer(_)) => Err(LoginError::NotOurServer(e)),
            Err(e @ HandshakeError::Busy { .. }) => Err(LoginError::Unreachable(format!(
                "{e}; try again in a moment"
            ))),
            Err(e) => Err(LoginError::FirstContact {
                server: server.to_string(),
                cause: match e {
                    HandshakeError::Connect { source, .. } => source.to_string(),
                    other => other.to_string(),
                },
            }),
        }
    }
}

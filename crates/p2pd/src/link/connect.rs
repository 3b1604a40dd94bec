//! One attempt to reach the server and log in: TCP, preamble, pinned TLS,
//! `Login`. The outcome says whether trying again can help.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use p2p_proto::limits::WIRE_VERSION;
use p2p_proto::wire::{self, Auth, ClientMsg, PeerInfo, ServerMsg};
use p2p_proto::Secret;

use super::error::LoginError;
use super::trust::Trust;
pub use crate::handshake::ServerConn;
use crate::handshake::{self, HandshakeError};
use crate::tlsclient::PinVerifier;

/// What to log in with.
#[derive(Debug, Clone)]
pub struct Creds {
    /// `host:port`.
    pub server: String,
    /// Account name.
    pub user: String,
    /// Password, token or registration.
    pub auth: Auth,
    /// An explicit `--fingerprint` not pinned yet; `None` once the login
    /// saved it (from then on the saved pin is what counts).
    pub fingerprint: Option<String>,
}

/// A successful login.
pub struct LoggedIn {
    /// The connection, ready for requests.
    pub conn: ServerConn,
    /// Server clock minus ours at login, ms (invitation expiries are the
    /// server's times).
    pub clock_skew_ms: i64,
    /// The resume token for next time.
    pub token: Secret,
    /// The certificate fingerprint the server presented.
    pub fingerprint: String,
    /// It must be saved as the pin (first use, or an explicit new pin).
    pub save_pin: bool,
    /// The address the server saw this connection come from.
    pub observed_addr: String,
}

/// A failed attempt.
#[derive(Debug)]
pub enum Failure {
    /// Unreachable, busy, or dropped: try again later (at least `after`).
    Retry {
        /// For status and logs.
        why: String,
        /// The server's own retry-after, if it gave one.
        after: Option<Duration>,
        /// Nothing answered as a p2p-server (no such host, refused, no
        /// preamble, TLS failed), with the cause: on the first login of a
        /// server this is a wrong address, not an outage to wait out.
        unreached: Option<String>,
    },
    /// Trying again with the same credentials cannot help.
    Fatal(LoginError),
}

fn retry(why: impl Into<String>) -> Failure {
    Failure::Retry {
        why: why.into(),
        after: None,
        unreached: None,
    }
}

/// A handshake that failed before anything answered as a p2p-server.
fn unreached(e: HandshakeError) -> Failure {
    let cause = match &e {
        HandshakeError::Connect { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    Failure::Retry {
        why: e.to_string(),
        after: None,
        unreached: Some(cause),
    }
}

/// One attempt to `addr` (one of `creds.server`, whose pin `trust` holds),
/// requiring of the server's certificate what `trust` says,
/// from the port of the peer listener bound at `listen` (and its address,
/// if it is bound to one) so the server sees the NAT's mapping of the
/// listener (SPEC §10).
pub(crate) async fn attempt(
    creds: &Creds,
    addr: &str,
    trust: &Trust,
    peer: &PeerInfo,
    listen: Option<SocketAddr>,
) -> Result<LoggedIn, Failure> {
    let verifier = PinVerifier::new(trust.pin().map(str::to_string));
    // An unspecified address takes the server's family (handshake.rs).
    let from = listen.filter(|l| l.port() != 0).map(|l| {
        let ip = if l.ip().is_unspecified() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            l.ip()
        };
        SocketAddr::new(ip, l.port())
    });
    let connected = match from {
        Some(from) => match handshake::connect(addr, Some(from), verifier.clone()).await {
            // E.g. the port pair still in TIME_WAIT after a reconnect to the
            // same server, or a server of the other family: any port will
            // do for this attempt.
            Err(e @ (HandshakeError::Bind { .. } | HandshakeError::Connect { .. })) => {
                tracing::debug!(cause = %e, "cannot reach the server from the listener's port; using another");
                handshake::connect(addr, None, verifier.clone()).await
            }
            other => other,
        },
        None => handshake::connect(addr, None, verifier.clone()).await,
    };
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(HandshakeError::Busy { retry_after, .. }) => {
            return Err(Failure::Retry {
                why: format!("server {addr} is busy (at its connection limit)"),
                after: Some(retry_after),
                unreached: None,
            })
        }
        Err(e @ HandshakeError::NotOurServer(_)) => {
            return Err(Failure::Fatal(LoginError::NotOurServer(e)))
        }
        Err(HandshakeError::Tls(_)) if verifier.mismatch() && trust.saves_pin() => {
            // The --fingerprint just typed, not a pin: a typo or the wrong
            // server, and nothing to advise pinning.
            let seen = verifier.seen().unwrap_or_default();
            tracing::warn!(server = %creds.server, %seen, "server certificate is not the --fingerprint given; not logging in");
            return Err(Failure::Fatal(LoginError::FingerprintMismatch {
                server: creds.server.clone(),
                seen,
                given: trust.pin().unwrap_or_default().to_string(),
            }));
        }
        Err(HandshakeError::Tls(_)) if verifier.mismatch() => {
            let (seen, pinned) = (
                verifier.seen().unwrap_or_default(),
                trust.pin().unwrap_or_default().to_string(),
            );
            tracing::error!(server = %creds.server, %seen, %pinned, "SERVER CERTIFICATE CHANGED; refusing to log in");
            return Err(Failure::Fatal(LoginError::CertificateChanged {
                server: creds.server.clone(),
                seen,
                pinned,
            }));
        }
        Err(
            e @ (HandshakeError::ConnectTimeout(_)
            | HandshakeError::Connect { .. }
            | HandshakeError::GreetTimeout(_)
            | HandshakeError::Greet { .. }
            | HandshakeError::TlsTimeout
            | HandshakeError::Tls(_)),
        ) => return Err(unreached(e)),
        Err(e) => return Err(retry(e.to_string())),
    };
    let fingerprint = verifier.seen().unwrap_or_default();
    let login = ClientMsg::Login {
        version: WIRE_VERSION,
        user: creds.user.clone(),
        auth: creds.auth.clone(),
        peer: peer.clone(),
    };
    let answer = handshake::login(&mut conn, login)
        .await
        .map_err(|e| retry(e.to_string()))?;
    match answer {
        ServerMsg::LoginOk {
            token,
            server_time_ms,
            observed_addr,
            ..
        } => Ok(LoggedIn {
            observed_addr,
            conn,
            token,
            fingerprint,
            save_pin: trust.saves_pin(),
            // A server time out of range is ignored, not trusted.
            clock_skew_ms: p2p_proto::time::clock_skew_ms(
                server_time_ms,
                p2p_proto::time::now_ms(),
            )
            .unwrap_or(0),
        }),
        ServerMsg::LoginFailed {
            code,
            message,
            retry_after_ms,
        } => Err(refused(code, message, retry_after_ms)),
        ServerMsg::Closing { message, .. } => Err(retry(format!("server closed: {message}"))),
        other => Err(retry(format!("unexpected answer to login: {other:?}"))),
    }
}

/// The server's refusal: a busy or failing server is tried again, every
/// other refusal is final (its code decides the exit code, in
/// `handlers/error.rs`).
fn refused(code: wire::LoginError, message: String, retry_after_ms: Option<u64>) -> Failure {
    match code {
        wire::LoginError::Busy | wire::LoginError::Internal => Failure::Retry {
            why: message,
            after: retry_after_ms.map(Duration::from_millis),
            unreached: None,
        },
        code => Failure::Fatal(LoginError::Refused { code, message }),
    }
}

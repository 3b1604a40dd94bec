//! One attempt to reach the server and log in: TCP, preamble, pinned TLS,
//! `Login`. The outcome says whether trying again can help.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use p2p_proto::codec::{self, FrameCodec};
use p2p_proto::ctl::{CtlError, ErrorCode};
use p2p_proto::limits::WIRE_VERSION;
use p2p_proto::wire::{Auth, ClientMsg, LoginError, PeerInfo, Preamble, ServerMsg, PREAMBLE_LEN};
use p2p_proto::Secret;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

use super::trust::Trust;
use crate::tlsclient::{self, PinVerifier};

/// TCP connect, preamble and TLS handshake must finish within this.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The login answer may take a while: the server queues argon2 work.
pub(crate) const LOGIN_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A logged-in connection to the server.
pub(crate) type ServerConn = Framed<TlsStream<TcpStream>, FrameCodec<ServerMsg, ClientMsg>>;

/// What to log in with.
#[derive(Debug, Clone)]
pub(crate) struct Creds {
    /// `host:port`.
    pub(crate) server: String,
    /// Account name.
    pub(crate) user: String,
    /// Password, token or registration.
    pub(crate) auth: Auth,
    /// An explicit `--fingerprint` not pinned yet; `None` once the login
    /// saved it (from then on the saved pin is what counts).
    pub(crate) fingerprint: Option<String>,
}

/// A successful login.
pub(crate) struct LoggedIn {
    /// The connection, ready for requests.
    pub(crate) conn: ServerConn,
    /// Server clock minus ours at login, ms (invitation expiries are the
    /// server's times).
    pub(crate) clock_skew_ms: i64,
    /// The resume token for next time.
    pub(crate) token: Secret,
    /// The certificate fingerprint the server presented.
    pub(crate) fingerprint: String,
    /// It must be saved as the pin (first use, or an explicit new pin).
    pub(crate) save_pin: bool,
}

/// A failed attempt.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Unreachable, busy, or dropped: try again later (at least `after`).
    Retry {
        /// For status and logs.
        why: String,
        /// The server's own retry-after, if it gave one.
        after: Option<Duration>,
    },
    /// Trying again with the same credentials cannot help.
    Fatal(CtlError),
}

fn retry(why: impl Into<String>) -> Failure {
    Failure::Retry {
        why: why.into(),
        after: None,
    }
}

/// One attempt, requiring of the server's certificate what `trust` says.
pub(crate) async fn attempt(
    creds: &Creds,
    trust: &Trust,
    peer: &PeerInfo,
) -> Result<LoggedIn, Failure> {
    let mut tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(&creds.server))
        .await
        .map_err(|_| retry(format!("no answer from {} (timed out)", creds.server)))?
        .map_err(|e| retry(format!("cannot reach {}: {e}", creds.server)))?;
    let _ = tcp.set_nodelay(true);
    let mut pre = [0u8; PREAMBLE_LEN];
    timeout(CONNECT_TIMEOUT, tcp.read_exact(&mut pre))
        .await
        .map_err(|_| retry(format!("{} did not greet (timed out)", creds.server)))?
        .map_err(|e| retry(format!("{} closed the connection: {e}", creds.server)))?;
    match Preamble::decode(&pre) {
        Ok(Preamble::Ready) => {}
        Ok(Preamble::Busy { retry_after }) => {
            return Err(Failure::Retry {
                why: format!("server {} is busy (at its connection limit)", creds.server),
                after: Some(retry_after),
            })
        }
        Err(_) => {
            return Err(Failure::Fatal(CtlError::new(
                ErrorCode::ServerUnreachable,
                format!(
                    "{} is not a p2p-broadcast server (check the address and port)",
                    creds.server
                ),
            )))
        }
    }
    let verifier = PinVerifier::new(trust.pin().map(str::to_string));
    let tls = match timeout(CONNECT_TIMEOUT, tlsclient::handshake(tcp, verifier.clone())).await {
        Err(_) => return Err(retry("TLS handshake timed out")),
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) if verifier.mismatch() => {
            let (seen, pinned) = (
                verifier.seen().unwrap_or_default(),
                trust.pin().unwrap_or_default().to_string(),
            );
            tracing::error!(server = %creds.server, %seen, %pinned, "SERVER CERTIFICATE CHANGED; refusing to log in");
            return Err(Failure::Fatal(CtlError::new(
                ErrorCode::CertificateChanged,
                format!(
                    "server {} presented certificate {seen}, but {pinned} is pinned: this may be an impostor. \
                     If its operator confirms the change, log in again with --fingerprint {seen}",
                    creds.server
                ),
            )));
        }
        Ok(Err(e)) => return Err(retry(format!("TLS handshake failed: {e}"))),
    };
    let fingerprint = verifier.seen().unwrap_or_default();
    let mut conn = Framed::new(tls, codec::client_side());
    let login = ClientMsg::Login {
        version: WIRE_VERSION,
        user: creds.user.clone(),
        auth: creds.auth.clone(),
        peer: peer.clone(),
    };
    timeout(CONNECT_TIMEOUT, conn.send(login))
        .await
        .map_err(|_| retry("sending login timed out"))?
        .map_err(|e| retry(format!("sending login failed: {e}")))?;
    let answer = timeout(LOGIN_REPLY_TIMEOUT, conn.next())
        .await
        .map_err(|_| retry("no login answer (timed out)"))?;
    match answer {
        Some(Ok(ServerMsg::LoginOk {
            token,
            server_time_ms,
            ..
        })) => Ok(LoggedIn {
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
        Some(Ok(ServerMsg::LoginFailed {
            code,
            message,
            retry_after_ms,
        })) => Err(refused(code, message, retry_after_ms)),
        Some(Ok(ServerMsg::Closing { message, .. })) => {
            Err(retry(format!("server closed: {message}")))
        }
        Some(Ok(other)) => Err(retry(format!("unexpected answer to login: {other:?}"))),
        Some(Err(e)) => Err(retry(format!("bad answer to login: {e}"))),
        None => Err(retry("server closed the connection during login")),
    }
}

fn refused(code: LoginError, message: String, retry_after_ms: Option<u64>) -> Failure {
    let fatal = |c| Failure::Fatal(CtlError::new(c, message.clone()));
    match code {
        LoginError::Busy | LoginError::Internal => Failure::Retry {
            why: message.clone(),
            after: retry_after_ms.map(Duration::from_millis),
        },
        LoginError::BadCredentials => fatal(ErrorCode::AuthFailed),
        LoginError::BadToken => fatal(ErrorCode::NotLoggedIn),
        LoginError::Throttled => fatal(ErrorCode::Throttled),
        LoginError::BadUsername | LoginError::BadPassword => fatal(ErrorCode::BadRequest),
        LoginError::RegistrationClosed => fatal(ErrorCode::RegistrationClosed),
        LoginError::UserExists => fatal(ErrorCode::UserExists),
        LoginError::VersionMismatch => fatal(ErrorCode::VersionMismatch),
    }
}

//! The two other things a daemon asks the server besides logging in, each
//! on a connection of its own made by [`handshake::connect`]: join the
//! relay for an accepted invitation (a byte pipe to the peer that carries
//! only Noise ciphertext), and probe which address the server sees.
//! See `p2p_proto::wire` (`wire_reach.rs`) for the flows.

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use p2p_proto::limits::WIRE_VERSION;
use p2p_proto::wire::{ClientMsg, RelayRefusal, ServerMsg};
use p2p_proto::Secret;
use tokio::io::{AsyncReadExt, Chain, Join, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;

use crate::handshake::{HandshakeError, ServerConn, CONNECT_TIMEOUT};

/// How long to wait for `RelayReady`: the server holds the first side up to
/// its pairing timeout (a few seconds), so this only catches a server that
/// stopped answering.
pub const RELAY_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A relayed byte stream to the peer: whatever arrived with `RelayReady`
/// first, then the TLS stream.
pub type RelayStream =
    Join<Chain<Cursor<BytesMut>, ReadHalf<TlsStream<TcpStream>>>, WriteHalf<TlsStream<TcpStream>>>;

/// Why the relay or the probe did not work out.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reaching the server failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The relay turned us away.
    #[error("the relay refused: {message}")]
    Refused {
        /// Why, as a code.
        code: RelayRefusal,
        /// Why, in words (the server's).
        message: String,
    },
    /// The server sent something else, or nothing, or it did not parse.
    #[error("unexpected answer from the server: {0}")]
    Unexpected(String),
    /// The server did not answer in time.
    #[error("the server did not answer in time")]
    TimedOut,
}

/// Sends `msg` as the connection's first message and returns the answer.
async fn ask(
    conn: &mut ServerConn,
    msg: ClientMsg,
    wait: Duration,
) -> Result<ServerMsg, RelayError> {
    timeout(CONNECT_TIMEOUT, conn.send(msg))
        .await
        .map_err(|_| HandshakeError::SendTimeout)?
        .map_err(HandshakeError::Send)?;
    match timeout(wait, conn.next()).await {
        Err(_) => Err(RelayError::TimedOut),
        Ok(None) => Err(RelayError::Unexpected(
            "the server closed the connection".into(),
        )),
        Ok(Some(Err(e))) => Err(RelayError::Unexpected(e.to_string())),
        Ok(Some(Ok(m))) => Ok(m),
    }
}

/// Joins the relay with `token` on a fresh connection; returns the peer the
/// server paired us with and the byte stream to it.
pub async fn join(
    mut conn: ServerConn,
    token: Secret,
) -> Result<(String, RelayStream), RelayError> {
    let msg = ClientMsg::Relay {
        version: WIRE_VERSION,
        token,
    };
    match ask(&mut conn, msg, RELAY_READY_TIMEOUT).await? {
        ServerMsg::RelayReady { peer } => {
            // Bytes the peer sent right after the server's answer may
            // already sit in the frame buffer: they come first.
            let parts = conn.into_parts();
            let (r, w) = tokio::io::split(parts.io);
            let stream = tokio::io::join(Cursor::new(parts.read_buf).chain(r), w);
            Ok((peer, stream))
        }
        ServerMsg::RelayRefused { code, message } => Err(RelayError::Refused { code, message }),
        other => Err(RelayError::Unexpected(kind(&other))),
    }
}

/// After `Observed`, how long to wait for the server to close first: then
/// the TIME_WAIT is the server's, not on our (shared, listener's) port,
/// which the next probe or dial from that port may need at once.
pub const OBSERVE_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Asks which address the server sees this connection come from.
pub async fn observe(conn: ServerConn) -> Result<SocketAddr, RelayError> {
    observe_timed(conn).await.map(|(addr, _)| addr)
}

/// [`observe`], and the round trip of the question and its answer.
pub async fn observe_timed(mut conn: ServerConn) -> Result<(SocketAddr, Duration), RelayError> {
    let msg = ClientMsg::Observe {
        version: WIRE_VERSION,
    };
    let asked = tokio::time::Instant::now();
    let answer = ask(&mut conn, msg, CONNECT_TIMEOUT).await?;
    let rtt = asked.elapsed();
    let addr = match answer {
        ServerMsg::Observed { addr } => addr.parse().map_err(|_| {
            RelayError::Unexpected("an observed address that does not parse".into())
        })?,
        other => return Err(RelayError::Unexpected(kind(&other))),
    };
    // Wait for the server's FIN itself, not only its TLS close_notify
    // (which comes first): closing on the alert alone races the FIN into a
    // simultaneous close, and then the TIME_WAIT is ours after all.
    let (tcp, _) = conn.into_inner().into_inner();
    let _ = timeout(OBSERVE_CLOSE_WAIT, until_eof(tcp)).await;
    Ok((addr, rtt))
}

/// Reads (and drops) what is left until the other end closes.
async fn until_eof(mut tcp: TcpStream) {
    let mut buf = [0u8; 512];
    while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// A short name of a server message for errors (never its contents).
fn kind(m: &ServerMsg) -> String {
    let name = match m {
        ServerMsg::LoginOk { .. } => "login_ok",
        ServerMsg::LoginFailed { .. } => "login_failed",
        ServerMsg::Reply { .. } => "reply",
        ServerMsg::Event { .. } => "event",
        ServerMsg::Ping { .. } => "ping",
        ServerMsg::Pong { .. } => "pong",
        ServerMsg::Closing { .. } => "closing",
        ServerMsg::RelayReady { .. } => "relay_ready",
        ServerMsg::RelayRefused { .. } => "relay_refused",
        ServerMsg::Observed { .. } => "observed",
    };
    format!("a {name} message")
}

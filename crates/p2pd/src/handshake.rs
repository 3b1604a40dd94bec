//! The one way into the rendezvous server: TCP (optionally from a chosen
//! source address), the preamble, TLS pinned by fingerprint, then `Login`
//! and its answer. Used by the daemon's server link (`link/connect.rs`,
//! which decides what is worth retrying) and by the load generator.
//!
//! Every step has a deadline, so a server that stops answering cannot hold
//! a caller forever; the error says which step failed, in words the link
//! shows as they are.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use p2p_proto::codec::{self, FrameCodec};
use p2p_proto::wire::{ClientMsg, Preamble, ServerMsg, PREAMBLE_LEN};
use p2p_proto::ProtoError;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

use crate::tlsclient::{self, PinVerifier};

/// TCP connect, preamble and TLS handshake must each finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The login answer may take a while: the server queues argon2 work.
pub const LOGIN_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS connection to the server speaking the client side of the wire
/// protocol.
pub type ServerConn = Framed<TlsStream<TcpStream>, FrameCodec<ServerMsg, ClientMsg>>;

/// Which step of the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// TCP connect did not finish in time.
    #[error("no answer from {0} (timed out)")]
    ConnectTimeout(String),
    /// TCP connect failed (or the address did not resolve).
    #[error("cannot reach {server}: {source}")]
    Connect {
        /// `host:port` as given.
        server: String,
        /// Why.
        source: std::io::Error,
    },
    /// The requested source address could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The source address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No preamble in time.
    #[error("{0} did not greet (timed out)")]
    GreetTimeout(String),
    /// The connection broke before the preamble.
    #[error("{server} closed the connection: {source}")]
    Greet {
        /// `host:port` as given.
        server: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server is at its connection limit.
    #[error("server {server} is busy (at its connection limit)")]
    Busy {
        /// `host:port` as given.
        server: String,
        /// The server's own retry-after.
        retry_after: Duration,
    },
    /// The preamble is not ours: wrong address or port.
    #[error("{0} is not a p2p-broadcast server (check the address and port)")]
    NotOurServer(String),
    /// TLS did not finish in time.
    #[error("TLS handshake timed out")]
    TlsTimeout,
    /// TLS failed; the verifier tells whether the certificate was the cause.
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// The login could not be written in time.
    #[error("sending login timed out")]
    SendTimeout,
    /// The login could not be written.
    #[error("sending login failed: {0}")]
    Send(ProtoError),
    /// No answer to the login in time.
    #[error("no login answer (timed out)")]
    ReplyTimeout,
    /// The answer could not be read.
    #[error("bad answer to login: {0}")]
    BadReply(ProtoError),
    /// The server closed instead of answering.
    #[error("server closed the connection during login")]
    Closed,
}

/// TCP to `server` (`host:port`; from `source` if given), the preamble, and
/// TLS checked by `verifier`. After [`HandshakeError::Tls`], ask the
/// verifier whether the certificate was refused.
///
/// A `source` with a port other than 0 is bound with `SO_REUSEADDR` and
/// `SO_REUSEPORT`, so it can share the peer listener's port: then the
/// address the server sees is the NAT's mapping of that port (SPEC §10).
pub async fn connect(
    server: &str,
    source: Option<SocketAddr>,
    verifier: Arc<PinVerifier>,
) -> Result<ServerConn, HandshakeError> {
    let connect_err = |source| HandshakeError::Connect {
        server: server.to_string(),
        source,
    };
    let mut tcp = timeout(CONNECT_TIMEOUT, tcp_from(server, source))
        .await
        .map_err(|_| HandshakeError::ConnectTimeout(server.to_string()))?
        .map_err(|e| match e {
            TcpError::Bind(addr, source) => HandshakeError::Bind { addr, source },
            TcpError::Connect(e) => connect_err(e),
        })?;
    let _ = tcp.set_nodelay(true);
    let mut pre = [0u8; PREAMBLE_LEN];
    timeout(CONNECT_TIMEOUT, tcp.read_exact(&mut pre))
        .await
        .map_err(|_| HandshakeError::GreetTimeout(server.to_string()))?
        .map_err(|source| HandshakeError::Greet {
            server: server.to_string(),
            source,
        })?;
    match Preamble::decode(&pre) {
        Ok(Preamble::Ready) => {}
        Ok(Preamble::Busy { retry_after }) => {
            return Err(HandshakeError::Busy {
                server: server.to_string(),
                retry_after,
            })
        }
        Err(_) => return Err(HandshakeError::NotOurServer(server.to_string())),
    }
    let tls = timeout(CONNECT_TIMEOUT, tlsclient::handshake(tcp, verifier))
        .await
        .map_err(|_| HandshakeError::TlsTimeout)?
        .map_err(HandshakeError::Tls)?;
    Ok(Framed::new(tls, codec::client_side()))
}

/// Sends `login` (a [`ClientMsg::Login`]) and returns the server's answer,
/// whatever it is: the caller decides what a refusal means.
pub async fn login(conn: &mut ServerConn, login: ClientMsg) -> Result<ServerMsg, HandshakeError> {
    timeout(CONNECT_TIMEOUT, conn.send(login))
        .await
        .map_err(|_| HandshakeError::SendTimeout)?
        .map_err(HandshakeError::Send)?;
    match timeout(LOGIN_REPLY_TIMEOUT, conn.next())
        .await
        .map_err(|_| HandshakeError::ReplyTimeout)?
    {
        Some(Ok(msg)) => Ok(msg),
        Some(Err(e)) => Err(HandshakeError::BadReply(e)),
        None => Err(HandshakeError::Closed),
    }
}

enum TcpError {
    Bind(SocketAddr, std::io::Error),
    Connect(std::io::Error),
}

/// Plain `connect` by name, or — with a source address — resolve, bind,
/// then connect to the first address of the source's family (an
/// unspecified source takes the family of the server's first address).
async fn tcp_from(server: &str, source: Option<SocketAddr>) -> Result<TcpStream, TcpError> {
    let Some(mut from) = source else {
        return TcpStream::connect(server).await.map_err(TcpError::Connect);
    };
    let mut addrs = tokio::net::lookup_host(server)
        .await
        .map_err(TcpError::Connect)?
        .peekable();
    if from.ip().is_unspecified() {
        if let Some(first) = addrs.peek() {
            let any: std::net::IpAddr = if first.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            from.set_ip(any);
        }
    }
    let addr = addrs
        .find(|a| a.is_ipv4() == from.is_ipv4())
        .ok_or_else(|| {
            TcpError::Connect(std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("no address of the same family as {from}"),
            ))
        })?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(TcpError::Connect)?;
    if from.port() != 0 {
        socket
            .set_reuseaddr(true)
            .map_err(|e| TcpError::Bind(from, e))?;
        socket
            .set_reuseport(true)
            .map_err(|e| TcpError::Bind(from, e))?;
    }
    socket.bind(from).map_err(|e| TcpError::Bind(from, e))?;
    socket.connect(addr).await.map_err(TcpError::Connect)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A listener that greets its first client with `greeting` and reports
    /// the client's address.
    async fn greeter(greeting: Vec<u8>) -> (String, tokio::task::JoinHandle<SocketAddr>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, peer) = listener.accept().await.unwrap();
            s.write_all(&greeting).await.unwrap();
            peer
        });
        (addr, task)
    }

    #[tokio::test]
    async fn busy_is_reported_with_the_servers_retry_after_from_the_chosen_source() {
        let retry_after = Duration::from_secs(7);
        let (addr, server) = greeter(Preamble::Busy { retry_after }.encode().to_vec()).await;
        let source = std::net::IpAddr::from([127, 0, 0, 2]);
        let from = SocketAddr::new(source, 0);
        let got = connect(&addr, Some(from), PinVerifier::new(None)).await;
        assert!(
            matches!(got, Err(HandshakeError::Busy { retry_after: r, .. }) if r == retry_after),
            "{:?}",
            got.err()
        );
        assert_eq!(server.await.unwrap().ip(), source);
    }

    #[tokio::test]
    async fn a_foreign_greeting_is_not_our_server() {
        let (addr, _server) = greeter(vec![b'X'; PREAMBLE_LEN]).await;
        let got = connect(&addr, None, PinVerifier::new(None)).await;
        assert!(
            matches!(got, Err(HandshakeError::NotOurServer(_))),
            "{:?}",
            got.err()
        );
    }
}

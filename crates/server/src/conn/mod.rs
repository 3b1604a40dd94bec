//! One client connection, from accept to close (see [`p2p_proto::wire`] for
//! the message flow). Every failure here ends this connection only, with
//! its reason logged; nothing a client sends can affect another session.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use p2p_proto::codec;
use p2p_proto::limits::{WIRE_VERSION, WRITE_TIMEOUT};
use p2p_proto::time;
use p2p_proto::wire::{Auth, ClientMsg, CloseReason, LoginError, PeerInfo, Preamble, ServerMsg};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

use crate::mailbox::Mailbox;
use crate::presence::Online;
use crate::reach::{lan_paths, Reach};
use crate::sources::Pending;
use crate::Shared;

mod error;
mod relayed;
mod session;
mod tls_stream;

pub(crate) use error::{BadPeer, Dropped};
use session::{logged_in, Me, Unregister};
use tls_stream::TlsStream;

/// A client connection: frames over TLS (see [`tls_stream`]: no buffer
/// held while idle).
pub(crate) type Conn = Framed<TlsStream, codec::FanoutCodec<ClientMsg, ServerMsg>>;

/// The frame codec over `tls`, holding no buffer yet: tokio-util gives
/// each side 8 KiB up front, 16 KiB per idle session.
fn framed(tls: TlsStream) -> Conn {
    let mut conn = Framed::new(tls, codec::server_side());
    release_idle_buffers(&mut conn);
    conn
}

/// Bytes an idle session's read buffer keeps: a keepalive or an
/// acknowledgement frame fits.
const READ_START: usize = 128;

/// Gives the frame buffers' memory back when they hold nothing, so an
/// idle session keeps none; the next frame allocates what it needs (a
/// read buffer keeps a partial frame, a write buffer unflushed bytes).
/// Replaced whatever their `capacity()` says: after a frame is split off
/// or a flush advances past the bytes written, an empty buffer still holds
/// its whole allocation while reporting little or no capacity.
///
/// The read buffer starts again at [`READ_START`] rather than empty: from
/// empty, the framing grows it 8, 16, 32, 64 bytes, one read and one
/// reallocation each, for every acknowledgement.
pub(crate) fn release_idle_buffers(conn: &mut Conn) {
    if conn.read_buffer().is_empty() && conn.read_buffer().capacity() != READ_START {
        *conn.read_buffer_mut() = BytesMut::with_capacity(READ_START);
    }
    if conn.write_buffer().is_empty() {
        *conn.write_buffer_mut() = BytesMut::new();
    }
}

/// How a connection ended: a normal reason (debug log) or [`Dropped`].
type Closed = Result<&'static str, Dropped>;

/// Serves one accepted connection to completion. `pending` is its place in
/// the per-source count of connections not logged in yet, given back at
/// login; `slot` its place under `--max-clients`, given back at the end.
/// Spawned as it is (no wrapping future): a task holds its future's
/// arguments once per layer, and every online session pays for each byte.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    pending: Pending,
    shutdown: CancellationToken,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("conn", id, %addr);
    let closed = handle(&shared, stream, addr, pending, &shutdown)
        .instrument(span.clone())
        .await;
    span.in_scope(|| match closed {
        Ok(why) => debug!(reason = why, "connection closed"),
        Err(why) => info!(reason = %why, "connection closed"),
    });
    drop(slot);
}

async fn send(conn: &mut Conn, msg: ServerMsg) -> Result<(), Dropped> {
    written(conn.send(msg)).await
}

/// A write to the client (send, feed or flush) within [`WRITE_TIMEOUT`].
async fn written(
    write: impl std::future::Future<Output = Result<(), p2p_proto::ProtoError>>,
) -> Result<(), Dropped> {
    match timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Dropped::Write(e)),
        Err(_) => Err(Dropped::WriteTimeout),
    }
}

async fn close(conn: &mut Conn, reason: CloseReason, message: &str) {
    let _ = send(
        conn,
        ServerMsg::Closing {
            reason,
            message: message.into(),
        },
    )
    .await;
    let _ = timeout(WRITE_TIMEOUT, conn.get_mut().shutdown()).await;
}

/// What the server remembers of a login's peer details, with the link
/// address it saw; an unusable key or advertised address refuses the login
/// (invalid LAN entries are only dropped).
fn reach(peer: &PeerInfo, seen: SocketAddr) -> Result<Reach, BadPeer> {
    if peer.public_key.len() != 64 || !peer.public_key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BadPeer::Key);
    }
    let advertise = match &peer.advertise {
        Some(a) => Some(a.parse().map_err(|_| BadPeer::Advertise(a.clone()))?),
        None => None,
    };
    Ok(Reach {
        link: seen,
        listen_port: peer.port,
        advertise,
        lan: lan_paths(&peer.lan),
    })
}

async fn handle(
    shared: &Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    pending: Pending,
    shutdown: &CancellationToken,
) -> Closed {
    // Boxed: the handshake's and the login's state would otherwise size the
    // task of every session for its whole life (a task is as large as its
    // largest state); this way an online session keeps only its connection
    // and the session loop.
    let mut admitted = match Box::pin(admit(shared, stream, addr, pending, shutdown)).await? {
        Admitted::Over(why) => return Ok(why),
        Admitted::In(session) => session,
    };
    let _online = admitted.online;
    logged_in(shared, &mut admitted.conn, &admitted.me, &admitted.mailbox).await
}

/// Where the connection stands once its login is over.
enum Admitted {
    /// It ended before a session began (a refused login, a relay, ...).
    Over(&'static str),
    /// Logged in.
    In(Box<Admission>),
}

/// A logged-in connection and what its session runs on.
struct Admission {
    conn: Conn,
    me: Me,
    mailbox: Arc<Mailbox>,
    online: Unregister,
}

/// From accept to a login: the preamble, TLS, and the first message (a
/// login, or a relay or observe request served to its end here).
async fn admit(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    addr: SocketAddr,
    pending: Pending,
    shutdown: &CancellationToken,
) -> Result<Admitted, Dropped> {
    let deadline = Instant::now() + shared.cfg.login_timeout;
    let late = |during| Dropped::LoginTimeout {
        limit: shared.cfg.login_timeout,
        during,
    };
    timeout_at(deadline, stream.write_all(&Preamble::Ready.encode()))
        .await
        .map_err(|_| late("preamble"))?
        .map_err(Dropped::Preamble)?;
    // A silent connection is closed well before the login deadline: holding
    // a slot must cost at least a started TLS handshake.
    let first_byte = Instant::now() + shared.cfg.first_byte_timeout;
    match timeout_at(first_byte.min(deadline), stream.peek(&mut [0u8; 1])).await {
        Err(_) if deadline <= first_byte => return Err(late("waiting for TLS")),
        Err(_) => return Err(Dropped::Silent(shared.cfg.first_byte_timeout)),
        Ok(Ok(0)) => return Ok(Admitted::Over("client left before TLS")),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(Dropped::BeforeTls(e)),
    }
    // A reload may replace the identity; this connection keeps the one it
    // started with.
    let acceptor = shared
        .tls
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .acceptor
        .clone();
    let tls = timeout_at(deadline, tls_stream::accept(acceptor, stream))
        .await
        .map_err(|_| late("TLS handshake"))?
        .map_err(Dropped::Tls)?;
    let mut conn = framed(tls);

    let first = match timeout_at(deadline, conn.next()).await {
        Err(_) => {
            close(&mut conn, CloseReason::Idle, "no login in time").await;
            return Err(late("waiting for Login"));
        }
        Ok(None) => return Ok(Admitted::Over("client left before logging in")),
        Ok(Some(Err(e))) if error::is_disconnect(&e) => {
            return Ok(Admitted::Over("client left before logging in"))
        }
        Ok(Some(Err(e))) => {
            close(&mut conn, CloseReason::ProtocolError, &e.to_string()).await;
            return Err(Dropped::FrameBeforeLogin(e));
        }
        Ok(Some(Ok(m))) => m,
    };
    let (version, user, auth, peer) = match first {
        ClientMsg::Login {
            version,
            user,
            auth,
            peer,
        } => (version, user, auth, peer),
        ClientMsg::Relay { version, token } => {
            // Boxed, as below: inline, the relay's state (two connections
            // and the splice) would size every session's task (13 KiB).
            return Box::pin(relayed::join(
                shared, conn, pending, version, token, shutdown,
            ))
            .await
            .map(Admitted::Over);
        }
        ClientMsg::Observe { .. } => {
            return Box::pin(relayed::observe(conn, addr))
                .await
                .map(Admitted::Over)
        }
        _ => {
            close(&mut conn, CloseReason::ProtocolError, "log in first").await;
            return Err(Dropped::NotLoginFirst);
        }
    };
    let refuse = |code, message: String| ServerMsg::LoginFailed {
        code,
        message,
        retry_after_ms: None,
    };
    if version != WIRE_VERSION {
        let msg = format!(
            "server speaks protocol {WIRE_VERSION}, client {version}: upgrade the older one"
        );
        send(&mut conn, refuse(LoginError::VersionMismatch, msg)).await?;
        return Err(Dropped::Version(version));
    }
    let reach = match reach(&peer, addr) {
        Ok(a) => a,
        Err(e) => {
            close(&mut conn, CloseReason::ProtocolError, &e.to_string()).await;
            return Err(e.into());
        }
    };
    let (token, method) = match shared.auth.login(&user, &auth, addr.ip()).await {
        Ok(ok) => ok,
        Err(r) => {
            let m = crate::metrics::metrics();
            m.login(crate::metrics::login_code(&r.code));
            match (r.code, &auth) {
                (LoginError::Throttled | LoginError::Busy, Auth::Register { .. }) => {
                    m.limited("registration")
                }
                (LoginError::Throttled | LoginError::Busy, _) => m.limited("login"),
                _ => {}
            }
            // A refused name is the client's choice, unchecked: logged
            // as sent it could forge log lines or reach a terminal.
            if matches!(r.code, LoginError::BadUsername) {
                info!(user_len = user.len(), code = ?r.code, "login refused");
            } else {
                info!(user = %user, code = ?r.code, "login refused");
            }
            let retry_after_ms = r.retry_after.map(|d| d.as_millis() as u64);
            send(
                &mut conn,
                ServerMsg::LoginFailed {
                    code: r.code,
                    message: r.message,
                    retry_after_ms,
                },
            )
            .await?;
            return Ok(Admitted::Over("login refused"));
        }
    };

    // Logged in: this connection no longer counts against its source.
    drop(pending);
    let session = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let mailbox = Arc::new(Mailbox::default());
    let since_ms = time::now_ms();
    let public_key = peer.public_key;
    shared.presence.register(
        &user,
        Online {
            session,
            since_ms,
            reach: reach.clone(),
            public_key: public_key.clone(),
            mailbox: mailbox.clone(),
        },
    );
    let online = Unregister {
        shared: shared.clone(),
        user: user.clone(),
        session,
    };
    if let Some(cluster) = &shared.cluster {
        // Before LoginOk: once told, the user is in every instance's list
        // and a session elsewhere has been told it was replaced.
        if let Err(e) = cluster
            .claim(&user, session, since_ms, &public_key, &reach)
            .await
        {
            tracing::warn!(user = %user, cause = %e, "cannot write the presence row; the lease renewal retries");
            cluster.claim_failed(&user, session);
        }
    }
    // Buffered, not flushed: the session flushes it with the broadcasts it
    // catches up on, one write (and one TLS record) for a reconnect.
    written(conn.feed(ServerMsg::LoginOk {
        user: user.clone(),
        token: token.clone(),
        observed_addr: addr.to_string(),
        server_time_ms: since_ms,
    }))
    .await?;
    crate::metrics::metrics().login("ok");
    info!(user = %user, method = method.as_str(), peer = %reach.primary(), "logged in");
    let me = Me {
        user,
        session,
        token,
        ip: addr.ip(),
    };
    Ok(Admitted::In(Box::new(Admission {
        conn,
        me,
        mailbox,
        online,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::wire::Request;

    /// What a connection's future may hold besides its session loop (the
    /// connection itself is boxed with the login's result).
    const SLACK: usize = 256;
    /// The session loop's future, every idle session's largest part.
    const SESSION_MAX: usize = 1024;

    /// A real TLS connection: the server's `Conn` and the daemon's client.
    async fn pair(dir: &std::path::Path) -> (Conn, p2pd::handshake::ServerConn) {
        let id = crate::tls::load(&crate::tls::TlsSource::SelfSigned, dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pin = p2pd::tlsclient::PinVerifier::new(Some(id.fingerprint.clone()));
        let (server, client) = tokio::join!(
            async {
                let (tcp, _) = listener.accept().await.unwrap();
                framed(tls_stream::accept(id.acceptor, tcp).await.unwrap())
            },
            async {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let tls = p2pd::tlsclient::handshake(tcp, pin).await.unwrap();
                Framed::new(tls, codec::client_side())
            }
        );
        (server, client)
    }

    fn held(conn: &Conn) -> (usize, usize) {
        (
            conn.read_buffer().capacity(),
            conn.write_buffer().capacity(),
        )
    }

    /// The server picks AES-128-GCM with SHA-256 even though the daemon
    /// (rustls' default order) offers AES-256-GCM with SHA-384 first: the
    /// SHA-384 key schedule had no hardware help and showed in a mass
    /// reconnect's profile.
    #[tokio::test]
    async fn the_server_chooses_aes_128_gcm_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = pair(dir.path()).await;
        let suite = |s: Option<rustls::SupportedCipherSuite>| s.map(|s| s.suite());
        let want = Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(
            suite(server.get_ref().tls().negotiated_cipher_suite()),
            want
        );
        assert_eq!(
            suite(client.get_ref().get_ref().1.negotiated_cipher_suite()),
            want
        );
    }

    /// An idle session holds no frame buffer beyond a small read buffer:
    /// none at the start, and what a large frame each way needed is given
    /// back once both are empty.
    #[tokio::test]
    async fn an_idle_session_holds_no_frame_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let (mut server, mut client) = pair(dir.path()).await;
        assert_eq!(held(&server), (READ_START, 0), "only a small read buffer");

        let text = "x".repeat(20_000);
        let req = Request::Broadcast { text: text.clone() };
        client
            .send(ClientMsg::Request { id: 1, req })
            .await
            .unwrap();
        match server.next().await {
            Some(Ok(ClientMsg::Request { id: 1, .. })) => {}
            other => panic!("{other:?}"),
        }
        let big = ServerMsg::Closing {
            reason: CloseReason::Other,
            message: text.clone(),
        };
        // Encoded into the write buffer, not yet flushed: kept.
        server.feed(big).await.unwrap();
        release_idle_buffers(&mut server);
        assert!(
            server.write_buffer().len() > text.len(),
            "unflushed bytes kept"
        );
        SinkExt::<ServerMsg>::flush(&mut server).await.unwrap();
        release_idle_buffers(&mut server);
        assert_eq!(held(&server), (READ_START, 0), "given back once empty");

        // The client got it whole, and the next frame still works.
        match client.next().await {
            Some(Ok(ServerMsg::Closing { message, .. })) => assert_eq!(message, text),
            other => panic!("{other:?}"),
        }
        client.send(ClientMsg::Ping { nonce: 7 }).await.unwrap();
        match server.next().await {
            Some(Ok(ClientMsg::Ping { nonce: 7 })) => {}
            other => panic!("{other:?}"),
        }
        // Nor does the TLS stream under the frames (tokio-rustls' kept a
        // 4 KiB read buffer for the connection's life).
        assert_eq!(server.get_ref().buffered(), 0, "TLS buffers");
    }

    /// A connection's task is as large as its largest state, idle sessions
    /// included: a logged-in session's loop, not the handshake's or the
    /// login's, the relay's (two connections and the splice: 13 KB in a
    /// release build) nor a request's.
    #[tokio::test]
    async fn a_connection_task_is_no_larger_than_a_session_needs() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::ServerConfig::new(dir.path().join("data"));
        let shared = crate::Server::open(cfg).await.unwrap().shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let pending = crate::sources::PendingLogins::new(shared.cfg.sources)
            .admit(peer.ip())
            .unwrap();
        let shutdown = CancellationToken::new();
        let task = std::mem::size_of_val(&handle(&shared, stream, peer, pending, &shutdown));

        let (mut conn, _client) = pair(dir.path()).await;
        let mailbox = Mailbox::default();
        let me = Me {
            user: "alice".into(),
            session: 1,
            token: p2p_proto::Secret::new("t"),
            ip: peer.ip(),
        };
        let session = std::mem::size_of_val(&logged_in(&shared, &mut conn, &me, &mailbox));
        // The session loop, plus a few values of the connection's own: the
        // connection itself and everything of the login are in boxes.
        let needed = session + SLACK;
        assert!(
            task <= needed,
            "a connection's future is {task} bytes, a session needs {needed}"
        );
        // Only a delivery and an acknowledgement run inline (680 bytes in
        // a release build); with a request's, a close's or a catch-up's
        // state inline it was 4.4 KB.
        assert!(
            session <= SESSION_MAX,
            "the session loop's future is {session} bytes"
        );
    }
}

//! One client connection, from accept to close (see [`p2p_proto::wire`] for
//! the message flow). Every failure here ends this connection only, with
//! its reason logged; nothing a client sends can affect another session.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use p2p_proto::codec;
use p2p_proto::limits::{WIRE_VERSION, WRITE_TIMEOUT};
use p2p_proto::wire::{
    ClientMsg, CloseReason, LoginError, PeerInfo, Preamble, Reply, Request, ServerMsg,
};
use p2p_proto::{time, Secret};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::server::TlsStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

use crate::broadcast::{Delivery, Live};
use crate::presence::{Online, OUTBOUND_QUEUE};
use crate::sources::Pending;
use crate::Shared;

type Conn = Framed<TlsStream<TcpStream>, codec::FrameCodec<ClientMsg, ServerMsg>>;

/// Why a connection ended, for the log line.
type Closed = Result<&'static str, String>;

/// Serves one accepted connection to completion. `pending` is its place in
/// the per-source count of connections not logged in yet, given back at
/// login.
pub async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    pending: Pending,
    shutdown: CancellationToken,
) {
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("conn", id, %addr);
    async move {
        match handle(&shared, stream, addr, pending, &shutdown).await {
            Ok(why) => debug!(reason = why, "connection closed"),
            Err(why) => info!(reason = %why, "connection closed"),
        }
    }
    .instrument(span)
    .await
}

async fn send(conn: &mut Conn, msg: ServerMsg) -> Result<(), String> {
    match timeout(WRITE_TIMEOUT, conn.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err("write timed out (client not reading)".into()),
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

fn peer_addr(peer: &PeerInfo, seen: SocketAddr) -> Result<SocketAddr, String> {
    if peer.public_key.len() != 64 || !peer.public_key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("public key must be 32 bytes of hex".into());
    }
    match &peer.advertise {
        Some(a) => a
            .parse()
            .map_err(|_| format!("advertise address {a:?} is not IP:PORT")),
        None => Ok(SocketAddr::new(seen.ip(), peer.port)),
    }
}

async fn handle(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    addr: SocketAddr,
    pending: Pending,
    shutdown: &CancellationToken,
) -> Closed {
    let deadline = Instant::now() + shared.cfg.login_timeout;
    let late = |what: &str| format!("no login within {:?} ({what})", shared.cfg.login_timeout);
    timeout_at(deadline, stream.write_all(&Preamble::Ready.encode()))
        .await
        .map_err(|_| late("preamble"))?
        .map_err(|e| format!("preamble write failed: {e}"))?;
    // A silent connection is closed well before the login deadline: holding
    // a slot must cost at least a started TLS handshake.
    let first_byte = Instant::now() + shared.cfg.first_byte_timeout;
    match timeout_at(first_byte.min(deadline), stream.peek(&mut [0u8; 1])).await {
        Err(_) if deadline <= first_byte => return Err(late("waiting for TLS")),
        Err(_) => {
            return Err(format!(
                "no TLS ClientHello within {:?}",
                shared.cfg.first_byte_timeout
            ))
        }
        Ok(Ok(0)) => return Ok("client left before TLS"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("read failed before TLS: {e}")),
    }
    let tls = timeout_at(deadline, shared.tls.accept(stream))
        .await
        .map_err(|_| late("TLS handshake"))?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let mut conn = Framed::new(tls, codec::server_side());

    let first = match timeout_at(deadline, conn.next()).await {
        Err(_) => {
            close(&mut conn, CloseReason::Idle, "no login in time").await;
            return Err(late("waiting for Login"));
        }
        Ok(None) => return Ok("client left before logging in"),
        Ok(Some(Err(e))) => {
            close(&mut conn, CloseReason::ProtocolError, &e.to_string()).await;
            return Err(format!("bad frame before login: {e}"));
        }
        Ok(Some(Ok(m))) => m,
    };
    let ClientMsg::Login {
        version,
        user,
        auth,
        peer,
    } = first
    else {
        close(&mut conn, CloseReason::ProtocolError, "log in first").await;
        return Err("message before login".into());
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
        return Err(format!("protocol version {version}"));
    }
    let peer_addr = match peer_addr(&peer, addr) {
        Ok(a) => a,
        Err(e) => {
            close(&mut conn, CloseReason::ProtocolError, &e).await;
            return Err(e);
        }
    };
    let (token, method) = match shared.auth.login(&user, &auth, addr.ip()).await {
        Ok(ok) => ok,
        Err(r) => {
            info!(user = %user, code = ?r.code, "login refused");
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
            return Ok("login refused");
        }
    };

    // Logged in: this connection no longer counts against its source.
    drop(pending);
    let session = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (kick, kicked) = watch::channel(None);
    let (outbound, pushed) = mpsc::channel(OUTBOUND_QUEUE);
    let since_ms = time::now_ms();
    shared.presence.register(
        &user,
        Online {
            session,
            since_ms,
            peer_addr,
            public_key: peer.public_key,
            kick,
            outbound,
        },
    );
    let _online = Unregister {
        shared: shared.clone(),
        user: user.clone(),
        session,
    };
    send(
        &mut conn,
        ServerMsg::LoginOk {
            user: user.clone(),
            token: token.clone(),
            observed_addr: addr.to_string(),
            server_time_ms: since_ms,
        },
    )
    .await?;
    info!(user = %user, method = method.as_str(), peer = %peer_addr, "logged in");
    let me = Me {
        user,
        session,
        token,
        ip: addr.ip(),
    };
    logged_in(shared, &mut conn, me, kicked, pushed, shutdown).await
}

/// Removes the presence entry however the session ends.
struct Unregister {
    shared: Arc<Shared>,
    user: String,
    session: u64,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.shared.presence.unregister(&self.user, self.session);
        self.shared
            .invitations
            .session_ended(&self.shared.presence, &self.user, self.session);
    }
}

/// The logged-in side of a connection.
struct Me {
    user: String,
    session: u64,
    token: Secret,
    /// Where this session connects from (per-address invitation limit).
    ip: std::net::IpAddr,
}

async fn request(shared: &Arc<Shared>, me: &Me, req: Request) -> Reply {
    match req {
        Request::Broadcast { text } => match shared.broadcasts.publish(&me.user, text).await {
            Ok((id, expires_ms)) => {
                info!(user = %me.user, id, "broadcast stored");
                Reply::BroadcastStored { id, expires_ms }
            }
            Err(refused) => refused.into(),
        },
        Request::List => Reply::Users {
            users: shared.presence.list(),
        },
        Request::Invite { to } => {
            // Unknown names go the same way as offline accounts (rate limits
            // first, then `not_online`): no account probing.
            match shared
                .invitations
                .invite(&shared.presence, &me.user, me.session, me.ip, &to)
            {
                Ok((invite, expires_ms)) => {
                    info!(user = %me.user, to = %to, invite, "invitation sent");
                    Reply::Invited { invite, expires_ms }
                }
                Err(refused) => refused.into(),
            }
        }
        Request::Answer { invite, accept } => {
            match shared
                .invitations
                .answer(&shared.presence, &me.user, me.session, invite, accept)
            {
                Ok(contact) => Reply::Answered { invite, contact },
                Err(refused) => refused.into(),
            }
        }
    }
}

/// Sends the store's backlog above the delivery cursor, in id order.
async fn catch_up(conn: &mut Conn, delivery: &mut Delivery) -> Result<(), String> {
    while let Some(batch) = delivery
        .backlog()
        .await
        .map_err(|e| format!("cannot read broadcasts: {e}"))?
    {
        for event in batch {
            send(conn, ServerMsg::Event { event }).await?;
        }
    }
    Ok(())
}

async fn logged_in(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    me: Me,
    mut kicked: watch::Receiver<Option<CloseReason>>,
    mut pushed: mpsc::Receiver<ServerMsg>,
    shutdown: &CancellationToken,
) -> Closed {
    let mut delivery = Delivery::start(shared.broadcasts.clone(), &me.user)
        .await
        .map_err(|e| format!("cannot read broadcast state: {e}"))?;
    catch_up(conn, &mut delivery).await?;
    // Only what the client sends proves it alive: our own writes (broadcasts,
    // invitations) succeed into the socket buffer of a dead peer too.
    let mut silent_until = Instant::now() + shared.cfg.idle_timeout;
    loop {
        tokio::select! {
            Some(msg) = pushed.recv() => send(conn, msg).await?,
            _ = tokio::time::sleep_until(silent_until) => {
                close(conn, CloseReason::Idle, "nothing heard; keepalive missed").await;
                return Err("idle (keepalive missed)".into());
            }
            live = delivery.live() => match live {
                Live::Send(event) => send(conn, ServerMsg::Event { event }).await?,
                Live::Skip => {}
                Live::Behind => catch_up(conn, &mut delivery).await?,
                Live::Closed => return Err("broadcast hub stopped".into()),
            },
            _ = shutdown.cancelled() => {
                close(conn, CloseReason::Shutdown, "server shutting down; reconnect later").await;
                return Ok("shutdown");
            }
            _ = kicked.changed() => {
                let reason = kicked.borrow().unwrap_or(CloseReason::Other);
                let message = match reason {
                    CloseReason::Replaced => "logged in from elsewhere; this session was replaced",
                    CloseReason::AccountRemoved => "account removed by the operator",
                    _ => "closed by the server",
                };
                close(conn, reason, message).await;
                return Ok(message);
            }
            next = conn.next() => match next {
                None => return Ok("client closed"),
                Some(Err(e)) => {
                    close(conn, CloseReason::ProtocolError, &e.to_string()).await;
                    return Err(format!("bad frame: {e}"));
                }
                Some(Ok(msg)) => {
                silent_until = Instant::now() + shared.cfg.idle_timeout;
                match msg {
                    ClientMsg::Ping { nonce } => send(conn, ServerMsg::Pong { nonce }).await?,
                    ClientMsg::Pong { .. } => {}
                    ClientMsg::Request { id, req } => {
                        let reply = request(shared, &me, req).await;
                        send(conn, ServerMsg::Reply { id, reply }).await?;
                    }
                    ClientMsg::BroadcastAck { upto } => delivery.ack(upto).await,
                    ClientMsg::Logout => {
                        shared.auth.revoke(me.token).await;
                        close(conn, CloseReason::LoggedOut, "logged out").await;
                        return Ok("logged out");
                    }
                    ClientMsg::Login { .. } => {
                        close(conn, CloseReason::ProtocolError, "already logged in").await;
                        return Err("second login on one connection".into());
                    }
                }
                }
            }
        }
    }
}

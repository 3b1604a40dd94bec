//! Connections whose first message is not `Login`: a relay join (one side
//! of a pair, see [`crate::relay`]) or an address probe. Neither is a
//! login: no password check, no login throttling, no presence.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use p2p_proto::limits::{WIRE_VERSION, WRITE_TIMEOUT};
use p2p_proto::wire::{RelayRefusal, ServerMsg};
use p2p_proto::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{send, Closed, Conn};
use crate::relay::splice::splice;
use crate::relay::{Arrival, Claim, Refusal, Seat};
use crate::sources::Pending;
use crate::Shared;

/// Answers a probe with the address the connection came from, then closes
/// first (the probing side keeps no TIME_WAIT on its port).
pub(super) async fn observe(mut conn: Conn, addr: SocketAddr) -> Closed {
    send(
        &mut conn,
        ServerMsg::Observed {
            addr: addr.to_string(),
        },
    )
    .await?;
    let _ = timeout(WRITE_TIMEOUT, conn.get_mut().shutdown()).await;
    Ok("address probe answered")
}

/// Tells the client why, then closes.
async fn refuse(mut conn: Conn, r: Refusal) -> Closed {
    info!(code = ?r.code, "relay join refused");
    if r.code == p2p_proto::wire::RelayRefusal::OverCap {
        crate::metrics::metrics().limited("relay");
    }
    send(
        &mut conn,
        ServerMsg::RelayRefused {
            code: r.code,
            message: r.message,
        },
    )
    .await?;
    let _ = timeout(WRITE_TIMEOUT, conn.get_mut().shutdown()).await;
    Ok("relay join refused")
}

fn absent(seat: &Seat) -> Refusal {
    Refusal {
        code: RelayRefusal::PeerAbsent,
        message: format!("{} did not come to the relay in time", seat.peer()),
    }
}

/// One side joining the relay with `token`.
pub(super) async fn join(
    shared: &Arc<Shared>,
    conn: Conn,
    pending: Pending,
    version: u32,
    token: Secret,
    shutdown: &CancellationToken,
) -> Closed {
    if version != WIRE_VERSION {
        let message = format!(
            "server speaks protocol {WIRE_VERSION}, client {version}: upgrade the older one"
        );
        let code = RelayRefusal::Other;
        return refuse(conn, Refusal { code, message }).await;
    }
    let claim = match shared.relay.claim(&token, Instant::now()) {
        Ok(c) => c,
        Err(r) => return refuse(conn, r).await,
    };
    // A valid token: this connection no longer counts as a pending login.
    drop(pending);
    match claim {
        Claim::First { seat, rx } => first(shared, conn, seat, rx, shutdown).await,
        Claim::Second { seat, tx } => {
            let (done, over) = oneshot::channel();
            let arrival = Arrival {
                conn,
                pacer: seat.pacer().clone(),
                done,
            };
            if let Err(back) = tx.send(arrival) {
                // The waiting side left between our claim and now.
                return refuse(back.conn, absent(&seat)).await;
            }
            // The first side's task runs the pair; this connection (and
            // its slot) lives until it is over.
            let _ = over.await;
            Ok("relay pair over")
        }
    }
}

/// The first side: wait for the second (at most the pair timeout), then
/// run the pair.
async fn first(
    shared: &Arc<Shared>,
    mut conn: Conn,
    seat: Seat,
    mut rx: oneshot::Receiver<Arrival>,
    shutdown: &CancellationToken,
) -> Closed {
    let deadline = Instant::now() + shared.relay.policy().pair_timeout;
    let arrival = tokio::select! {
        a = &mut rx => a.ok(),
        _ = tokio::time::sleep_until(deadline) => {
            if shared.relay.give_up(&seat) {
                None
            } else {
                // The other side came meanwhile and is handing itself over.
                rx.await.ok()
            }
        }
        next = conn.next() => {
            // Nothing may come before RelayReady: a close, garbage or a
            // message ends this side (its token dies with the seat).
            return match next {
                None => Ok("client left the relay before its peer came"),
                Some(_) => {
                    let message = "nothing may be sent before relay_ready".to_string();
                    refuse(conn, Refusal { code: RelayRefusal::Other, message }).await
                }
            };
        }
        _ = shutdown.cancelled() => return Ok("shutdown"),
    };
    let Some(Arrival {
        conn: mut other,
        pacer: other_pacer,
        done,
    }) = arrival
    else {
        return refuse(conn, absent(&seat)).await;
    };
    let ready = |peer: &str| ServerMsg::RelayReady { peer: peer.into() };
    send(&mut conn, ready(seat.peer())).await?;
    send(&mut other, ready(seat.user())).await?;
    info!(user = %seat.user(), peer = %seat.peer(), "relay pair up");
    let m = crate::metrics::metrics();
    m.relay_sessions.inc();
    m.relay_active.inc();
    let policy = shared.relay.policy();
    let spliced = splice(
        stream(conn),
        stream(other),
        seat.pacer(),
        &other_pacer,
        policy.idle,
        shutdown,
    )
    .await;
    info!(
        user = %seat.user(),
        peer = %seat.peer(),
        ended = ?spliced.ended,
        sent = spliced.a_to_b,
        received = spliced.b_to_a,
        "relay pair over"
    );
    m.relay_active.dec();
    m.relay_bytes.inc_by(spliced.a_to_b + spliced.b_to_a);
    drop(done);
    Ok("relay pair over")
}

/// The connection as a byte stream: what the frame reader already holds
/// first, then the TLS stream.
fn stream(conn: Conn) -> impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {
    let parts = conn.into_parts();
    let (r, w) = tokio::io::split(parts.io);
    tokio::io::join(Cursor::new(parts.read_buf).chain(r), w)
}

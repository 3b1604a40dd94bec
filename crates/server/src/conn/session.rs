//! The logged-in half of a connection: requests, pushed events, broadcast
//! delivery (through [`Delivery`]), keepalive and the ways a session ends.

use std::sync::Arc;

use futures::{FutureExt, SinkExt, StreamExt};
use p2p_proto::codec::Prepared;
use p2p_proto::wire::{ClientMsg, CloseReason, Reply, Request, ServerMsg};
use p2p_proto::Secret;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{close, send, written, Closed, Conn, Dropped};
use crate::broadcast::{Delivery, Live, Publish};
use crate::metrics::metrics;
use crate::refused::Refused;
use crate::Shared;

/// Removes the presence entry however the session ends.
pub(super) struct Unregister {
    pub(super) shared: Arc<Shared>,
    pub(super) user: String,
    pub(super) session: u64,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.shared.presence.unregister(&self.user, self.session);
        self.shared
            .invitations
            .session_ended(&self.shared.presence, &self.user, self.session);
        if let Some(cluster) = self.shared.cluster.clone() {
            let (user, session) = (self.user.clone(), self.session);
            // A row left behind (a stop before this runs) is deleted by the
            // lease renewal, or expires with the lease.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let shared = self.shared.clone();
                rt.spawn(async move {
                    if let Err(e) = cluster.release(&user, session).await {
                        tracing::warn!(user = %user, cause = %e, "cannot delete the presence row; it expires with its lease");
                    }
                    // Left behind, they end at their expiry instead.
                    if let Err(e) = cluster.invitations_ended(&shared, &user, session).await {
                        tracing::warn!(user = %user, cause = %e, "cannot end the session's invitations; they expire");
                    }
                });
            }
        }
    }
}

/// The logged-in side of a connection.
pub(super) struct Me {
    pub(super) user: String,
    pub(super) session: u64,
    pub(super) token: Secret,
    /// Where this session connects from (per-address invitation limit).
    pub(super) ip: std::net::IpAddr,
}

/// Answers a request. A stored broadcast also returns its [`Publish`], to
/// be dropped once the answer is written: the sender hears "stored" before
/// the fan-out to every other session starts.
async fn request(shared: &Arc<Shared>, me: &Me, req: Request) -> (Reply, Option<Publish>) {
    let reply = match req {
        Request::Broadcast { text } => match shared.broadcasts.publish(&me.user, text).await {
            Ok((id, expires_ms, publish)) => {
                metrics().broadcasts_stored.inc();
                info!(user = %me.user, id, "broadcast stored");
                return (Reply::BroadcastStored { id, expires_ms }, Some(publish));
            }
            Err(refused) => {
                if matches!(refused, Refused::BroadcastRate { .. }) {
                    metrics().limited("broadcast");
                }
                refused.into()
            }
        },
        Request::List => Reply::Users {
            users: match &shared.cluster {
                None => shared.presence.list(),
                Some(cluster) => cluster.list().await.unwrap_or_else(|e| {
                    tracing::warn!(cause = %e, "cannot read presence; listing this instance's users");
                    shared.presence.list()
                }),
            },
        },
        Request::Invite { to } => {
            // Unknown names go the same way as offline accounts (rate limits
            // first, then `not_online`): no account probing.
            let sent = match &shared.cluster {
                None => shared
                    .invitations
                    .invite(&shared.presence, &me.user, me.session, me.ip, &to),
                Some(c) => c.invite(shared, &me.user, me.session, me.ip, &to).await,
            };
            match sent {
                Ok((invite, expires_ms)) => {
                    metrics().invitation("sent");
                    info!(user = %me.user, to = %to, invite, "invitation sent");
                    Reply::Invited { invite, expires_ms }
                }
                Err(refused) => {
                    metrics().invitation("refused");
                    if matches!(refused, Refused::InviteRate { .. }) {
                        metrics().limited("invitation");
                    }
                    refused.into()
                }
            }
        }
        Request::Answer { invite, accept } => {
            let answered = match &shared.cluster {
                None => shared.invitations.answer(
                    &shared.presence,
                    &shared.relay,
                    &me.user,
                    me.session,
                    invite,
                    accept,
                ),
                Some(c) => c.answer(shared, &me.user, me.session, invite, accept).await,
            };
            match answered {
                Ok(contact) => {
                    metrics().invitation(if accept { "accepted" } else { "rejected" });
                    Reply::Answered { invite, contact }
                }
                Err(refused) => refused.into(),
            }
        }
    };
    (reply, None)
}

/// Writes `msg` and, if given, publishes the broadcast it answers right
/// after the answer is in the socket. A sender that does not read cannot
/// hold the fan-out back: if its answer does not go out at once, the
/// broadcast is published anyway and the answer follows within the usual
/// write timeout.
async fn answer(conn: &mut Conn, msg: ServerMsg, publish: Option<Publish>) -> Result<(), Dropped> {
    let Some(publish) = publish else {
        return send(conn, msg).await;
    };
    let fed = written(conn.feed(msg)).await;
    if fed.is_ok() {
        let _ = SinkExt::<ServerMsg>::flush(conn).now_or_never();
    }
    drop(publish);
    fed?;
    written(SinkExt::<ServerMsg>::flush(conn)).await
}

/// What a kicked daemon is told (and shows).
const KICKED: &str =
    "disconnected by the server operator (p2p-server kick); log in again to come back";

/// Sends one broadcast's frame to this session.
async fn deliver(conn: &mut Conn, frame: Prepared<ServerMsg>) -> Result<(), Dropped> {
    metrics().broadcasts_delivered.inc();
    written(conn.send(frame)).await
}

/// Sends the backlog above the delivery cursor, in id order.
async fn catch_up(conn: &mut Conn, delivery: &mut Delivery) -> Result<(), Dropped> {
    while let Some(batch) = delivery.backlog().await.map_err(|source| Dropped::Store {
        what: "backlog",
        source,
    })? {
        for frame in batch {
            deliver(conn, frame).await?;
        }
    }
    Ok(())
}

pub(super) async fn logged_in(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    me: Me,
    mut kicked: watch::Receiver<Option<CloseReason>>,
    mut pushed: mpsc::Receiver<Box<ServerMsg>>,
    shutdown: &CancellationToken,
) -> Closed {
    let mut delivery = Delivery::start(shared.broadcasts.clone(), &me.user)
        .await
        .map_err(|source| Dropped::Store {
            what: "state",
            source,
        })?;
    catch_up(conn, &mut delivery).await?;
    // Only what the client sends proves it alive: our own writes (broadcasts,
    // invitations) succeed into the socket buffer of a dead peer too. The
    // timer is re-armed only when it fires, not per message: the loop runs
    // once per delivery, so it stays cheap. Likewise the stop and kick
    // futures live across iterations.
    let idle = shared.cfg.idle_timeout;
    let mut heard = Instant::now();
    let silence = tokio::time::sleep_until(heard + idle);
    let stop = shutdown.cancelled();
    let kick = async move {
        let _ = kicked.changed().await;
        let reason = *kicked.borrow();
        reason.unwrap_or(CloseReason::Other)
    };
    tokio::pin!(silence, stop, kick);
    loop {
        super::release_idle_buffers(conn);
        tokio::select! {
            // Fixed order: a stop or kick is never starved by a busy client,
            // and a delivery (the common wake-up) is found first.
            biased;
            _ = &mut stop => {
                close(conn, CloseReason::Shutdown, "server shutting down; reconnect later").await;
                return Ok("shutdown");
            }
            reason = &mut kick => {
                let message = match reason {
                    CloseReason::Replaced => "logged in from elsewhere; this session was replaced",
                    CloseReason::AccountRemoved => "account removed by the operator",
                    // Only `p2p-server kick` sends this one: a logout the
                    // operator made, so the resume token goes too.
                    CloseReason::LoggedOut => {
                        shared.auth.revoke(me.token.clone()).await;
                        KICKED
                    }
                    _ => "closed by the server",
                };
                close(conn, reason, message).await;
                return Ok(message);
            }
            live = delivery.live() => match live {
                Live::Send(frame) => deliver(conn, frame).await?,
                Live::Skip => {}
                Live::Behind => catch_up(conn, &mut delivery).await?,
                Live::Closed => return Err(Dropped::HubStopped),
            },
            next = conn.next() => match next {
                None => return Ok("client closed"),
                Some(Err(e)) if super::error::is_disconnect(&e) => return Ok("client closed"),
                Some(Err(e)) => {
                    close(conn, CloseReason::ProtocolError, &e.to_string()).await;
                    return Err(Dropped::Frame(e));
                }
                Some(Ok(msg)) => {
                heard = Instant::now();
                match msg {
                    ClientMsg::Ping { nonce } => send(conn, ServerMsg::Pong { nonce }).await?,
                    ClientMsg::Pong { .. } => {}
                    ClientMsg::Request { id, req } => {
                        let (reply, publish) = request(shared, &me, req).await;
                        answer(conn, ServerMsg::Reply { id, reply }, publish).await?;
                    }
                    ClientMsg::BroadcastAck { upto } => delivery.ack(upto).await,
                    ClientMsg::Logout => {
                        shared.auth.revoke(me.token).await;
                        close(conn, CloseReason::LoggedOut, "logged out").await;
                        return Ok("logged out");
                    }
                    ClientMsg::Login { .. } | ClientMsg::Relay { .. } | ClientMsg::Observe { .. } => {
                        close(conn, CloseReason::ProtocolError, "already logged in").await;
                        return Err(Dropped::SecondLogin);
                    }
                }
                }
            },
            Some(msg) = pushed.recv() => send(conn, *msg).await?,
            _ = &mut silence => {
                if heard + idle > Instant::now() {
                    silence.as_mut().reset(heard + idle);
                    continue;
                }
                close(conn, CloseReason::Idle, "nothing heard; keepalive missed").await;
                return Err(Dropped::Idle);
            }
        }
    }
}

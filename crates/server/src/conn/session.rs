//! The logged-in half of a connection: requests, pushed events, broadcast
//! delivery (through [`Delivery`]), keepalive and the ways a session ends.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::{FutureExt, SinkExt, StreamExt};
use p2p_proto::codec::Prepared;
use p2p_proto::wire::{ClientMsg, CloseReason, Reply, Request, ServerMsg};
use p2p_proto::{ProtoError, Secret};
use tokio::time::Instant;
use tracing::info;

use super::{close, send, written, Closed, Conn, Dropped};
use crate::broadcast::{Delivery, Live, Publish};
use crate::mailbox::{Mail, Mailbox, Registered};
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

/// Sends one broadcast's frame to this session. Nearly every delivery goes
/// into the socket at once: those need no write timer, and the session's
/// task keeps no room for one (every idle session would carry it); the few
/// that must wait finish boxed, within the usual write timeout.
async fn deliver(conn: &mut Conn, frame: Prepared<ServerMsg>) -> Result<(), Dropped> {
    metrics().broadcasts_delivered.inc();
    let mut frame = Some(frame);
    match poll_fn(|cx| Poll::Ready(send_now(conn, &mut frame, cx))).await {
        Poll::Ready(sent) => sent.map_err(Dropped::Write),
        Poll::Pending => Box::pin(written(finish(conn, frame))).await,
    }
}

type Frame = Prepared<ServerMsg>;

/// Puts `frame` (if still there) into the write buffer and flushes, as far
/// as that goes without waiting; `frame` is taken once it is buffered.
fn send_now(
    conn: &mut Conn,
    frame: &mut Option<Frame>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), ProtoError>> {
    if frame.is_some() {
        ready!(SinkExt::<Frame>::poll_ready_unpin(conn, cx))?;
        if let Some(f) = frame.take() {
            SinkExt::<Frame>::start_send_unpin(conn, f)?;
        }
    }
    SinkExt::<Frame>::poll_flush_unpin(conn, cx)
}

/// What [`send_now`] left: the frame if it was not buffered, then a flush.
async fn finish(conn: &mut Conn, frame: Option<Frame>) -> Result<(), ProtoError> {
    if let Some(frame) = frame {
        conn.feed(frame).await?;
    }
    SinkExt::<Frame>::flush(conn).await
}

/// Sends the backlog above the delivery cursor, in id order.
async fn catch_up(conn: &mut Conn, delivery: &mut Delivery) -> Result<(), Dropped> {
    while let Some(batch) = delivery.backlog().await.map_err(|source| Dropped::Store {
        what: "backlog",
        source,
    })? {
        // One write per batch, not per broadcast (the codec still writes
        // out as its buffer fills).
        for frame in batch {
            metrics().broadcasts_delivered.inc();
            written(conn.feed(frame)).await?;
        }
        written(SinkExt::<Frame>::flush(conn)).await?;
    }
    Ok(())
}

pub(super) async fn logged_in(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    me: &Me,
    mailbox: &Mailbox,
) -> Closed {
    let mut delivery = Box::pin(Delivery::start(shared.broadcasts.clone(), &me.user))
        .await
        .map_err(|source| Dropped::Store {
            what: "state",
            source,
        })?;
    // The login's answer is still in the write buffer: it leaves with the
    // first broadcast caught up on, or here.
    Box::pin(catch_up(conn, &mut delivery)).await?;
    written(SinkExt::<ServerMsg>::flush(conn)).await?;
    // Only what the client sends proves it alive: our own writes (broadcasts,
    // invitations) succeed into the socket buffer of a dead peer too. The
    // timer is re-armed only when it fires, not per message: the loop runs
    // once per delivery, so it stays cheap. The mailbox (replaced, kicked,
    // shutting down, pushed messages) is an atomic load until it holds
    // something.
    let idle = shared.cfg.idle_timeout;
    let mut heard = Instant::now();
    let silence = tokio::time::sleep_until(heard + idle);
    tokio::pin!(silence);
    let mut registered = Registered::default();
    loop {
        super::release_idle_buffers(conn);
        // The futures here are all polled each time round, and the arms
        // only say what happened: a session's task is as large as its
        // largest state, so everything but a delivery and an
        // acknowledgement (an idle session's whole life) runs boxed below.
        let woke = tokio::select! {
            // Fixed order: a close is never starved by a busy client, and a
            // delivery (the common wake-up) comes right after (the mailbox
            // is rarely used, and cheap to look at).
            biased;
            mail = mailbox.take(&mut registered) => match mail {
                Mail::Close(reason) => Wake::Kick(reason),
                Mail::Push(msg) => Wake::Pushed(msg),
            },
            live = delivery.live() => match live {
                Live::Send(frame) => {
                    deliver(conn, frame).await?;
                    continue;
                }
                Live::Skip => continue,
                Live::Behind => Wake::Behind,
                Live::Closed => return Err(Dropped::HubStopped),
            },
            next = conn.next() => match next {
                Some(Ok(ClientMsg::BroadcastAck { upto })) => {
                    heard = Instant::now();
                    delivery.ack(upto);
                    continue;
                }
                Some(Ok(msg)) => {
                    heard = Instant::now();
                    Wake::Client(Box::new(msg))
                }
                None => return Ok("client closed"),
                Some(Err(e)) if super::error::is_disconnect(&e) => return Ok("client closed"),
                Some(Err(e)) => Wake::Bad(e),
            },
            _ = &mut silence => {
                if heard + idle > Instant::now() {
                    silence.as_mut().reset(heard + idle);
                    continue;
                }
                Wake::Idle
            }
        };
        if let Some(end) = Box::pin(woken(shared, conn, me, &mut delivery, woke)).await? {
            return Ok(end);
        }
    }
}

/// What woke a session, besides a delivery or an acknowledgement.
enum Wake {
    Kick(CloseReason),
    /// Live broadcasts were lost: catch up from the store.
    Behind,
    Client(Box<ClientMsg>),
    Bad(p2p_proto::ProtoError),
    Pushed(Box<ServerMsg>),
    Idle,
}

/// Acts on `woke`; `Some(reason)` once the session is over.
async fn woken(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    me: &Me,
    delivery: &mut Delivery,
    woke: Wake,
) -> Result<Option<&'static str>, Dropped> {
    match woke {
        Wake::Kick(reason) => {
            let message = match reason {
                CloseReason::Shutdown => "server shutting down; reconnect later",
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
            Ok(Some(message))
        }
        Wake::Behind => catch_up(conn, delivery).await.map(|()| None),
        Wake::Bad(e) => {
            close(conn, CloseReason::ProtocolError, &e.to_string()).await;
            Err(Dropped::Frame(e))
        }
        Wake::Pushed(msg) => send(conn, *msg).await.map(|()| None),
        Wake::Idle => {
            close(conn, CloseReason::Idle, "nothing heard; keepalive missed").await;
            Err(Dropped::Idle)
        }
        Wake::Client(msg) => match *msg {
            ClientMsg::Ping { nonce } => send(conn, ServerMsg::Pong { nonce }).await.map(|()| None),
            ClientMsg::Pong { .. } | ClientMsg::BroadcastAck { .. } => Ok(None),
            ClientMsg::Request { id, req } => {
                let (reply, publish) = request(shared, me, req).await;
                answer(conn, ServerMsg::Reply { id, reply }, publish).await?;
                Ok(None)
            }
            ClientMsg::Logout => {
                shared.auth.revoke(me.token.clone()).await;
                close(conn, CloseReason::LoggedOut, "logged out").await;
                Ok(Some("logged out"))
            }
            ClientMsg::Login { .. } | ClientMsg::Relay { .. } | ClientMsg::Observe { .. } => {
                close(conn, CloseReason::ProtocolError, "already logged in").await;
                Err(Dropped::SecondLogin)
            }
        },
    }
}

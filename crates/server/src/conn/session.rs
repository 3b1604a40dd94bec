//! The logged-in half of a connection: requests, pushed events, broadcast
//! delivery (through [`Delivery`]), keepalive and the ways a session ends.

use std::sync::Arc;

use futures::StreamExt;
use p2p_proto::wire::{ClientMsg, CloseReason, Reply, Request, ServerEvent, ServerMsg};
use p2p_proto::Secret;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{close, send, Closed, Conn, Dropped};
use crate::broadcast::{Delivery, Live};
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

async fn request(shared: &Arc<Shared>, me: &Me, req: Request) -> Reply {
    match req {
        Request::Broadcast { text } => match shared.broadcasts.publish(&me.user, text).await {
            Ok((id, expires_ms)) => {
                metrics().broadcasts_stored.inc();
                info!(user = %me.user, id, "broadcast stored");
                Reply::BroadcastStored { id, expires_ms }
            }
            Err(refused) => {
                if matches!(refused, Refused::BroadcastRate { .. }) {
                    metrics().limited("broadcast");
                }
                refused.into()
            }
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
            match shared.invitations.answer(
                &shared.presence,
                &shared.relay,
                &me.user,
                me.session,
                invite,
                accept,
            ) {
                Ok(contact) => {
                    metrics().invitation(if accept { "accepted" } else { "rejected" });
                    Reply::Answered { invite, contact }
                }
                Err(refused) => refused.into(),
            }
        }
    }
}

/// What a kicked daemon is told (and shows).
const KICKED: &str =
    "disconnected by the server operator (p2p-server kick); log in again to come back";

/// Counts a broadcast sent to one recipient.
fn count_delivery(event: &ServerEvent) {
    if matches!(event, ServerEvent::Broadcast { .. }) {
        metrics().broadcasts_delivered.inc();
    }
}

/// Sends the store's backlog above the delivery cursor, in id order.
async fn catch_up(conn: &mut Conn, delivery: &mut Delivery) -> Result<(), Dropped> {
    while let Some(batch) = delivery.backlog().await.map_err(|source| Dropped::Store {
        what: "backlog",
        source,
    })? {
        for event in batch {
            count_delivery(&event);
            send(conn, ServerMsg::Event { event }).await?;
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
    // invitations) succeed into the socket buffer of a dead peer too.
    let mut silent_until = Instant::now() + shared.cfg.idle_timeout;
    loop {
        super::release_idle_buffers(conn);
        tokio::select! {
            Some(msg) = pushed.recv() => send(conn, *msg).await?,
            _ = tokio::time::sleep_until(silent_until) => {
                close(conn, CloseReason::Idle, "nothing heard; keepalive missed").await;
                return Err(Dropped::Idle);
            }
            live = delivery.live() => match live {
                Live::Send(event) => {
                    count_delivery(&event);
                    send(conn, ServerMsg::Event { event }).await?
                }
                Live::Skip => {}
                Live::Behind => catch_up(conn, &mut delivery).await?,
                Live::Closed => return Err(Dropped::HubStopped),
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
            next = conn.next() => match next {
                None => return Ok("client closed"),
                Some(Err(e)) if super::error::is_disconnect(&e) => return Ok("client closed"),
                Some(Err(e)) => {
                    close(conn, CloseReason::ProtocolError, &e.to_string()).await;
                    return Err(Dropped::Frame(e));
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
                    ClientMsg::Login { .. } | ClientMsg::Relay { .. } | ClientMsg::Observe { .. } => {
                        close(conn, CloseReason::ProtocolError, "already logged in").await;
                        return Err(Dropped::SecondLogin);
                    }
                }
                }
            }
        }
    }
}

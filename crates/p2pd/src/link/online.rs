//! The online phase of the server session: requests and their replies,
//! keepalive, server events (invitations to the peer registry, broadcasts
//! into the inbox), and the reasons a session ends.

use futures::{SinkExt, StreamExt};
use p2p_proto::ctl::{Event, ServerState};
use p2p_proto::limits::{IDLE_TIMEOUT, WRITE_TIMEOUT};
use p2p_proto::wire::{ClientMsg, CloseReason, ServerEvent, ServerMsg};
use p2p_proto::ProtoError;
use tokio::time::timeout;
use tracing::{info, warn};

use super::connect::ServerConn;
use super::{Ended, Link, LinkCmd, LinkError, LinkEvent, FAILPOINT_CRASH_BEFORE_BROADCAST_ACK};
use crate::inbox::Incoming;
use crate::liveness::{Liveness, Tick};

/// Why a frame could not be written to the server (the session is lost).
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// The stream or the encoder failed.
    #[error("write to server failed: {0}")]
    Write(ProtoError),
    /// The write did not complete within `WRITE_TIMEOUT`.
    #[error("write to server timed out")]
    TimedOut,
}

impl Link {
    pub(super) fn fail_pending(&mut self) {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(LinkError::Lost));
        }
    }

    async fn send(conn: &mut ServerConn, msg: ClientMsg) -> Result<(), SendError> {
        match timeout(WRITE_TIMEOUT, conn.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendError::Write(e)),
            Err(_) => Err(SendError::TimedOut),
        }
    }

    /// A broadcast: into the inbox (once), *then* acknowledged.
    async fn broadcast(
        &mut self,
        conn: &mut ServerConn,
        id: u64,
        from: String,
        text: String,
        sent_ms: i64,
    ) -> Result<(), Ended> {
        if let Some(why) = crate::inbox::refuse_broadcast(&from, &text) {
            // Acknowledged, or it would come back after every reconnect.
            warn!(id, reason = %why, "refusing a broadcast from the server");
            return Self::send(conn, ClientMsg::BroadcastAck { upto: id })
                .await
                .map_err(|e| Ended::Lost(e.to_string()));
        }
        let inbox = self.cfg.inbox.clone();
        if !p2p_proto::time::in_range(sent_ms) {
            warn!(
                id,
                sent_ms, "broadcast with an impossible send time; storing it clamped"
            );
        }
        let m = Incoming {
            id,
            text,
            // Clamped the same way every time, so a redelivery still matches.
            at_ms: p2p_proto::time::clamp_ms(sent_ms),
            mid: None,
        };
        let who = from.clone();
        let stored = tokio::task::spawn_blocking(move || inbox.store_broadcast(&who, &m))
            .await
            .map_err(|e| Ended::Broken(format!("inbox task failed: {e}")))?
            .map_err(|e| Ended::Broken(format!("cannot store broadcast {id}: {e}")))?;
        if self.cfg.failpoint.as_deref() == Some(FAILPOINT_CRASH_BEFORE_BROADCAST_ACK) {
            tracing::error!(
                id,
                "failpoint: crashing between storing and acknowledging a broadcast"
            );
            std::process::abort();
        }
        Self::send(conn, ClientMsg::BroadcastAck { upto: id })
            .await
            .map_err(|e| Ended::Lost(e.to_string()))?;
        match stored {
            Some(entry) => {
                info!(id, from = %from, "broadcast stored");
                let _ = self.events.send(Event::Broadcast(entry.into()));
            }
            None => tracing::debug!(id, "broadcast already in the inbox; acknowledged again"),
        }
        Ok(())
    }

    /// Online: serve requests, keep alive, watch for the end.
    pub(super) async fn online(&mut self, mut conn: ServerConn) -> Ended {
        let mut liveness = Liveness::new();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = timeout(WRITE_TIMEOUT, conn.close()).await;
                    return Ended::Shutdown;
                }
                tick = liveness.tick() => {
                    if tick == Tick::Idle {
                        return Ended::Lost(format!("server silent for {}s", IDLE_TIMEOUT.as_secs()));
                    }
                    if let Err(e) = Self::send(&mut conn, ClientMsg::Ping { nonce: rand::random() }).await {
                        return Ended::Lost(e.to_string());
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    None => return Ended::Shutdown,
                    Some(LinkCmd::Request { req, reply }) => {
                        self.next_id += 1;
                        let id = self.next_id;
                        self.pending.insert(id, reply);
                        if let Err(e) = Self::send(&mut conn, ClientMsg::Request { id, req }).await {
                            return Ended::Lost(e.to_string());
                        }
                    }
                    Some(LinkCmd::Login { args, register, reply }) => {
                        return Ended::Login(args, register, reply, Some(Box::new(conn)));
                    }
                    Some(LinkCmd::Logout { reply }) => {
                        // Best effort: the token is forgotten locally either way.
                        if Self::send(&mut conn, ClientMsg::Logout).await.is_ok() {
                            let _ = timeout(WRITE_TIMEOUT, conn.next()).await;
                        }
                        return Ended::LoggedOut(reply);
                    }
                },
                frame = conn.next() => {
                    liveness.heard();
                    match frame {
                        None => return Ended::Lost("server closed the connection".into()),
                        // A socket error (a killed server) is a loss; a frame we
                        // cannot decode would come again after a reconnect.
                        Some(Err(e @ ProtoError::Io(_))) => return Ended::Lost(format!("reading from server failed: {e}")),
                        Some(Err(e)) => return Ended::Broken(format!("bad frame from server: {e}")),
                        Some(Ok(msg)) => match msg {
                            ServerMsg::Pong { .. } => {}
                            ServerMsg::Ping { nonce } => {
                                if let Err(e) = Self::send(&mut conn, ClientMsg::Pong { nonce }).await {
                                    return Ended::Lost(e.to_string());
                                }
                            }
                            ServerMsg::Event { event: ServerEvent::Broadcast { id, from, text, sent_ms, .. } } => {
                                if let Err(ended) = self.broadcast(&mut conn, id, from, text, sent_ms).await {
                                    return ended;
                                }
                            }
                            ServerMsg::Event { event } => match super::checks::server_event(&event) {
                                Ok(()) => {
                                    let _ = self.cfg.to_peers.send(LinkEvent::Server(event)).await;
                                }
                                Err(why) => warn!(reason = %why, "ignoring an impossible event from the server"),
                            },
                            ServerMsg::Reply { id, reply } => {
                                if let Some(tx) = self.pending.remove(&id) {
                                    let _ = tx.send(Ok(reply));
                                }
                            }
                            ServerMsg::Closing { reason, message } => return match reason {
                                CloseReason::Replaced => Ended::Stopped(ServerState::Replaced, message),
                                CloseReason::AccountRemoved | CloseReason::LoggedOut => {
                                    Ended::Stopped(ServerState::LoggedOut, message)
                                }
                                _ => Ended::Lost(message),
                            },
                            other => return Ended::Broken(format!("unexpected message from server: {other:?}")),
                        },
                    }
                }
            }
        }
    }
}

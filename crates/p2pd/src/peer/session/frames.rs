//! What arrives on a session's link: messages stored (once: repeats after
//! a switch, and messages whose durable `mid` is already in the inbox, are
//! dropped but acknowledged), acks, keepalives, the switch handshake, and
//! `TryDirect`.

use p2p_proto::ctl::{Event, SessionPath};
use p2p_proto::limits::MAX_MESSAGE_BYTES;
use p2p_proto::peer::PeerMsg;
use p2p_proto::time;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::reach::parse_paths;
use super::{send, Ended, From, Task, MIN_TRY_DIRECT_GAP};
use crate::inbox::{Incoming, Kind};
use crate::peer::error::SessionError;

impl Task {
    /// Handles one batch of frames from the current or (leader, switching)
    /// the old link.
    pub(super) async fn frames(&mut self, from: From, msgs: Vec<PeerMsg>) -> Result<(), Ended> {
        let peer = self.peer.clone();
        let mut batch = Vec::new();
        let mut replies = Vec::new();
        let mut open = true;
        for m in msgs {
            match m {
                PeerMsg::Message {
                    id,
                    text,
                    at_ms,
                    mid,
                } => {
                    if text.len() > MAX_MESSAGE_BYTES {
                        let limit = MAX_MESSAGE_BYTES;
                        return Err(SessionError::TooLarge { peer, limit }.to_string());
                    }
                    // A time nobody can have sent it at is a broken or hostile
                    // peer: end the session, store nothing, acknowledge nothing.
                    if !time::in_range(at_ms) {
                        return Err(SessionError::ImpossibleTime { peer, at_ms }.to_string());
                    }
                    batch.push(Incoming {
                        id,
                        text,
                        at_ms,
                        mid,
                    });
                }
                PeerMsg::Ack { upto } => self.out.ack(upto),
                PeerMsg::Ping if from == From::Current => replies.push(PeerMsg::Pong),
                PeerMsg::Ping | PeerMsg::Pong => {}
                PeerMsg::Bye => open = false,
                PeerMsg::Switch { received_upto } if from == From::Current => {
                    self.out.ack(received_upto);
                    if self.switch_due.is_some() {
                        // The follower's answer on the new link.
                        self.finish_switch()
                            .await
                            .map_err(|e| format!("the direct link to {peer} failed: {e}"))?;
                    } else if !self.leader {
                        // The leader chose the link we are on (the session
                        // started here): agree; nothing to resend on it.
                        replies.push(PeerMsg::Switch {
                            received_upto: self.received_upto,
                        });
                    }
                    // A leader hearing `Switch` on its own link: the
                    // follower's answer to the choice made at setup.
                }
                PeerMsg::TryDirect { paths } if from == From::Current => self.try_direct(&paths),
                PeerMsg::Chat { open } => {
                    let peer = peer.clone();
                    let _ = self.env.events.send(Event::Chat { peer, open });
                }
                PeerMsg::Switch { .. } | PeerMsg::TryDirect { .. } => {}
            }
        }
        let stored = self.store(batch).await.map_err(|e| e.to_string())?;
        let ack = PeerMsg::Ack {
            upto: self.received_upto,
        };
        if stored && from == From::Current {
            replies.push(ack);
        } else if stored {
            // Switching: the follower still sends on the old link until our
            // `Switch` reaches it, and waits for acks to take more sends
            // (one of which may be the new link): acks go on the old link.
            if let Some(old) = &mut self.old {
                if send(old, &[ack]).await.is_err() {
                    self.old = None;
                }
            }
        }
        if !replies.is_empty() && self.switch_due.is_none() {
            send(&mut self.link, &replies)
                .await
                .map_err(|e| e.to_string())?;
        }
        if !open {
            return Err(format!("{peer} disconnected"));
        }
        Ok(())
    }

    /// A `TryDirect` from the peer: dial its paths; a follower answers with
    /// its own.
    pub(super) fn try_direct(&mut self, paths: &[String]) {
        if self.path.get() != SessionPath::Relayed {
            return;
        }
        let now = Instant::now();
        if self
            .last_try_direct
            .is_some_and(|t| now.duration_since(t) < MIN_TRY_DIRECT_GAP)
        {
            return;
        }
        self.last_try_direct = Some(now);
        let addrs = parse_paths(paths);
        if !addrs.is_empty() {
            self.env.reach.dial(&self.peer, self.invite, addrs);
        }
        if !self.leader && self.probe.is_none() {
            self.probe = Some((self.env.reach.my_paths(), true));
        }
    }

    /// Stores the messages of `batch` not stored before; true when the
    /// batch held any message (new or repeated: both are acknowledged).
    pub(super) async fn store(&mut self, batch: Vec<Incoming>) -> Result<bool, SessionError> {
        if batch.is_empty() {
            return Ok(false);
        }
        // After a switch the peer resends from our `received_upto` as it
        // last heard it: anything at or below what is stored is a repeat.
        let mut upto = self.received_upto;
        let fresh: Vec<Incoming> = batch
            .into_iter()
            .filter(|m| {
                let new = m.id > upto;
                upto = upto.max(m.id);
                new
            })
            .collect();
        if fresh.is_empty() {
            return Ok(true);
        }
        let inbox = self.env.inbox.clone();
        let from = self.peer.clone();
        let n = fresh.len();
        let stored = tokio::task::spawn_blocking(move || inbox.store(Kind::Message, &from, &fresh))
            .await
            .map_err(SessionError::InboxTask)?;
        match stored {
            Ok(entries) => {
                // Durable now; only now may the sender hear "stored".
                // Messages whose durable id was stored before (a resend
                // from the sender's outbox) are acknowledged, not shown again.
                self.received_upto = upto;
                let repeats = n - entries.len();
                debug!(peer = %self.peer, count = n, repeats, upto, "messages stored");
                for e in entries {
                    let _ = self.env.events.send(Event::Message(e.into()));
                }
                Ok(true)
            }
            Err(e) => {
                warn!(peer = %self.peer, cause = %e, "cannot store messages; closing without acknowledging");
                Err(SessionError::Store(e))
            }
        }
    }
}

//! One peer session: a task that owns the Noise link, sends messages in
//! order, stores what arrives in the inbox *before* acknowledging it, and
//! notices a dead link by keepalive.

use std::collections::VecDeque;
use std::sync::Arc;

use p2p_proto::ctl::{CtlError, ErrorCode, Event};
use p2p_proto::limits::{IDLE_TIMEOUT, MAX_MESSAGE_BYTES, WRITE_TIMEOUT};
use p2p_proto::peer::PeerMsg;
use p2p_proto::time;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tracing::{debug, info, warn};

use super::error::SessionError;
use super::noise::NoiseLink;
use super::Peers;
use crate::inbox::{Incoming, Kind};
use crate::liveness::{Liveness, Tick};

/// Sends waiting for the session task; more and `send` waits its turn.
pub(crate) const SESSION_QUEUE: usize = 64;

/// What a session's owner can ask of it.
#[derive(Debug)]
pub enum SessionCmd {
    /// Send these texts in order; answered with their ids once the peer
    /// acknowledged the last one.
    Send {
        /// The messages.
        texts: Vec<String>,
        /// Ids, or why not.
        reply: oneshot::Sender<Result<Vec<u64>, CtlError>>,
    },
    /// Say goodbye and close.
    Close,
}

/// A handle to a running session.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    /// Unique per session, so a late removal cannot remove a successor.
    pub(crate) id: u64,
    /// Established at, Unix ms.
    pub(crate) since_ms: i64,
    /// Whether we invited.
    pub(crate) initiator: bool,
    /// Its invitation, the peer's key and the path it runs over.
    pub(crate) link: super::registry::Link,
    /// Commands for the task.
    pub(crate) cmds: mpsc::Sender<SessionCmd>,
    /// Ends the session even when its command queue is full (replacement).
    pub(crate) closer: tokio_util::sync::CancellationToken,
}

struct Waiting {
    last: u64,
    ids: Vec<u64>,
    reply: oneshot::Sender<Result<Vec<u64>, CtlError>>,
}

/// Runs the session until it ends, then deregisters it and reports why.
pub(crate) async fn run(
    peers: Arc<Peers>,
    peer: String,
    id: u64,
    mut link: NoiseLink,
    mut cmds: mpsc::Receiver<SessionCmd>,
    closer: tokio_util::sync::CancellationToken,
) {
    let mut next_id = 0u64;
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut liveness = Liveness::new();
    let reason: String = loop {
        tokio::select! {
            _ = closer.cancelled() => {
                let _ = send(&mut link, &[PeerMsg::Bye]).await;
                break "replaced by a newer session".into();
            }
            _ = peers.shutdown.cancelled() => {
                let _ = send(&mut link, &[PeerMsg::Bye]).await;
                break "daemon shutting down".into();
            }
            cmd = cmds.recv() => match cmd {
                None | Some(SessionCmd::Close) => {
                    let _ = send(&mut link, &[PeerMsg::Bye]).await;
                    break "closed by this side".into();
                }
                Some(SessionCmd::Send { texts, reply }) => {
                    let at_ms = time::now_ms();
                    let mut ids = Vec::with_capacity(texts.len());
                    let msgs: Vec<PeerMsg> = texts
                        .into_iter()
                        .map(|text| {
                            next_id += 1;
                            ids.push(next_id);
                            PeerMsg::Message { id: next_id, text, at_ms }
                        })
                        .collect();
                    if let Err(e) = send(&mut link, &msgs).await {
                        let _ = reply.send(Err(CtlError::new(ErrorCode::NoSession, format!("session with {peer} failed: {e}"))));
                        break e.to_string();
                    }
                    waiting.push_back(Waiting { last: next_id, ids, reply });
                }
            },
            tick = liveness.tick() => {
                if tick == Tick::Idle {
                    break format!("nothing heard from {peer} for {}s", IDLE_TIMEOUT.as_secs());
                }
                if let Err(e) = send(&mut link, &[PeerMsg::Ping]).await {
                    break e.to_string();
                }
            }
            got = link.recv() => {
                liveness.heard();
                let msgs = match got {
                    Err(e) => break e.to_string(),
                    Ok(None) => break format!("{peer} closed the link"),
                    Ok(Some(msgs)) => msgs,
                };
                match handle(&peers, &peer, &mut link, &mut waiting, msgs).await {
                    Ok(true) => {}
                    Ok(false) => break format!("{peer} disconnected"),
                    Err(e) => break e.to_string(),
                }
            }
        }
    };
    info!(peer = %peer, reason = %reason, "peer session ended");
    for w in waiting {
        let msg =
            format!("session with {peer} ended ({reason}) before the messages were acknowledged");
        let _ = w.reply.send(Err(CtlError::new(ErrorCode::NoSession, msg)));
    }
    peers.session_ended(&peer, id, reason);
}

/// Sends with a write timeout: a peer that stops reading ends the session.
async fn send(link: &mut NoiseLink, msgs: &[PeerMsg]) -> Result<(), SessionError> {
    match timeout(WRITE_TIMEOUT, link.send(msgs)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(SessionError::WriteTimedOut),
    }
}

/// Handles one batch of frames; false when the peer said goodbye.
async fn handle(
    peers: &Peers,
    peer: &str,
    link: &mut NoiseLink,
    waiting: &mut VecDeque<Waiting>,
    msgs: Vec<PeerMsg>,
) -> Result<bool, SessionError> {
    let mut batch = Vec::new();
    let mut open = true;
    let mut replies = Vec::new();
    for m in msgs {
        match m {
            PeerMsg::Message { id, text, at_ms } => {
                if text.len() > MAX_MESSAGE_BYTES {
                    return Err(SessionError::TooLarge {
                        peer: peer.to_string(),
                        limit: MAX_MESSAGE_BYTES,
                    });
                }
                // A time nobody can have sent it at is a broken or hostile
                // peer: end the session, store nothing, acknowledge nothing.
                if !time::in_range(at_ms) {
                    return Err(SessionError::ImpossibleTime {
                        peer: peer.to_string(),
                        at_ms,
                    });
                }
                batch.push(Incoming { id, text, at_ms });
            }
            PeerMsg::Ack { upto } => {
                while waiting.front().is_some_and(|w| w.last <= upto) {
                    let w = waiting.pop_front().expect("checked");
                    let _ = w.reply.send(Ok(w.ids));
                }
            }
            PeerMsg::Ping => replies.push(PeerMsg::Pong),
            PeerMsg::Pong => {}
            // Link switching is not in this build: a session stays on the
            // link it started on.
            PeerMsg::Switch { .. } | PeerMsg::TryDirect { .. } => {}
            PeerMsg::Bye => open = false,
        }
    }
    if let Some(last) = batch.last().map(|m| m.id) {
        let inbox = peers.inbox.clone();
        let from = peer.to_string();
        let n = batch.len();
        let stored = tokio::task::spawn_blocking(move || inbox.store(Kind::Message, &from, &batch))
            .await
            .map_err(SessionError::InboxTask)?;
        match stored {
            Ok(entries) => {
                // Durable now; only now may the sender hear "stored".
                replies.push(PeerMsg::Ack { upto: last });
                debug!(peer = %peer, count = n, upto = last, "messages stored");
                for e in entries {
                    let _ = peers.events.send(Event::Message(e.into()));
                }
            }
            Err(e) => {
                warn!(peer = %peer, cause = %e, "cannot store messages; closing without acknowledging");
                return Err(SessionError::Store(e));
            }
        }
    }
    if !replies.is_empty() {
        send(link, &replies).await?;
    }
    Ok(open)
}

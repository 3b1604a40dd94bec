//! One peer session: a task that owns the Noise link, sends messages in
//! order, stores what arrives in the inbox *before* acknowledging it, and
//! notices a dead link by keepalive.
//!
//! A session can move to a new link (SPEC §10, `p2p_proto::peer`): a
//! relayed session adopts a direct link when one verifies. The leader (the
//! lower static key) sends `Switch{received_upto}` on the new link and
//! stops sending on the old one (it still reads it, and acknowledges what it
//! stores from it, until the answer); the
//! follower answers on the new link with its own `Switch` and drops the old
//! one. Each then resends, on the new link, what the other has not stored
//! (its `received_upto` counts as an ack). Ids keep counting, and ids at or
//! below what was stored are dropped (but acknowledged), so nothing is
//! lost, duplicated or reordered. While relayed, the leader sends its
//! current addresses (`TryDirect`) every [`UPGRADE_EVERY`]; the follower
//! answers with its own, and both dial what they got (see [`reach`]).

mod frames;
mod outbox;
pub(crate) mod reach;
mod switch;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use p2p_proto::ctl::{Event, SessionPath};
use p2p_proto::limits::{IDLE_TIMEOUT, WRITE_TIMEOUT};
use p2p_proto::peer::PeerMsg;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::{interval_at, sleep_until, timeout, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::error::{PeerError, SessionError};
use super::noise::{NoiseError, NoiseLink};
use crate::inbox::Inbox;
use crate::liveness::{Liveness, Tick};
pub use outbox::OutText;
use outbox::Outbox;
use reach::Reach;

/// Sends waiting for the session task; more and `send` waits its turn. Also
/// the most `send` commands waiting for an acknowledgement (their texts are
/// kept for a resend after a link switch).
pub(crate) const SESSION_QUEUE: usize = 64;

/// While relayed, the leader offers its current addresses this often: often
/// enough that a path that opened (a NAT relaxed, a network change) is used
/// soon, rarely enough that the probes and dials cost nothing noticeable.
pub(crate) const UPGRADE_EVERY: Duration = Duration::from_secs(10);

/// A `TryDirect` sooner than this after the last one handled is ignored, so
/// a peer cannot make us probe and dial in a loop.
pub(crate) const MIN_TRY_DIRECT_GAP: Duration = Duration::from_secs(5);

/// The leader gives the follower this long to answer its `Switch` on the new
/// link (a round trip on a link that just verified) before the session ends.
pub(crate) const SWITCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Direct links a follower holds for one session while waiting for the
/// leader's `Switch` on one of them; more and the oldest is closed.
pub(crate) const MAX_OFFERED_LINKS: usize = 4;

/// Resent messages go out this many per write, so one resend never builds
/// one huge buffer.
const RESEND_CHUNK: usize = 256;

/// What a session's owner can ask of it.
#[derive(Debug)]
pub enum SessionCmd {
    /// Send these messages in order; answered with their (per-session) ids
    /// once the peer acknowledged the last one.
    Send {
        /// The messages.
        msgs: Vec<OutText>,
        /// Ids, or why not.
        reply: oneshot::Sender<Result<Vec<u64>, PeerError>>,
    },
    /// A new verified link with the peer for this session: the session moves
    /// to it if it is relayed and this is direct, else closes it.
    Adopt {
        /// The link (boxed: it is much larger than the other commands).
        link: Box<NoiseLink>,
        /// How it runs.
        path: SessionPath,
    },
    /// Tell the peer our chat with them opened or closed (a notice their
    /// chat shows; not stored, not acknowledged).
    Chat {
        /// Opened (true) or left.
        open: bool,
    },
    /// Say goodbye and close.
    Close,
}

/// A session's current path, shared between its task (which changes it on a
/// switch) and the registry (which shows it in `sessions` and `status`).
#[derive(Debug, Clone)]
pub(crate) struct PathCell(Arc<AtomicU8>);

impl PathCell {
    /// A cell holding `path`.
    pub(crate) fn new(path: SessionPath) -> Self {
        let cell = PathCell(Arc::new(AtomicU8::new(0)));
        cell.set(path);
        cell
    }

    /// The path now.
    pub(crate) fn get(&self) -> SessionPath {
        match self.0.load(Ordering::Relaxed) {
            0 => SessionPath::Direct,
            _ => SessionPath::Relayed,
        }
    }

    /// Changes it (the task, on a switch).
    pub(crate) fn set(&self, path: SessionPath) {
        let v = match path {
            SessionPath::Direct => 0,
            SessionPath::Relayed => 1,
        };
        self.0.store(v, Ordering::Relaxed);
    }
}

/// A handle to a running session.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    /// Unique per session, so a late removal cannot remove a successor.
    pub(crate) id: u64,
    /// Established at, Unix ms.
    pub(crate) since_ms: i64,
    /// Whether we dialled.
    pub(crate) initiator: bool,
    /// Direct or relayed, now.
    pub(crate) path: PathCell,
    /// The invitation and key it was set up with.
    pub(crate) link: super::registry::Link,
    /// Commands for the task.
    pub(crate) cmds: mpsc::Sender<SessionCmd>,
    /// Ends the session even when its command queue is full (replacement).
    pub(crate) closer: CancellationToken,
}

/// What a session task shares with the daemon.
pub(crate) struct SessionEnv {
    /// Where received messages go.
    pub(crate) inbox: Inbox,
    /// The daemon's event bus (a `message` event per stored message).
    pub(crate) events: broadcast::Sender<Event>,
    /// Daemon shutdown.
    pub(crate) shutdown: CancellationToken,
    /// Addresses and dials for going direct.
    pub(crate) reach: Arc<dyn Reach>,
}

/// One session to run.
pub(crate) struct Start {
    /// The peer's account name.
    pub(crate) peer: String,
    /// The invitation that opened it (names it to the dialler).
    pub(crate) invite: u64,
    /// Whether we lead (choose the link): `p2p_proto::peer::leads`.
    pub(crate) leader: bool,
    /// The link it starts on.
    pub(crate) link: NoiseLink,
    /// Frames already read from it (those that came with the leader's
    /// `Switch` that chose it): handled first, so none is lost.
    pub(crate) first: Vec<PeerMsg>,
    /// Its path (set by the caller to the link's).
    pub(crate) path: PathCell,
    /// Commands from the registry's handle.
    pub(crate) cmds: mpsc::Receiver<SessionCmd>,
    /// Cancelled when a newer session replaces this one.
    pub(crate) closer: CancellationToken,
}

/// Where frames came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum From {
    /// The session's link.
    Current,
    /// The leader's old link, read until the follower answers the switch.
    Old,
}

struct Task {
    env: SessionEnv,
    peer: String,
    invite: u64,
    leader: bool,
    path: PathCell,
    link: NoiseLink,
    /// Leader, switching: the link it left (read; written only to ack).
    old: Option<NoiseLink>,
    /// Leader, switching: when the follower's answer is due.
    switch_due: Option<Instant>,
    /// Follower: direct links waiting for the leader's `Switch`.
    offered: Vec<NoiseLink>,
    out: Outbox,
    /// Highest message id stored from the peer.
    received_upto: u64,
    liveness: Liveness,
    /// Our addresses being found; `true` when they answer a `TryDirect`.
    probe: Option<(BoxFuture<'static, Vec<String>>, bool)>,
    last_try_direct: Option<Instant>,
}

/// How a session ends: the reason shown in logs and `disconnected` events.
type Ended = String;

/// Runs the session until it ends; returns why (the caller deregisters it).
pub(crate) async fn run(env: SessionEnv, start: Start) -> String {
    let Start {
        peer,
        invite,
        leader,
        link,
        first,
        path,
        mut cmds,
        closer,
    } = start;
    let mut t = Task {
        env,
        peer,
        invite,
        leader,
        path,
        link,
        old: None,
        switch_due: None,
        offered: Vec::new(),
        out: Outbox::default(),
        received_upto: 0,
        liveness: Liveness::new(),
        probe: None,
        last_try_direct: None,
    };
    let reason = match t.frames(From::Current, first).await {
        Ok(()) => t.run(&mut cmds, &closer).await,
        Err(reason) => reason,
    };
    info!(peer = %t.peer, reason = %reason, "peer session ended");
    let (peer, why) = (t.peer.clone(), reason.clone());
    t.out.fail(|| PeerError::SessionEnded {
        peer: peer.clone(),
        reason: why.clone(),
    });
    reason
}

/// Sends with a write timeout: a peer that stops reading ends the session.
async fn send(link: &mut NoiseLink, msgs: &[PeerMsg]) -> Result<(), SessionError> {
    match timeout(WRITE_TIMEOUT, link.send(msgs)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(SessionError::WriteTimedOut),
    }
}

type Got = Result<Option<Vec<PeerMsg>>, NoiseError>;

/// The next frames of `link`; never, without one.
async fn recv_opt(link: &mut Option<NoiseLink>) -> Got {
    match link {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// The next frames of any of `links` (cancel-safe: each `recv` is).
async fn recv_any(links: &mut [NoiseLink]) -> (usize, Got) {
    if links.is_empty() {
        return std::future::pending().await;
    }
    let (got, i, _) =
        futures::future::select_all(links.iter_mut().map(|l| Box::pin(l.recv()))).await;
    (i, got)
}

/// The probe's result; never, without one.
async fn probed(probe: &mut Option<(BoxFuture<'static, Vec<String>>, bool)>) -> Vec<String> {
    match probe {
        Some((f, _)) => f.await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(
        &mut self,
        cmds: &mut mpsc::Receiver<SessionCmd>,
        closer: &CancellationToken,
    ) -> Ended {
        let mut upgrade = interval_at(Instant::now() + UPGRADE_EVERY, UPGRADE_EVERY);
        upgrade.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let switching = self.switch_due;
            let upgrading = self.leader
                && self.path.get() == SessionPath::Relayed
                && switching.is_none()
                && self.probe.is_none();
            let peer = self.peer.clone();
            tokio::select! {
                _ = closer.cancelled() => return self.bye("replaced by a newer session").await,
                _ = self.env.shutdown.cancelled() => return self.bye("daemon shutting down").await,
                cmd = cmds.recv(), if self.out.commands() < SESSION_QUEUE => match cmd {
                    None | Some(SessionCmd::Close) => return self.bye("closed by this side").await,
                    Some(SessionCmd::Send { msgs, reply }) => {
                        let msgs = self.out.push(msgs, reply);
                        if switching.is_none() {
                            if let Err(e) = send(&mut self.link, &msgs).await {
                                return e.to_string();
                            }
                        }
                    }
                    Some(SessionCmd::Adopt { link, path }) => self.adopt(*link, path).await,
                    // While switching nothing goes out on either link; a
                    // notice is not worth holding for the new one.
                    Some(SessionCmd::Chat { open }) if switching.is_none() => {
                        if let Err(e) = send(&mut self.link, &[PeerMsg::Chat { open }]).await {
                            return e.to_string();
                        }
                    }
                    Some(SessionCmd::Chat { .. }) => {}
                },
                tick = self.liveness.tick() => {
                    if tick == Tick::Idle {
                        return format!("nothing heard from {peer} for {}s", IDLE_TIMEOUT.as_secs());
                    }
                    if switching.is_none() {
                        if let Err(e) = send(&mut self.link, &[PeerMsg::Ping]).await {
                            return e.to_string();
                        }
                    }
                }
                got = self.link.recv() => {
                    self.liveness.heard();
                    let msgs = match got {
                        Err(e) if switching.is_some() => return self.switch_failed(e.to_string()).await,
                        Ok(None) if switching.is_some() => return self.switch_failed("it closed".into()).await,
                        Err(e) => return e.to_string(),
                        Ok(None) => return format!("{peer} closed the link"),
                        Ok(Some(msgs)) => msgs,
                    };
                    if let Err(e) = self.frames(From::Current, msgs).await {
                        return e;
                    }
                }
                got = recv_opt(&mut self.old) => {
                    self.liveness.heard();
                    match got {
                        // The follower switched and dropped it: its answer
                        // is on the way on the new link.
                        Err(_) | Ok(None) => self.old = None,
                        Ok(Some(msgs)) => {
                            if let Err(e) = self.frames(From::Old, msgs).await {
                                return e;
                            }
                        }
                    }
                }
                (i, got) = recv_any(&mut self.offered) => {
                    self.liveness.heard();
                    if let Err(e) = self.offered_frames(i, got).await {
                        return e;
                    }
                }
                _ = sleep_until(switching.unwrap_or_else(Instant::now)), if switching.is_some() => {
                    return self.switch_failed(format!("no answer in {}s", SWITCH_TIMEOUT.as_secs())).await;
                }
                _ = upgrade.tick(), if upgrading => {
                    self.probe = Some((self.env.reach.my_paths(), false));
                }
                paths = probed(&mut self.probe) => {
                    self.probe = None;
                    if self.path.get() == SessionPath::Relayed && self.switch_due.is_none() {
                        if let Err(e) = send(&mut self.link, &[PeerMsg::TryDirect { paths }]).await {
                            return e.to_string();
                        }
                    }
                }
            }
        }
    }

    /// Says goodbye (on every link the peer may be reading) and ends.
    async fn bye(&mut self, reason: &str) -> Ended {
        let _ = send(&mut self.link, &[PeerMsg::Bye]).await;
        if let Some(old) = &mut self.old {
            let _ = send(old, &[PeerMsg::Bye]).await;
        }
        reason.to_string()
    }
}

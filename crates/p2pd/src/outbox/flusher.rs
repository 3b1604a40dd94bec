//! The flusher: one per open session, started when the session is
//! installed and ended with it. It reads that peer's queued messages in
//! `seq` order, hands them to the session in batches (a bounded window of
//! batches in flight, so the session pipelines them), and marks each batch
//! delivered — one UPDATE — when the peer acknowledged it. Every message to
//! a peer goes through its flusher, so nothing overtakes a queued one.
//!
//! At most one flusher per peer runs at a time (the hub's `serial` lock):
//! a replacing session's flusher starts once the old one has settled what
//! its session acknowledged. Messages the old session sent but that were
//! not acknowledged are still queued and go out again on the new session
//! with the same `mid`; the peer stores them once.

use std::collections::VecDeque;
use std::sync::Arc;

use p2p_proto::ctl::Event;
use p2p_proto::time;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::store::Row;
use super::{blocking, Hub, Shared};
use crate::peer::session::{OutText, SessionCmd};
use crate::peer::PeerError;

/// Most messages in one batch handed to the session: one UPDATE (and disk
/// sync) here per batch, and at least one commit at the peer. At 64, `send -`
/// ran at half the rate of 1 024 (bench-send.sh (b), release: 28 000
/// against 40 000 messages/s); 4 096 takes a whole `p2pctl send -` request
/// (up to 16 384 lines) in four batches, which the window keeps in flight
/// together. [`FLUSH_BATCH_BYTES`] bounds it for long texts.
pub(crate) const FLUSH_BATCH: usize = 4096;

/// Most text bytes in one batch (at least one message): with
/// [`FLUSH_WINDOW`] this bounds what a session holds unacknowledged to about
/// 1 MiB, whatever the outbox holds.
pub(crate) const FLUSH_BATCH_BYTES: usize = 256 * 1024;

/// Batches in flight (sent, not yet acknowledged): enough to keep the link
/// busy while the peer syncs the previous batch, far below the session's
/// command queue (`SESSION_QUEUE`).
pub(crate) const FLUSH_WINDOW: usize = 4;

/// What the flusher has handed to the session and what came back: pure
/// bookkeeping, unit-tested without a session.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// The last `seq` handed to the session (the next read starts after it).
    cursor: u64,
    /// The last `seq` acknowledged (the lower bound of the next UPDATE).
    acked: u64,
    /// The last `seq` of each batch in flight, oldest first.
    batches: VecDeque<u64>,
}

impl Window {
    /// Whether another batch may go out.
    pub(crate) fn room(&self) -> bool {
        self.batches.len() < FLUSH_WINDOW
    }

    /// Where the next read of queued messages starts (after this `seq`).
    pub(crate) fn cursor(&self) -> u64 {
        self.cursor
    }

    /// A batch ending at `last` was handed to the session.
    pub(crate) fn sent(&mut self, last: u64) {
        self.cursor = last;
        self.batches.push_back(last);
    }

    /// The oldest batch in flight was acknowledged: the `seq` range
    /// `(after, upto]` to mark delivered.
    pub(crate) fn ack(&mut self) -> Option<(u64, u64)> {
        let upto = self.batches.pop_front()?;
        let after = std::mem::replace(&mut self.acked, upto);
        Some((after, upto))
    }
}

/// One session's flusher.
pub(crate) struct Flusher {
    pub(crate) shared: Arc<Shared>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) peer: String,
    /// The session's id (its `--now` messages carry it).
    pub(crate) session: u64,
    pub(crate) cmds: mpsc::Sender<SessionCmd>,
}

type Answer = oneshot::Receiver<Result<Vec<u64>, PeerError>>;

/// Why a flusher stopped before its session ended.
enum Stop {
    /// The session is gone (its queue closed, or a batch failed).
    Ended,
    /// The outbox could not be read or written.
    Store(crate::error::DaemonError),
}

impl Flusher {
    /// Runs until the session ends, then settles: acknowledged batches
    /// marked delivered, this session's `--now` messages failed.
    pub(crate) async fn run(self) {
        let _turn = self.hub.serial.lock().await;
        let mut window = Window::default();
        let mut answers: VecDeque<Answer> = VecDeque::new();
        let stop = self.flush(&mut window, &mut answers).await;
        if let Stop::Store(e) = &stop {
            // Nothing more can go out on this session: end it, so the
            // waiting commands settle and the next session tries again.
            warn!(peer = %self.peer, cause = %e, "cannot read or update the outbox; closing the session");
            let _ = self.cmds.try_send(SessionCmd::Close);
        }
        // The session answers every batch when it ends: acknowledged ones
        // with their ids, the rest with an error.
        while let Some(answer) = answers.pop_front() {
            if !matches!(answer.await, Ok(Ok(_))) {
                break;
            }
            if self.delivered(&mut window).await.is_err() {
                break;
            }
        }
        let (shared, session) = (self.shared.clone(), self.session);
        if let Err(e) = blocking(move || shared.store.fail_session(session)).await {
            warn!(peer = %self.peer, cause = %e, "cannot fail the session's --now messages");
        }
        self.hub.progressed();
        self.hub.flight_done(self.session);
        debug!(peer = %self.peer, session = self.session, "outbox flusher ended");
    }

    async fn flush(&self, window: &mut Window, answers: &mut VecDeque<Answer>) -> Stop {
        loop {
            while window.room() {
                let rows = match self.read(window.cursor()).await {
                    Ok(rows) if rows.is_empty() => break,
                    Ok(rows) => rows,
                    Err(e) => return Stop::Store(e),
                };
                let last = rows.last().map_or(0, |r| r.seq);
                let msgs = rows.into_iter().map(out_text).collect();
                let (reply, answer) = oneshot::channel();
                if self
                    .cmds
                    .send(SessionCmd::Send { msgs, reply })
                    .await
                    .is_err()
                {
                    return Stop::Ended;
                }
                window.sent(last);
                answers.push_back(answer);
            }
            tokio::select! {
                got = async { answers.front_mut().expect("checked").await }, if !answers.is_empty() => {
                    answers.pop_front();
                    if !matches!(got, Ok(Ok(_))) {
                        return Stop::Ended;
                    }
                    if let Err(e) = self.delivered(window).await {
                        return Stop::Store(e);
                    }
                }
                _ = self.cmds.closed() => return Stop::Ended,
                _ = self.hub.wake.notified() => {}
            }
        }
    }

    /// The next queued messages after `cursor` this session may send; none
    /// while the contact is held (its key changed after verification:
    /// nothing goes to the new key until `trust`, SPEC §11).
    async fn read(&self, cursor: u64) -> crate::error::Result<Vec<Row>> {
        let (shared, peer, session) = (self.shared.clone(), self.peer.clone(), self.session);
        let rows = blocking(move || {
            if shared.contacts.get(&peer)?.is_some_and(|c| c.held) {
                return Ok(None);
            }
            shared
                .store
                .pending(&peer, session, cursor, FLUSH_BATCH, FLUSH_BATCH_BYTES)
                .map(Some)
        })
        .await?;
        // Held: whoever waits on this peer looks again (and sees nothing
        // moved); `Outbox::wake` after `trust` reads again.
        Ok(rows.unwrap_or_else(|| {
            self.hub.progressed();
            Vec::new()
        }))
    }

    /// The oldest batch in flight was acknowledged: marks it delivered and
    /// tells whoever waits.
    async fn delivered(&self, window: &mut Window) -> crate::error::Result<()> {
        let Some((after, upto)) = window.ack() else {
            return Ok(());
        };
        let (shared, peer, session) = (self.shared.clone(), self.peer.clone(), self.session);
        let announced = blocking(move || {
            shared
                .store
                .delivered(&peer, session, after, upto, time::now_ms())
        })
        .await?;
        for id in announced {
            let to = self.peer.clone();
            let _ = self.shared.events.send(Event::Delivered { to, id });
        }
        self.hub.progressed();
        Ok(())
    }
}

fn out_text(r: Row) -> OutText {
    OutText {
        text: r.text,
        at_ms: r.at_ms,
        mid: Some(r.mid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_bounds_batches_and_acks_them_in_order() {
        let mut w = Window::default();
        assert_eq!(w.ack(), None, "nothing in flight");
        for last in [3, 7, 8, 20] {
            assert!(w.room());
            w.sent(last);
        }
        assert!(!w.room(), "{FLUSH_WINDOW} batches in flight");
        assert_eq!(w.cursor(), 20);
        assert_eq!(w.ack(), Some((0, 3)));
        assert!(w.room());
        assert_eq!(w.ack(), Some((3, 7)));
        w.sent(25);
        assert_eq!(w.ack(), Some((7, 8)));
        assert_eq!(w.ack(), Some((8, 20)));
        assert_eq!(w.ack(), Some((20, 25)));
        assert_eq!(w.ack(), None);
        assert_eq!(w.cursor(), 25);
    }
}

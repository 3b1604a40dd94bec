//! The outbox and the record of sent messages (SPEC §11).
//!
//! Every `send` first stores its messages as `queued` in the `sent` table
//! ([`store`]), in one transaction, before anything is answered: what
//! `send` reported is on disk. Then:
//!
//! - with a session, the peer's [`flusher`] (one per session) sends them in
//!   order, and `send` waits until they are delivered or that session ends
//!   (the rest stay queued, or fail for `--now`);
//! - without one (a contact), `send` answers `queued` at once, with a
//!   `queued` event per message, and the flusher of the next session sends
//!   them.
//!
//! Each message has a random `mid`, fixed when it is stored and sent with
//! it every time: the peer stores a `mid` once, so a resend after `kill -9`
//! (or a lost acknowledgement) is acknowledged but not shown twice.
//!
//! Per peer, a [`Hub`] wakes the flusher when messages are queued, lets one
//! flusher run at a time, and tells waiting `send` commands about progress.

mod flusher;
pub(crate) mod history;
mod mark;
pub(crate) mod store;

use std::collections::HashMap;
use std::future::pending;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;
use p2p_proto::ctl::Event;
use p2p_proto::time;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::contacts::Contacts;
use crate::error::Result;
use crate::inbox::Inbox;
use crate::peer::session::SessionCmd;
pub(crate) use store::Status;
use store::{Row, SentStore};

/// Most entries `outbox` lists: far more than anyone reads, and with
/// [`LIST_MAX_BYTES`] small enough for one control line.
pub(crate) const LIST_MAX: usize = 1000;

/// Most text bytes `outbox` and `history` list (at least one entry): a few
/// screens' worth, well under the control line limit even fully escaped.
pub(crate) const LIST_MAX_BYTES: usize = 2 * 1024 * 1024;

/// Runs a blocking store call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// What the flushers and the commands share.
pub(crate) struct Shared {
    store: SentStore,
    events: broadcast::Sender<Event>,
    /// A held contact (key changed after verification) gets nothing until
    /// `trust`, queued messages included.
    contacts: Contacts,
}

/// One peer's coordination point.
#[derive(Default)]
pub(crate) struct Hub {
    /// New messages were queued: the running flusher reads again.
    wake: Notify,
    /// Bumped whenever this peer's messages changed state.
    progress: watch::Sender<u64>,
    /// Held by the running flusher: one at a time per peer.
    serial: tokio::sync::Mutex<()>,
    /// Flushers not finished yet, by session id: cancelled when done.
    flights: Mutex<HashMap<u64, CancellationToken>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    fn progressed(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn flight(&self, session: u64) -> Option<CancellationToken> {
        lock(&self.flights).get(&session).cloned()
    }

    fn flight_done(&self, session: u64) {
        if let Some(t) = lock(&self.flights).remove(&session) {
            t.cancel();
        }
    }
}

/// A session as `send` found it: its id and command queue.
pub(crate) type SessionRef = (u64, mpsc::Sender<SessionCmd>);

/// The outbox. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
    hubs: Arc<Mutex<HashMap<String, Arc<Hub>>>>,
}

impl Outbox {
    /// The outbox in `db`'s file (table `sent`, created if missing);
    /// `contacts` says who is held; `delivered` events go to `events`.
    pub fn open(db: &Inbox, contacts: Contacts, events: broadcast::Sender<Event>) -> Result<Self> {
        Ok(Outbox {
            shared: Arc::new(Shared {
                store: SentStore::open(db)?,
                events,
                contacts,
            }),
            hubs: Arc::default(),
        })
    }

    fn hub(&self, peer: &str) -> Arc<Hub> {
        lock(&self.hubs)
            .entry(peer.to_string())
            .or_default()
            .clone()
    }

    /// A session with `peer` opened (`Peers::install`, before the session
    /// task starts): starts its flusher on `tasks`.
    pub(crate) fn session_opened(
        &self,
        peer: &str,
        session: u64,
        cmds: mpsc::Sender<SessionCmd>,
        tasks: &TaskTracker,
    ) {
        let hub = self.hub(peer);
        lock(&hub.flights).insert(session, CancellationToken::new());
        let f = flusher::Flusher {
            shared: self.shared.clone(),
            hub,
            peer: peer.to_string(),
            session,
            cmds,
        };
        tasks.spawn(f.run());
    }

    /// Stores `texts` to `peer` and delivers them over `session` if there
    /// is one (waiting until each is delivered or the session ended), else
    /// leaves them queued. `now` (only with a session): what the session
    /// did not deliver fails instead of staying queued. Returns each
    /// message's id and status, in order.
    #[cfg(test)]
    pub(crate) async fn send(
        &self,
        peer: &str,
        texts: Vec<String>,
        session: Option<SessionRef>,
        now: bool,
    ) -> Result<Vec<(u64, Status)>> {
        self.submit(peer, texts, session, now).await?.await
    }

    /// [`Outbox::send`] in two steps: this stores the messages (durable, and
    /// in the outbox's order, when it returns) and gives the wait for their
    /// delivery, so a control connection can store its next request while
    /// this one is delivered.
    pub(crate) async fn submit(
        &self,
        peer: &str,
        texts: Vec<String>,
        session: Option<SessionRef>,
        now: bool,
    ) -> Result<BoxFuture<'static, Result<Vec<(u64, Status)>>>> {
        let shared = self.shared.clone();
        let at_ms = time::now_ms();
        let Some((sid, cmds)) = session else {
            let who = peer.to_string();
            let rows = blocking(move || shared.store.queue(&who, &texts, at_ms, 0, true)).await?;
            self.hub(peer).wake.notify_one();
            let done = self.announce(peer, rows.iter().map(|r| (r.seq, Status::Queued)));
            return Ok(Box::pin(std::future::ready(Ok(done))));
        };
        let hub = self.hub(peer);
        let mut progress = hub.progress.subscribe();
        let (who, tag) = (peer.to_string(), if now { sid } else { 0 });
        let rows: Vec<Row> =
            blocking(move || shared.store.queue(&who, &texts, at_ms, tag, false)).await?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Box::pin(std::future::ready(Ok(Vec::new()))));
        };
        let (first, last) = (first.seq, last.seq);
        hub.wake.notify_one();
        let flight = hub.flight(sid);
        let (this, peer) = (self.clone(), peer.to_string());
        Ok(Box::pin(async move {
            loop {
                progress.borrow_and_update();
                let shared = this.shared.clone();
                if !blocking(move || shared.store.any_queued(first, last)).await? {
                    break;
                }
                tokio::select! {
                    changed = progress.changed() => if changed.is_err() { break },
                    _ = async { match &flight { Some(f) => f.cancelled().await, None => pending().await } } => break,
                    _ = cmds.closed() => {
                        // Let its flusher settle what the session acknowledged.
                        if let Some(f) = hub.flight(sid) {
                            f.cancelled().await;
                        }
                        break;
                    }
                }
            }
            let shared = this.shared.clone();
            let settled = blocking(move || shared.store.settle(first, last, now)).await?;
            Ok(this.announce(&peer, settled.into_iter()))
        }))
    }

    /// Emits a `queued` event for each queued one of `statuses`, and
    /// returns them.
    fn announce(
        &self,
        peer: &str,
        statuses: impl Iterator<Item = (u64, Status)>,
    ) -> Vec<(u64, Status)> {
        statuses
            .inspect(|&(id, status)| {
                if status == Status::Queued {
                    let to = peer.to_string();
                    let _ = self.shared.events.send(Event::Queued { to, id });
                }
            })
            .collect()
    }

    /// Queued messages of every contact, oldest first (at most
    /// [`LIST_MAX`] and [`LIST_MAX_BYTES`] of text).
    pub(crate) async fn queued(&self) -> Result<Vec<Row>> {
        let shared = self.shared.clone();
        blocking(move || shared.store.queued(LIST_MAX, LIST_MAX_BYTES)).await
    }

    /// Wakes `peer`'s flusher: after `trust` releases a held contact, what
    /// was queued for them goes out on the open session.
    pub fn wake(&self, peer: &str) {
        self.hub(peer).wake.notify_one();
    }

    /// Queued messages to `peer` are dropped (marked failed, never sent):
    /// for `forget` and `block`. Returns how many. Blocking.
    pub fn drop_queued(&self, peer: &str) -> Result<u64> {
        let n = self.shared.store.drop_queued(peer)?;
        self.hub(peer).progressed();
        Ok(n)
    }
}

#[cfg(test)]
mod tests;

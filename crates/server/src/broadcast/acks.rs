//! The hub's background tasks, owned by the hub: the acknowledgement writer
//! (fed by [`AckQueue`]) and the purger. Stopping them (see
//! [`Background::stop`]) writes every acknowledgement already pushed, so a
//! clean shutdown redelivers nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use p2p_proto::time;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::{blocking, BroadcastStore, ACK_WRITE_INTERVAL, PURGE_INTERVAL};

/// Acknowledged marks known in memory, per user (see the hub).
pub(super) type Marks = Arc<Mutex<HashMap<Arc<str>, u64>>>;

/// One session's acknowledged mark, shared with the writer: acknowledging
/// is an atomic maximum, and the slot joins the writer's list only when it
/// is not on it already (once per write, not per acknowledgement).
#[derive(Debug)]
pub(crate) struct AckSlot {
    user: Arc<str>,
    upto: AtomicU64,
    /// On the writer's list.
    queued: AtomicBool,
}

/// Acknowledgements taken from sessions and not yet handed to the writer:
/// the slots that moved since the last write, so it holds at most one
/// entry per online session whatever the rate (no queue to bound, no
/// session ever waits), and a session's acknowledgement costs no lock, no
/// hashing and no wake-up of the writer unless its slot was clean.
#[derive(Default)]
pub(super) struct AckQueue {
    dirty: Mutex<Vec<Arc<AckSlot>>>,
    /// Notified when `dirty` stops being empty.
    wake: Notify,
}

impl AckQueue {
    /// A slot for one session of `user`.
    pub(super) fn slot(user: Arc<str>) -> Arc<AckSlot> {
        Arc::new(AckSlot {
            user,
            upto: AtomicU64::new(0),
            queued: AtomicBool::new(false),
        })
    }

    /// Records that the slot's user acknowledged everything up to `upto`.
    pub(super) fn push(&self, slot: &Arc<AckSlot>, upto: u64) {
        // SeqCst with `take`: either the writer reads this maximum, or this
        // sees the slot taken off the list and puts it back.
        slot.upto.fetch_max(upto, Ordering::SeqCst);
        if slot.queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut dirty = lock(&self.dirty);
        let first = dirty.is_empty();
        dirty.push(slot.clone());
        drop(dirty);
        if first {
            self.wake.notify_one();
        }
    }

    /// The highest mark per user pushed so far, leaving nothing.
    fn take(&self) -> HashMap<Arc<str>, u64> {
        let slots = std::mem::take(&mut *lock(&self.dirty));
        let mut latest = HashMap::with_capacity(slots.len());
        for slot in slots {
            slot.queued.store(false, Ordering::SeqCst);
            let upto = slot.upto.load(Ordering::SeqCst);
            let mark = latest.entry(slot.user.clone()).or_insert(upto);
            *mark = (*mark).max(upto);
        }
        latest
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running tasks and what stops them.
pub(super) struct Background {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    /// Starts the writer (draining `queue`) and the purger over `store`.
    pub(super) fn start(
        store: Arc<dyn BroadcastStore>,
        queue: Arc<AckQueue>,
        marks: Marks,
    ) -> Self {
        let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
        tasks.spawn(write_acks(store.clone(), queue, marks, stop.clone()));
        tasks.spawn(purge(store, stop.clone()));
        tasks.close();
        Background { tasks, stop }
    }

    /// Stops both tasks; returns once every acknowledgement pushed before
    /// is written (or failed and was logged).
    pub(super) async fn stop(&self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }
}

/// Writes acknowledgements: the first at once, then at most one
/// transaction per [`ACK_WRITE_INTERVAL`] with the highest mark per user
/// pushed meanwhile, so back-to-back broadcasts to thousands of sessions
/// cost one row per user per interval, not per broadcast. The marks in
/// memory are raised as acknowledgements are taken. Once stopped, writes
/// what is pending and ends.
async fn write_acks(
    store: Arc<dyn BroadcastStore>,
    queue: Arc<AckQueue>,
    marks: Marks,
    stop: CancellationToken,
) {
    let mut next_write = Instant::now();
    loop {
        let stopping = tokio::select! {
            biased;
            _ = stop.cancelled() => true,
            _ = queue.wake.notified() => false,
        };
        if !stopping {
            tokio::select! {
                biased;
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep_until(next_write) => {}
            }
        }
        let mut latest = queue.take();
        raise(&latest, &marks);
        write(&store, &mut latest).await;
        if stop.is_cancelled() {
            return;
        }
        next_write = Instant::now() + ACK_WRITE_INTERVAL;
    }
}

/// Raises the known marks for the users in `latest` (one lock per write,
/// not per acknowledgement; only users already known).
fn raise(latest: &HashMap<Arc<str>, u64>, marks: &Marks) {
    let mut known = lock(marks);
    for (user, &upto) in latest {
        if let Some(mark) = known.get_mut(user) {
            *mark = (*mark).max(upto);
        }
    }
}

/// Writes and empties `latest` in one transaction.
async fn write(store: &Arc<dyn BroadcastStore>, latest: &mut HashMap<Arc<str>, u64>) {
    if latest.is_empty() {
        return;
    }
    let batch: Vec<(String, u64)> = latest
        .drain()
        .map(|(user, upto)| (user.to_string(), upto))
        .collect();
    let store = store.clone();
    if let Err(e) = blocking(move || store.ack(&batch)).await {
        warn!(cause = %e, "cannot record broadcast acknowledgements; they will be redelivered");
    }
}

/// Deletes expired broadcasts now and then, until stopped.
async fn purge(store: Arc<dyn BroadcastStore>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let store = store.clone();
        match blocking(move || store.purge(time::now_ms())).await {
            Ok(p) if p.deleted == 0 => {}
            Ok(p) => {
                crate::metrics::metrics()
                    .broadcasts_expired_undelivered
                    .inc_by(p.undelivered as u64);
                info!(
                    deleted = p.deleted,
                    undelivered = p.undelivered,
                    "expired broadcasts deleted"
                );
            }
            Err(e) => warn!(cause = %e, "cannot delete expired broadcasts"),
        }
    }
}

impl Drop for Background {
    /// A hub dropped without [`Background::stop`] still ends its tasks (the
    /// writer after writing what is queued).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_listed_once_however_often_it_moves_and_again_after_a_write() {
        let q = AckQueue::default();
        let (alice, bob) = (AckQueue::slot("alice".into()), AckQueue::slot("bob".into()));
        for upto in [3, 9, 5] {
            q.push(&alice, upto);
        }
        q.push(&bob, 2);
        assert_eq!(lock(&q.dirty).len(), 2, "one entry per session");
        let taken = q.take();
        assert_eq!(taken.get("alice"), Some(&9), "the highest, not the latest");
        assert_eq!(taken.get("bob"), Some(&2));
        assert!(q.take().is_empty());
        q.push(&alice, 12);
        assert_eq!(q.take().get("alice"), Some(&12), "listed again once taken");
    }

    #[test]
    fn two_sessions_of_one_user_give_the_higher_mark() {
        let q = AckQueue::default();
        let (old, new) = (
            AckQueue::slot("alice".into()),
            AckQueue::slot("alice".into()),
        );
        q.push(&new, 4);
        q.push(&old, 7);
        assert_eq!(q.take().get("alice"), Some(&7));
    }
}

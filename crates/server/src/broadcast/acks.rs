//! The hub's background tasks, owned by the hub: the acknowledgement writer
//! (fed by [`AckQueue`]) and the purger. Stopping them (see
//! [`Background::stop`]) writes every acknowledgement already pushed, so a
//! clean shutdown redelivers nothing.

use std::collections::HashMap;
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

/// Acknowledgements taken from sessions and not yet handed to the writer:
/// the highest per user, so it holds at most one entry per online user
/// whatever the rate (no queue to bound, no session ever waits), and a
/// session's acknowledgement is one lock and one map entry, not a channel
/// message and a wake-up of the writer each.
#[derive(Default)]
pub(super) struct AckQueue {
    pending: Mutex<HashMap<Arc<str>, u64>>,
    /// Notified when `pending` stops being empty.
    wake: Notify,
}

impl AckQueue {
    /// Records that `user` acknowledged everything up to `upto`.
    pub(super) fn push(&self, user: &Arc<str>, upto: u64) {
        let mut pending = lock(&self.pending);
        let first = pending.is_empty();
        match pending.get_mut(user) {
            Some(mark) => *mark = (*mark).max(upto),
            None => {
                pending.insert(user.clone(), upto);
            }
        }
        drop(pending);
        if first {
            self.wake.notify_one();
        }
    }

    /// Everything pushed so far, leaving nothing.
    fn take(&self) -> HashMap<Arc<str>, u64> {
        std::mem::take(&mut *lock(&self.pending))
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

//! The hub's background tasks, owned by the hub: the acknowledgement writer
//! and the purger. Stopping them (see [`Background::stop`]) writes every
//! acknowledgement already queued, so a clean shutdown redelivers nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use p2p_proto::time;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::{blocking, BroadcastStore, ACK_WRITE_INTERVAL, PURGE_INTERVAL};

/// Acknowledged marks known in memory, per user (see the hub).
pub(super) type Marks = Arc<Mutex<HashMap<Arc<str>, u64>>>;

/// The running tasks and what stops them.
pub(super) struct Background {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    /// Starts the writer (draining `rx`) and the purger over `store`.
    pub(super) fn start(
        store: Arc<dyn BroadcastStore>,
        rx: mpsc::Receiver<(Arc<str>, u64)>,
        marks: Marks,
    ) -> Self {
        let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
        tasks.spawn(write_acks(store.clone(), rx, marks, stop.clone()));
        tasks.spawn(purge(store, stop.clone()));
        tasks.close();
        Background { tasks, stop }
    }

    /// Stops both tasks; returns once every queued acknowledgement is
    /// written (or failed and was logged).
    pub(super) async fn stop(&self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }
}

/// Writes acknowledgements: the first at once, then at most one
/// transaction per [`ACK_WRITE_INTERVAL`] with the highest mark per user
/// taken meanwhile, so back-to-back broadcasts to thousands of sessions cost
/// one row per user per interval, not per broadcast. The marks in memory are
/// raised as acknowledgements are taken. Once stopped, takes no more, writes
/// what it holds, and ends.
async fn write_acks(
    store: Arc<dyn BroadcastStore>,
    mut rx: mpsc::Receiver<(Arc<str>, u64)>,
    marks: Marks,
    stop: CancellationToken,
) {
    let mut latest: HashMap<Arc<str>, u64> = HashMap::new();
    let mut next_write = Instant::now();
    loop {
        tokio::select! {
            // Writing first: a steady stream of acknowledgements must not
            // keep the due write waiting.
            biased;
            _ = tokio::time::sleep_until(next_write), if !latest.is_empty() => {
                write(&store, &mut latest).await;
                next_write = Instant::now() + ACK_WRITE_INTERVAL;
            }
            got = rx.recv() => match got {
                Some(first) => take(first, &mut rx, &mut latest, &marks),
                None => {
                    write(&store, &mut latest).await;
                    return;
                }
            },
            // From now on `recv` yields what is buffered, then `None`.
            _ = stop.cancelled(), if !rx.is_closed() => rx.close(),
        }
    }
}

/// Merges `first` and everything already queued into `latest`, and raises
/// the known marks for those (one lock per wave, not per acknowledgement;
/// only the users just taken, not all of `latest`).
fn take(
    first: (Arc<str>, u64),
    rx: &mut mpsc::Receiver<(Arc<str>, u64)>,
    latest: &mut HashMap<Arc<str>, u64>,
    marks: &Marks,
) {
    let mut wave = vec![first];
    while let Ok(ack) = rx.try_recv() {
        wave.push(ack);
    }
    let mut known = marks.lock().unwrap_or_else(|p| p.into_inner());
    for (user, upto) in wave {
        if let Some(mark) = known.get_mut(&user) {
            *mark = (*mark).max(upto);
        }
        let e = latest.entry(user).or_insert(upto);
        *e = (*e).max(upto);
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

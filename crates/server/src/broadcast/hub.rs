//! Broadcast policy and fan-out over a [`BroadcastStore`]: size and rate
//! limits, expiry, storing and publishing in id order, and the queue of
//! acknowledgements (written by the hub's own task, see `acks.rs`).

use std::sync::{Arc, Mutex, MutexGuard};

use p2p_proto::limits::MAX_BROADCAST_BYTES;
use p2p_proto::time;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::warn;

use super::acks::Background;
use super::{blocking, Broadcast, BroadcastPolicy, BroadcastStore, ACK_QUEUE, CATCH_UP_BATCH};
use super::{Result, LIVE_BUFFER};
use crate::rate::SlidingWindow;
use crate::refused::Refused;

/// Broadcast policy and fan-out over a [`BroadcastStore`].
pub struct BroadcastHub {
    store: Arc<dyn BroadcastStore>,
    /// Changed by a reload ([`BroadcastHub::set_policy`]).
    policy: Mutex<BroadcastPolicy>,
    /// Held while committing and publishing, so publication order = id order.
    order: Mutex<()>,
    live: broadcast::Sender<Arc<Broadcast>>,
    recent: Mutex<SlidingWindow<String>>,
    acks: mpsc::Sender<(String, u64)>,
    background: Background,
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (plain field updates only), so a poisoned lock is still used.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BroadcastHub {
    /// A hub over `store`; starts the acknowledgement writer and the purger,
    /// which it owns (see [`BroadcastHub::close`]).
    pub fn start(store: Arc<dyn BroadcastStore>, policy: BroadcastPolicy) -> Arc<Self> {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let (acks, rx) = mpsc::channel(ACK_QUEUE);
        let background = Background::start(store.clone(), rx);
        Arc::new(BroadcastHub {
            store,
            policy: Mutex::new(policy),
            order: Mutex::new(()),
            live,
            recent: Mutex::new(SlidingWindow::new(policy.limit, policy.window)),
            acks,
            background,
        })
    }

    /// Applies a new policy (a reload) to the next broadcast; the counts of
    /// the rate limit are kept, and stored broadcasts keep their expiry.
    pub(crate) fn set_policy(&self, policy: BroadcastPolicy) {
        let mut current = lock(&self.policy);
        lock(&self.recent).set(policy.limit, policy.window);
        *current = policy;
    }

    /// Follows new broadcasts (subscribe *before* catching up from the store;
    /// [`super::Delivery`] does both in the right order).
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<Broadcast>> {
        self.live.subscribe()
    }

    /// Validates, rate-limits, stores durably and publishes a broadcast.
    /// Returns its id and expiry (Unix ms).
    pub async fn publish(
        self: &Arc<Self>,
        from: &str,
        text: String,
    ) -> Result<(u64, i64), Refused> {
        if text.len() > MAX_BROADCAST_BYTES {
            return Err(Refused::TooLarge {
                size: text.len(),
                limit: MAX_BROADCAST_BYTES,
            });
        }
        let policy = *lock(&self.policy);
        lock(&self.recent)
            .take(from.to_string(), Instant::now())
            .map_err(|wait| Refused::BroadcastRate {
                limit: policy.limit,
                window: policy.window,
                wait,
            })?;
        let sent_ms = time::now_ms();
        let expires_ms = sent_ms + policy.ttl.as_millis() as i64;
        let (hub, from) = (self.clone(), from.to_string());
        let stored = blocking(move || {
            let _order = lock(&hub.order);
            let id = hub.store.insert(&from, &text, sent_ms, expires_ms)?;
            let _ = hub.live.send(Arc::new(Broadcast {
                id,
                from,
                text,
                sent_ms,
                expires_ms,
            }));
            Ok(id)
        })
        .await;
        match stored {
            Ok(id) => Ok((id, expires_ms)),
            Err(e) => {
                warn!(cause = %e, "cannot store a broadcast");
                Err(Refused::StoreFailed)
            }
        }
    }

    /// The user's acknowledged high-water mark.
    pub(crate) async fn acked(&self, user: &str) -> Result<u64> {
        let (store, user) = (self.store.clone(), user.to_string());
        blocking(move || store.acked(&user)).await
    }

    /// Unexpired broadcasts for `user` above `after`, in order, one batch.
    pub(crate) async fn pending(&self, user: &str, after: u64) -> Result<Vec<Broadcast>> {
        let (store, user) = (self.store.clone(), user.to_string());
        blocking(move || store.pending(&user, after, time::now_ms(), CATCH_UP_BATCH)).await
    }

    /// Queues an acknowledgement (written in batches, soon; at the latest by
    /// [`BroadcastHub::close`]).
    pub(super) async fn ack(&self, user: &str, upto: u64) {
        let _ = self.acks.send((user.to_string(), upto)).await;
    }

    /// Stops the background tasks after writing every queued
    /// acknowledgement. Acknowledgements sent after this are dropped (and
    /// redelivered after the restart).
    pub(crate) async fn close(&self) {
        self.background.stop().await;
    }
}

//! Broadcast policy and fan-out over a [`BroadcastStore`]: size and rate
//! limits, expiry, storing and publishing in id order, the recent
//! broadcasts and acknowledged marks kept in memory for catch-up, and the
//! queue of acknowledgements (written by the hub's own task, see `acks.rs`).
//!
//! The sender is answered before the fan-out: [`BroadcastHub::publish`]
//! returns once the broadcast is committed, with a [`Publish`] that puts it
//! on the live channel when dropped, after the sender's answer is written.
//! Publications still leave in id order whatever order those drops come in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use p2p_proto::limits::MAX_BROADCAST_BYTES;
use p2p_proto::time;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;
use tracing::warn;

use super::acks::{AckQueue, AckSlot, Background, Marks};
use super::recent::Recent;
use super::{blocking, Broadcast, BroadcastPolicy, BroadcastStore, CATCH_UP_BATCH};
use super::{Result, LIVE_BUFFER, RECENT_BYTES, RECENT_MAX};
use crate::rate::SlidingWindow;
use crate::refused::Refused;

/// Broadcast policy and fan-out over a [`BroadcastStore`].
pub struct BroadcastHub {
    store: Arc<dyn BroadcastStore>,
    /// Changed by a reload ([`BroadcastHub::set_policy`]).
    policy: Mutex<BroadcastPolicy>,
    /// Held while committing, so ids, the store and `recent` agree.
    order: Mutex<()>,
    /// Committed broadcasts not on the live channel yet, in id order, each
    /// with whether its [`Publish`] was dropped.
    unpublished: Mutex<VecDeque<(Arc<Broadcast>, bool)>>,
    live: broadcast::Sender<Arc<Broadcast>>,
    /// The latest broadcasts, for catch-up without the store.
    cache: Mutex<Recent>,
    /// Acknowledged marks known in memory, per user: read from the store
    /// once, then raised by the acknowledgement writer as it takes them.
    marks: Marks,
    recent: Mutex<SlidingWindow<String>>,
    acks: Arc<AckQueue>,
    background: Background,
    /// In a cluster: wakes the feed, which publishes every broadcast (this
    /// instance's too, read back from the shared store in id order), so
    /// storing one does not publish it here.
    feed: Option<Arc<Notify>>,
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
        Self::start_with(store, policy, None)
    }

    /// A hub whose broadcasts are published by a feed (a cluster's, see
    /// `crate::cluster::feed`) through [`BroadcastHub::feed_publish`];
    /// `wake` is notified each time a broadcast stored here is ready.
    pub(crate) fn start_fed(
        store: Arc<dyn BroadcastStore>,
        policy: BroadcastPolicy,
        wake: Arc<Notify>,
    ) -> Arc<Self> {
        Self::start_with(store, policy, Some(wake))
    }

    fn start_with(
        store: Arc<dyn BroadcastStore>,
        policy: BroadcastPolicy,
        feed: Option<Arc<Notify>>,
    ) -> Arc<Self> {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let acks = Arc::new(AckQueue::default());
        let marks = Marks::default();
        let background = Background::start(store.clone(), acks.clone(), marks.clone());
        Arc::new(BroadcastHub {
            store,
            policy: Mutex::new(policy),
            order: Mutex::new(()),
            unpublished: Mutex::new(VecDeque::new()),
            live,
            cache: Mutex::new(Recent::new(RECENT_MAX, RECENT_BYTES)),
            marks,
            recent: Mutex::new(SlidingWindow::new(policy.limit, policy.window)),
            acks,
            background,
            feed,
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

    /// Validates, rate-limits and stores a broadcast durably. Returns its id
    /// and expiry (Unix ms), and the [`Publish`] that sends it live when
    /// dropped (drop it once the sender is answered).
    pub async fn publish(
        self: &Arc<Self>,
        from: &str,
        text: String,
    ) -> Result<(u64, i64, Publish), Refused> {
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
            if hub.feed.is_none() {
                let b = Arc::new(Broadcast::new(id, from, text, sent_ms, expires_ms)?);
                lock(&hub.cache).push(b.clone(), time::now_ms());
                lock(&hub.unpublished).push_back((b, false));
            }
            // Made here, so that it is dropped (and the broadcast published)
            // even if the session stops waiting for this task.
            Ok((
                id,
                Publish {
                    hub: hub.clone(),
                    id,
                },
            ))
        })
        .await;
        match stored {
            Ok((id, publish)) => Ok((id, expires_ms, publish)),
            Err(e) => {
                warn!(cause = %e, "cannot store a broadcast");
                Err(Refused::StoreFailed)
            }
        }
    }

    /// Marks `id` ready and puts every ready broadcast at the front of the
    /// queue on the live channel, so they leave in id order.
    fn release(&self, id: u64) {
        if let Some(feed) = &self.feed {
            feed.notify_one();
            return;
        }
        let mut queue = lock(&self.unpublished);
        if let Some(entry) = queue.iter_mut().find(|(b, _)| b.id == id) {
            entry.1 = true;
        }
        while queue.front().is_some_and(|(_, ready)| *ready) {
            if let Some((b, _)) = queue.pop_front() {
                let _ = self.live.send(b);
            }
        }
    }

    /// Publishes a broadcast the feed read (in id order, each once).
    pub(crate) fn feed_publish(&self, b: Arc<Broadcast>) {
        lock(&self.cache).push(b.clone(), time::now_ms());
        let _ = self.live.send(b);
    }

    /// The user's acknowledged high-water mark (from memory once known; in
    /// a cluster always from the store too, as the user may have
    /// acknowledged more through another instance since).
    pub(crate) async fn acked(&self, user: &str) -> Result<u64> {
        if let Some(&mark) = lock(&self.marks).get(user) {
            if self.feed.is_none() {
                return Ok(mark);
            }
        }
        let (store, name) = (self.store.clone(), user.to_string());
        let stored = blocking(move || store.acked(&name)).await?;
        let mut marks = lock(&self.marks);
        let mark = marks.entry(Arc::from(user)).or_insert(stored);
        *mark = (*mark).max(stored);
        Ok(*mark)
    }

    /// Unexpired broadcasts for `user` above `after`, in order, one batch:
    /// from memory when it holds them all, else from the store.
    pub(crate) async fn pending(&self, user: &str, after: u64) -> Result<Vec<Arc<Broadcast>>> {
        let now = time::now_ms();
        if let Some(batch) = lock(&self.cache).pending(user, after, now, CATCH_UP_BATCH) {
            return Ok(batch);
        }
        let (store, user) = (self.store.clone(), user.to_string());
        let batch = blocking(move || store.pending(&user, after, now, CATCH_UP_BATCH)).await?;
        Ok(batch.into_iter().map(Arc::new).collect())
    }

    /// Where one session of `user` puts its acknowledgements.
    pub(super) fn ack_slot(&self, user: Arc<str>) -> Arc<AckSlot> {
        AckQueue::slot(user)
    }

    /// Takes an acknowledgement (written in batches, soon; at the latest by
    /// [`BroadcastHub::close`]).
    pub(super) fn ack(&self, slot: &Arc<AckSlot>, upto: u64) {
        self.acks.push(slot, upto);
    }

    /// Stops the background tasks after writing every queued
    /// acknowledgement. Acknowledgements sent after this are dropped (and
    /// redelivered after the restart).
    pub(crate) async fn close(&self) {
        self.background.stop().await;
    }
}

/// A committed broadcast on its way to the live channel: dropping it
/// publishes (in id order with the others). Dropped however the sender's
/// session goes on, so a broadcast is never left unpublished.
pub struct Publish {
    hub: Arc<BroadcastHub>,
    id: u64,
}

impl std::fmt::Debug for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publish").field("id", &self.id).finish()
    }
}

impl Drop for Publish {
    fn drop(&mut self) {
        self.hub.release(self.id);
    }
}

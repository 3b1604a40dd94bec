//! The broadcast feed: every broadcast stored by any instance (this one
//! included), read from the database above the last id published, in id
//! order, and published to this instance's sessions. Inserts are serialised
//! (see `PgBroadcasts::insert_async`), so reading `id > last` never skips an
//! id that commits later.

use std::sync::Arc;

use p2p_proto::time;

use super::Cluster;
use crate::broadcast::CATCH_UP_BATCH;
use crate::error::Result;
use crate::Shared;

impl Cluster {
    /// Publishes everything above `last`, moving `last` past each one as
    /// it goes (so a failed read after a full batch does not publish that
    /// batch again).
    async fn publish_new(&self, shared: &Shared, last: &mut u64) -> Result<()> {
        loop {
            let batch = self
                .store
                .after(*last, time::now_ms(), CATCH_UP_BATCH)
                .await?;
            let full = batch.len() == CATCH_UP_BATCH;
            for b in batch {
                *last = b.id;
                shared.broadcasts.feed_publish(Arc::new(b));
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The feed driver: starts above `last` (the newest broadcast stored
    /// before any session started here: sessions catch up on those from the
    /// store), then reads on each wake-up and every poll interval, until
    /// stopped.
    pub(super) async fn feed(&self, shared: &Shared, mut last: u64) {
        let mut tick = tokio::time::interval(self.cfg.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Err(e) = self.publish_new(shared, &mut last).await {
                tracing::warn!(cause = %e, "cannot read new broadcasts; retrying at the next poll");
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.feed_wake.notified() => {}
                _ = tick.tick() => {}
            }
        }
    }
}

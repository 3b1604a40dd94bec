//! Broadcasts and the 30-minute promise (SPEC §4).
//!
//! - [`BroadcastStore`] (here) is the one narrow interface to durable
//!   broadcast state, so a shared database can stand behind several servers
//!   later; [`SqliteBroadcasts`] (`sqlite.rs`) is the embedded default.
//! - [`BroadcastHub`] (`hub.rs`) puts policy on top: size and rate limits,
//!   expiry, ordered live fan-out.
//! - `acks.rs`: the hub's two background tasks, the acknowledgement writer
//!   (coalesced, one transaction per wave) and the purger. The hub owns
//!   them; [`BroadcastHub::close`] stops them after writing every queued
//!   acknowledgement.
//! - [`Delivery`] (`delivery.rs`): the delivery invariant for one session —
//!   subscribe, catch up from the store, follow live, clamp acks to what
//!   was sent. `conn.rs` only writes what it yields.
//!
//! Ordering: a broadcast is committed and published to the live channel
//! under one lock, so every session sees ids in commit order. Every time is
//! absolute (Unix ms), so the window keeps counting while the server is
//! down. Blocking store calls run on tokio's blocking pool, never on the
//! runtime threads.

mod acks;
mod delivery;
mod hub;
mod recent;
mod sqlite;
#[cfg(test)]
mod tests;

use std::time::Duration;

use p2p_proto::codec::Prepared;
use p2p_proto::wire::{ServerEvent, ServerMsg};

pub use delivery::{Delivery, Live};
pub use hub::{BroadcastHub, Publish};
pub use sqlite::SqliteBroadcasts;

use crate::error::{Result, ServerError};

/// Live broadcasts buffered per session before it must re-read the store.
pub(crate) const LIVE_BUFFER: usize = 1024;
/// Most broadcasts read from the store in one go during catch-up.
pub(crate) const CATCH_UP_BATCH: usize = 256;
/// Most recent broadcasts kept in memory for catch-up (a late login reads
/// them without a store query). 30 minutes of broadcasts is far fewer on a
/// campus; past this the oldest are read from the store again.
pub(crate) const RECENT_MAX: usize = 4096;
/// Most bytes of broadcast text kept in memory for catch-up (4,096 full-size
/// broadcasts would be 16 MiB).
pub(crate) const RECENT_BYTES: usize = 4 << 20;
/// Acknowledgements are written at most this often (the first at once). An
/// acknowledgement lost with a crash only means that broadcast is sent
/// again at the next login, and daemons store each broadcast once; writing
/// per wave instead cost one row per recipient per broadcast.
pub(crate) const ACK_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired broadcasts are deleted.
pub(crate) const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// One stored broadcast, with the frame every recipient is sent (serialised
/// once, shared by all sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Increasing in storing order.
    pub(crate) id: u64,
    /// The sender.
    pub(crate) from: String,
    /// [`user_key`] of `from`: each delivery asks whether the broadcast is
    /// the recipient's own, and comparing two numbers the session already
    /// holds spares reading its name from another allocation (a cache miss
    /// per delivery).
    pub(crate) from_key: u64,
    /// The text.
    pub(crate) text: String,
    /// Sent at, Unix ms.
    pub(crate) sent_ms: i64,
    /// Expires at, Unix ms.
    pub(crate) expires_ms: i64,
    /// `ServerMsg::Event` with this broadcast, as sent to each recipient.
    pub(crate) frame: Prepared<ServerMsg>,
}

impl Broadcast {
    /// A broadcast and its frame.
    pub(crate) fn new(
        id: u64,
        from: String,
        text: String,
        sent_ms: i64,
        expires_ms: i64,
    ) -> Result<Self> {
        let frame = Prepared::new(&ServerMsg::Event {
            event: ServerEvent::Broadcast {
                id,
                from: from.clone(),
                text: text.clone(),
                sent_ms,
                expires_ms,
            },
        })?;
        Ok(Broadcast {
            id,
            from_key: user_key(&from),
            from,
            text,
            sent_ms,
            expires_ms,
            frame,
        })
    }
}

/// Durable broadcast state: the narrow interface a shared database would
/// implement. Calls block; the hub calls them on the blocking pool.
pub trait BroadcastStore: Send + Sync + 'static {
    /// Stores a broadcast; durable when it returns. Returns its id.
    fn insert(&self, from: &str, text: &str, sent_ms: i64, expires_ms: i64) -> Result<u64>;
    /// Up to `limit` broadcasts with id > `after`, not from `user`, not
    /// expired at `now_ms`, in id order.
    fn pending(&self, user: &str, after: u64, now_ms: i64, limit: usize) -> Result<Vec<Broadcast>>;
    /// The highest id `user` acknowledged (0 if none).
    fn acked(&self, user: &str) -> Result<u64>;
    /// Raises high-water marks (never lowers them), all in one transaction.
    fn ack(&self, acks: &[(String, u64)]) -> Result<()>;
    /// Deletes broadcasts expired at `now_ms`; returns how many, and how
    /// many of those some account (one that has acknowledged broadcasts
    /// before) had not acknowledged.
    fn purge(&self, now_ms: i64) -> Result<Purged>;
}

/// What one [`BroadcastStore::purge`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    /// Expired broadcasts deleted.
    pub deleted: usize,
    /// Of those, broadcasts some account never acknowledged.
    pub undelivered: usize,
}

/// Broadcast policy.
#[derive(Debug, Clone, Copy)]
pub struct BroadcastPolicy {
    /// Life of a broadcast.
    pub ttl: Duration,
    /// Broadcasts per user per `window`.
    pub limit: u32,
    /// The rate-limit window.
    pub window: Duration,
}

/// A number for a user name: equal names give equal keys (different names
/// rarely do, so a match is confirmed on the names).
pub(crate) fn user_key(user: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.hash(&mut h);
    h.finish()
}

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::Config(format!("blocking task failed: {e}")))?
}

//! Broadcasts and the 30-minute promise (SPEC §4).
//!
//! [`BroadcastStore`] is the one narrow interface to durable broadcast
//! state, so a shared database can stand behind several servers later;
//! [`SqliteBroadcasts`] is the embedded default (`state.db`, WAL,
//! `synchronous=FULL`). [`BroadcastHub`] puts policy on top: size and rate
//! limits, expiry, live fan-out, coalesced acknowledgements.
//!
//! Ordering: a broadcast is committed and published to the live channel
//! under one lock, so every session sees ids in commit order. Each session
//! keeps a cursor (starting at the user's acknowledged high-water mark),
//! first sends what the store holds above it, then follows the live channel,
//! going back to the store if it fell behind. Every time is absolute
//! (Unix ms), so the window keeps counting while the server is down.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2p_proto::limits::MAX_BROADCAST_BYTES;
use p2p_proto::time;
use rusqlite::{params, Connection};
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use crate::error::{Result, ServerError};
use crate::invitations::Refused;

/// Live broadcasts buffered per session before it must re-read the store.
pub const LIVE_BUFFER: usize = 1024;
/// Most broadcasts read from the store in one go during catch-up.
pub const CATCH_UP_BATCH: usize = 256;
/// Acknowledgements waiting to be written; past this, sessions wait.
pub const ACK_QUEUE: usize = 16 * 1024;
/// How often expired broadcasts are deleted.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// One stored broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Increasing in storing order.
    pub id: u64,
    /// The sender.
    pub from: String,
    /// The text.
    pub text: String,
    /// Sent at, Unix ms.
    pub sent_ms: i64,
    /// Expires at, Unix ms.
    pub expires_ms: i64,
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
    /// Deletes broadcasts expired at `now_ms`; returns how many.
    fn purge(&self, now_ms: i64) -> Result<usize>;
}

/// The embedded store.
pub struct SqliteBroadcasts {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteBroadcasts {
    /// Opens (and creates) the tables in `data_dir/state.db`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(crate::tokens::STATE_DB);
        let conn = crate::tokens::open_db(&path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS broadcasts (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 sender TEXT NOT NULL,
                 text TEXT NOT NULL,
                 sent_ms INTEGER NOT NULL,
                 expires_ms INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS broadcasts_expiry ON broadcasts(expires_ms);
             CREATE TABLE IF NOT EXISTS broadcast_acks (
                 user TEXT PRIMARY KEY,
                 upto INTEGER NOT NULL
             );",
        )
        .map_err(|source| ServerError::Db {
            path: path.clone(),
            source,
        })?;
        Ok(SqliteBroadcasts {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> ServerError + '_ {
        |source| ServerError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("broadcast db poisoned")
    }
}

impl BroadcastStore for SqliteBroadcasts {
    fn insert(&self, from: &str, text: &str, sent_ms: i64, expires_ms: i64) -> Result<u64> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO broadcasts (sender, text, sent_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            params![from, text, sent_ms, expires_ms],
        )
        .map_err(self.err())?;
        Ok(conn.last_insert_rowid() as u64)
    }

    fn pending(&self, user: &str, after: u64, now_ms: i64, limit: usize) -> Result<Vec<Broadcast>> {
        let conn = self.lock();
        let mut q = conn
            .prepare_cached(
                "SELECT id, sender, text, sent_ms, expires_ms FROM broadcasts
                 WHERE id > ?1 AND sender != ?2 AND expires_ms > ?3 ORDER BY id LIMIT ?4",
            )
            .map_err(self.err())?;
        let rows = q
            .query_map(params![after as i64, user, now_ms, limit as i64], |r| {
                Ok(Broadcast {
                    id: r.get::<_, i64>(0)? as u64,
                    from: r.get(1)?,
                    text: r.get(2)?,
                    sent_ms: r.get(3)?,
                    expires_ms: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    fn acked(&self, user: &str) -> Result<u64> {
        let conn = self.lock();
        let upto: Option<i64> = conn
            .query_row(
                "SELECT upto FROM broadcast_acks WHERE user = ?1",
                params![user],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| {
                if e == rusqlite::Error::QueryReturnedNoRows {
                    Ok(None)
                } else {
                    Err(e)
                }
            })
            .map_err(self.err())?;
        Ok(upto.unwrap_or(0) as u64)
    }

    fn ack(&self, acks: &[(String, u64)]) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(self.err())?;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO broadcast_acks (user, upto) VALUES (?1, ?2)
                     ON CONFLICT(user) DO UPDATE SET upto = max(upto, excluded.upto)",
                )
                .map_err(self.err())?;
            for (user, upto) in acks {
                up.execute(params![user, *upto as i64])
                    .map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())
    }

    fn purge(&self, now_ms: i64) -> Result<usize> {
        self.lock()
            .execute(
                "DELETE FROM broadcasts WHERE expires_ms <= ?1",
                params![now_ms],
            )
            .map_err(self.err())
    }
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

/// Broadcast policy and fan-out over a [`BroadcastStore`].
pub struct BroadcastHub {
    store: Arc<dyn BroadcastStore>,
    policy: BroadcastPolicy,
    /// Held while committing and publishing, so publication order = id order.
    order: Mutex<()>,
    live: broadcast::Sender<Arc<Broadcast>>,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
    acks: mpsc::Sender<(String, u64)>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::Config(format!("blocking task failed: {e}")))?
}

impl BroadcastHub {
    /// A hub over `store`; starts the acknowledgement writer and the purger.
    pub fn start(store: Arc<dyn BroadcastStore>, policy: BroadcastPolicy) -> Arc<Self> {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let (acks, rx) = mpsc::channel(ACK_QUEUE);
        let hub = Arc::new(BroadcastHub {
            store,
            policy,
            order: Mutex::new(()),
            live,
            recent: Mutex::default(),
            acks,
        });
        tokio::spawn(write_acks(hub.store.clone(), rx));
        tokio::spawn(purge(Arc::downgrade(&hub)));
        hub
    }

    /// Follows new broadcasts (subscribe *before* catching up from the store).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Broadcast>> {
        self.live.subscribe()
    }

    /// Validates, rate-limits, stores durably and publishes a broadcast.
    pub async fn publish(
        self: &Arc<Self>,
        from: &str,
        text: String,
    ) -> Result<(u64, i64), Refused> {
        if text.len() > MAX_BROADCAST_BYTES {
            let msg = format!(
                "broadcast is {} bytes; the limit is {MAX_BROADCAST_BYTES}. Nothing was stored",
                text.len()
            );
            return Err(("too_large", msg));
        }
        let now = Instant::now();
        {
            let mut recent = self.recent.lock().expect("rate table poisoned");
            let times = recent.entry(from.to_string()).or_default();
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.policy.window)
            {
                times.pop_front();
            }
            if times.len() >= self.policy.limit as usize {
                let wait = self
                    .policy
                    .window
                    .saturating_sub(now.duration_since(times[0]));
                let msg = format!(
                    "at most {} broadcasts per {}; try again in {}s. Nothing was stored",
                    self.policy.limit,
                    p2p_proto::time::human_duration(self.policy.window),
                    wait.as_secs().max(1)
                );
                return Err(("rate_limited", msg));
            }
            times.push_back(now);
        }
        let sent_ms = time::now_ms();
        let expires_ms = sent_ms + self.policy.ttl.as_millis() as i64;
        let (hub, from) = (self.clone(), from.to_string());
        let stored = blocking(move || {
            let _order = hub.order.lock().expect("order lock poisoned");
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
                Err((
                    "internal",
                    "the server could not store the broadcast; try again".into(),
                ))
            }
        }
    }

    /// The user's acknowledged high-water mark.
    pub async fn acked(&self, user: &str) -> Result<u64> {
        let (store, user) = (self.store.clone(), user.to_string());
        blocking(move || store.acked(&user)).await
    }

    /// Unexpired broadcasts for `user` above `after`, in order.
    pub async fn pending(&self, user: &str, after: u64) -> Result<Vec<Broadcast>> {
        let (store, user) = (self.store.clone(), user.to_string());
        blocking(move || store.pending(&user, after, time::now_ms(), CATCH_UP_BATCH)).await
    }

    /// Records an acknowledgement (written in batches, soon).
    pub async fn ack(&self, user: &str, upto: u64) {
        let _ = self.acks.send((user.to_string(), upto)).await;
    }
}

/// Writes acknowledgements, coalescing whatever has queued up into one
/// transaction (one fsync for a whole wave of recipients).
async fn write_acks(store: Arc<dyn BroadcastStore>, mut rx: mpsc::Receiver<(String, u64)>) {
    while let Some(first) = rx.recv().await {
        let mut latest: HashMap<String, u64> = HashMap::from([first]);
        while let Ok((user, upto)) = rx.try_recv() {
            let e = latest.entry(user).or_insert(upto);
            *e = (*e).max(upto);
        }
        let batch: Vec<(String, u64)> = latest.into_iter().collect();
        let store = store.clone();
        if let Err(e) = blocking(move || store.ack(&batch)).await {
            warn!(cause = %e, "cannot record broadcast acknowledgements; they will be redelivered");
        }
    }
}

/// Deletes expired broadcasts now and then, while the hub lives.
async fn purge(hub: std::sync::Weak<BroadcastHub>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let store = hub.store.clone();
        match blocking(move || store.purge(time::now_ms())).await {
            Ok(0) => {}
            Ok(n) => info!(deleted = n, "expired broadcasts deleted"),
            Err(e) => warn!(cause = %e, "cannot delete expired broadcasts"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_respects_cursor_sender_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteBroadcasts::open(dir.path()).unwrap();
        let a = s.insert("alice", "one", 0, 1_000).unwrap();
        let b = s.insert("bob", "two", 10, 2_000).unwrap();
        let c = s.insert("alice", "three", 20, 3_000).unwrap();
        assert!(a < b && b < c);
        let ids = |v: Vec<Broadcast>| v.into_iter().map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(ids(s.pending("carol", 0, 500, 10).unwrap()), [a, b, c]);
        assert_eq!(
            ids(s.pending("alice", 0, 500, 10).unwrap()),
            [b],
            "no copy to the sender"
        );
        assert_eq!(ids(s.pending("carol", a, 500, 10).unwrap()), [b, c]);
        assert_eq!(
            ids(s.pending("carol", 0, 1_500, 10).unwrap()),
            [b, c],
            "expired never delivered"
        );
        assert_eq!(ids(s.pending("carol", 0, 500, 1).unwrap()), [a]);
        assert_eq!(s.purge(2_000).unwrap(), 2);
        assert_eq!(ids(s.pending("carol", 0, 0, 10).unwrap()), [c]);
    }

    #[test]
    fn acks_only_rise_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteBroadcasts::open(dir.path()).unwrap();
        assert_eq!(s.acked("carol").unwrap(), 0);
        s.ack(&[("carol".into(), 5), ("dave".into(), 2)]).unwrap();
        s.ack(&[("carol".into(), 3)]).unwrap();
        drop(s);
        let s = SqliteBroadcasts::open(dir.path()).unwrap();
        assert_eq!(
            (s.acked("carol").unwrap(), s.acked("dave").unwrap()),
            (5, 2)
        );
        let id = s.insert("x", "y", 0, 10).unwrap();
        assert!(id > 0);
    }
}

//! The broadcast store in PostgreSQL: each broadcast stored once, and one
//! acknowledgement row per (recipient, broadcast) under a unique key, so a
//! repeated acknowledgement is a no-op wherever the recipient is connected.
//!
//! The hub calls the synchronous [`BroadcastStore`] on tokio's blocking
//! pool; this impl blocks on the async query there. The cluster's feed
//! (`crate::cluster::feed`) calls the async methods.

use tokio::runtime::Handle;

use super::{PgError, PgPool};
use crate::broadcast::{Broadcast, BroadcastStore, Purged};
use crate::error::Result;

/// The channel a committed broadcast NOTIFYs (the feed LISTENs on it).
pub(crate) const BROADCAST_CHANNEL: &str = "p2p_broadcast";
/// Key of the advisory lock serialising broadcast inserts ("p2pbcst").
const INSERT_LOCK: i64 = 0x0070_3270_6263_7374;

/// Broadcasts and acknowledgements in the shared database.
pub struct PgBroadcasts {
    pool: PgPool,
    runtime: Handle,
}

impl PgBroadcasts {
    /// The store on `pool`'s database (migrated). Must be called within the
    /// tokio runtime whose blocking pool will call the sync trait.
    pub fn new(pool: PgPool) -> PgBroadcasts {
        PgBroadcasts {
            pool,
            runtime: Handle::current(),
        }
    }

    /// Stores a broadcast; durable when it returns. Returns its id.
    ///
    /// Inserts are serialised across the cluster (an advisory lock held to
    /// the commit), so ids become visible in id order: whoever sees id n
    /// also sees every lower id. Each instance's feed reads `id > last`, and
    /// each session's cursor moves past what it was sent, so neither may
    /// meet a lower id later. The commit also wakes every instance's feed
    /// (NOTIFY carries no data; the feed reads the rows).
    pub async fn insert_async(
        &self,
        from: &str,
        text: &str,
        sent_ms: i64,
        expires_ms: i64,
    ) -> Result<u64, PgError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSERT_LOCK])
            .await?;
        let q = tx
            .prepare_cached(
                "INSERT INTO broadcasts (sender, text, sent_ms, expires_ms)
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .await?;
        let id: i64 = tx
            .query_one(&q, &[&from, &text.as_bytes(), &sent_ms, &expires_ms])
            .await?
            .get(0);
        tx.batch_execute(&format!("NOTIFY {BROADCAST_CHANNEL}"))
            .await?;
        tx.commit().await?;
        Ok(id as u64)
    }

    /// Up to `limit` broadcasts with id > `after`, unexpired at `now_ms`,
    /// whoever sent them, in id order: what an instance's feed publishes.
    pub async fn after(&self, after: u64, now_ms: i64, limit: usize) -> Result<Vec<Broadcast>> {
        let c = self.pool.get().await?;
        let q = c
            .prepare_cached(
                "SELECT id, sender, text, sent_ms, expires_ms FROM broadcasts
                 WHERE id > $1 AND expires_ms > $2 ORDER BY id LIMIT $3",
            )
            .await
            .map_err(PgError::from)?;
        let rows = c
            .query(&q, &[&(after as i64), &now_ms, &(limit as i64)])
            .await
            .map_err(PgError::from)?;
        rows.iter().map(broadcast).collect()
    }

    /// The highest broadcast id stored (0 if none).
    pub async fn newest(&self) -> Result<u64, PgError> {
        let c = self.pool.get().await?;
        let id: i64 = c
            .query_one("SELECT COALESCE(MAX(id), 0) FROM broadcasts", &[])
            .await?
            .get(0);
        Ok(id as u64)
    }

    /// Up to `limit` broadcasts with id > `after` that `user` neither sent
    /// nor acknowledged, unexpired at `now_ms`, in id order.
    pub async fn pending_async(
        &self,
        user: &str,
        after: u64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Broadcast>> {
        let c = self.pool.get().await?;
        let q = c
            .prepare_cached(
                "SELECT b.id, b.sender, b.text, b.sent_ms, b.expires_ms FROM broadcasts b
                 WHERE b.id > $1 AND b.sender <> $2 AND b.expires_ms > $3
                   AND NOT EXISTS (SELECT 1 FROM broadcast_acks a
                                   WHERE a.recipient = $2 AND a.broadcast_id = b.id)
                 ORDER BY b.id LIMIT $4",
            )
            .await
            .map_err(PgError::from)?;
        let rows = c
            .query(&q, &[&(after as i64), &user, &now_ms, &(limit as i64)])
            .await
            .map_err(PgError::from)?;
        rows.iter().map(broadcast).collect()
    }

    /// The highest broadcast id `user` acknowledged among those still
    /// stored (0 if none).
    pub async fn acked_async(&self, user: &str) -> Result<u64, PgError> {
        let c = self.pool.get().await?;
        let q = c
            .prepare_cached(
                "SELECT COALESCE(MAX(broadcast_id), 0) FROM broadcast_acks WHERE recipient = $1",
            )
            .await?;
        let upto: i64 = c.query_one(&q, &[&user]).await?.get(0);
        Ok(upto as u64)
    }

    /// Records that each user has every stored broadcast up to the id
    /// given (the hub's high-water form), one row per broadcast, in one
    /// transaction of two statements whatever the number of users (a wave
    /// after a broadcast to thousands must not be thousands of round
    /// trips). Writing a row twice changes nothing.
    pub async fn ack_async(&self, acks: &[(String, u64)]) -> Result<(), PgError> {
        if acks.is_empty() {
            return Ok(());
        }
        let users: Vec<&str> = acks.iter().map(|(u, _)| u.as_str()).collect();
        let uptos: Vec<i64> = acks.iter().map(|(_, upto)| *upto as i64).collect();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let rows = tx
            .prepare_cached(
                "INSERT INTO broadcast_acks (recipient, broadcast_id)
                 SELECT u.recipient, b.id
                 FROM unnest($1::text[], $2::bigint[]) AS u (recipient, upto)
                 JOIN broadcasts b ON b.id <= u.upto AND b.sender <> u.recipient
                 WHERE NOT EXISTS (SELECT 1 FROM broadcast_acks a
                                   WHERE a.recipient = u.recipient AND a.broadcast_id = b.id)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&rows, &[&users, &uptos]).await?;
        let seen = tx
            .prepare_cached(
                "INSERT INTO broadcast_recipients (recipient)
                 SELECT DISTINCT unnest($1::text[]) ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&seen, &[&users]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes broadcasts expired at `now_ms` (their acknowledgements go
    /// with them); counts those some recipient of earlier broadcasts never
    /// acknowledged.
    pub async fn purge_async(&self, now_ms: i64) -> Result<Purged, PgError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let undelivered: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM broadcasts b WHERE b.expires_ms <= $1 AND EXISTS
                     (SELECT 1 FROM broadcast_recipients r
                      WHERE r.recipient <> b.sender AND NOT EXISTS
                          (SELECT 1 FROM broadcast_acks a
                           WHERE a.recipient = r.recipient AND a.broadcast_id = b.id))",
                &[&now_ms],
            )
            .await?
            .get(0);
        let deleted = tx
            .execute("DELETE FROM broadcasts WHERE expires_ms <= $1", &[&now_ms])
            .await?;
        tx.commit().await?;
        Ok(Purged {
            deleted: deleted as usize,
            undelivered: undelivered.max(0) as usize,
        })
    }
}

/// A row of (id, sender, text, sent_ms, expires_ms) as a [`Broadcast`].
/// The text is stored as its UTF-8 bytes (migration 0004: a TEXT column
/// refuses U+0000); only [`PgBroadcasts::insert_async`] writes it, from a
/// `&str`, so bytes that are not UTF-8 are a damaged row, refused.
fn broadcast(r: &tokio_postgres::Row) -> Result<Broadcast> {
    let id = r.get::<_, i64>(0) as u64;
    let text = String::from_utf8(r.get(2))
        .map_err(|_| PgError::Schema(format!("broadcast {id}: the text is not UTF-8")))?;
    Broadcast::new(id, r.get(1), text, r.get(3), r.get(4))
}

impl BroadcastStore for PgBroadcasts {
    fn insert(&self, from: &str, text: &str, sent_ms: i64, expires_ms: i64) -> Result<u64> {
        Ok(self
            .runtime
            .block_on(self.insert_async(from, text, sent_ms, expires_ms))?)
    }

    fn pending(&self, user: &str, after: u64, now_ms: i64, limit: usize) -> Result<Vec<Broadcast>> {
        self.runtime
            .block_on(self.pending_async(user, after, now_ms, limit))
    }

    fn acked(&self, user: &str) -> Result<u64> {
        Ok(self.runtime.block_on(self.acked_async(user))?)
    }

    fn ack(&self, acks: &[(String, u64)]) -> Result<()> {
        Ok(self.runtime.block_on(self.ack_async(acks))?)
    }

    fn purge(&self, now_ms: i64) -> Result<Purged> {
        Ok(self.runtime.block_on(self.purge_async(now_ms))?)
    }
}

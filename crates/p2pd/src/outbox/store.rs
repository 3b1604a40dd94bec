//! The `sent` table in `inbox.db`: every message this user sent, with where
//! it stands (`queued`, `delivered`, `failed`). A row is written (and
//! synced) before `send` answers, so a queued message survives `kill -9`;
//! its `mid` is fixed at insert, so a resend after a crash is recognised by
//! the peer as the same message.
//!
//! A `mid` is this run's random base plus a counter: as unique as a random
//! one (a run's ids collide with another run's only if their ranges of
//! 2^64 overlap), but consecutive within a run, so the peer's `(peer, mid)`
//! index takes each new one at its end rather than on a random page (at
//! random, every commit of a large batch rewrote a page per message there).
//! The base is drawn again at every start, so a restored backup of this
//! file does not hand out ids the peer already holds.
//!
//! `now` is 0 for a message that may wait in the outbox, else the number of
//! the one session a `send --now` was given to: only that session's flusher
//! sends it, and it is failed when that session ends (or at the next start,
//! after a crash). So a `--now` message never goes out late.
//!
//! Delivery of plain messages is recorded per peer, not per row: table
//! `sent_upto` holds, for each peer, the highest `seq` acknowledged, and a
//! plain (`now` = 0) row still marked `queued` at or below it is delivered
//! (see [`effective`]). The flusher sends a peer's plain messages in `seq`
//! order and the peer acknowledges them in that order, so everything plain
//! up to an acknowledged `seq` was stored by the peer. Marking a batch of
//! 4 096 delivered is then one upsert instead of 4 096 row updates, each of
//! which also moved its entry in the `(peer, status, seq)` index (that
//! UPDATE was 39 % of the sender's CPU in `send -`). `--now` messages and
//! failures keep their status per row: they are few.
//!
//! Calls block (SQLite, `synchronous=FULL`): run them on the blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::params;

use super::mark::plain_statuses;
pub(crate) use super::mark::{effective, upto};
use crate::error::Result;
use crate::inbox::Inbox;

/// Rows per INSERT in [`SentStore::queue`] (the last `len % QUEUE_ROWS`
/// go one per statement): one statement per row spent much of the CPU on
/// running statements rather than on rows; 64 take 132 parameters, far
/// below SQLite's limit of 32 766.
const QUEUE_ROWS: usize = 64;

/// A sent message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// Its id in this daemon's history of sent messages (what `send`,
    /// `outbox` and `history` show).
    pub(crate) seq: u64,
    /// The contact.
    pub(crate) peer: String,
    /// Its durable id on the peer link.
    pub(crate) mid: u64,
    /// The text.
    pub(crate) text: String,
    /// When it was sent (queued), Unix ms.
    pub(crate) at_ms: i64,
}

/// Where a sent message stands (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Waiting for (or on its way over) a session.
    Queued,
    /// The peer stored it.
    Delivered,
    /// Given up: a `--now` whose session ended, or dropped by forget/block.
    Failed,
}

impl Status {
    pub(super) fn parse(s: &str) -> Status {
        match s {
            "delivered" => Status::Delivered,
            "queued" => Status::Queued,
            _ => Status::Failed,
        }
    }
}

/// The peer and `now` tag of the row `seq` (one command's rows share both).
fn command_of(c: &rusqlite::Connection, seq: u64) -> rusqlite::Result<Option<(String, i64)>> {
    use rusqlite::OptionalExtension;
    let mut q = c.prepare_cached("SELECT peer, now FROM sent WHERE seq = ?1")?;
    q.query_row([i(seq)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// The table. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SentStore {
    db: Inbox,
    /// The next `mid` (this run's random base, counting up).
    next_mid: Arc<AtomicU64>,
}

const ROW: &str = "seq, peer, mid, text, at_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        seq: r.get::<_, i64>(0)? as u64,
        peer: r.get(1)?,
        mid: r.get::<_, i64>(2)? as u64,
        text: r.get(3)?,
        at_ms: r.get(4)?,
    })
}

fn i(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl SentStore {
    /// The table in `db`'s file, created if missing. `--now` messages still
    /// queued from a previous run are failed: their session is gone.
    pub(crate) fn open(db: &Inbox) -> Result<Self> {
        db.with_conn(|c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS sent (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     peer TEXT NOT NULL,
                     mid INTEGER NOT NULL,
                     text TEXT NOT NULL,
                     at_ms INTEGER NOT NULL,
                     status TEXT NOT NULL DEFAULT 'queued',
                     now INTEGER NOT NULL DEFAULT 0,
                     announced INTEGER NOT NULL DEFAULT 0,
                     delivered_ms INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS sent_peer_status ON sent(peer, status, seq);
                 CREATE TABLE IF NOT EXISTS sent_upto (
                     peer TEXT PRIMARY KEY,
                     upto INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS sent_now ON sent(now, seq) WHERE now != 0;
                 CREATE INDEX IF NOT EXISTS sent_announced ON sent(seq) WHERE announced = 1;
                 UPDATE sent SET status = 'failed' WHERE status = 'queued' AND now != 0;",
            )
        })?;
        Ok(SentStore {
            db: db.clone(),
            next_mid: Arc::new(AtomicU64::new(rand::random())),
        })
    }

    /// Stores `texts` to `peer` as queued, in one transaction (durable when
    /// this returns), with fresh `mid`s. `now`: 0, or the session a
    /// `send --now` is for. `announced`: the user is told they are queued
    /// (so a `delivered` event follows). Returns them in order; their `seq`s
    /// are consecutive (one transaction under the database lock).
    pub(crate) fn queue(
        &self,
        peer: &str,
        texts: &[String],
        at_ms: i64,
        now: u64,
        announced: bool,
    ) -> Result<Vec<Row>> {
        self.db.with_conn(|c| {
            let tx = c.transaction()?;
            let mut rows = Vec::with_capacity(texts.len());
            let mut chunks = texts.chunks_exact(QUEUE_ROWS);
            for chunk in &mut chunks {
                self.insert(&tx, peer, chunk, at_ms, now, announced, &mut rows)?;
            }
            for text in chunks.remainder() {
                let one = std::slice::from_ref(text);
                self.insert(&tx, peer, one, at_ms, now, announced, &mut rows)?;
            }
            tx.commit()?;
            Ok(rows)
        })
    }

    /// Inserts `texts` with one statement and appends their rows to `rows`.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        tx: &rusqlite::Transaction<'_>,
        peer: &str,
        texts: &[String],
        at_ms: i64,
        now: u64,
        announced: bool,
        rows: &mut Vec<Row>,
    ) -> rusqlite::Result<()> {
        use rusqlite::types::ToSql;
        // ?1 peer, ?2 at_ms, ?3 now, ?4 announced, then mid and text per row.
        let values: Vec<String> = (0..texts.len())
            .map(|r| format!("(?1, ?{}, ?{}, ?2, ?3, ?4)", 5 + 2 * r, 6 + 2 * r))
            .collect();
        let sql = format!(
            "INSERT INTO sent (peer, mid, text, at_ms, now, announced) VALUES {}",
            values.join(", ")
        );
        let base = self
            .next_mid
            .fetch_add(texts.len() as u64, Ordering::Relaxed);
        let mids: Vec<i64> = (0..texts.len() as u64)
            .map(|k| base.wrapping_add(k) as i64)
            .collect();
        let now = i(now);
        let mut params: Vec<&dyn ToSql> = vec![&peer, &at_ms, &now, &announced];
        for (mid, text) in mids.iter().zip(texts) {
            params.extend([mid as &dyn ToSql, text]);
        }
        tx.prepare_cached(&sql)?.execute(&params[..])?;
        // One statement under the database lock: consecutive `seq`s.
        let first = tx.last_insert_rowid() as u64 + 1 - texts.len() as u64;
        rows.extend(
            mids.iter()
                .zip(texts)
                .enumerate()
                .map(|(k, (&mid, text))| Row {
                    seq: first + k as u64,
                    peer: peer.to_string(),
                    mid: mid as u64,
                    text: text.clone(),
                    at_ms,
                }),
        );
        Ok(())
    }

    /// Queued messages to `peer` after `after`, in order, that the flusher
    /// of session `session` may send (plain ones and its own `--now` ones):
    /// at most `max` of them, and no more than `max_bytes` of text (at least
    /// one).
    pub(crate) fn pending(
        &self,
        peer: &str,
        session: u64,
        after: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Row>> {
        self.db.with_conn(|c| {
            // Plain ones above the mark (those below it are delivered), and
            // this session's `--now` ones (the partial index `sent_now`):
            // two index ranges, merged in `seq` order.
            // The limit is written into the statement: SQLite plans with a
            // bound LIMIT's value, so binding one made it parse the
            // statement again at every call (`max` is a constant here).
            let from = i(after).max(upto(c, peer)?);
            let mut plain = c.prepare_cached(&format!(
                "SELECT {ROW} FROM sent WHERE peer = ?1 AND status = 'queued' AND seq > ?2
                 AND now = 0 ORDER BY seq LIMIT {max}"
            ))?;
            let mut rows = read(plain.query(params![peer, from])?, max_bytes)?;
            let mut own = c.prepare_cached(&format!(
                "SELECT {ROW} FROM sent WHERE now = ?1 AND now != 0 AND seq > ?2
                 AND status = 'queued' AND peer = ?3 ORDER BY seq LIMIT {max}"
            ))?;
            let query = params![i(session), i(after), peer];
            rows.extend(read(own.query(query)?, max_bytes)?);
            rows.sort_unstable_by_key(|r| r.seq);
            rows.truncate(max);
            Ok(up_to_bytes(rows, max_bytes))
        })
    }

    /// The peer acknowledged the batch of `peer`'s queued messages with
    /// `seq` in `(after, upto]` that session `session` sent: marks them
    /// delivered (one UPDATE, one sync) and returns those the user was told
    /// were queued (a `delivered` event is due for them).
    pub(crate) fn delivered(
        &self,
        peer: &str,
        session: u64,
        after: u64,
        upto: u64,
        now_ms: i64,
    ) -> Result<Vec<u64>> {
        self.db.with_conn(|c| {
            let tx = c.transaction()?;
            let mark = self::upto(&tx, peer)?;
            let mut announced = Vec::new();
            {
                // Those the user was told were queued and that were not
                // delivered before (plain ones at or below the mark were).
                // Few: found by their own index, not by reading the batch.
                let mut told = tx.prepare_cached(
                    "SELECT seq FROM sent INDEXED BY sent_announced
                     WHERE announced = 1 AND seq > ?2 AND seq <= ?3 AND peer = ?1
                     AND status = 'queued'
                     AND ((now = 0 AND seq > ?5) OR now = ?4) ORDER BY seq",
                )?;
                let rows = told
                    .query_map(params![peer, i(after), i(upto), i(session), mark], |r| {
                        r.get::<_, i64>(0)
                    })?;
                for r in rows {
                    announced.push(r? as u64);
                }
                // This session's `--now` ones keep their status per row.
                tx.prepare_cached(
                    "UPDATE sent SET status = 'delivered', delivered_ms = ?5
                     WHERE now = ?4 AND now != 0 AND seq > ?2 AND seq <= ?3
                     AND status = 'queued' AND peer = ?1",
                )?
                .execute(params![peer, i(after), i(upto), i(session), now_ms])?;
                // The plain ones: one mark.
                tx.prepare_cached(
                    "INSERT INTO sent_upto (peer, upto) VALUES (?1, ?2)
                     ON CONFLICT (peer) DO UPDATE SET upto = max(upto, excluded.upto)",
                )?
                .execute(params![peer, i(upto)])?;
            }
            tx.commit()?;
            Ok(announced)
        })
    }

    /// Session `session` ended: its `--now` messages still queued failed.
    pub(crate) fn fail_session(&self, session: u64) -> Result<u64> {
        self.db.with_conn(|c| {
            c.execute(
                "UPDATE sent SET status = 'failed' WHERE now = ?1 AND now != 0 AND status = 'queued'",
                params![i(session)],
            )
            .map(|n| n as u64)
        })
    }

    /// A `send` command is done waiting for `seq`s `first..=last` (consecutive,
    /// one peer): the ones still queued are failed (`fail`, a `--now`) or
    /// marked announced (the user is told they are queued). Returns the
    /// status of each, in order, as it is after this.
    pub(crate) fn settle(&self, first: u64, last: u64, fail: bool) -> Result<Vec<(u64, Status)>> {
        self.db.with_conn(|c| {
            let tx = c.transaction()?;
            let Some((peer, tag)) = command_of(&tx, first)? else {
                return Ok(Vec::new());
            };
            let mark = self::upto(&tx, &peer)?;
            // Still queued: above the mark, or a `--now` one.
            let from = if tag == 0 { i(first).max(mark + 1) } else { i(first) };
            let set = if fail {
                "UPDATE sent SET status = 'failed' WHERE status = 'queued' AND seq BETWEEN ?1 AND ?2"
            } else {
                "UPDATE sent SET announced = 1 WHERE status = 'queued' AND seq BETWEEN ?1 AND ?2"
            };
            tx.execute(set, params![from, i(last)])?;
            let out = if tag == 0 {
                plain_statuses(&tx, &peer, first, last, mark)?
            } else {
                let mut q = tx.prepare_cached(
                    "SELECT seq, status, now FROM sent WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
                )?;
                let rows = q.query_map(params![i(first), i(last)], |r| {
                    let seq: i64 = r.get(0)?;
                    let status = effective(r.get_ref(1)?.as_str()?, r.get(2)?, seq, mark);
                    Ok((seq as u64, status))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            Ok(out)
        })
    }

    /// Whether any of `seq`s `first..=last` (one command's) is still
    /// queued: looks no further than the first (the wait asks after every
    /// batch of up to 16 384 messages).
    pub(crate) fn any_queued(&self, first: u64, last: u64) -> Result<bool> {
        self.db.with_conn(|c| {
            let Some((peer, tag)) = command_of(c, first)? else {
                return Ok(false);
            };
            // Plain ones at or below the mark are delivered: usually the
            // whole range, and then there is nothing to look at.
            let from = if tag == 0 {
                i(first).max(upto(c, &peer)? + 1)
            } else {
                i(first)
            };
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sent
                 WHERE status = 'queued' AND seq BETWEEN ?1 AND ?2)",
            )?
            .query_row(params![from, i(last)], |r| r.get::<_, bool>(0))
        })
    }

    /// Queued messages of every peer, oldest first: at most `max`, and no
    /// more than `max_bytes` of text (at least one). Plain ones only: a
    /// `--now` message is not waiting for anything.
    pub(crate) fn queued(&self, max: usize, max_bytes: usize) -> Result<Vec<Row>> {
        self.db.with_conn(|c| {
            let mut q = c.prepare_cached(
                "SELECT s.seq, s.peer, s.mid, s.text, s.at_ms FROM sent s
                 LEFT JOIN sent_upto u ON u.peer = s.peer
                 WHERE s.status = 'queued' AND s.now = 0 AND s.seq > COALESCE(u.upto, 0)
                 ORDER BY s.seq LIMIT ?1",
            )?;
            let found = read(q.query(params![max as i64])?, max_bytes)?;
            Ok(up_to_bytes(found, max_bytes))
        })
    }

    /// Queued messages to `peer` become failed (they will not be sent):
    /// for `forget` and `block`. Returns how many.
    pub(crate) fn drop_queued(&self, peer: &str) -> Result<u64> {
        self.db.with_conn(|c| {
            let tx = c.transaction()?;
            let plain = tx.execute(
                "UPDATE sent SET status = 'failed'
                 WHERE peer = ?1 AND status = 'queued' AND seq > ?2 AND now = 0",
                params![peer, upto(&tx, peer)?],
            )?;
            let now = tx.execute(
                "UPDATE sent SET status = 'failed'
                 WHERE now != 0 AND status = 'queued' AND peer = ?1",
                [peer],
            )?;
            tx.commit()?;
            Ok((plain + now) as u64)
        })
    }

    /// The status of one message.
    #[cfg(test)]
    pub(crate) fn status(&self, seq: u64) -> Result<Option<Status>> {
        use rusqlite::OptionalExtension;
        self.db.with_conn(|c| {
            let row = c
                .query_row(
                    "SELECT peer, status, now FROM sent WHERE seq = ?1",
                    [i(seq)],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((peer, status, now)) = row else {
                return Ok(None);
            };
            Ok(Some(effective(&status, now, i(seq), upto(c, &peer)?)))
        })
    }
}

/// The rows `found` yields until their texts pass `max_bytes` (the row
/// that passes it included, so [`up_to_bytes`] of a merge can keep at least
/// one): a bounded read, however long the texts.
fn read(mut found: rusqlite::Rows<'_>, max_bytes: usize) -> rusqlite::Result<Vec<Row>> {
    let (mut rows, mut bytes) = (Vec::new(), 0usize);
    while let Some(r) = found.next()? {
        let r = row(r)?;
        bytes = bytes.saturating_add(r.text.len());
        rows.push(r);
        if bytes > max_bytes {
            break;
        }
    }
    Ok(rows)
}

/// The first of `rows` until their texts pass `max_bytes` (at least one
/// row, however long).
fn up_to_bytes(mut rows: Vec<Row>, max_bytes: usize) -> Vec<Row> {
    let mut bytes = 0usize;
    let keep = rows
        .iter()
        .position(|r| {
            bytes = bytes.saturating_add(r.text.len());
            bytes > max_bytes
        })
        .map_or(rows.len(), |n| n.max(1));
    rows.truncate(keep);
    rows
}

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
//! Calls block (SQLite, `synchronous=FULL`): run them on the blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::params;

use crate::error::Result;
use crate::inbox::Inbox;

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
    fn parse(s: &str) -> Status {
        match s {
            "delivered" => Status::Delivered,
            "queued" => Status::Queued,
            _ => Status::Failed,
        }
    }
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
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO sent (peer, mid, text, at_ms, now, announced)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for text in texts {
                    let mid = self.next_mid.fetch_add(1, Ordering::Relaxed);
                    insert.execute(params![peer, mid as i64, text, at_ms, i(now), announced])?;
                    rows.push(Row {
                        seq: tx.last_insert_rowid() as u64,
                        peer: peer.to_string(),
                        mid,
                        text: text.clone(),
                        at_ms,
                    });
                }
            }
            tx.commit()?;
            Ok(rows)
        })
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
            let mut q = c.prepare_cached(&format!(
                "SELECT {ROW} FROM sent WHERE peer = ?1 AND status = 'queued' AND seq > ?2
                 AND (now = 0 OR now = ?3) ORDER BY seq LIMIT ?4"
            ))?;
            let mut found = q.query(params![peer, i(after), i(session), max as i64])?;
            up_to_bytes(&mut found, max_bytes)
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
            let mut q = c.prepare_cached(
                "UPDATE sent SET status = 'delivered', delivered_ms = ?5
                 WHERE peer = ?1 AND status = 'queued' AND seq > ?2 AND seq <= ?3
                 AND (now = 0 OR now = ?4) RETURNING seq, announced",
            )?;
            let rows = q.query_map(params![peer, i(after), i(upto), i(session), now_ms], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, bool>(1)?))
            })?;
            let mut announced = Vec::new();
            for r in rows {
                let (seq, told) = r?;
                if told {
                    announced.push(seq);
                }
            }
            announced.sort_unstable();
            Ok(announced)
        })
    }

    /// Session `session` ended: its `--now` messages still queued failed.
    pub(crate) fn fail_session(&self, session: u64) -> Result<u64> {
        self.db.with_conn(|c| {
            c.execute(
                "UPDATE sent SET status = 'failed' WHERE status = 'queued' AND now = ?1",
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
            let set = if fail {
                "UPDATE sent SET status = 'failed' WHERE status = 'queued' AND seq BETWEEN ?1 AND ?2"
            } else {
                "UPDATE sent SET announced = 1 WHERE status = 'queued' AND seq BETWEEN ?1 AND ?2"
            };
            tx.execute(set, params![i(first), i(last)])?;
            let out = {
                let mut q = tx.prepare_cached(
                    "SELECT seq, status FROM sent WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
                )?;
                let rows = q.query_map(params![i(first), i(last)], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                })?;
                rows.map(|r| r.map(|(s, st)| (s, Status::parse(&st))))
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            Ok(out)
        })
    }

    /// How many of `seq`s `first..=last` are still queued.
    pub(crate) fn still_queued(&self, first: u64, last: u64) -> Result<u64> {
        self.db.with_conn(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sent WHERE status = 'queued' AND seq BETWEEN ?1 AND ?2",
                params![i(first), i(last)],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }

    /// Queued messages of every peer, oldest first: at most `max`, and no
    /// more than `max_bytes` of text (at least one). Plain ones only: a
    /// `--now` message is not waiting for anything.
    pub(crate) fn queued(&self, max: usize, max_bytes: usize) -> Result<Vec<Row>> {
        self.db.with_conn(|c| {
            let mut q = c.prepare_cached(&format!(
                "SELECT {ROW} FROM sent WHERE status = 'queued' AND now = 0 ORDER BY seq LIMIT ?1"
            ))?;
            let mut found = q.query(params![max as i64])?;
            up_to_bytes(&mut found, max_bytes)
        })
    }

    /// Queued messages to `peer` become failed (they will not be sent):
    /// for `forget` and `block`. Returns how many.
    pub(crate) fn drop_queued(&self, peer: &str) -> Result<u64> {
        self.db.with_conn(|c| {
            c.execute(
                "UPDATE sent SET status = 'failed' WHERE peer = ?1 AND status = 'queued'",
                [peer],
            )
            .map(|n| n as u64)
        })
    }

    /// The status of one message.
    #[cfg(test)]
    pub(crate) fn status(&self, seq: u64) -> Result<Option<Status>> {
        use rusqlite::OptionalExtension;
        self.db.with_conn(|c| {
            c.query_row("SELECT status FROM sent WHERE seq = ?1", [i(seq)], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map(|s| s.map(|s| Status::parse(&s)))
        })
    }
}

/// Parses a `status` column (for `history`).
pub(crate) fn parse_status(s: &str) -> Status {
    Status::parse(s)
}

/// The rows `found` yields until their texts pass `max_bytes` (at least
/// one row, however long).
fn up_to_bytes(found: &mut rusqlite::Rows<'_>, max_bytes: usize) -> rusqlite::Result<Vec<Row>> {
    let (mut rows, mut bytes) = (Vec::new(), 0usize);
    while let Some(r) = found.next()? {
        let r = row(r)?;
        bytes = bytes.saturating_add(r.text.len());
        if !rows.is_empty() && bytes > max_bytes {
            break;
        }
        rows.push(r);
    }
    Ok(rows)
}

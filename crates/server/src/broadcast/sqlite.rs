//! The embedded [`BroadcastStore`]: two tables in `state.db` (WAL,
//! `synchronous=FULL`). Every call blocks; callers run them on the blocking
//! pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection};

use super::{Broadcast, BroadcastStore, Purged};
use crate::error::{Result, ServerError};

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
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(self.err())?;
        rows.map(|row| {
            let (id, from, text, sent_ms, expires_ms) = row.map_err(self.err())?;
            Broadcast::new(id, from, text, sent_ms, expires_ms)
        })
        .collect()
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

    fn purge(&self, now_ms: i64) -> Result<Purged> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(self.err())?;
        let undelivered: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM broadcasts b WHERE b.expires_ms <= ?1 AND EXISTS
                     (SELECT 1 FROM broadcast_acks a WHERE a.upto < b.id AND a.user <> b.sender)",
                params![now_ms],
                |row| row.get(0),
            )
            .map_err(self.err())?;
        let deleted = tx
            .execute(
                "DELETE FROM broadcasts WHERE expires_ms <= ?1",
                params![now_ms],
            )
            .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(Purged {
            deleted,
            undelivered: undelivered.max(0) as usize,
        })
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
        s.ack(&[("carol".into(), a)]).unwrap();
        // a: carol has it; b: carol never acknowledged it.
        let purged = s.purge(2_000).unwrap();
        assert_eq!(
            purged,
            Purged {
                deleted: 2,
                undelivered: 1
            }
        );
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

//! The inbox (SPEC §5): every received message (and, later, broadcast) is
//! committed here — WAL, `synchronous=FULL`, so on disk — *before* it is
//! acknowledged to the sender. What was acknowledged survives `kill -9`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use p2p_proto::ctl::{InboxEntry, InboxKind};
use p2p_proto::time::rfc3339;
use rusqlite::{params, Connection};

use crate::error::{DaemonError, Result};

/// Database file in the state directory.
pub const INBOX_DB: &str = "inbox.db";

/// A received message, before it is stored.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The sender's id for it.
    pub id: u64,
    /// The text.
    pub text: String,
    /// When it was sent, Unix ms.
    pub at_ms: i64,
}

/// The inbox database. Cheap to clone; calls block (use `spawn_blocking`
/// on hot paths).
#[derive(Clone)]
pub struct Inbox {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

fn kind_str(k: InboxKind) -> &'static str {
    match k {
        InboxKind::Message => "message",
        InboxKind::Broadcast => "broadcast",
    }
}

/// SQLite opens a 0-byte file as an empty database, so an inbox emptied by
/// accident (a truncating copy, a full disk, a bad restore) would start
/// empty without a word. It is refused instead, naming the file. A new
/// inbox is made under a temporary name and renamed into place once SQLite
/// wrote its header, so a 0-byte `inbox.db` is never one p2pd made.
fn refuse_empty_or_create(path: &Path) -> Result<()> {
    let err = |source: rusqlite::Error| DaemonError::Format {
        path: path.to_path_buf(),
        message: source.to_string(),
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => Err(DaemonError::Format {
            path: path.to_path_buf(),
            message: "is empty (0 bytes), so the inbox was lost or damaged: restore it from a \
                      backup, or move it away to start with an empty inbox"
                .into(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = path.with_extension("db.new");
            for stale in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{stale}", tmp.display()));
            }
            let conn = Connection::open(&tmp).map_err(err)?;
            // Switching to WAL writes the header (page 1) to the file.
            conn.execute_batch("PRAGMA journal_mode=WAL;")
                .map_err(err)?;
            conn.close().map_err(|(_, e)| err(e))?;
            let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&tmp).map_err(DaemonError::file(&tmp))?;
            std::fs::rename(&tmp, path).map_err(DaemonError::file(path))?;
            let dir = path.parent().unwrap_or(Path::new("."));
            sync(dir).map_err(DaemonError::file(dir))
        }
        Err(e) => Err(DaemonError::file(path)(e)),
    }
}

impl Inbox {
    /// Opens (creating, 0600) the inbox in `state_dir`; refuses a 0-byte one.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join(INBOX_DB);
        refuse_empty_or_create(&path)?;
        let err = |source: rusqlite::Error| DaemonError::Format {
            path: path.clone(),
            message: source.to_string(),
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS inbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 kind TEXT NOT NULL,
                 peer TEXT NOT NULL,
                 msg_id INTEGER NOT NULL,
                 text TEXT NOT NULL,
                 at_ms INTEGER NOT NULL,
                 read INTEGER NOT NULL DEFAULT 0
             );
             CREATE INDEX IF NOT EXISTS inbox_unread ON inbox(read, seq);
             DROP INDEX IF EXISTS inbox_broadcast_once;
             CREATE UNIQUE INDEX IF NOT EXISTS inbox_broadcast_unique
                 ON inbox(msg_id, peer, at_ms) WHERE kind = 'broadcast';",
        )
        .map_err(err)?;
        for f in [
            path.clone(),
            state_dir.join(format!("{INBOX_DB}-wal")),
            state_dir.join(format!("{INBOX_DB}-shm")),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600));
        }
        Ok(Inbox {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DaemonError + '_ {
        |e| DaemonError::Format {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Stores a batch from one peer in one transaction; returns the entries
    /// as stored (with their inbox `seq`). Durable when this returns.
    pub fn store(
        &self,
        kind: InboxKind,
        peer: &str,
        batch: &[Incoming],
    ) -> Result<Vec<InboxEntry>> {
        let mut conn = self.conn.lock().expect("inbox poisoned");
        let tx = conn.transaction().map_err(self.err())?;
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO inbox (kind, peer, msg_id, text, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(self.err())?;
            for m in batch {
                insert
                    .execute(params![kind_str(kind), peer, m.id as i64, m.text, m.at_ms])
                    .map_err(self.err())?;
                out.push(InboxEntry {
                    kind,
                    from: peer.to_string(),
                    text: m.text.clone(),
                    id: m.id,
                    at: rfc3339(m.at_ms),
                    seq: tx.last_insert_rowid() as u64,
                });
            }
        }
        tx.commit().map_err(self.err())?;
        Ok(out)
    }

    /// Stores a broadcast unless it is already here (delivery is at least
    /// once; the inbox holds each exactly once). A broadcast is the same one
    /// when id, sender and send time all match: a redelivery matches, while a
    /// different broadcast reusing an id (another server, or a server whose
    /// state was reset) does not. Returns the entry if
    /// it is new. Durable when this returns.
    pub fn store_broadcast(&self, from: &str, m: &Incoming) -> Result<Option<InboxEntry>> {
        let conn = self.conn.lock().expect("inbox poisoned");
        let added = conn
            .execute(
                "INSERT OR IGNORE INTO inbox (kind, peer, msg_id, text, at_ms) VALUES ('broadcast', ?1, ?2, ?3, ?4)",
                params![from, m.id as i64, m.text, m.at_ms],
            )
            .map_err(self.err())?;
        Ok((added == 1).then(|| InboxEntry {
            kind: InboxKind::Broadcast,
            from: from.to_string(),
            text: m.text.clone(),
            id: m.id,
            at: rfc3339(m.at_ms),
            seq: conn.last_insert_rowid() as u64,
        }))
    }

    /// One page of entries (unread only unless `all`), optionally from one
    /// user, with `seq` above `after`, oldest first, holding at most
    /// `max_bytes` of text (and at least one entry). The unread ones
    /// returned — and only those — become read. The flag says whether more
    /// entries follow.
    pub fn take(
        &self,
        all: bool,
        from: Option<&str>,
        after: u64,
        max_bytes: usize,
    ) -> Result<(Vec<InboxEntry>, bool)> {
        let mut conn = self.conn.lock().expect("inbox poisoned");
        let tx = conn.transaction().map_err(self.err())?;
        let mut entries = Vec::new();
        let mut more = false;
        {
            let mut q = tx
                .prepare_cached(
                    "SELECT seq, kind, peer, msg_id, text, at_ms FROM inbox
                     WHERE (?1 OR read = 0) AND (?2 IS NULL OR peer = ?2) AND seq > ?3 ORDER BY seq",
                )
                .map_err(self.err())?;
            let mut rows = q
                .query(params![all, from, after as i64])
                .map_err(self.err())?;
            let mut bytes = 0;
            while let Some(r) = rows.next().map_err(self.err())? {
                let text: String = r.get(4).map_err(self.err())?;
                if !entries.is_empty() && bytes + text.len() > max_bytes {
                    more = true;
                    break;
                }
                bytes += text.len();
                let kind: String = r.get(1).map_err(self.err())?;
                entries.push(InboxEntry {
                    seq: r.get::<_, i64>(0).map_err(self.err())? as u64,
                    kind: if kind == "broadcast" {
                        InboxKind::Broadcast
                    } else {
                        InboxKind::Message
                    },
                    from: r.get(2).map_err(self.err())?,
                    id: r.get::<_, i64>(3).map_err(self.err())? as u64,
                    text,
                    at: rfc3339(r.get(5).map_err(self.err())?),
                });
            }
        }
        if let Some(last) = entries.last().map(|e| e.seq) {
            tx.execute(
                "UPDATE inbox SET read = 1 WHERE read = 0 AND seq > ?1 AND seq <= ?2 AND (?3 IS NULL OR peer = ?3)",
                params![after as i64, last as i64, from],
            )
            .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        Ok((entries, more))
    }

    /// Marks one entry read (delivered to an `inbox --follow`).
    pub fn mark_read(&self, seq: u64) -> Result<()> {
        let conn = self.conn.lock().expect("inbox poisoned");
        conn.execute(
            "UPDATE inbox SET read = 1 WHERE seq = ?1",
            params![seq as i64],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// Number of unread entries.
    pub fn unread(&self) -> Result<u64> {
        let conn = self.conn.lock().expect("inbox poisoned");
        conn.query_row("SELECT COUNT(*) FROM inbox WHERE read = 0", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, text: &str) -> Incoming {
        Incoming {
            id,
            text: text.into(),
            at_ms: 1_000 * id as i64,
        }
    }

    #[test]
    fn pages_by_bytes_and_marks_only_what_was_shown() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap();
        let batch: Vec<Incoming> = (1..=10).map(|i| msg(i, "0123456789")).collect();
        inbox.store(InboxKind::Message, "bob", &batch).unwrap();
        let (page, more) = inbox.take(false, None, 0, 35).unwrap();
        assert_eq!((page.len(), more), (3, true));
        assert_eq!(
            inbox.unread().unwrap(),
            7,
            "only the shown page became read"
        );
        let (rest, more) = inbox.take(false, None, page[2].seq, 1000).unwrap();
        assert_eq!((rest.len(), more), (7, false));
        // A single entry over the budget still comes (alone).
        let (one, more) = inbox.take(true, None, 0, 1).unwrap();
        assert_eq!((one.len(), more), (1, true));
    }

    #[test]
    fn store_take_and_mark_read() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap();
        let stored = inbox
            .store(InboxKind::Message, "bob", &[msg(1, "héllo"), msg(2, "two")])
            .unwrap();
        assert_eq!(stored[0].seq + 1, stored[1].seq);
        inbox
            .store(InboxKind::Message, "carol", &[msg(1, "hi")])
            .unwrap();
        assert_eq!(inbox.unread().unwrap(), 3);
        let from_bob = inbox.take(false, Some("bob"), 0, usize::MAX).unwrap().0;
        assert_eq!(
            from_bob.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
            ["héllo", "two"]
        );
        assert_eq!(inbox.unread().unwrap(), 1);
        assert_eq!(inbox.take(false, None, 0, usize::MAX).unwrap().0.len(), 1);
        assert!(inbox.take(false, None, 0, usize::MAX).unwrap().0.is_empty());
        assert_eq!(inbox.take(true, None, 0, usize::MAX).unwrap().0.len(), 3);
        // Broadcasts are kept once, however often they arrive.
        let b = msg(7, "maintenance at 18:00");
        assert!(inbox.store_broadcast("admin", &b).unwrap().is_some());
        assert!(inbox.store_broadcast("admin", &b).unwrap().is_none());
        // Same id, but a different broadcast (say, from a reset server).
        let reused = Incoming {
            at_ms: b.at_ms + 1,
            ..b.clone()
        };
        assert!(inbox.store_broadcast("admin", &reused).unwrap().is_some());
        assert_eq!(inbox.take(false, None, 0, usize::MAX).unwrap().0.len(), 2);
        // Survives reopening.
        drop(inbox);
        assert_eq!(
            Inbox::open(dir.path())
                .unwrap()
                .take(true, None, 0, usize::MAX)
                .unwrap()
                .0
                .len(),
            5
        );
    }
}

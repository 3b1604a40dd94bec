//! The inbox (SPEC §5): every received message (and, later, broadcast) is
//! committed here — WAL, `synchronous=FULL`, so on disk — *before* it is
//! acknowledged to the sender. What was acknowledged survives `kill -9`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{params, Connection};

use crate::error::{DaemonError, Result};

mod checks;
mod schema;
mod size;
pub use checks::refuse_broadcast;
pub(crate) use checks::{fit, lossy};
use size::wire_len;

/// Prepared statements the connection keeps (rusqlite's default is 16).
/// Every table of `inbox.db` shares the one connection, and a `send -`
/// alone cycles through about twenty statements on each side (the
/// multi-row INSERTs among them): with 16, they pushed each other out and
/// were parsed again and again.
const STATEMENT_CACHE: usize = 64;

/// Database file in the state directory.
pub(crate) const INBOX_DB: &str = "inbox.db";

/// A received message, before it is stored.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The sender's id for it.
    pub id: u64,
    /// The text.
    pub text: String,
    /// When it was sent, Unix ms.
    pub at_ms: i64,
    /// The sender's durable id for it (`PeerMsg::Message.mid`): a message
    /// arriving again with the same one (resent from the sender's outbox
    /// after a crash or a lost ack) is not stored twice.
    pub mid: Option<u64>,
}

/// What an entry is (its `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// From a peer session.
    Message,
    /// From the server's broadcast.
    Broadcast,
}

/// An entry as stored. The inbox knows nothing of the control protocol:
/// the control boundary makes its `InboxEntry` from this
/// (`handlers::inbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its position in this inbox (increasing).
    pub seq: u64,
    /// Message or broadcast.
    pub(crate) kind: Kind,
    /// The sender.
    pub(crate) from: String,
    /// The sender's id for it.
    pub id: u64,
    /// The text, as received.
    pub text: String,
    /// When it was sent, Unix ms, as stored (any value: old rows may hold
    /// times RFC 3339 cannot show; the formatting clamps).
    pub(crate) at_ms: i64,
}

/// The inbox database. Cheap to clone; calls block (use `spawn_blocking`
/// on hot paths).
#[derive(Clone)]
pub struct Inbox {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

fn kind_str(k: Kind) -> &'static str {
    match k {
        Kind::Message => "message",
        Kind::Broadcast => "broadcast",
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
        schema::migrate(&conn).map_err(err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
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

    /// Runs `f` on the database connection, under its lock, turning SQLite
    /// errors into errors naming the file: for the other tables that live in
    /// `inbox.db` (contacts, sent messages), so one file holds everything a
    /// person would back up and one lock orders every write.
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock();
        f(&mut conn).map_err(self.err())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DaemonError + '_ {
        |e| DaemonError::Format {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The connection. A panic while it was held cannot have left it half
    /// changed: every write runs in a transaction that rusqlite rolls back
    /// when dropped during unwinding, and nothing that can panic on input
    /// (formatting, parsing) runs under this lock. So poisoning carries no
    /// information here, and is ignored rather than turning one bad value
    /// into "every later store fails until restart".
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a batch from one peer in one transaction; returns the entries
    /// newly stored (with their inbox `seq`): a message whose `mid` is
    /// already here from this peer is a repeat and is left out (it is still
    /// acknowledged by the caller). Durable when this returns.
    pub fn store(&self, kind: Kind, peer: &str, batch: &[Incoming]) -> Result<Vec<Stored>> {
        let recv_ms = p2p_proto::time::now_ms();
        let mut stored = Vec::with_capacity(batch.len());
        {
            let mut conn = self.lock();
            let tx = conn.transaction().map_err(self.err())?;
            let mut chunks = batch.chunks_exact(INSERT_ROWS);
            let mut at = 0;
            for chunk in &mut chunks {
                insert_rows(&tx, kind, peer, recv_ms, chunk, at, &mut stored)
                    .map_err(self.err())?;
                at += chunk.len();
            }
            for m in chunks.remainder() {
                insert_rows(
                    &tx,
                    kind,
                    peer,
                    recv_ms,
                    std::slice::from_ref(m),
                    at,
                    &mut stored,
                )
                .map_err(self.err())?;
                at += 1;
            }
            tx.commit().map_err(self.err())?;
        }
        Ok(stored
            .into_iter()
            .map(|(i, seq)| entry(kind, peer, &batch[i], seq))
            .collect())
    }

    /// Stores a broadcast unless it is already here (delivery is at least
    /// once; the inbox holds each exactly once). A broadcast is the same one
    /// when id, sender and send time all match: a redelivery matches, while a
    /// different broadcast reusing an id (another server, or a server whose
    /// state was reset) does not. Returns the entry if
    /// it is new. Durable when this returns.
    pub fn store_broadcast(&self, from: &str, m: &Incoming) -> Result<Option<Stored>> {
        let seq = {
            let conn = self.lock();
            let added = conn
                .execute(
                    "INSERT OR IGNORE INTO inbox (kind, peer, msg_id, text, at_ms) VALUES ('broadcast', ?1, ?2, ?3, ?4)",
                    params![from, m.id as i64, m.text, m.at_ms],
                )
                .map_err(self.err())?;
            (added == 1).then(|| conn.last_insert_rowid() as u64)
        };
        Ok(seq.map(|seq| entry(Kind::Broadcast, from, m, seq)))
    }

    /// One page of entries (unread only unless `all`), optionally from one
    /// user, with `seq` above `after`, oldest first, whose JSON takes at
    /// most `max_bytes` as sent (each entry counted by `size::wire_len`; at least
    /// one entry however long). Marks nothing read: the caller does that
    /// with [`Inbox::mark_read_upto`] once the client has the page. The flag
    /// says whether more entries follow.
    pub fn page(
        &self,
        all: bool,
        from: Option<&str>,
        after: u64,
        max_bytes: usize,
    ) -> Result<(Vec<Stored>, bool)> {
        let mut rows = Vec::new();
        let mut more = false;
        {
            let conn = self.lock();
            let mut q = conn
                .prepare_cached(
                    "SELECT seq, kind, peer, msg_id, text, at_ms FROM inbox
                     WHERE (?1 OR read = 0) AND (?2 IS NULL OR peer = ?2) AND seq > ?3 ORDER BY seq",
                )
                .map_err(self.err())?;
            let mut found = q
                .query(params![all, from, after.min(i64::MAX as u64) as i64])
                .map_err(self.err())?;
            let mut bytes = 0usize;
            while let Some(r) = found.next().map_err(self.err())? {
                // Read as found: a damaged or hand-edited file may hold
                // anything, and one bad row must not make the inbox unreadable.
                let peer = lossy(r.get_ref(2).map_err(self.err())?);
                let text = fit(lossy(r.get_ref(4).map_err(self.err())?));
                let len = wire_len(&peer, &text);
                if !rows.is_empty() && bytes.saturating_add(len) > max_bytes {
                    more = true;
                    break;
                }
                bytes = bytes.saturating_add(len);
                let kind: String = r.get(1).map_err(self.err())?;
                rows.push(Stored {
                    seq: r.get::<_, i64>(0).map_err(self.err())? as u64,
                    kind: if kind == "broadcast" {
                        Kind::Broadcast
                    } else {
                        Kind::Message
                    },
                    from: peer,
                    id: r.get_ref(3).map_err(self.err())?.as_i64().unwrap_or(0) as u64,
                    text,
                    at_ms: r.get_ref(5).map_err(self.err())?.as_i64().unwrap_or(0),
                });
            }
        }
        Ok((rows, more))
    }

    /// Marks every unread entry (from `from`, if given) with `seq` up to
    /// `upto` read: the client has received everything up to there. Returns
    /// how many became read.
    pub(crate) fn mark_read_upto(&self, from: Option<&str>, upto: u64) -> Result<u64> {
        let conn = self.lock();
        let n = conn
            .execute(
                "UPDATE inbox SET read = 1 WHERE read = 0 AND seq <= ?1 AND (?2 IS NULL OR peer = ?2)",
                params![upto.min(i64::MAX as u64) as i64, from],
            )
            .map_err(self.err())?;
        Ok(n as u64)
    }

    /// Marks one entry read (delivered to an `inbox --follow`).
    pub(crate) fn mark_read(&self, seq: u64) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "UPDATE inbox SET read = 1 WHERE seq = ?1",
            params![seq as i64],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// Number of unread entries.
    pub(crate) fn unread(&self) -> Result<u64> {
        let conn = self.lock();
        conn.query_row("SELECT COUNT(*) FROM inbox WHERE read = 0", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(self.err())
    }
}

/// Rows per INSERT in [`Inbox::store`] (a batch's last `len % INSERT_ROWS`
/// go one per statement). One statement per row spent much of the
/// receiver's CPU on running a statement (binding, opening a cursor on the
/// table and each index) rather than on the rows; 64 rows take 259
/// parameters, far below SQLite's limit of 32 766, and two statements stay
/// in the cache.
const INSERT_ROWS: usize = 64;

/// Inserts `rows` (`batch[at..]`) with one statement, unless one of the
/// same peer and `mid` (or the same broadcast) is there, and adds
/// `(index in batch, seq)` of each new one to `stored`, in order.
fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    kind: Kind,
    peer: &str,
    recv_ms: i64,
    rows: &[Incoming],
    at: usize,
    stored: &mut Vec<(usize, u64)>,
) -> rusqlite::Result<()> {
    use rusqlite::types::ToSql;
    // ?1 kind, ?2 peer, ?3 recv_ms, then four per row.
    let values: Vec<String> = (0..rows.len())
        .map(|r| {
            let p = 4 + 4 * r;
            format!("(?1, ?2, ?{p}, ?{}, ?{}, ?{}, ?3)", p + 1, p + 2, p + 3)
        })
        .collect();
    let sql = format!(
        "INSERT OR IGNORE INTO inbox (kind, peer, msg_id, text, at_ms, mid, recv_ms)
         VALUES {}",
        values.join(", ")
    );
    let mut insert = tx.prepare_cached(&sql)?;
    // SQLite integers are signed: the 64 bits are kept as they are.
    let ints: Vec<[i64; 2]> = rows.iter().map(|m| [m.id as i64, m.at_ms]).collect();
    let mids: Vec<Option<i64>> = rows.iter().map(|m| m.mid.map(|v| v as i64)).collect();
    let kind = kind_str(kind);
    let mut params: Vec<&dyn ToSql> = vec![&kind, &peer, &recv_ms];
    for (r, m) in rows.iter().enumerate() {
        params.extend([&ints[r][0] as &dyn ToSql, &m.text, &ints[r][1], &mids[r]]);
    }
    // Rows are never deleted, and this transaction is the only writer:
    // what this statement adds is what comes after the last `seq` now.
    let before: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM inbox")?
        .query_row([], |r| r.get(0))?;
    let added = insert.execute(&params[..])?;
    if added == rows.len() {
        // All new (the usual case): one statement's `seq`s are consecutive.
        let first = tx.last_insert_rowid() as u64 + 1 - added as u64;
        stored.extend((0..added).map(|r| (at + r, first + r as u64)));
        return Ok(());
    }
    if added == 0 {
        return Ok(());
    }
    let mut q =
        tx.prepare_cached("SELECT seq, msg_id, at_ms, mid FROM inbox WHERE seq > ?1 ORDER BY seq")?;
    let new = q
        .query_map([before], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Walk the rows in order: a row was stored if the next new one has
    // its values. A row left out repeats one already there (its `mid`, or
    // a broadcast's id and time), so no later row with the same values is
    // new either: the next new one with them is this row.
    let mut next = new.into_iter().peekable();
    for (r, (&[id, t], &mid)) in ints.iter().zip(&mids).enumerate() {
        if let Some((seq, ..)) = next.next_if(|&(_, i, u, m)| (i, u, m) == (id, t, mid)) {
            stored.push((at + r, seq as u64));
        }
    }
    Ok(())
}

fn entry(kind: Kind, from: &str, m: &Incoming, seq: u64) -> Stored {
    Stored {
        seq,
        kind,
        from: from.to_string(),
        id: m.id,
        text: m.text.clone(),
        at_ms: m.at_ms,
    }
}

#[cfg(test)]
mod tests;

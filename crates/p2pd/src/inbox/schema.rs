//! Columns added to the `inbox` table after its first release, added to an
//! existing `inbox.db` when it is opened (SQLite has no `ADD COLUMN IF NOT
//! EXISTS`: `pragma table_info` says what is there).

use rusqlite::Connection;

/// Adds `mid` (the sender's durable message id, SPEC §11) and `recv_ms`
/// (when it arrived, for `history`) where missing, the index that keeps
/// each `(peer, mid)` once, and one by peer for the rows without a `mid`. Old rows keep NULL in both: they were stored
/// once already, and `history` orders them by their send time.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let mut cols = Vec::new();
    {
        let mut q = conn.prepare("SELECT name FROM pragma_table_info('inbox')")?;
        let rows = q.query_map([], |r| r.get::<_, String>(0))?;
        for r in rows {
            cols.push(r?);
        }
    }
    for (col, ty) in [("mid", "INTEGER"), ("recv_ms", "INTEGER")] {
        if !cols.iter().any(|c| c == col) {
            conn.execute_batch(&format!("ALTER TABLE inbox ADD COLUMN {col} {ty};"))?;
        }
    }
    // `history USER` reads one peer's messages: without an index by peer it
    // would scan the whole inbox. Rows with a `mid` (every message since
    // the outbox) are found by `inbox_peer_mid`, so the index by peer holds
    // only those without one (older messages, broadcasts): one index less
    // to write per received message (`send -` spends most of the
    // receiver's CPU inserting rows). `inbox_peer` (every row) was that
    // index before.
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS inbox_peer_mid
             ON inbox(peer, mid) WHERE mid IS NOT NULL;
         CREATE INDEX IF NOT EXISTS inbox_peer_no_mid ON inbox(peer, seq) WHERE mid IS NULL;
         DROP INDEX IF EXISTS inbox_peer;",
    )
}

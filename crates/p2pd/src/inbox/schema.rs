//! Columns added to the `inbox` table after its first release, added to an
//! existing `inbox.db` when it is opened (SQLite has no `ADD COLUMN IF NOT
//! EXISTS`: `pragma table_info` says what is there).

use rusqlite::Connection;

/// Adds `mid` (the sender's durable message id, SPEC §11) and `recv_ms`
/// (when it arrived, for `history`) where missing, the index that keeps
/// each `(peer, mid)` once, and one by peer. Old rows keep NULL in both: they were stored
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
    // `history USER` reads one peer's messages: without this it would scan
    // the whole inbox.
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS inbox_peer_mid
             ON inbox(peer, mid) WHERE mid IS NOT NULL;
         CREATE INDEX IF NOT EXISTS inbox_peer ON inbox(peer, seq);",
    )
}

//! The schema migrations: plain SQL files in `crates/server/migrations`,
//! compiled in, applied in order, each once, recorded in
//! `schema_migrations`. Instances starting together take an advisory lock,
//! so exactly one applies them and the others see them applied.

use super::{PgError, PgPool};

/// Every migration, in order: (version, name, SQL). Append only.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "shared_state",
        include_str!("../../migrations/0001_shared_state.sql"),
    ),
    (
        2,
        "cluster",
        include_str!("../../migrations/0002_cluster.sql"),
    ),
    (
        3,
        "invitations",
        include_str!("../../migrations/0003_invitations.sql"),
    ),
    (
        4,
        "broadcast_text_bytes",
        include_str!("../../migrations/0004_broadcast_text_bytes.sql"),
    ),
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Key of the advisory lock serialising migrations across instances
/// (an arbitrary constant: "p2pmigr" in ASCII).
const LOCK_KEY: i64 = 0x0070_3270_6d69_6772;

/// Brings the database up to [`SCHEMA_VERSION`]; returns the versions it
/// applied. Refuses a database migrated by a newer build.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i32>, PgError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(PgError::Schema(format!(
            "the database is at version {current}, newer than this p2p-server ({SCHEMA_VERSION}): \
             upgrade p2p-server"
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

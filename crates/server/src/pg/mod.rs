//! The shared PostgreSQL backend (SPEC §9): the connection pool, the schema
//! migrations (`crates/server/migrations`), the broadcast store, accounts
//! with resume tokens, and the shared TLS identity. Chosen by `--database`;
//! what instances do with each other on top of it is `crate::cluster`.
//!
//! The driver is tokio-postgres with a deadpool pool; every query is async.
//! [`PgBroadcasts`] also implements the synchronous [`BroadcastStore`]
//! (crate::broadcast::BroadcastStore) the hub calls today on the blocking
//! pool, by blocking on the async query there.

mod accounts;
mod broadcasts;
mod identity;
mod migrate;
#[cfg(test)]
mod tests;
mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use accounts::{PgAccounts, PgTokens};
pub use broadcasts::PgBroadcasts;
pub(crate) use broadcasts::BROADCAST_CHANNEL;
pub use identity::{shared_identity, PemIdentity};
pub use migrate::{migrate, SCHEMA_VERSION};
pub(crate) use tls::db_tls;
pub use tls::DbTls;

/// Connections one instance keeps to the database: enough for the ack
/// writer, the purger, catch-ups and logins at once, while three instances
/// stay far below PostgreSQL's default `max_connections` (100).
pub const POOL_SIZE: usize = 16;
/// How long a query waits for a free pooled connection, or for a new one
/// to be made, before it fails (the database is down or saturated: fail the
/// one request rather than hang the session).
pub const POOL_WAIT: Duration = Duration::from_secs(10);
/// Name this server's connections carry in `pg_stat_activity`.
const APPLICATION_NAME: &str = "p2p-server";

/// What can go wrong talking to PostgreSQL. Never carries the URL (it may
/// hold a password).
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The `--database` URL does not parse.
    #[error("database URL: {0}")]
    Url(String),
    /// A query or a connection failed.
    #[error("PostgreSQL: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// No connection from the pool in time, or the pool could not make one.
    #[error("PostgreSQL pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The schema in the database cannot be used by this build.
    #[error("database schema: {0}")]
    Schema(String),
    /// A row's JSON (reach, session event) does not encode or decode.
    #[error("JSON in the database: {0}")]
    Json(#[from] serde_json::Error),
    /// TLS to the database cannot be set up as asked.
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
    /// The LISTEN connection ended.
    #[error("PostgreSQL closed the LISTEN connection")]
    ListenClosed,
}

/// The connection settings `url` (`postgres://` or `postgresql://`) gives,
/// with `application` as the name `pg_stat_activity` shows. Checks the URL
/// without connecting.
pub(crate) fn connection_config(
    url: &str,
    application: &str,
) -> Result<tokio_postgres::Config, PgError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(PgError::Url(
            "must start with postgres:// or postgresql://".into(),
        ));
    }
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| PgError::Url(e.to_string()))?;
    config.application_name(application);
    config.connect_timeout(POOL_WAIT);
    Ok(config)
}

/// A pool of connections to the shared database.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
}

impl PgPool {
    /// Makes the pool for `url` (`postgres://` or `postgresql://`); connects
    /// lazily, on first use. Must be called within a tokio runtime.
    pub fn new(url: &str) -> Result<PgPool, PgError> {
        Self::secured(url, None)
    }

    /// [`PgPool::new`] with TLS verified against the CA in `ca`, if given
    /// (see `tls.rs`).
    pub fn secured(url: &str, ca: Option<&std::path::Path>) -> Result<PgPool, PgError> {
        let mut config = connection_config(url, APPLICATION_NAME)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match db_tls(&mut config, ca)? {
            DbTls::Plain => Manager::from_config(config, NoTls, manager_config),
            DbTls::Verified(tls) => Manager::from_config(config, tls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| PgError::Url(e.to_string()))?;
        Ok(PgPool { pool })
    }

    /// A pooled connection.
    pub(crate) async fn get(&self) -> Result<deadpool_postgres::Object, PgError> {
        Ok(self.pool.get().await?)
    }
}

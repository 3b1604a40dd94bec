//! `p2p-server user add|remove|passwd|list|import --database URL` (SPEC §9):
//! the account commands against the shared PostgreSQL accounts, and the
//! import of an embedded install's `users.csv`. The prompts, validation and
//! output are the embedded commands' own (cli.rs); only the store differs.

use std::collections::HashSet;
use std::path::Path;

use argon2::PasswordHash;
use p2p_proto::names::validate_username;

use crate::error::{Result, ServerError};
use crate::pg::{migrate, PgAccounts, PgError, PgPool};
use crate::users::UserRecord;

/// Most lines one `user import` takes: far above any campus (the embedded
/// store is meant for thousands), while a wrong file (a log, a dump) is
/// refused before it is held in memory and sent as one transaction.
pub(crate) const MAX_IMPORT_LINES: usize = 1_000_000;

/// `url` with its password (and any query string, which may carry one)
/// replaced, fit to echo in an error message.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "<the database URL>".into(),
    };
    let (rest, had_query) = match rest.split_once('?') {
        Some((r, _)) => (r, true),
        None => (rest, false),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let query = if had_query { "?***" } else { "" };
    format!("{scheme}://{authority}{path}{query}")
}

/// A connection to the accounts in `url`, migrated, on a runtime of its own
/// (the admin commands are otherwise synchronous).
pub(crate) struct PgAdmin {
    runtime: tokio::runtime::Runtime,
    accounts: PgAccounts,
    pool: PgPool,
}

impl PgAdmin {
    /// Connects and migrates. A malformed URL is a usage error (exit 2); a
    /// database that cannot be reached or used is an error (exit 1). The
    /// message names the URL without its password.
    pub(crate) fn connect(url: &str, ca: Option<&std::path::Path>) -> Result<PgAdmin> {
        let shown = redact_url(url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ServerError::Io)?;
        let pool = runtime.block_on(async { PgPool::secured(url, ca) });
        let pool = match pool {
            Ok(p) => p,
            Err(e) => return Err(ServerError::Usage(format!("--database {shown}: {e}"))),
        };
        runtime
            .block_on(migrate(&pool))
            .map_err(|e| ServerError::Config(format!("database {shown}: {}", pg_reason(&e))))?;
        Ok(PgAdmin {
            runtime,
            accounts: PgAccounts::new(pool.clone()),
            pool,
        })
    }

    /// `user add`.
    pub(crate) fn add(&self, name: &str, password: &str) -> Result<()> {
        self.runtime.block_on(self.accounts.add(name, password))
    }

    /// `user remove` (the schema drops the user's tokens and presence).
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        self.runtime.block_on(self.accounts.remove(name))
    }

    /// `user passwd` (tokens are bound to the old hash and stop checking).
    pub(crate) fn passwd(&self, name: &str, password: &str) -> Result<()> {
        self.runtime.block_on(self.accounts.passwd(name, password))
    }

    /// `user list`.
    pub(crate) fn list(&self) -> Result<Vec<UserRecord>> {
        self.runtime.block_on(self.accounts.list())
    }

    /// `user import`: every record (checked by [`read_users_csv`]) in one
    /// transaction, or none.
    pub(crate) fn import(&self, records: &[UserRecord]) -> Result<()> {
        self.runtime.block_on(insert_all(&self.pool, records))
    }
}

/// The most useful part of a PostgreSQL error: the server's own message
/// (e.g. "password authentication failed") or the connection failure.
fn pg_reason(e: &PgError) -> String {
    use std::error::Error;
    let reason = e.to_string();
    // Wrappers repeat their sources in their own text; the root cause (the
    // server's message, or the socket error) is what the operator needs.
    let mut root: Option<&dyn Error> = e.source();
    while let Some(next) = root.and_then(Error::source) {
        root = Some(next);
    }
    match root.map(ToString::to_string) {
        Some(r) if !reason.contains(&r) => format!("{reason}: {r}"),
        _ => reason,
    }
}

/// Reads and checks an embedded `users.csv`: the header, then names that
/// pass the rules, argon2id PHC hashes, RFC 3339 times, no name twice. The
/// first bad line refuses the whole file, by line number.
pub(crate) fn read_users_csv(file: &Path) -> Result<Vec<UserRecord>> {
    let f = std::fs::File::open(file).map_err(ServerError::file(file))?;
    let bad = |line: u64, message: String| ServerError::UserFile {
        path: file.to_path_buf(),
        message: format!("line {line}: {message}; nothing imported"),
    };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(f);
    let header = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    if header.iter().collect::<Vec<_>>() != ["username", "hash", "created_at"] {
        return Err(bad(
            1,
            "expected the header username,hash,created_at of users.csv".into(),
        ));
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            bad(line, e.to_string())
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let row: UserRecord = rec
            .deserialize(Some(&header))
            .map_err(|e| bad(line, e.to_string()))?;
        if out.len() >= MAX_IMPORT_LINES {
            return Err(bad(line, format!("more than {MAX_IMPORT_LINES} accounts")));
        }
        validate_username(&row.username).map_err(|e| bad(line, e.to_string()))?;
        let phc = PasswordHash::new(&row.hash)
            .map_err(|e| bad(line, format!("hash of {}: {e}", row.username)))?;
        if phc.algorithm.as_str() != "argon2id" {
            return Err(bad(
                line,
                format!("hash of {} is not argon2id", row.username),
            ));
        }
        // Strict (UTC, "Z"), as users.rs writes it: a time without a zone
        // would be read in the database session's zone.
        humantime::parse_rfc3339(&row.created_at)
            .map_err(|e| bad(line, format!("created_at {:?}: {e}", row.created_at)))?;
        if !seen.insert(row.username.clone()) {
            return Err(bad(line, format!("{} appears twice", row.username)));
        }
        out.push(row);
    }
    Ok(out)
}

/// Inserts every record in one transaction, hashes as they are; refuses
/// (changing nothing) when any name exists already, naming all of them.
async fn insert_all(pool: &PgPool, records: &[UserRecord]) -> Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await.map_err(PgError::from)?;
    let names: Vec<&str> = records.iter().map(|r| r.username.as_str()).collect();
    let clashes: Vec<String> = tx
        .query(
            "SELECT username FROM accounts WHERE username = ANY($1) ORDER BY username",
            &[&names],
        )
        .await
        .map_err(PgError::from)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !clashes.is_empty() {
        return Err(ServerError::Config(format!(
            "already in the database: {}; nothing imported",
            clashes.join(", ")
        )));
    }
    let insert = tx
        .prepare(
            "INSERT INTO accounts (username, phc, created_at)
             VALUES ($1, $2, $3::TEXT::TIMESTAMPTZ)",
        )
        .await
        .map_err(PgError::from)?;
    for r in records {
        tx.execute(&insert, &[&r.username, &r.hash, &r.created_at])
            .await
            .map_err(|e| match e.code() {
                Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    // Added by someone else since the check above.
                    ServerError::UserExists(r.username.clone())
                }
                _ => PgError::from(e).into(),
            })?;
    }
    tx.commit().await.map_err(PgError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_reaches_the_echoed_url() {
        assert_eq!(
            redact_url("postgres://p2p:s3cret@db.example:5432/p2p"),
            "postgres://p2p:***@db.example:5432/p2p"
        );
        assert_eq!(
            redact_url("postgresql://p2p@db/p2p?password=s3cret"),
            "postgresql://p2p@db/p2p?***"
        );
        assert_eq!(redact_url("postgres://db"), "postgres://db");
        assert_eq!(redact_url("s3cret"), "<the database URL>");
        assert_eq!(
            redact_url("postgres://u:p@ss:w@rd@h/d"),
            "postgres://u:***@h/d"
        );
    }

    #[test]
    fn a_bad_line_is_refused_by_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("users.csv");
        let good = crate::users::hash_password("correct horse battery").unwrap();
        std::fs::write(
            &f,
            format!(
                "username,hash,created_at\nalice,\"{good}\",2026-01-01T00:00:00Z\nBad Name,\"{good}\",2026-01-01T00:00:00Z\n"
            ),
        )
        .unwrap();
        let e = read_users_csv(&f).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        std::fs::write(
            &f,
            format!("username,hash,created_at\nalice,\"{good}\",2026-01-01T00:00:00Z\nbob,\"$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\",2026-01-01T00:00:00Z\n"),
        )
        .unwrap();
        let e = read_users_csv(&f).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("argon2id"), "{e}");
        std::fs::write(
            &f,
            format!("username,hash,created_at\nalice,\"{good}\",2026-01-01T00:00:00Z\nalice,\"{good}\",2026-01-01T00:00:00Z\n"),
        )
        .unwrap();
        let e = read_users_csv(&f).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("twice"), "{e}");
    }
}

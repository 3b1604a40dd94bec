//! Resume tokens (SPEC §3): what lets a daemon reconnect after a drop or a
//! server restart without the password and without an argon2 hash.
//!
//! Only a SHA-256 digest of each token is stored, so a copy of the database
//! does not let anyone log in. Each token is bound to a tag of the user's
//! password hash: `p2p-server user passwd` (or removing the account)
//! invalidates every token of that user without touching this database.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use p2p_proto::Secret;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::error::{Result, ServerError};

/// Database file inside the data directory (shared with later stores).
pub(crate) const STATE_DB: &str = "state.db";
/// A token unused for this long stops working: a lost laptop's daemon does
/// not stay logged in forever.
pub(crate) const TOKEN_IDLE_EXPIRY_MS: i64 = 90 * 24 * 3600 * 1000;
/// A token's last-use time is rewritten at most this often, so a mass
/// reconnect after a restart does not become a mass of fsyncs.
pub(crate) const TOKEN_TOUCH_INTERVAL_MS: i64 = 24 * 3600 * 1000;
/// Tokens kept per user (one per device, in practice); the oldest go first.
pub(crate) const MAX_TOKENS_PER_USER: i64 = 16;

pub(crate) fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub(crate) fn password_tag(phc: &str) -> String {
    hex::encode(&Sha256::digest(phc.as_bytes())[..8])
}

/// Opens the server's SQLite state database with durable settings.
pub(crate) fn open_db(path: &Path) -> Result<Connection> {
    let err = |source| ServerError::Db {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    // WAL + FULL: a commit is on disk when it returns, and readers never
    // block the writer.
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
    )
    .map_err(err)?;
    Ok(conn)
}

/// The resume-token table.
pub struct TokenStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl TokenStore {
    /// Opens (and creates) the table in `data_dir/state.db`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(STATE_DB);
        let conn = open_db(&path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS resume_tokens (
                digest BLOB PRIMARY KEY,
                user TEXT NOT NULL,
                password_tag TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                last_used_ms INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS resume_tokens_user ON resume_tokens(user);",
        )
        .map_err(|source| ServerError::Db {
            path: path.clone(),
            source,
        })?;
        Ok(TokenStore {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn db_err(&self) -> impl FnOnce(rusqlite::Error) -> ServerError + '_ {
        |source| ServerError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Makes a new token for `user` (whose current hash is `phc`).
    pub(crate) fn issue(&self, user: &str, phc: &str, now_ms: i64) -> Result<Secret> {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let conn = self.conn.lock().expect("token db poisoned");
        conn.execute(
            "INSERT INTO resume_tokens VALUES (?1, ?2, ?3, ?4, ?4)",
            params![digest(&token), user, password_tag(phc), now_ms],
        )
        .map_err(self.db_err())?;
        conn.execute(
            "DELETE FROM resume_tokens WHERE user = ?1 AND digest NOT IN
               (SELECT digest FROM resume_tokens WHERE user = ?1
                ORDER BY last_used_ms DESC LIMIT ?2)",
            params![user, MAX_TOKENS_PER_USER],
        )
        .map_err(self.db_err())?;
        Ok(Secret::new(token))
    }

    /// Whether `token` is a live token of `user` with password hash `phc`.
    pub(crate) fn check(&self, user: &str, token: &Secret, phc: &str, now_ms: i64) -> Result<bool> {
        let d = digest(token.expose());
        let conn = self.conn.lock().expect("token db poisoned");
        // Cached: parsing this SQL again on every reconnect showed in the
        // profile of a mass catch-up (issue 12).
        let row: Option<(String, String, i64)> = conn
            .prepare_cached(
                "SELECT user, password_tag, last_used_ms FROM resume_tokens WHERE digest = ?1",
            )
            .and_then(|mut s| s.query_row(params![d], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .optional()
            .map_err(self.db_err())?;
        let Some((owner, tag, last_used)) = row else {
            return Ok(false);
        };
        if owner != user || tag != password_tag(phc) || now_ms - last_used > TOKEN_IDLE_EXPIRY_MS {
            return Ok(false);
        }
        if now_ms - last_used > TOKEN_TOUCH_INTERVAL_MS {
            conn.execute(
                "UPDATE resume_tokens SET last_used_ms = ?2 WHERE digest = ?1",
                params![d, now_ms],
            )
            .map_err(self.db_err())?;
        }
        Ok(true)
    }

    /// Forgets a token (logout).
    pub(crate) fn revoke(&self, token: &Secret) -> Result<()> {
        let conn = self.conn.lock().expect("token db poisoned");
        conn.execute(
            "DELETE FROM resume_tokens WHERE digest = ?1",
            params![digest(token.expose())],
        )
        .map_err(self.db_err())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_to_user_and_password() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::open(dir.path()).unwrap();
        let t = s.issue("alice", "$hash1", 0).unwrap();
        assert!(s.check("alice", &t, "$hash1", 1).unwrap());
        assert!(!s.check("bob", &t, "$hash1", 1).unwrap());
        assert!(
            !s.check("alice", &t, "$hash2", 1).unwrap(),
            "password changed"
        );
        assert!(!s
            .check("alice", &Secret::new("forged"), "$hash1", 1)
            .unwrap());
        assert!(!s
            .check("alice", &t, "$hash1", TOKEN_IDLE_EXPIRY_MS + 1)
            .unwrap());
        s.revoke(&t).unwrap();
        assert!(!s.check("alice", &t, "$hash1", 1).unwrap());
    }

    #[test]
    fn tokens_survive_reopen_and_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let first = TokenStore::open(dir.path())
            .unwrap()
            .issue("alice", "$h", 0)
            .unwrap();
        let s = TokenStore::open(dir.path()).unwrap();
        assert!(s.check("alice", &first, "$h", 1).unwrap());
        for i in 0..MAX_TOKENS_PER_USER {
            s.issue("alice", "$h", 10 + i).unwrap();
        }
        assert!(
            !s.check("alice", &first, "$h", 100).unwrap(),
            "oldest evicted"
        );
    }
}

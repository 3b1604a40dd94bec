//! Accounts and resume tokens in PostgreSQL, with the semantics of the
//! embedded `users.csv` (users.rs) and `resume_tokens` (tokens.rs): argon2id
//! PHC hashes; tokens stored as SHA-256 digests, bound to a tag of the
//! password hash, expiring when idle, capped per user.

use p2p_proto::names::{validate_password, validate_username};
use p2p_proto::{time, Secret};
use tokio_postgres::error::SqlState;

use super::{PgError, PgPool};
use crate::error::{Result, ServerError};
use crate::tokens::{
    digest, password_tag, MAX_TOKENS_PER_USER, TOKEN_IDLE_EXPIRY_MS, TOKEN_TOUCH_INTERVAL_MS,
};
use crate::users::{hash_password, UserRecord};

/// The account table.
#[derive(Clone)]
pub struct PgAccounts {
    pool: PgPool,
}

impl PgAccounts {
    /// Accounts in `pool`'s database (migrated).
    pub fn new(pool: PgPool) -> PgAccounts {
        PgAccounts { pool }
    }

    /// Adds an account (validates, hashes off the async threads, writes).
    pub async fn add(&self, name: &str, password: &str) -> Result<()> {
        validate_username(name)?;
        validate_password(password)?;
        if self.hash_of(name).await?.is_some() {
            // Early, friendly refusal before the slow hash; the insert's
            // unique key decides in the end.
            return Err(ServerError::UserExists(name.to_string()));
        }
        let phc = hash_off_thread(password).await?;
        self.add_hashed(name, phc).await
    }

    /// Adds an account with an already-computed hash (import, registration).
    pub async fn add_hashed(&self, name: &str, phc: String) -> Result<()> {
        validate_username(name)?;
        let c = self.pool.get().await?;
        match c
            .execute(
                "INSERT INTO accounts (username, phc) VALUES ($1, $2)",
                &[&name, &phc],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Err(ServerError::UserExists(name.to_string()))
            }
            Err(e) => Err(PgError::from(e).into()),
        }
    }

    /// Removes an account; its resume tokens and presence go with it.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let c = self.pool.get().await?;
        let n = c
            .execute("DELETE FROM accounts WHERE username = $1", &[&name])
            .await
            .map_err(PgError::from)?;
        if n == 0 {
            return Err(ServerError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Sets a new password, which invalidates the user's resume tokens
    /// (they are bound to the hash).
    pub async fn passwd(&self, name: &str, password: &str) -> Result<()> {
        validate_password(password)?;
        if self.hash_of(name).await?.is_none() {
            return Err(ServerError::NoSuchUser(name.to_string()));
        }
        let phc = hash_off_thread(password).await?;
        let c = self.pool.get().await?;
        let n = c
            .execute(
                "UPDATE accounts SET phc = $2 WHERE username = $1",
                &[&name, &phc],
            )
            .await
            .map_err(PgError::from)?;
        if n == 0 {
            return Err(ServerError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Every account, by name.
    pub async fn list(&self) -> Result<Vec<UserRecord>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT username, phc,
                        (EXTRACT(EPOCH FROM created_at) * 1000)::BIGINT
                 FROM accounts ORDER BY username",
                &[],
            )
            .await
            .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .map(|r| UserRecord {
                username: r.get(0),
                hash: r.get(1),
                created_at: time::rfc3339(r.get(2)),
            })
            .collect())
    }

    /// The PHC hash of `name`, if the account exists.
    pub async fn hash_of(&self, name: &str) -> Result<Option<String>> {
        let c = self.pool.get().await?;
        let q = c
            .prepare_cached("SELECT phc FROM accounts WHERE username = $1")
            .await
            .map_err(PgError::from)?;
        let row = c.query_opt(&q, &[&name]).await.map_err(PgError::from)?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Which of `names` have accounts.
    pub async fn existing(&self, names: &[String]) -> Result<std::collections::HashSet<String>> {
        if names.is_empty() {
            return Ok(Default::default());
        }
        let c = self.pool.get().await?;
        let q = c
            .prepare_cached("SELECT username FROM accounts WHERE username = ANY($1)")
            .await
            .map_err(PgError::from)?;
        let rows = c.query(&q, &[&names]).await.map_err(PgError::from)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Number of accounts.
    pub async fn count(&self) -> Result<usize> {
        let c = self.pool.get().await?;
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM accounts", &[])
            .await
            .map_err(PgError::from)?
            .get(0);
        Ok(n as usize)
    }
}

async fn hash_off_thread(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ServerError::Hash(format!("hashing task failed: {e}")))?
}

/// The resume-token table. A token works on every instance of the cluster.
#[derive(Clone)]
pub struct PgTokens {
    pool: PgPool,
}

impl PgTokens {
    /// Tokens in `pool`'s database (migrated).
    pub fn new(pool: PgPool) -> PgTokens {
        PgTokens { pool }
    }

    /// Makes a new token for `user` (whose current hash is `phc`), and
    /// drops the user's least recently used beyond the cap, in one
    /// transaction.
    pub async fn issue(&self, user: &str, phc: &str, now_ms: i64) -> Result<Secret> {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(PgError::from)?;
        tx.execute(
            "INSERT INTO resume_tokens VALUES ($1, $2, $3, $4, $4)",
            &[&digest(&token), &user, &password_tag(phc), &now_ms],
        )
        .await
        .map_err(PgError::from)?;
        tx.execute(
            "DELETE FROM resume_tokens WHERE username = $1 AND digest NOT IN
               (SELECT digest FROM resume_tokens WHERE username = $1
                ORDER BY last_used_ms DESC LIMIT $2)",
            &[&user, &MAX_TOKENS_PER_USER],
        )
        .await
        .map_err(PgError::from)?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(Secret::new(token))
    }

    /// Whether `token` is a live token of `user` with password hash `phc`.
    pub async fn check(&self, user: &str, token: &Secret, phc: &str, now_ms: i64) -> Result<bool> {
        let d = digest(token.expose());
        let c = self.pool.get().await?;
        let q = c
            .prepare_cached(
                "SELECT username, password_tag, last_used_ms FROM resume_tokens WHERE digest = $1",
            )
            .await
            .map_err(PgError::from)?;
        let Some(row) = c.query_opt(&q, &[&d]).await.map_err(PgError::from)? else {
            return Ok(false);
        };
        let (owner, tag, last_used): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        if owner != user || tag != password_tag(phc) || now_ms - last_used > TOKEN_IDLE_EXPIRY_MS {
            return Ok(false);
        }
        if now_ms - last_used > TOKEN_TOUCH_INTERVAL_MS {
            c.execute(
                "UPDATE resume_tokens SET last_used_ms = $2 WHERE digest = $1",
                &[&d, &now_ms],
            )
            .await
            .map_err(PgError::from)?;
        }
        Ok(true)
    }

    /// Forgets a token (logout).
    pub async fn revoke(&self, token: &Secret) -> Result<()> {
        let c = self.pool.get().await?;
        c.execute(
            "DELETE FROM resume_tokens WHERE digest = $1",
            &[&digest(token.expose())],
        )
        .await
        .map_err(PgError::from)?;
        Ok(())
    }
}

//! The accounts seam: what a login, a registration and the account watch
//! need of accounts and resume tokens, whichever backend holds them — the
//! embedded `users.csv` + `state.db`, or the shared PostgreSQL database
//! (SPEC §9). A closed enum rather than a trait object: two backends, both
//! in this crate, and async methods without boxing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use p2p_proto::{time, Secret};

use crate::error::{Result, ServerError};
use crate::pg::{PgAccounts, PgTokens};
use crate::tokens::TokenStore;
use crate::users::{self, UserDb};

/// Accounts and resume tokens.
pub(crate) enum Accounts {
    /// `users.csv` (re-read when it changes) and `state.db`'s token table.
    Embedded {
        users: Arc<UserDb>,
        tokens: Arc<TokenStore>,
    },
    /// The shared database; `count` is refreshed by [`Accounts::gone`].
    Shared {
        accounts: PgAccounts,
        tokens: PgTokens,
        count: AtomicUsize,
    },
}

/// Runs blocking embedded-store work off the runtime threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::Config(format!("blocking task failed: {e}")))?
}

impl Accounts {
    /// The shared backend's accounts, with their count read once.
    pub(crate) async fn shared(accounts: PgAccounts, tokens: PgTokens) -> Result<Accounts> {
        let count = AtomicUsize::new(accounts.count().await?);
        Ok(Accounts::Shared {
            accounts,
            tokens,
            count,
        })
    }

    /// The PHC hash of `name`, if the account exists.
    pub(crate) async fn hash_of(&self, name: &str) -> Result<Option<String>> {
        match self {
            Accounts::Embedded { users, .. } => users::hash_of(users, name).await,
            Accounts::Shared { accounts, .. } => accounts.hash_of(name).await,
        }
    }

    /// Whether `token` is a live resume token of `user`'s current password.
    /// Embedded: the hash and the token in one trip to the blocking pool (a
    /// mass reconnect is thousands of these, and each hand-off is a thread
    /// wake-up).
    pub(crate) async fn token_ok(&self, user: &str, token: &Secret) -> Result<bool> {
        match self {
            Accounts::Embedded { users, tokens } => {
                let (users, tokens) = (users.clone(), tokens.clone());
                let (u, t) = (user.to_string(), token.clone());
                blocking(move || match users.hash_of(&u)? {
                    Some(phc) => tokens.check(&u, &t, &phc, time::now_ms()),
                    None => Ok(false),
                })
                .await
            }
            Accounts::Shared {
                accounts, tokens, ..
            } => match accounts.hash_of(user).await? {
                Some(phc) => tokens.check(user, token, &phc, time::now_ms()).await,
                None => Ok(false),
            },
        }
    }

    /// Adds an account with a computed hash ([`ServerError::UserExists`] if
    /// the name is taken).
    pub(crate) async fn add_hashed(&self, name: &str, phc: String) -> Result<()> {
        match self {
            Accounts::Embedded { users, .. } => {
                let file = users.file().clone();
                let n = name.to_string();
                blocking(move || file.add_hashed(&n, phc)).await?;
                users::refresh(users).await.map(drop)
            }
            Accounts::Shared {
                accounts, count, ..
            } => {
                accounts.add_hashed(name, phc).await?;
                count.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// A new resume token for `user`, whose hash is `phc`.
    pub(crate) async fn issue(&self, user: &str, phc: String) -> Result<Secret> {
        match self {
            Accounts::Embedded { tokens, .. } => {
                let (tokens, u) = (tokens.clone(), user.to_string());
                blocking(move || tokens.issue(&u, &phc, time::now_ms())).await
            }
            Accounts::Shared { tokens, .. } => tokens.issue(user, &phc, time::now_ms()).await,
        }
    }

    /// Forgets a token (logout).
    pub(crate) async fn revoke(&self, token: Secret) -> Result<()> {
        match self {
            Accounts::Embedded { tokens, .. } => {
                let tokens = tokens.clone();
                blocking(move || tokens.revoke(&token)).await
            }
            Accounts::Shared { tokens, .. } => tokens.revoke(&token).await,
        }
    }

    /// Of `online`, the users whose accounts are gone (their sessions must
    /// close). Embedded: only re-reads `users.csv` when it changed.
    pub(crate) async fn gone(&self, online: Vec<String>) -> Result<Vec<String>> {
        match self {
            Accounts::Embedded { users, .. } => {
                if !users::refresh(users).await? {
                    return Ok(Vec::new());
                }
                Ok(online.into_iter().filter(|u| !users.exists(u)).collect())
            }
            Accounts::Shared {
                accounts, count, ..
            } => {
                count.store(accounts.count().await?, Ordering::Relaxed);
                let present = accounts.existing(&online).await?;
                Ok(online
                    .into_iter()
                    .filter(|u| !present.contains(u))
                    .collect())
            }
        }
    }

    /// Re-reads the shared count now, for an answer that shows it (admin
    /// `status`, a `/metrics` scrape): accounts come and go through
    /// `p2p-server user` or another instance at any time, and a count as of
    /// the last watch would lag them. Embedded: the count follows users.csv
    /// on every login and watch already. On a database error the last count
    /// stays (the answer must not fail for it).
    pub(crate) async fn refresh_count(&self) {
        if let Accounts::Shared {
            accounts, count, ..
        } = self
        {
            match accounts.count().await {
                Ok(n) => count.store(n, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot count the accounts; showing the last count")
                }
            }
        }
    }

    /// Number of accounts (the shared count as of the last watch or
    /// [`Accounts::refresh_count`]).
    pub(crate) fn count(&self) -> usize {
        match self {
            Accounts::Embedded { users, .. } => users.count(),
            Accounts::Shared { count, .. } => count.load(Ordering::Relaxed),
        }
    }
}

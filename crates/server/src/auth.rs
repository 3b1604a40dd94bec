//! Login decisions: password (argon2id), resume token, or self-registration.
//!
//! argon2 runs on a fixed set of hashing threads ([`crate::hasher`]), each
//! reusing its working memory, under a semaphore: a login storm uses at most
//! `hash_slots` cores and `hash_slots` × 19 MiB, and never stalls the async
//! threads that keep every other session alive. A login that cannot get a
//! slot within [`HASH_QUEUE_WAIT`] is told to come back later. Who may use a
//! slot at all is [`crate::throttle`]'s decision, taken before queueing and
//! again once a slot is held (so the logins that queued together cannot all
//! pass a budget that only the first of them fits).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use p2p_proto::names::{validate_password, validate_username};
use p2p_proto::wire::{Auth, LoginError};
use p2p_proto::Secret;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::accounts::Accounts;
use crate::error::ServerError;
use crate::hasher::{self, HashPool};
use crate::throttle::{Hold, Limits, Throttle};

/// How long a login may queue for an argon2 slot before being told "busy".
pub(crate) const HASH_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// What a login refused for lack of hashing capacity is told to wait.
pub(crate) const HASH_BUSY_RETRY: Duration = Duration::from_secs(2);

/// A refused login.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Machine-readable reason.
    pub code: LoginError,
    /// For people.
    pub(crate) message: String,
    /// When to try again, if that can help.
    pub(crate) retry_after: Option<Duration>,
}

impl Refusal {
    fn new(code: LoginError, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn held(hold: Hold, what: &str) -> Self {
        // Round up so "try again in 0s" is never said.
        let human = |d: Duration| p2p_proto::time::human_duration(d + Duration::from_millis(999));
        match hold {
            Hold::Throttled(wait) => Refusal {
                retry_after: Some(wait),
                ..Refusal::new(
                    LoginError::Throttled,
                    format!(
                        "too many {what} from your address; try again in {}",
                        human(wait)
                    ),
                )
            },
            Hold::Busy(wait) => Refusal {
                retry_after: Some(wait),
                ..Refusal::new(
                    LoginError::Busy,
                    format!(
                        "server busy refusing failed logins; retrying in {}",
                        human(wait)
                    ),
                )
            },
        }
    }

    /// The account store failed: with the shared database, that is the
    /// database being out of reach, which the user is told as such.
    fn store(e: ServerError) -> Self {
        if matches!(e, ServerError::Pg(_)) {
            tracing::error!(cause = %e, "login failed: the database is out of reach");
            return Refusal::new(
                LoginError::Internal,
                "the server cannot reach its database; try again later",
            );
        }
        Self::internal(e)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %e, "login failed internally");
        Refusal::new(LoginError::Internal, "server error; try again later")
    }
}

/// How a successful login was proved (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// argon2 password check.
    Password,
    /// Resume token; no argon2.
    Token,
    /// New account.
    Register,
}

impl Method {
    /// Name used in log fields.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Token => "token",
            Method::Register => "register",
        }
    }
}

/// Everything a login needs.
pub struct Authenticator {
    accounts: Arc<Accounts>,
    throttle: Mutex<Throttle>,
    hash_slots: Arc<Semaphore>,
    pool: HashPool,
    open_registration: bool,
}

/// A hash no password matches, checked when the user does not exist so that
/// "no such user" takes as long as "wrong password".
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(hasher::decoy)
}

impl Authenticator {
    /// The authenticator over the embedded stores (the fuzz harness and
    /// the hostile-value tests build it this way).
    pub fn new(
        users: Arc<crate::users::UserDb>,
        tokens: Arc<crate::tokens::TokenStore>,
        hash_slots: usize,
        open_registration: bool,
        limits: Limits,
    ) -> std::io::Result<Self> {
        let accounts = Arc::new(Accounts::Embedded { users, tokens });
        Self::with_accounts(accounts, hash_slots, open_registration, limits)
    }

    /// Builds the authenticator over `accounts` and starts its `hash_slots`
    /// hashing threads.
    pub(crate) fn with_accounts(
        accounts: Arc<Accounts>,
        hash_slots: usize,
        open_registration: bool,
        limits: Limits,
    ) -> std::io::Result<Self> {
        let hash_slots = hash_slots.max(1);
        Ok(Authenticator {
            accounts,
            throttle: Mutex::new(Throttle::new(limits)),
            hash_slots: Arc::new(Semaphore::new(hash_slots)),
            pool: HashPool::new(hash_slots)?,
            open_registration,
        })
    }

    /// The throttle tables. Nothing panics while they are locked, so the
    /// lock cannot be poisoned; if it ever were, the tables are still
    /// consistent (every update is a plain field write), so keep using them.
    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        self.throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits (up to [`HASH_QUEUE_WAIT`]) for a hashing slot.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        tokio::time::timeout(HASH_QUEUE_WAIT, self.hash_slots.clone().acquire_owned())
            .await
            .map_err(|_| Refusal {
                retry_after: Some(HASH_BUSY_RETRY),
                ..Refusal::new(LoginError::Busy, "server busy checking logins; retrying")
            })?
            .map_err(Refusal::internal)
    }

    /// Runs argon2 work on the hashing threads. The slot travels with the
    /// work and is freed when the work ends, not when this future does: a
    /// login dropped mid-check (its connection timed out) must not let
    /// another check start while its own still runs.
    async fn hashing<T: Send + 'static>(
        &self,
        slot: OwnedSemaphorePermit,
        work: impl FnOnce(&mut hasher::Memory) -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        self.pool
            .run(move |mem| {
                let _slot = slot;
                work(mem)
            })
            .await
            .map_err(Refusal::internal)
    }

    /// Decides a login; on success returns the resume token to hand out.
    pub async fn login(
        &self,
        user: &str,
        auth: &Auth,
        addr: IpAddr,
    ) -> Result<(Secret, Method), Refusal> {
        if let Err(e) = validate_username(user) {
            return Err(Refusal::new(LoginError::BadUsername, e.to_string()));
        }
        match auth {
            Auth::Token { token } => self.resume(user, token).await,
            Auth::Password { password } => self.password(user, password, addr).await,
            Auth::Register { password } => self.register(user, password, addr).await,
        }
    }

    async fn resume(&self, user: &str, token: &Secret) -> Result<(Secret, Method), Refusal> {
        let bad = || {
            Refusal::new(
                LoginError::BadToken,
                "saved session is no longer valid; log in with your password",
            )
        };
        let ok = self
            .accounts
            .token_ok(user, token)
            .await
            .map_err(Refusal::store)?;
        if ok {
            Ok((token.clone(), Method::Token))
        } else {
            Err(bad())
        }
    }

    async fn password(
        &self,
        user: &str,
        password: &Secret,
        addr: IpAddr,
    ) -> Result<(Secret, Method), Refusal> {
        let check = || {
            self.throttle()
                .check(user, addr, Instant::now())
                .map_err(|hold| Refusal::held(hold, "failed logins"))
        };
        check()?;
        let slot = self.slot().await?;
        // Others may have failed while this login queued.
        check()?;
        let phc = self.accounts.hash_of(user).await.map_err(Refusal::store)?;
        let exists = phc.is_some();
        let phc = phc.unwrap_or_else(|| decoy_hash().to_string());
        let (pw, h) = (password.clone(), phc.clone());
        let ok = self
            .hashing(slot, move |mem| {
                hasher::verify(mem, pw.expose().as_bytes(), &h)
            })
            .await?
            && exists;
        if !ok {
            self.throttle().failed(user, addr, Instant::now());
            return Err(Refusal::new(
                LoginError::BadCredentials,
                "wrong user name or password",
            ));
        }
        self.throttle().succeeded(user, addr);
        self.issue(user, phc, Method::Password).await
    }

    async fn register(
        &self,
        user: &str,
        password: &Secret,
        addr: IpAddr,
    ) -> Result<(Secret, Method), Refusal> {
        if !self.open_registration {
            return Err(Refusal::new(
                LoginError::RegistrationClosed,
                "this server does not allow self-registration; ask its operator for an account",
            ));
        }
        if let Err(e) = validate_password(password.expose()) {
            return Err(Refusal::new(LoginError::BadPassword, e.to_string()));
        }
        if self
            .accounts
            .hash_of(user)
            .await
            .map_err(Refusal::store)?
            .is_some()
        {
            return Err(Refusal::new(
                LoginError::UserExists,
                format!("user {user:?} already exists"),
            ));
        }
        self.throttle()
            .register(addr, Instant::now())
            .map_err(|hold| Refusal::held(hold, "new accounts"))?;
        let slot = self.slot().await?;
        let pw = password.clone();
        let phc = self
            .hashing(slot, move |mem| hasher::hash(mem, pw.expose().as_bytes()))
            .await?
            .map_err(Refusal::internal)?;
        match self.accounts.add_hashed(user, phc.clone()).await {
            Ok(()) => {}
            Err(ServerError::UserExists(_)) => {
                return Err(Refusal::new(
                    LoginError::UserExists,
                    format!("user {user:?} already exists"),
                ))
            }
            Err(e) => return Err(Refusal::store(e)),
        }
        self.issue(user, phc, Method::Register).await
    }

    async fn issue(
        &self,
        user: &str,
        phc: String,
        method: Method,
    ) -> Result<(Secret, Method), Refusal> {
        let token = self
            .accounts
            .issue(user, phc)
            .await
            .map_err(Refusal::store)?;
        Ok((token, method))
    }

    /// Revokes a token at logout.
    pub(crate) async fn revoke(&self, token: Secret) {
        if let Err(e) = self.accounts.revoke(token).await {
            tracing::warn!(cause = %e, "could not revoke token");
        }
    }
}

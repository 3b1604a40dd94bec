//! Login decisions: password (argon2id), resume token, or self-registration.
//!
//! argon2 runs on the blocking pool under a semaphore, so a login storm uses
//! at most [`Authenticator::hash_slots`] cores and never stalls the async
//! threads that keep every other session alive. A login that cannot get a
//! slot within [`HASH_QUEUE_WAIT`] is told to come back later.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use p2p_proto::names::{validate_password, validate_username};
use p2p_proto::wire::{Auth, LoginError};
use p2p_proto::Secret;
use tokio::sync::Semaphore;

use crate::error::ServerError;
use crate::throttle::Throttle;
use crate::tokens::TokenStore;
use crate::users::{self, UserDb};

/// How long a login may queue for an argon2 slot before being told "busy".
pub const HASH_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// What a login refused for lack of hashing capacity is told to wait.
pub const HASH_BUSY_RETRY: Duration = Duration::from_secs(2);

/// A refused login.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Machine-readable reason.
    pub code: LoginError,
    /// For people.
    pub message: String,
    /// When to try again, if that can help.
    pub retry_after: Option<Duration>,
}

impl Refusal {
    fn new(code: LoginError, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            retry_after: None,
        }
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
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Token => "token",
            Method::Register => "register",
        }
    }
}

/// Everything a login needs.
pub struct Authenticator {
    users: Arc<UserDb>,
    tokens: Arc<TokenStore>,
    throttle: Mutex<Throttle>,
    hash_slots: Arc<Semaphore>,
    open_registration: bool,
}

/// A valid hash of a random password, checked when the user does not exist
/// so that "no such user" takes as long as "wrong password".
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        users::hash_password(&hex::encode(rand::random::<[u8; 16]>())).expect("argon2 defaults")
    })
}

impl Authenticator {
    /// Builds the authenticator; `hash_slots` bounds concurrent argon2 work.
    pub fn new(
        users: Arc<UserDb>,
        tokens: Arc<TokenStore>,
        hash_slots: usize,
        open_registration: bool,
    ) -> Self {
        Authenticator {
            users,
            tokens,
            throttle: Mutex::new(Throttle::default()),
            hash_slots: Arc::new(Semaphore::new(hash_slots.max(1))),
            open_registration,
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        let permit = tokio::time::timeout(HASH_QUEUE_WAIT, self.hash_slots.clone().acquire_owned())
            .await
            .map_err(|_| Refusal {
                retry_after: Some(HASH_BUSY_RETRY),
                ..Refusal::new(LoginError::Busy, "server busy checking logins; retrying")
            })?
            .map_err(Refusal::internal)?;
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(Refusal::internal)?;
        Ok(out)
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
            Auth::Register { password } => self.register(user, password).await,
        }
    }

    async fn resume(&self, user: &str, token: &Secret) -> Result<(Secret, Method), Refusal> {
        let bad = || {
            Refusal::new(
                LoginError::BadToken,
                "saved session is no longer valid; log in with your password",
            )
        };
        let Some(phc) = self.users.hash_of(user).map_err(Refusal::internal)? else {
            return Err(bad());
        };
        let tokens = self.tokens.clone();
        let (u, t) = (user.to_string(), token.clone());
        let ok = tokio::task::spawn_blocking(move || {
            tokens.check(&u, &t, &phc, p2p_proto::time::now_ms())
        })
        .await
        .map_err(Refusal::internal)?
        .map_err(Refusal::internal)?;
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
        let wait =
            self.throttle
                .lock()
                .expect("throttle poisoned")
                .wait(user, addr, Instant::now());
        if let Some(wait) = wait {
            return Err(Refusal {
                retry_after: Some(wait),
                ..Refusal::new(
                    LoginError::Throttled,
                    format!(
                        "too many failed logins; try again in {}",
                        p2p_proto::time::human_duration(wait + Duration::from_millis(999))
                    ),
                )
            });
        }
        let phc = self.users.hash_of(user).map_err(Refusal::internal)?;
        let exists = phc.is_some();
        let phc = phc.unwrap_or_else(|| decoy_hash().to_string());
        let (pw, h) = (password.clone(), phc.clone());
        let ok = self
            .blocking(move || users::verify_password(pw.expose(), &h))
            .await?
            && exists;
        if !ok {
            self.throttle
                .lock()
                .expect("throttle poisoned")
                .failed(user, addr, Instant::now());
            return Err(Refusal::new(
                LoginError::BadCredentials,
                "wrong user name or password",
            ));
        }
        self.throttle
            .lock()
            .expect("throttle poisoned")
            .succeeded(user);
        self.issue(user, phc, Method::Password).await
    }

    async fn register(&self, user: &str, password: &Secret) -> Result<(Secret, Method), Refusal> {
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
            .users
            .hash_of(user)
            .map_err(Refusal::internal)?
            .is_some()
        {
            return Err(Refusal::new(
                LoginError::UserExists,
                format!("user {user:?} already exists"),
            ));
        }
        let pw = password.clone();
        let phc = self
            .blocking(move || users::hash_password(pw.expose()))
            .await?
            .map_err(Refusal::internal)?;
        let file = self.users.file().clone();
        let (u, h) = (user.to_string(), phc.clone());
        match tokio::task::spawn_blocking(move || file.add_hashed(&u, h))
            .await
            .map_err(Refusal::internal)?
        {
            Ok(()) => {}
            Err(ServerError::UserExists(_)) => {
                return Err(Refusal::new(
                    LoginError::UserExists,
                    format!("user {user:?} already exists"),
                ))
            }
            Err(e) => return Err(Refusal::internal(e)),
        }
        self.users.refresh().map_err(Refusal::internal)?;
        self.issue(user, phc, Method::Register).await
    }

    async fn issue(
        &self,
        user: &str,
        phc: String,
        method: Method,
    ) -> Result<(Secret, Method), Refusal> {
        let tokens = self.tokens.clone();
        let u = user.to_string();
        let token =
            tokio::task::spawn_blocking(move || tokens.issue(&u, &phc, p2p_proto::time::now_ms()))
                .await
                .map_err(Refusal::internal)?
                .map_err(Refusal::internal)?;
        Ok((token, method))
    }

    /// Revokes a token at logout.
    pub async fn revoke(&self, token: Secret) {
        let tokens = self.tokens.clone();
        match tokio::task::spawn_blocking(move || tokens.revoke(&token)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(cause = %e, "could not revoke token"),
            Err(e) => tracing::warn!(cause = %e, "could not revoke token"),
        }
    }
}

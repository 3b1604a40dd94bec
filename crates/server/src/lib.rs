//! The rendezvous server (SPEC §3): accounts, TLS login, presence and the
//! connection cap, and the relay (`relay/`).
//!
//! [`Server::open`] loads the data directory (accounts, state database, TLS
//! identity); [`Server::run`] serves a bound listener until the shutdown
//! token fires. Tests run it in-process on `127.0.0.1:0` or as the real
//! `p2p-server` binary.
//!
//! Tasks: one accept loop, which also notices account changes; one task per
//! connection (see `conn/`), each holding a permit of the connection cap.
//! A relayed pair is two connection tasks: the first side's runs the
//! splice, the second's waits for it (so both hold their permits and both
//! are awaited at shutdown).
//! Shared state lives in `Shared` behind an `Arc`.
//!
//! Public surface (everything else is `pub(crate)`): [`Server`],
//! [`ServerConfig`] and [`cli::main`] for the binary, xtask, testkit and
//! the in-process tests; for the fuzz harness and the hostile-value tests,
//! the shared-state pieces driven without sockets ([`auth::Authenticator`],
//! [`broadcast`], [`invitations::Invitations`], [`presence::Presence`],
//! [`relay::Relay`], [`tokens::TokenStore`], [`users`]).

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod admin_pg;
pub mod auth;
pub mod broadcast;
pub mod cli;
pub mod cluster;
pub(crate) mod config_file;
pub(crate) mod conn;
pub(crate) mod error;
pub(crate) mod hasher;
pub mod invitations;
pub(crate) mod invite_limits;
pub(crate) mod mailbox;
pub(crate) mod metrics;
pub mod pg;
pub mod presence;
pub(crate) mod rate;
pub(crate) mod reach;
pub(crate) mod refused;
pub mod relay;
pub(crate) mod reload;
pub(crate) mod serve;
pub(crate) mod sources;
pub(crate) mod state_check;
pub(crate) mod throttle;
pub(crate) mod tls;
pub mod tokens;
pub(crate) mod user_cmd;
pub mod users;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use p2p_proto::limits::{
    BUSY_RETRY_AFTER, DEFAULT_BROADCAST_LIMIT, DEFAULT_BROADCAST_TTL, DEFAULT_BROADCAST_WINDOW,
    IDLE_TIMEOUT, INVITATION_TTL, LOGIN_TIMEOUT,
};
use p2p_proto::wire::Preamble;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use error::{Result, ServerError};

/// Default `--max-clients`.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
/// How often the running server checks `users.csv` for removed accounts
/// (logins always re-check it, so this only affects kicking removed users).
pub(crate) const USERS_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// After an accept error (out of file descriptors), pause this long instead
/// of spinning on the error.
pub(crate) const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// On shutdown, sessions get this long to be told and closed.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Default `--first-byte-timeout`: from the server's preamble to the
/// client's first byte (its TLS ClientHello). A real client answers within
/// one round trip; 3 s also covers one lost packet (TCP's first
/// retransmission comes after 1 s). A connection that says nothing is
/// closed this early instead of holding a slot for the whole login timeout.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything `p2p-server` is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Holds `users.csv`, `state.db` and the TLS identity.
    pub data_dir: PathBuf,
    /// Connection cap (`--max-clients`).
    pub max_clients: usize,
    /// Whether `register` is allowed.
    pub open_registration: bool,
    /// Certificate source.
    pub tls: tls::TlsSource,
    /// Time from accept to a successful login.
    pub login_timeout: Duration,
    /// Time from the preamble to the client's first byte.
    pub first_byte_timeout: Duration,
    /// Caps on not-yet-logged-in connections per source.
    pub sources: sources::SourceLimits,
    /// Silence after which a session is dropped.
    pub idle_timeout: Duration,
    /// Concurrent argon2 computations.
    pub hash_slots: usize,
    /// Unanswered invitations expire after this.
    pub invitation_ttl: Duration,
    /// Invitation rate limits.
    pub invite_limits: invite_limits::InviteLimits,
    /// Broadcast life and rate limit.
    pub broadcasts: broadcast::BroadcastPolicy,
    /// Failed-login and registration budgets (per address, per block,
    /// global).
    pub limits: throttle::Limits,
    /// The relay: on or off, caps and timeouts.
    pub relay: relay::RelayPolicy,
    /// The shared database (SPEC §9); `None`: users.csv and state.db.
    pub database: Option<cluster::ClusterConfig>,
}

impl ServerConfig {
    /// Defaults for everything but the data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        ServerConfig {
            data_dir,
            max_clients: DEFAULT_MAX_CLIENTS,
            open_registration: false,
            tls: tls::TlsSource::SelfSigned,
            login_timeout: LOGIN_TIMEOUT,
            first_byte_timeout: FIRST_BYTE_TIMEOUT,
            sources: sources::SourceLimits::default(),
            idle_timeout: IDLE_TIMEOUT,
            hash_slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
            invitation_ttl: INVITATION_TTL,
            invite_limits: invite_limits::InviteLimits::default(),
            broadcasts: broadcast::BroadcastPolicy {
                ttl: DEFAULT_BROADCAST_TTL,
                limit: DEFAULT_BROADCAST_LIMIT,
                window: DEFAULT_BROADCAST_WINDOW,
            },
            limits: throttle::Limits::default(),
            relay: relay::RelayPolicy::default(),
            database: None,
        }
    }
}

/// State shared by the accept loop and every connection.
pub(crate) struct Shared {
    /// The configuration.
    pub cfg: ServerConfig,
    /// Accounts and resume tokens.
    pub accounts: Arc<accounts::Accounts>,
    /// This instance's part in a cluster (with `--database`).
    pub cluster: Option<Arc<cluster::Cluster>>,
    /// Login decisions.
    pub auth: auth::Authenticator,
    /// Who is online.
    pub presence: Arc<presence::Presence>,
    /// Open invitations.
    pub invitations: Arc<invitations::Invitations>,
    /// Broadcast store and fan-out.
    pub broadcasts: Arc<broadcast::BroadcastHub>,
    /// Relay tokens and seats.
    pub relay: Arc<relay::Relay>,
    /// TLS identity; replaced by a reload.
    pub tls: std::sync::RwLock<tls::TlsIdentity>,
    /// Connection and session ids.
    pub next_conn: AtomicU64,
}

impl Shared {
    /// Closes the sessions of accounts removed since the last look.
    pub(crate) async fn kick_removed(&self) {
        match self.accounts.gone(self.presence.users()).await {
            Ok(gone) if !gone.is_empty() => {
                self.presence.kick_unless(|u| !gone.iter().any(|g| g == u))
            }
            Ok(_) => {}
            Err(e) => warn!(cause = %e, "cannot re-read accounts; keeping the ones loaded"),
        }
    }
}

/// A server ready to run.
pub struct Server {
    shared: Arc<Shared>,
    fingerprint: String,
}

impl Server {
    /// Opens the data directory: accounts, state database, TLS identity
    /// (generated on first start); with a database, the shared state
    /// instead (migrated first). Call inside a tokio runtime (the broadcast
    /// hub starts its writer tasks).
    pub async fn open(cfg: ServerConfig) -> Result<Self> {
        p2p_sys::fsutil::ensure_private_dir(&cfg.data_dir)
            .map_err(ServerError::file(&cfg.data_dir))?;
        let (accounts, broadcasts, cluster) = match &cfg.database {
            None => {
                let users = Arc::new(users::UserDb::open(&cfg.data_dir)?);
                state_check::prepare_state_db(&cfg.data_dir)?;
                let tokens = Arc::new(tokens::TokenStore::open(&cfg.data_dir)?);
                let store = Arc::new(broadcast::SqliteBroadcasts::open(&cfg.data_dir)?);
                let hub = broadcast::BroadcastHub::start(store, cfg.broadcasts);
                (accounts::Accounts::Embedded { users, tokens }, hub, None)
            }
            Some(db) => {
                let pool = pg::PgPool::secured(&db.url, db.ca.as_deref())?;
                let applied = pg::migrate(&pool).await?;
                if !applied.is_empty() {
                    info!(?applied, "database schema migrated");
                }
                if matches!(cfg.tls, tls::TlsSource::SelfSigned) {
                    let shared = pg::shared_identity(&pool).await?;
                    tls::install_shared(&cfg.data_dir, &shared.cert_pem, shared.key_pem.expose())?;
                }
                let accounts = accounts::Accounts::shared(
                    pg::PgAccounts::new(pool.clone()),
                    pg::PgTokens::new(pool.clone()),
                )
                .await?;
                let store = Arc::new(pg::PgBroadcasts::new(pool.clone()));
                let cluster = cluster::Cluster::new(pool, db.clone(), store.clone());
                let hub = broadcast::BroadcastHub::start_fed(
                    store,
                    cfg.broadcasts,
                    cluster.feed_wake.clone(),
                );
                info!(instance = %cluster.instance, "serving from the shared database");
                (accounts, hub, Some(cluster))
            }
        };
        let identity = tls::load(&cfg.tls, &cfg.data_dir)?;
        if identity.generated {
            info!(fingerprint = %identity.fingerprint, "generated a self-signed certificate");
        }
        let invitations = Arc::new(invitations::Invitations::new(
            cfg.invitation_ttl,
            cfg.invite_limits,
        ));
        let accounts = Arc::new(accounts);
        let auth = auth::Authenticator::with_accounts(
            accounts.clone(),
            cfg.hash_slots,
            cfg.open_registration,
            cfg.limits,
        )?;
        let relay = Arc::new(relay::Relay::new(cfg.relay));
        Ok(Server {
            fingerprint: identity.fingerprint.clone(),
            shared: Arc::new(Shared {
                broadcasts,
                cfg,
                accounts,
                cluster,
                auth,
                presence: Arc::new(presence::Presence::default()),
                invitations,
                relay,
                tls: std::sync::RwLock::new(identity),
                next_conn: AtomicU64::new(1),
            }),
        })
    }

    /// `SHA256:...` of the certificate clients will see.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The state a reload changes (see [`reload`]).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves `listener` until `shutdown` is cancelled, then tells every
    /// session and waits (up to [`SHUTDOWN_GRACE`]) for them to close.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
        let shared = self.shared;
        let slots = Arc::new(Semaphore::new(shared.cfg.max_clients));
        let pending = sources::PendingLogins::new(shared.cfg.sources);
        let busy = Preamble::Busy {
            retry_after: BUSY_RETRY_AFTER,
        }
        .encode();
        let tracker = TaskTracker::new();
        // The one invitation-expiry driver; stopped and awaited below.
        let stop_expiry = CancellationToken::new();
        let expiry = tokio::spawn({
            let (shared, stop) = (shared.clone(), stop_expiry.clone());
            async move { shared.invitations.run_expiry(&shared.presence, stop).await }
        });
        if let Some(cluster) = &shared.cluster {
            cluster.start(&shared).await?;
        }
        let mut poll = tokio::time::interval(USERS_POLL_INTERVAL);
        // The account watch runs beside the accept loop, one at a time: a
        // database that does not answer must not stop new connections
        // (it may hold a check for the pool's whole wait).
        let mut watch: Option<tokio::task::JoinHandle<()>> = None;
        info!(addr = %listener.local_addr()?, max_clients = shared.cfg.max_clients, users = shared.accounts.count(), "serving");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = poll.tick() => {
                    if watch.as_ref().is_none_or(|w| w.is_finished()) {
                        let shared = shared.clone();
                        watch = Some(tokio::spawn(async move { shared.kick_removed().await }));
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let _ = stream.set_nodelay(true);
                        // Over either cap: one non-blocking write into an
                        // empty socket buffer, then close. No task, no TLS.
                        let Some(ticket) = pending.admit(addr.ip()) else {
                            let _ = stream.try_write(&busy);
                            tracing::debug!(%addr, "too many connections from this source not logged in; told busy");
                            continue;
                        };
                        match slots.clone().try_acquire_owned() {
                            Ok(permit) => {
                                tracker.spawn(conn::serve(
                                    shared.clone(),
                                    stream,
                                    addr,
                                    ticket,
                                    shutdown.clone(),
                                    permit,
                                ));
                            }
                            Err(_) => {
                                let _ = stream.try_write(&busy);
                                tracing::debug!(%addr, "at capacity; told busy");
                            }
                        }
                    }
                    Err(e) => {
                        warn!(cause = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
            }
        }
        if let Some(w) = watch {
            w.abort();
        }
        info!(online = shared.presence.count(), "shutting down");
        shared.presence.shut();
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!("some sessions did not close in time");
        }
        stop_expiry.cancel();
        if let Err(e) = expiry.await {
            warn!(cause = %e, "invitation expiry driver failed");
        }
        if let Some(cluster) = &shared.cluster {
            cluster.stop().await;
        }
        // Sessions are gone: write the acknowledgements they queued.
        if tokio::time::timeout(SHUTDOWN_GRACE, shared.broadcasts.close())
            .await
            .is_err()
        {
            warn!("broadcast acknowledgements not all written in time; they will be redelivered");
        }
        Ok(())
    }
}

//! The server session (SPEC §5): one task that owns the connection to the
//! rendezvous server, logs in, keeps it alive, and reconnects with backoff.
//!
//! ```text
//!            login ok                      Closing{replaced}
//! logged_out ────────► online ───────────────────────────────► replaced
//!     ▲   login: busy/   │  ▲ drop, idle, shutdown                 │
//!     │   unreachable    ▼  │ retry ok                             │ login
//!     └──── fatal ──── connecting (backoff + jitter, forever) ◄────┘
//! ```
//!
//! Control handlers talk to it through [`LinkHandle`]: commands on a bounded
//! channel, the current state on a `watch`, state changes as `server` events.

mod aux;
mod checks;
mod connect;
mod error;
mod failover;
mod login;
mod online;
mod retry;
mod trust;

use std::collections::HashMap;

use p2p_proto::ctl::{Event, LoginArgs, LoginDone, LogoutDone, ServerState, ServerStatus};
use p2p_proto::time;
use p2p_proto::wire::{self, Auth, PeerInfo};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::inbox::Inbox;
use crate::state::StateDir;
pub use aux::AuxError;
pub use checks::BadEvent;
pub(crate) use connect::Creds;
use connect::ServerConn;
pub use error::{reply_error, LinkError, LoginError};

/// The entry check the link applies to every event from the server before
/// routing it (see `checks.rs`); public so the fuzz targets run the same one.
pub fn check_server_event(event: &wire::ServerEvent) -> Result<(), checks::BadEvent> {
    checks::server_event(event)
}

/// What the link tells the peer side, in order, on a channel.
#[derive(Debug)]
pub enum LinkEvent {
    /// The session came online as `user` (every login, also after a reconnect).
    LoggedIn {
        /// Our account name.
        user: String,
        /// Server clock minus ours.
        clock_skew_ms: i64,
    },
    /// An invitation event (after the link's entry checks).
    Server(wire::ServerEvent),
}

/// Link events waiting for the peer side; more and the link waits (the
/// peer side never waits on the link, so this cannot deadlock).
pub const EVENT_QUEUE: usize = 64;

/// Commands waiting for the link task; more than this and callers wait.
pub(crate) const COMMAND_QUEUE: usize = 64;

/// What control handlers ask of the link.
#[derive(Debug)]
pub(crate) enum LinkCmd {
    /// Log in (or register) with a password; answered after the first attempt.
    Login {
        /// What `p2pctl login` sent.
        args: LoginArgs,
        /// Create the account first.
        register: bool,
        /// The first attempt's outcome.
        reply: oneshot::Sender<Result<LoginDone, LoginError>>,
    },
    /// Log out, revoke the token, forget the saved session.
    Logout {
        /// Which user was logged out.
        reply: oneshot::Sender<Result<LogoutDone, LoginError>>,
    },
    /// A request to the server.
    Request {
        /// What to ask.
        req: wire::Request,
        /// The server's answer.
        reply: oneshot::Sender<Result<wire::Reply, LinkError>>,
    },
}

/// The link's state as handlers read it.
#[derive(Debug, Clone)]
pub(crate) struct LinkStatus {
    /// Where the session stands.
    pub(crate) state: ServerState,
    /// `host:port`, or the cluster's `host:port,host:port,...` as given.
    pub(crate) server: Option<String>,
    /// The one of `server` in use (online) or being tried (connecting).
    pub(crate) current: Option<String>,
    /// Account name.
    pub(crate) user: Option<String>,
    /// Failed attempts since last online.
    pub(crate) attempt: u32,
    /// When the next attempt is due.
    pub(crate) next_retry_at: Option<Instant>,
    /// When the session came online, Unix ms.
    pub(crate) since_ms: Option<i64>,
    /// Why the last attempt failed or the session ended.
    pub(crate) last_error: Option<String>,
    /// The certificate fingerprint the online session checked, so other
    /// connections to the same server ([`LinkHandle::open_aux`]) hold it to
    /// the same pin.
    pub(crate) fingerprint: Option<String>,
    /// The address the server saw our link come from, while online.
    pub(crate) observed: Option<String>,
}

impl LinkStatus {
    /// The `server` object of `status` and of `server` events.
    pub(crate) fn report(&self) -> ServerStatus {
        ServerStatus {
            state: self.state,
            address: self.server.clone(),
            user: self.user.clone(),
            attempt: self.attempt,
            next_retry_ms: self
                .next_retry_at
                .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
            since: self.since_ms.map(time::rfc3339),
            last_error: self.last_error.clone(),
            current: self.current.clone(),
        }
    }
}

/// The handlers' side of the link.
#[derive(Clone)]
pub struct LinkHandle {
    cmds: mpsc::Sender<LinkCmd>,
    status: watch::Receiver<LinkStatus>,
    /// For reading pins outside the link task (`probe`).
    state: StateDir,
}

impl LinkHandle {
    /// The current state.
    pub(crate) fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// Sends a command; fails only if the daemon is shutting down.
    pub(crate) async fn send(&self, cmd: LinkCmd) -> Result<(), LinkError> {
        self.cmds
            .send(cmd)
            .await
            .map_err(|_| LinkError::ShuttingDown)
    }

    /// Sends a request to the server and waits for its answer.
    pub(crate) async fn request(&self, req: wire::Request) -> Result<wire::Reply, LinkError> {
        let (reply, rx) = oneshot::channel();
        self.send(LinkCmd::Request { req, reply }).await?;
        rx.await.map_err(|_| LinkError::Closed)?
    }

    /// A handle with no link task behind it, for unit tests of the layers
    /// above: the test plays the link (and the server), answering the
    /// commands that arrive on the receiver. The state stays `logged_out`.
    #[cfg(test)]
    pub(crate) fn detached() -> (LinkHandle, mpsc::Receiver<LinkCmd>) {
        let (cmds, rx) = mpsc::channel(COMMAND_QUEUE);
        let (_, status) = watch::channel(LinkStatus {
            state: ServerState::LoggedOut,
            server: None,
            current: None,
            user: None,
            attempt: 0,
            next_retry_at: None,
            since_ms: None,
            last_error: None,
            fingerprint: None,
            observed: None,
        });
        let state = StateDir::open(&std::env::temp_dir().join("p2pd-detached-link"))
            .expect("temp state dir");
        (
            LinkHandle {
                cmds,
                status,
                state,
            },
            rx,
        )
    }
}

/// What the link needs to know about this daemon.
pub struct LinkConfig {
    /// Reconnect timing.
    pub backoff: Backoff,
    /// Peer listener details sent at login.
    pub peer: PeerInfo,
    /// Where the peer listener is bound: the server link leaves from its
    /// port, and its LAN addresses are added to `peer.lan` at each login.
    /// `None` (fuzzing, tests): neither.
    pub listen: Option<std::net::SocketAddr>,
    /// Where broadcasts are stored.
    pub inbox: Inbox,
    /// Where login and invitation events go (the peer side).
    pub to_peers: mpsc::Sender<LinkEvent>,
    /// Fault injection for crash tests (`P2PD_FAILPOINT`); `None` in normal use.
    pub failpoint: Option<String>,
    /// `server` from p2pd.toml: shown by `status` while there is no saved
    /// session, so `login` without `--server` uses it.
    pub default_server: Option<String>,
}

/// `P2PD_FAILPOINT` value that makes p2pd abort after storing a broadcast
/// and before acknowledging it: how tests crash it in exactly that window.
pub(crate) const FAILPOINT_CRASH_BEFORE_BROADCAST_ACK: &str = "crash-before-broadcast-ack";

/// Starts the link task; it logs in from the saved session if there is one.
pub fn spawn(
    cfg: LinkConfig,
    state: StateDir,
    events: broadcast::Sender<Event>,
    shutdown: CancellationToken,
) -> (LinkHandle, tokio::task::JoinHandle<()>) {
    let saved = state.session().unwrap_or_else(|e| {
        warn!(cause = %e, "ignoring unreadable saved session");
        None
    });
    let creds = saved.as_ref().and_then(|s| {
        s.token.clone().map(|token| Creds {
            server: s.server.clone(),
            user: s.user.clone(),
            auth: Auth::Token { token },
            fingerprint: None,
        })
    });
    let initial = LinkStatus {
        state: if creds.is_some() {
            ServerState::Connecting
        } else {
            ServerState::LoggedOut
        },
        server: saved
            .as_ref()
            .map(|s| s.server.clone())
            .or_else(|| cfg.default_server.clone()),
        current: None,
        user: saved.as_ref().map(|s| s.user.clone()),
        attempt: 0,
        next_retry_at: creds.as_ref().map(|_| Instant::now()),
        since_ms: None,
        last_error: None,
        fingerprint: None,
        observed: None,
    };
    let (status_tx, status_rx) = watch::channel(initial);
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let handle = LinkHandle {
        cmds: cmd_tx,
        status: status_rx,
        state: state.clone(),
    };
    let task = Link {
        cfg,
        state,
        cmds: cmd_rx,
        status: status_tx,
        events,
        shutdown,
        creds,
        conn: None,
        online_at: None,
        short_sessions: 0,
        server_index: 0,
        next_id: 0,
        pending: HashMap::new(),
    };
    let join = tokio::spawn(task.run());
    (handle, join)
}

/// Why the online phase ended.
enum Ended {
    /// Daemon shutting down.
    Shutdown,
    /// Connection lost; reconnect with backoff.
    Lost(String),
    /// The session failed on something likely to fail again after a
    /// reconnect (a broadcast the inbox cannot store, a frame we cannot
    /// read): reconnect, backing off further each time (see [`retry`]).
    Broken(String),
    /// The server said not to come back (replaced, account removed).
    Stopped(ServerState, String),
    /// A new `login` arrived (with the current connection, kept in case the
    /// new login fails).
    Login(
        LoginArgs,
        bool,
        oneshot::Sender<Result<LoginDone, LoginError>>,
        Option<Box<ServerConn>>,
    ),
    /// `logout` arrived and was carried out.
    LoggedOut(oneshot::Sender<Result<LogoutDone, LoginError>>),
}

struct Link {
    cfg: LinkConfig,
    state: StateDir,
    cmds: mpsc::Receiver<LinkCmd>,
    status: watch::Sender<LinkStatus>,
    events: broadcast::Sender<Event>,
    shutdown: CancellationToken,
    creds: Option<Creds>,
    conn: Option<ServerConn>,
    /// When the current session came online (for the backoff after a loss).
    online_at: Option<Instant>,
    /// Sessions broken soon after login in a row (see [`retry`]).
    short_sessions: u32,
    /// Which of the credentials' servers the next attempt goes to (see
    /// [`failover`]).
    server_index: usize,
    next_id: u64,
    pending: HashMap<u64, oneshot::Sender<Result<wire::Reply, LinkError>>>,
}

impl Link {
    fn set(&self, change: impl FnOnce(&mut LinkStatus)) {
        self.status.send_modify(change);
        let report = self.status.borrow().report();
        info!(state = ?report.state, attempt = report.attempt, "server session");
        let _ = self.events.send(Event::Server(report));
    }

    async fn run(mut self) {
        loop {
            let ended = match self.conn.take() {
                Some(conn) => self.online(conn).await,
                None => match self.wait().await {
                    Some(ended) => ended,
                    None => continue,
                },
            };
            // A new login keeps the current connection (and its requests in
            // flight) until it succeeds; every other end drops it.
            if !matches!(ended, Ended::Login(_, _, _, Some(_))) {
                self.fail_pending();
            }
            match ended {
                Ended::Shutdown => return,
                Ended::Lost(why) => {
                    warn!(reason = %why, "server connection lost; reconnecting");
                    // The server just lost is the least likely to answer.
                    self.next_server();
                    self.lost(why);
                }
                Ended::Broken(why) => {
                    warn!(reason = %why, "server session failed; reconnecting with growing backoff");
                    self.broken(why);
                }
                Ended::Stopped(state, why) => {
                    warn!(reason = %why, "server ended the session; not reconnecting");
                    self.forget_token().await;
                    self.creds = None;
                    self.set(|s| {
                        s.state = state;
                        s.current = None;
                        s.attempt = 0;
                        s.next_retry_at = None;
                        s.since_ms = None;
                        s.last_error = Some(why);
                    });
                }
                Ended::Login(args, register, reply, previous) => {
                    self.login(args, register, reply, previous).await
                }
                Ended::LoggedOut(reply) => self.logged_out(reply).await,
            }
        }
    }

    /// Offline: answer commands, and attempt when the retry timer fires.
    /// Returns `Some` when the caller must act, `None` to loop.
    async fn wait(&mut self) -> Option<Ended> {
        let due = self.status.borrow().next_retry_at;
        tokio::select! {
            _ = self.shutdown.cancelled() => Some(Ended::Shutdown),
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                self.retry_now().await;
                None
            }
            cmd = self.cmds.recv() => match cmd {
                None => Some(Ended::Shutdown),
                Some(LinkCmd::Login { args, register, reply }) => Some(Ended::Login(args, register, reply, None)),
                Some(LinkCmd::Logout { reply }) => Some(Ended::LoggedOut(reply)),
                Some(LinkCmd::Request { reply, .. }) => {
                    let _ = reply.send(Err(self.not_online()));
                    None
                }
            },
        }
    }

    fn not_online(&self) -> LinkError {
        let s = self.status.borrow().report();
        match s.state {
            ServerState::Connecting => LinkError::Connecting {
                attempt: s.attempt,
                next_try_s: s.next_retry_ms.unwrap_or(0).div_ceil(1000),
            },
            ServerState::Replaced => LinkError::Replaced,
            _ => LinkError::NotLoggedIn,
        }
    }
}

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

mod connect;
mod online;

use std::collections::HashMap;
use std::time::Duration;

use p2p_proto::ctl::{
    CtlError, ErrorCode, Event, LoginArgs, LoginDone, LogoutDone, ServerState, ServerStatus,
};
use p2p_proto::time;
use p2p_proto::wire::{self, Auth, PeerInfo};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::peer::Peers;
use crate::state::{SavedSession, StateDir};
pub use connect::Creds;
use connect::{Failure, LoggedIn, ServerConn};
use std::sync::Arc;

/// Commands waiting for the link task; more than this and callers wait.
pub const COMMAND_QUEUE: usize = 64;

/// What control handlers ask of the link.
#[derive(Debug)]
pub enum LinkCmd {
    /// Log in (or register) with a password; answered after the first attempt.
    Login {
        /// What `p2pctl login` sent.
        args: LoginArgs,
        /// Create the account first.
        register: bool,
        /// The first attempt's outcome.
        reply: oneshot::Sender<Result<LoginDone, CtlError>>,
    },
    /// Log out, revoke the token, forget the saved session.
    Logout {
        /// Which user was logged out.
        reply: oneshot::Sender<Result<LogoutDone, CtlError>>,
    },
    /// A request to the server.
    Request {
        /// What to ask.
        req: wire::Request,
        /// The server's answer.
        reply: oneshot::Sender<Result<wire::Reply, CtlError>>,
    },
}

/// The link's state as handlers read it.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    /// Where the session stands.
    pub state: ServerState,
    /// `host:port`.
    pub server: Option<String>,
    /// Account name.
    pub user: Option<String>,
    /// Failed attempts since last online.
    pub attempt: u32,
    /// When the next attempt is due.
    pub next_retry_at: Option<Instant>,
    /// When the session came online, Unix ms.
    pub since_ms: Option<i64>,
    /// Why the last attempt failed or the session ended.
    pub last_error: Option<String>,
}

impl LinkStatus {
    /// The `server` object of `status` and of `server` events.
    pub fn report(&self) -> ServerStatus {
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
        }
    }
}

/// The handlers' side of the link.
#[derive(Clone)]
pub struct LinkHandle {
    cmds: mpsc::Sender<LinkCmd>,
    status: watch::Receiver<LinkStatus>,
}

impl LinkHandle {
    /// The current state.
    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// Sends a command; fails only if the daemon is shutting down.
    pub async fn send(&self, cmd: LinkCmd) -> Result<(), CtlError> {
        self.cmds
            .send(cmd)
            .await
            .map_err(|_| CtlError::new(ErrorCode::Internal, "daemon is shutting down"))
    }

    /// Sends a request to the server and waits for its answer.
    pub async fn request(&self, req: wire::Request) -> Result<wire::Reply, CtlError> {
        let (reply, rx) = oneshot::channel();
        self.send(LinkCmd::Request { req, reply }).await?;
        rx.await.map_err(|_| {
            CtlError::new(
                ErrorCode::ServerUnreachable,
                "server connection closed; try again",
            )
        })?
    }
}

/// What the link needs to know about this daemon.
pub struct LinkConfig {
    /// Reconnect timing.
    pub backoff: Backoff,
    /// Peer listener details sent at login.
    pub peer: PeerInfo,
    /// Where invitation events go (and, through its inbox, broadcasts).
    pub peers: Arc<Peers>,
    /// Fault injection for crash tests (`P2PD_FAILPOINT`); `None` in normal use.
    pub failpoint: Option<String>,
}

/// `P2PD_FAILPOINT` value that makes p2pd abort after storing a broadcast
/// and before acknowledging it: how tests crash it in exactly that window.
pub const FAILPOINT_CRASH_BEFORE_BROADCAST_ACK: &str = "crash-before-broadcast-ack";

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
            pin: None,
        })
    });
    let initial = LinkStatus {
        state: if creds.is_some() {
            ServerState::Connecting
        } else {
            ServerState::LoggedOut
        },
        server: saved.as_ref().map(|s| s.server.clone()),
        user: saved.as_ref().map(|s| s.user.clone()),
        attempt: 0,
        next_retry_at: creds.as_ref().map(|_| Instant::now()),
        since_ms: None,
        last_error: None,
    };
    let (status_tx, status_rx) = watch::channel(initial);
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let handle = LinkHandle {
        cmds: cmd_tx,
        status: status_rx,
    };
    let task = Link {
        handle: handle.clone(),
        cfg,
        state,
        cmds: cmd_rx,
        status: status_tx,
        events,
        shutdown,
        creds,
        conn: None,
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
    /// The server said not to come back (replaced, account removed).
    Stopped(ServerState, String),
    /// A new `login` arrived (with the current connection, kept in case the
    /// new login fails).
    Login(
        LoginArgs,
        bool,
        oneshot::Sender<Result<LoginDone, CtlError>>,
        Option<Box<ServerConn>>,
    ),
    /// `logout` arrived and was carried out.
    LoggedOut(oneshot::Sender<Result<LogoutDone, CtlError>>),
}

struct Link {
    /// Our own handle, for the invitation logic that answers through us.
    handle: LinkHandle,
    cfg: LinkConfig,
    state: StateDir,
    cmds: mpsc::Receiver<LinkCmd>,
    status: watch::Sender<LinkStatus>,
    events: broadcast::Sender<Event>,
    shutdown: CancellationToken,
    creds: Option<Creds>,
    conn: Option<ServerConn>,
    next_id: u64,
    pending: HashMap<u64, oneshot::Sender<Result<wire::Reply, CtlError>>>,
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
                    self.schedule_retry(1, why, None);
                }
                Ended::Stopped(state, why) => {
                    warn!(reason = %why, "server ended the session; not reconnecting");
                    self.forget_token();
                    self.creds = None;
                    self.set(|s| {
                        s.state = state;
                        s.attempt = 0;
                        s.next_retry_at = None;
                        s.since_ms = None;
                        s.last_error = Some(why);
                    });
                }
                Ended::Login(args, register, reply, previous) => {
                    self.login(args, register, reply, previous).await
                }
                Ended::LoggedOut(reply) => self.logged_out(reply),
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

    fn not_online(&self) -> CtlError {
        let s = self.status.borrow().report();
        match s.state {
            ServerState::Connecting => CtlError::new(
                ErrorCode::ServerUnreachable,
                format!(
                    "not connected to the server yet (attempt {}, next try in {}s); p2pd keeps trying",
                    s.attempt,
                    s.next_retry_ms.unwrap_or(0).div_ceil(1000)
                ),
            ),
            ServerState::Replaced => CtlError::new(
                ErrorCode::NotLoggedIn,
                "this session was replaced by a login from elsewhere; run p2pctl login to take it back",
            ),
            _ => CtlError::new(ErrorCode::NotLoggedIn, "not logged in; run p2pctl login --server HOST --user NAME"),
        }
    }

    /// One connection attempt, abandoned (`None`) if the daemon shuts down
    /// meanwhile: an attempt can take a minute against a stuck server.
    async fn attempt_unless_shutdown(&self, creds: &Creds) -> Option<Result<LoggedIn, Failure>> {
        tokio::select! {
            _ = self.shutdown.cancelled() => None,
            r = connect::attempt(creds, &self.cfg.peer) => Some(r),
        }
    }

    async fn retry_now(&mut self) {
        let Some(creds) = self.creds.clone() else {
            return;
        };
        let attempt = self.status.borrow().attempt + 1;
        self.status.send_modify(|s| {
            s.attempt = attempt;
            s.next_retry_at = None;
        });
        let Some(result) = self.attempt_unless_shutdown(&creds).await else {
            return;
        };
        match result {
            Ok(ok) => self.went_online(ok),
            Err(Failure::Retry { why, after }) => self.schedule_retry(attempt + 1, why, after),
            Err(Failure::Fatal(e)) => self.fatal(e),
        }
    }

    fn schedule_retry(&mut self, next_attempt: u32, why: String, after: Option<Duration>) {
        let delay = self
            .cfg
            .backoff
            .delay(next_attempt, rand::random::<f64>())
            .max(after.unwrap_or_default());
        self.set(|s| {
            s.state = ServerState::Connecting;
            s.attempt = next_attempt - 1;
            s.next_retry_at = Some(Instant::now() + delay);
            s.since_ms = None;
            s.last_error = Some(why);
        });
    }

    fn fatal(&mut self, e: CtlError) {
        warn!(code = ?e.code, reason = %e.message, "login refused; not retrying");
        // Whatever was saved must not log in by itself after a restart:
        // the user has to decide (and log in) again.
        self.forget_token();
        self.creds = None;
        self.set(|s| {
            s.state = ServerState::LoggedOut;
            s.attempt = 0;
            s.next_retry_at = None;
            s.since_ms = None;
            s.last_error = Some(e.message.clone());
        });
    }

    fn went_online(&mut self, ok: LoggedIn) {
        let Some(creds) = self.creds.as_mut() else {
            return;
        };
        // Invitation ids are per server run: old answers mean nothing now.
        self.cfg.peers.logged_in(&creds.user, ok.clock_skew_ms);
        creds.auth = Auth::Token {
            token: ok.token.clone(),
        };
        let saved = SavedSession {
            server: creds.server.clone(),
            user: creds.user.clone(),
            token: Some(ok.token),
        };
        let (server, user) = (creds.server.clone(), creds.user.clone());
        if let Err(e) = self.state.save_session(Some(&saved)) {
            warn!(cause = %e, "cannot save the session; a restart will need the password");
        }
        if creds.pin.is_none() || creds.pin.as_deref() != Some(ok.fingerprint.as_str()) {
            if let Err(e) = self.state.set_pin(&server, &ok.fingerprint) {
                warn!(cause = %e, "cannot save the server fingerprint");
            }
            creds.pin = Some(ok.fingerprint);
        }
        self.conn = Some(ok.conn);
        self.set(|s| {
            s.state = ServerState::Online;
            s.server = Some(server);
            s.user = Some(user);
            s.attempt = 0;
            s.next_retry_at = None;
            s.since_ms = Some(time::now_ms());
            s.last_error = None;
        });
    }

    fn forget_token(&self) {
        if let Ok(Some(mut saved)) = self.state.session() {
            saved.token = None;
            if let Err(e) = self.state.save_session(Some(&saved)) {
                warn!(cause = %e, "cannot forget the saved token");
            }
        }
    }

    /// Logs in with new credentials. If that fails while an earlier session
    /// is still up (`previous`), the earlier session is kept as it was: a
    /// mistyped password must not cost a working session.
    async fn login(
        &mut self,
        args: LoginArgs,
        register: bool,
        reply: oneshot::Sender<Result<LoginDone, CtlError>>,
        previous: Option<Box<ServerConn>>,
    ) {
        let before = (self.creds.clone(), self.status.borrow().clone());
        let server = wire::server_address(&args.server);
        let explicit = match args.fingerprint.as_deref().map(wire::normalize_fingerprint) {
            Some(None) => {
                let _ = reply.send(Err(CtlError::new(
                    ErrorCode::BadRequest,
                    "--fingerprint must look like SHA256:<64 hex digits>",
                )));
                return;
            }
            Some(Some(fp)) => Some(fp),
            None => None,
        };
        let pin = match explicit {
            Some(fp) => Some(fp),
            None => self.state.pin(&server).unwrap_or(None),
        };
        let password = args.password;
        let auth = if register {
            Auth::Register { password }
        } else {
            Auth::Password { password }
        };
        self.creds = Some(Creds {
            server: server.clone(),
            user: args.user.clone(),
            auth,
            pin,
        });
        self.set(|s| {
            s.state = ServerState::Connecting;
            s.server = Some(server.clone());
            s.user = Some(args.user.clone());
            s.attempt = 1;
            s.next_retry_at = None;
        });
        let creds = self.creds.clone().expect("just set");
        let Some(attempt) = self.attempt_unless_shutdown(&creds).await else {
            let _ = reply.send(Err(CtlError::new(
                ErrorCode::Internal,
                "daemon is shutting down",
            )));
            return;
        };
        let previous_dropped = previous.is_some();
        if previous.is_none() {
            // Whatever session was saved is not the one being logged in now:
            // a restart before this login gets through must not resume it.
            if let Err(e) = self.state.save_session(None) {
                warn!(cause = %e, "cannot forget the previous saved session");
            }
        }
        if let (Err(failure), Some(conn)) = (&attempt, previous) {
            let e = match failure {
                Failure::Fatal(e) => e.clone(),
                Failure::Retry { why, .. } => {
                    CtlError::new(ErrorCode::ServerUnreachable, why.clone())
                }
            };
            warn!(reason = %e.message, "new login failed; keeping the current session");
            let (creds, status) = before;
            self.creds = creds;
            self.conn = Some(*conn);
            self.set(|s| *s = status);
            let message = format!("{} (still logged in as before)", e.message);
            let _ = reply.send(Err(CtlError::new(e.code, message)));
            return;
        }
        if previous_dropped {
            self.fail_pending();
        }
        let result = match attempt {
            Ok(ok) => {
                let fingerprint = ok.fingerprint.clone();
                self.went_online(ok);
                Ok(LoginDone {
                    user: args.user,
                    server,
                    fingerprint,
                })
            }
            Err(Failure::Retry { why, after }) => {
                self.schedule_retry(2, why.clone(), after);
                let s = self.status.borrow().report();
                Err(CtlError::new(
                    ErrorCode::ServerUnreachable,
                    format!(
                        "{why}; p2pd keeps trying in the background (next try in {}s; see p2pctl status)",
                        s.next_retry_ms.unwrap_or(0).div_ceil(1000)
                    ),
                ))
            }
            Err(Failure::Fatal(e)) => {
                self.fatal(e.clone());
                Err(e)
            }
        };
        let _ = reply.send(result);
    }

    fn logged_out(&mut self, reply: oneshot::Sender<Result<LogoutDone, CtlError>>) {
        let user = self.status.borrow().user.clone();
        self.creds = None;
        if let Err(e) = self.state.save_session(None) {
            // Say so: the token is still on disk and would log in at the
            // next start, which is not what "logged out" promises.
            warn!(cause = %e, "cannot remove the saved session");
            let msg = format!(
                "logged out, but the saved session could not be removed ({e}); delete it by hand"
            );
            let _ = reply.send(Err(CtlError::new(ErrorCode::Internal, msg)));
            self.set(|s| s.state = ServerState::LoggedOut);
            return;
        }
        self.set(|s| {
            s.state = ServerState::LoggedOut;
            s.server = None;
            s.user = None;
            s.attempt = 0;
            s.next_retry_at = None;
            s.since_ms = None;
            s.last_error = None;
        });
        let _ = reply.send(Ok(LogoutDone { user }));
    }
}

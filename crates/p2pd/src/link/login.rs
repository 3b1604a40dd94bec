//! Logging in and out: a `login` command, becoming online (pin, saved
//! session), `logout`.

use p2p_proto::ctl::{LoginArgs, LoginDone, LogoutDone, ServerState};
use p2p_proto::wire::{self, Auth};
use p2p_proto::{time, Fingerprint};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

use super::connect::{Creds, Failure, LoggedIn, ServerConn};
use super::error::LoginError;
use super::{Link, LinkEvent};
use crate::state::SavedSession;

impl Link {
    /// The login got through: pin the certificate if this was its first
    /// use (or an explicit new pin), save the session, go online. If the
    /// pin cannot be saved the connection is dropped and the error returned
    /// for the caller to retry with backoff: a session whose pin is not on
    /// disk could not be checked after a restart.
    pub(super) async fn went_online(&mut self, ok: LoggedIn) -> Result<(), LoginError> {
        let Some(creds) = self.creds.as_mut() else {
            return Ok(());
        };
        if ok.save_pin {
            let (server, fingerprint) = (creds.server.clone(), ok.fingerprint.to_string());
            let pinned = self
                .state
                .blocking(move |s| s.set_pin(&server, &fingerprint))
                .await;
            if let Err(e) = pinned {
                warn!(cause = %e, "cannot save the server fingerprint; not staying online");
                return Err(LoginError::PinNotSaved(e));
            }
            info!(server = %creds.server, fingerprint = %ok.fingerprint, "pinned the server certificate");
        }
        creds.fingerprint = None;
        // Invitation ids are per server run: old answers mean nothing now.
        let login = LinkEvent::LoggedIn {
            user: creds.user.clone(),
            clock_skew_ms: ok.clock_skew_ms,
        };
        let _ = self.cfg.to_peers.send(login).await;
        creds.auth = Auth::Token {
            token: ok.token.clone(),
        };
        let saved = SavedSession {
            server: creds.server.clone(),
            user: creds.user.clone(),
            token: Some(ok.token),
        };
        let (server, user) = (creds.server.clone(), creds.user.clone());
        let (fingerprint, observed) = (ok.fingerprint.clone(), ok.observed_addr.clone());
        let stored = self
            .state
            .blocking(move |s| s.save_session(Some(&saved)))
            .await;
        if let Err(e) = stored {
            warn!(cause = %e, "cannot save the session; a restart will need the password");
        }
        self.conn = Some(ok.conn);
        self.online_at = Some(Instant::now());
        self.set(|s| {
            s.state = ServerState::Online;
            s.server = Some(server);
            s.user = Some(user);
            s.attempt = 0;
            s.next_retry_at = None;
            s.since_ms = Some(time::now_ms());
            s.last_error = None;
            s.fingerprint = Some(fingerprint);
            s.observed = Some(observed);
        });
        Ok(())
    }

    pub(super) async fn forget_token(&self) {
        let forgot = self
            .state
            .blocking(|s| match s.session()? {
                Some(mut saved) => {
                    saved.token = None;
                    s.save_session(Some(&saved))
                }
                None => Ok(()),
            })
            .await;
        if let Err(e) = forgot {
            warn!(cause = %e, "cannot forget the saved token");
        }
    }

    /// Logs in with new credentials. If that fails while an earlier session
    /// is still up (`previous`), the earlier session is kept as it was: a
    /// mistyped password must not cost a working session.
    pub(super) async fn login(
        &mut self,
        args: LoginArgs,
        register: bool,
        reply: oneshot::Sender<Result<LoginDone, LoginError>>,
        previous: Option<Box<ServerConn>>,
    ) {
        let before = (self.creds.clone(), self.status.borrow().clone());
        // The handler checked every entry; a list of one is one address.
        let server = p2p_proto::address::parse_server_list(&args.server)
            .unwrap_or_else(|_| wire::server_address(&args.server));
        let explicit = match args.fingerprint.as_deref().map(Fingerprint::parse) {
            Some(None) => {
                let _ = reply.send(Err(LoginError::BadFingerprint));
                return;
            }
            Some(Some(fp)) => Some(String::from(fp)),
            None => None,
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
            // The pin itself is read right before each attempt.
            fingerprint: explicit,
        });
        // Asked for by the user: the next retry is not held back by how
        // earlier sessions ended, and starts at the list's first server.
        self.short_sessions = 0;
        self.server_index = 0;
        self.set(|s| {
            s.state = ServerState::Connecting;
            s.server = Some(server.clone());
            s.user = Some(args.user.clone());
            s.attempt = 1;
            s.next_retry_at = None;
        });
        let creds = self.creds.clone().expect("just set");
        // With several servers, each is tried once before the answer: one
        // instance down must not fail a login the others would take.
        let mut left = self.server_count();
        let attempt = loop {
            let Some(attempt) = self.attempt_unless_shutdown(&creds).await else {
                let _ = reply.send(Err(LoginError::ShuttingDown));
                return;
            };
            left -= 1;
            match attempt {
                Err(Failure::Retry { .. }) if left > 0 => self.next_server(),
                attempt => break attempt,
            }
        };
        let previous_dropped = previous.is_some();
        if previous.is_none() {
            // Whatever session was saved is not the one being logged in now:
            // a restart before this login gets through must not resume it.
            if let Err(e) = self.state.blocking(|s| s.save_session(None)).await {
                warn!(cause = %e, "cannot forget the previous saved session");
            }
        }
        let attempt = match (attempt, previous) {
            (Err(failure), Some(conn)) => {
                let e = match failure {
                    Failure::Fatal(e) => e,
                    Failure::Retry { why, .. } => LoginError::Unreachable(why),
                };
                warn!(reason = %e, "new login failed; keeping the current session");
                let (creds, status) = before;
                self.creds = creds;
                self.conn = Some(*conn);
                self.set(|s| *s = status);
                let _ = reply.send(Err(LoginError::KeptPrevious(Box::new(e))));
                return;
            }
            (attempt, _) => attempt,
        };
        if previous_dropped {
            self.fail_pending();
        }
        let result = match attempt {
            Ok(ok) => {
                let fingerprint = ok.fingerprint.clone();
                match self.went_online(ok).await {
                    Ok(()) => Ok(LoginDone {
                        user: args.user,
                        server,
                        fingerprint,
                    }),
                    Err(e) => {
                        self.schedule_retry(2, e.to_string(), None);
                        Err(LoginError::Retrying(Box::new(e)))
                    }
                }
            }
            Err(Failure::Retry {
                unreached: Some(cause),
                ..
            }) if self.never_logged_in(&server).await => {
                let e = LoginError::FirstContact {
                    server: server.clone(),
                    cause,
                };
                self.fatal(&e).await;
                Err(e)
            }
            Err(Failure::Retry { why, after, .. }) => {
                self.next_server();
                self.schedule_retry(2, why.clone(), after);
                let s = self.status.borrow().report();
                Err(LoginError::UnreachableRetrying {
                    why,
                    next_try_s: s.next_retry_ms.unwrap_or(0).div_ceil(1000),
                })
            }
            Err(Failure::Fatal(e)) => {
                self.fatal(&e).await;
                Err(e)
            }
        };
        let _ = reply.send(result);
    }

    /// No login to `server` has succeeded yet: it has no pin (a pin is
    /// saved by the first login that gets through). A pin file that cannot
    /// be read counts as "has logged in", keeping the retries.
    async fn never_logged_in(&self, server: &str) -> bool {
        let server = server.to_string();
        matches!(self.state.blocking(move |s| s.pin(&server)).await, Ok(None))
    }

    pub(super) async fn logged_out(
        &mut self,
        reply: oneshot::Sender<Result<LogoutDone, LoginError>>,
    ) {
        let user = self.status.borrow().user.clone();
        self.creds = None;
        if let Err(e) = self.state.blocking(|s| s.save_session(None)).await {
            // Say so: the token is still on disk and would log in at the
            // next start, which is not what "logged out" promises.
            warn!(cause = %e, "cannot remove the saved session");
            let _ = reply.send(Err(LoginError::SessionNotRemoved(e)));
            self.set(|s| s.state = ServerState::LoggedOut);
            return;
        }
        self.set(|s| {
            s.state = ServerState::LoggedOut;
            s.server = None;
            s.current = None;
            s.user = None;
            s.attempt = 0;
            s.next_retry_at = None;
            s.since_ms = None;
            s.last_error = None;
        });
        let _ = reply.send(Ok(LogoutDone { user }));
    }
}

//! Attempts and their timing: one attempt (pin decided just before it),
//! the retry schedule, and giving up.
//!
//! A session that *broke* (failed on something likely to fail again: a
//! broadcast the inbox cannot store, a frame it cannot read) soon after it
//! came online does not start the backoff over: without that, a daemon
//! whose every session breaks right after login (a full state dir: each
//! redelivered broadcast fails to store, the session is dropped
//! unacknowledged) logs in again every second, forever. A session merely
//! lost (server restart, network) reconnects from the shortest delay.

use std::time::Duration;

use p2p_proto::ctl::ServerState;
use tokio::time::Instant;
use tracing::{info, warn};

use super::connect::{self, Creds, Failure, LoggedIn};
use super::error::LoginError;
use super::trust;
use super::Link;

/// A session that stayed online this long was healthy: even if it broke,
/// reconnecting starts again from the shortest delay. A shorter one that
/// broke adds to the backoff. A minute is longer than any login-then-fail cycle, and
/// short enough that a flapping server is forgiven once it holds.
pub(crate) const STABLE_SESSION: Duration = Duration::from_secs(60);

/// Sessions broken within [`STABLE_SESSION`] in a row, after one more
/// broke having lasted `lasted`.
pub(crate) fn short_sessions_after(short_sessions: u32, lasted: Duration) -> u32 {
    if lasted >= STABLE_SESSION {
        0
    } else {
        short_sessions.saturating_add(1)
    }
}

impl Link {
    /// One connection attempt, abandoned (`None`) if the daemon shuts down
    /// meanwhile: an attempt can take a minute against a stuck server. The
    /// pin is read from `known_servers.json` right before it, whatever the
    /// credentials; a pin that cannot be trusted is a fatal failure.
    pub(super) async fn attempt_unless_shutdown(
        &self,
        creds: &Creds,
    ) -> Option<Result<LoggedIn, Failure>> {
        let server = creds.server.clone();
        // A file read: on the blocking pool, like every state file access.
        let saved_pin = self.state.blocking(move |s| s.pin(&server)).await;
        let trust = match trust::decide(
            &creds.server,
            &creds.auth,
            saved_pin,
            creds.fingerprint.as_deref(),
            &self.state.pin_file(),
        ) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(server = %creds.server, reason = %e, "refusing to connect");
                return Some(Err(Failure::Fatal(e)));
            }
        };
        // The interfaces are read now: addresses change (a laptop moves).
        let mut peer = self.cfg.peer.clone();
        if let Some(listen) = self.cfg.listen {
            peer.lan = crate::lan::paths(listen, &crate::lan::interfaces());
        }
        let addr = self.server_for_attempt(creds);
        self.status.send_modify(|s| s.current = Some(addr.clone()));
        tokio::select! {
            _ = self.shutdown.cancelled() => None,
            r = connect::attempt(creds, &addr, &trust, &peer, self.cfg.listen) => Some(r),
        }
    }

    pub(super) async fn retry_now(&mut self) {
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
            Ok(ok) => {
                if let Err(e) = self.went_online(ok).await {
                    self.schedule_retry(attempt + 1, e.to_string(), None);
                }
            }
            Err(Failure::Retry { why, after, .. }) => {
                self.next_server();
                self.schedule_retry(attempt + 1, why, after)
            }
            Err(Failure::Fatal(e)) => self.fatal(&e).await,
        }
    }

    /// The session was lost (server or network): reconnect from the
    /// shortest delay.
    pub(super) fn lost(&mut self, why: String) {
        self.online_at = None;
        self.short_sessions = 0;
        self.schedule_retry(1, why, None);
    }

    /// The session broke: reconnect, backing off further if it was short.
    pub(super) fn broken(&mut self, why: String) {
        let lasted = self
            .online_at
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        self.short_sessions = short_sessions_after(self.short_sessions, lasted);
        self.schedule_retry(1, why, None);
    }

    pub(super) fn schedule_retry(
        &mut self,
        next_attempt: u32,
        why: String,
        after: Option<Duration>,
    ) {
        let delay = self
            .cfg
            .backoff
            .delay(
                next_attempt.saturating_add(self.short_sessions),
                rand::random::<f64>(),
            )
            .max(server_wait(after, self.cfg.backoff.max));
        info!(
            attempt = next_attempt,
            reason = %why,
            "retrying in {}: {why}",
            p2p_proto::time::wait_text(delay)
        );
        let next = self.creds.as_ref().map(|c| self.server_for_attempt(c));
        self.set(|s| {
            s.state = ServerState::Connecting;
            s.current = next;
            s.attempt = next_attempt - 1;
            s.next_retry_at = Some(Instant::now() + delay);
            s.since_ms = None;
            s.last_error = Some(why);
        });
    }

    pub(super) async fn fatal(&mut self, e: &LoginError) {
        let user = self
            .creds
            .as_ref()
            .map(|c| c.user.clone())
            .unwrap_or_default();
        // What and why in the message itself (journald shows MESSAGE).
        warn!(%user, reason = %e, "login refused for {user}: {e}; not retrying");
        // Whatever was saved must not log in by itself after a restart:
        // the user has to decide (and log in) again.
        self.forget_token().await;
        self.creds = None;
        self.set(|s| {
            s.state = ServerState::LoggedOut;
            s.current = None;
            s.attempt = 0;
            s.next_retry_at = None;
            s.since_ms = None;
            s.last_error = Some(e.to_string());
        });
    }
}

/// How long the server asked us to wait (busy preamble or login answer),
/// held to our own longest backoff: the value comes from the network, and
/// an absurd one must neither stall the daemon for ever nor overflow the
/// clock arithmetic.
fn server_wait(after: Option<Duration>, cap: Duration) -> Duration {
    after.unwrap_or_default().min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_wait_is_held_to_our_longest_backoff() {
        let cap = Duration::from_secs(60);
        assert_eq!(server_wait(None, cap), Duration::ZERO);
        assert_eq!(
            server_wait(Some(Duration::from_secs(5)), cap),
            Duration::from_secs(5)
        );
        assert_eq!(server_wait(Some(Duration::from_millis(u64::MAX)), cap), cap);
    }
    use crate::backoff::Backoff;
    use crate::config::{DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN};

    /// A session that breaks right after every login (the full-state-dir
    /// loop) backs off to the maximum instead of reconnecting every second.
    #[test]
    fn sessions_lost_right_after_login_back_off() {
        let backoff = Backoff {
            min: DEFAULT_RECONNECT_MIN,
            max: DEFAULT_RECONNECT_MAX,
        };
        let mut short = 0;
        let mut delays = Vec::new();
        for _ in 0..10 {
            short = short_sessions_after(short, Duration::from_millis(50));
            delays.push(backoff.delay(1 + short, 0.0));
        }
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(*delays.last().unwrap(), DEFAULT_RECONNECT_MAX / 2);
        let total: Duration = delays.iter().sum();
        assert!(total >= Duration::from_secs(100), "{total:?} for 10 logins");
    }

    #[test]
    fn a_stable_session_starts_the_backoff_over() {
        assert_eq!(short_sessions_after(7, STABLE_SESSION), 0);
        assert_eq!(short_sessions_after(7, STABLE_SESSION * 10), 0);
        assert_eq!(short_sessions_after(7, STABLE_SESSION / 2), 8);
        assert_eq!(short_sessions_after(u32::MAX, Duration::ZERO), u32::MAX);
    }
}

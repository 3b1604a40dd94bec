//! The I/O ends of an invitation: the commands (`connect`, `accept`,
//! `reject`) that feed the machine and wait for its answer, and the
//! handshake of a link that dials in (the dials are `reach/`).

use std::sync::Arc;
use std::time::Duration;

use p2p_proto::ctl::{Answered, ConnectDone, PendingRequest, SessionPath};
use p2p_proto::peer::LinkRole;
use p2p_proto::time::rfc3339;
use p2p_proto::wire::{Reply, Request};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tracing::warn;

use super::error::PeerError;
use super::invitations::Input;
use super::reach::{self, LinkSetupError};
use super::{listener, noise, Peers};
use crate::link::reply_error;

/// Extra wait past the invitation's life, so the server's "expired" answer
/// (exit 5 with a reason) normally beats our own timeout.
pub(crate) const ANSWER_SLACK: Duration = Duration::from_secs(5);

/// The longest invitation life `connect` waits for by default: the largest
/// `p2p-server --invitation-ttl`. A server that claims a later expiry is not
/// believed (the user could not tell a hang from a wait).
pub(crate) const MAX_INVITATION_WAIT: Duration = p2p_proto::limits::MAX_INVITATION_TTL;

/// `connect`'s wait without `--timeout`: the time the invitation has left
/// (`remaining`, by the server's clock), capped, plus [`ANSWER_SLACK`].
pub(crate) fn default_wait(remaining: Duration) -> Duration {
    remaining.min(MAX_INVITATION_WAIT) + ANSWER_SLACK
}

impl Peers {
    /// Invites `user`; unless `no_wait`, waits for the session up to `wait`,
    /// or without one until the invitation expires by the server's clock
    /// (the server sets the life: `--invitation-ttl`).
    pub(crate) async fn connect(
        self: &Arc<Self>,
        user: &str,
        wait: Option<Duration>,
        no_wait: bool,
    ) -> Result<ConnectDone, PeerError> {
        if let Some((info, _)) = self.session(user) {
            return Ok(ConnectDone {
                connected: Some(info),
                invited: None,
            });
        }
        let to = user.to_string();
        let (invite, expires_ms) = match self.link.request(Request::Invite { to }).await? {
            Reply::Invited { invite, expires_ms } => (invite, expires_ms),
            other => return Err(reply_error(other).into()),
        };
        let to = user.to_string();
        if no_wait {
            self.apply(Input::Invited {
                invite,
                to,
                waiter: None,
            });
            let invited = PendingRequest {
                from: user.to_string(),
                expires_at: rfc3339(expires_ms),
            };
            return Ok(ConnectDone {
                connected: None,
                invited: Some(invited),
            });
        }
        let wait = wait.unwrap_or_else(|| {
            let left = super::lock(&self.invitations).until_server_time(expires_ms, super::now());
            default_wait(left)
        });
        let (tx, rx) = oneshot::channel();
        self.apply(Input::Invited {
            invite,
            to,
            waiter: Some(tx),
        });
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(info))) => Ok(ConnectDone {
                connected: info,
                invited: None,
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(PeerError::ShuttingDown),
            Err(_) => {
                self.apply(Input::ConnectGaveUp { invite });
                Err(PeerError::NoAnswer {
                    to: user.to_string(),
                    waited_s: wait.as_secs(),
                })
            }
        }
    }

    /// Answers `user`'s invitation. Accepting waits (up to the setup deadline,
    /// the machine's deadline) for the inviter to connect.
    pub(crate) async fn answer(
        self: &Arc<Self>,
        user: &str,
        accept: bool,
    ) -> Result<Answered, PeerError> {
        let (tx, rx) = oneshot::channel();
        self.apply(Input::Answer {
            from: user.to_string(),
            accept,
            waiter: Some(tx),
        });
        let session = rx.await.map_err(|_| PeerError::ShuttingDown)??;
        Ok(Answered {
            peer: user.to_string(),
            accepted: session.is_some(),
            session,
        })
    }

    /// A link came in on the listener: let it through only if the machine
    /// says it matches an invitation we accepted (key, name and id).
    /// `slot` is this link's admission slot, held until its handshake is
    /// done (the link ends if a newcomer takes the slot first).
    pub(super) async fn incoming(self: Arc<Self>, stream: TcpStream, slot: listener::Slot) {
        let addr = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = stream.set_nodelay(true);
        let handshake = tokio::select! {
            r = reach::link::secure(stream, LinkRole::Accept, &self.private_key, &self.public_key, None) => r,
            _ = slot.evicted() => {
                // Only under a flood (the listener logs those, rate-limited).
                tracing::debug!(%addr, "half-open peer link made room for a newer one");
                return;
            }
            _ = self.shutdown.cancelled() => return,
        };
        drop(slot);
        match handshake {
            Ok(secured) => {
                self.take_link(secured, SessionPath::Direct).await;
            }
            // A link that never spoke is what a flood is made of: the
            // listener already logs floods (rate-limited).
            Err(
                e @ (LinkSetupError::Silent | LinkSetupError::Noise(noise::NoiseError::Silent)),
            ) => {
                tracing::debug!(%addr, reason = %e, "peer handshake failed");
            }
            Err(e) => warn!(%addr, reason = %e, "peer handshake failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_wait_follows_the_invitation_not_a_fixed_minute() {
        let five_minutes = Duration::from_secs(300);
        assert_eq!(default_wait(five_minutes), five_minutes + ANSWER_SLACK);
        assert_eq!(default_wait(Duration::ZERO), ANSWER_SLACK);
        let day = Duration::from_secs(86_400);
        assert_eq!(default_wait(day), MAX_INVITATION_WAIT + ANSWER_SLACK);
    }

    /// The invitation's expiry is the server's time: the wait is measured
    /// on the server's clock (the skew seen at login), never from a
    /// fixed life.
    #[test]
    fn time_left_is_counted_on_the_servers_clock() {
        let mut m = super::super::invitations::Invitations::<u32, u32>::new([], vec![1]);
        let now = super::super::invitations::Now {
            at: tokio::time::Instant::now(),
            unix_ms: 1_000_000,
        };
        // The server's clock is 2 s ahead of ours.
        m.handle(
            Input::LoggedIn {
                clock_skew_ms: 2_000,
            },
            now,
        );
        let expiry = 1_000_000 + 2_000 + 300_000;
        assert_eq!(m.until_server_time(expiry, now), Duration::from_secs(300));
        assert_eq!(m.until_server_time(1_000_500, now), Duration::ZERO);
        assert_eq!(m.until_server_time(i64::MIN, now), Duration::ZERO);
        assert_eq!(
            m.until_server_time(i64::MAX, now),
            Duration::from_millis((i64::MAX - 1_002_000) as u64)
        );
    }
}

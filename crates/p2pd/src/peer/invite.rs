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

impl Peers {
    /// Invites `user`; unless `no_wait`, waits up to `wait` for the session.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        user: &str,
        wait: Duration,
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

//! The I/O ends of an invitation: the commands (`connect`, `accept`,
//! `reject`) that feed the machine and wait for its answer, the dial after
//! our invitation was accepted, and the handshake of a link that dials in.

use std::sync::Arc;
use std::time::Duration;

use p2p_proto::ctl::{Answered, ConnectDone, PendingRequest, SessionInfo, SessionPath};
use p2p_proto::peer::PeerHello;
use p2p_proto::time::rfc3339;
use p2p_proto::wire::{Reply, Request};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tracing::warn;

use super::error::{DialError, PeerError};
use super::invitations::{Input, PeerContact};
use super::{listener, noise, Peers, Verdict, Waiter};
use crate::link::reply_error;

/// Dialling one path to a peer's listener gives up after this.
pub(crate) const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Answers `user`'s invitation. Accepting waits (up to the dial-in grace,
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

    /// Our invitation to `to` was accepted: dial, open the session, tell
    /// whoever waits.
    pub(super) async fn dial_for(
        self: Arc<Self>,
        to: String,
        contact: PeerContact,
        invite: u64,
        waiter: Option<Waiter>,
    ) {
        let me = self.link.status().user.unwrap_or_default();
        let result = tokio::select! {
            r = self.dial(&contact, invite, me) => r.map_err(PeerError::from),
            _ = self.shutdown.cancelled() => Err(PeerError::ShuttingDown),
        };
        if let Err(e) = &result {
            warn!(peer = %to, reason = %e, "could not open the session");
            let _ = self.events.send(p2p_proto::ctl::Event::Rejected {
                peer: to,
                reason: e.to_string(),
            });
        }
        if let Some(w) = waiter {
            let _ = w.send(result.map(Some));
        }
    }

    /// Dials `contact`'s paths in order for invitation `invite` and opens
    /// the session over the first that answers.
    async fn dial(
        self: &Arc<Self>,
        contact: &PeerContact,
        invite: u64,
        me: String,
    ) -> Result<SessionInfo, DialError> {
        let key = hex::decode(&contact.public_key).map_err(|_| DialError::MalformedKey)?;
        let user = &contact.user;
        let mut last = DialError::NoAddress { user: user.clone() };
        let mut stream = None;
        for addr in &contact.paths {
            match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(source)) => {
                    last = DialError::Unreachable {
                        user: user.clone(),
                        addr: *addr,
                        source,
                    }
                }
                Err(_) => {
                    last = DialError::DialTimedOut {
                        user: user.clone(),
                        addr: *addr,
                    }
                }
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        let hello = PeerHello { user: me, invite };
        let link = noise::initiate(stream, &self.private_key, &key, &hello)
            .await
            .map_err(|source| DialError::Handshake {
                user: user.clone(),
                source,
            })?;
        Ok(self.install(user, true, invite, SessionPath::Direct, link, Vec::new()))
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
            r = noise::respond(stream, &self.private_key) => r,
            _ = slot.evicted() => {
                // Only under a flood (the listener logs those, rate-limited).
                tracing::debug!(%addr, "half-open peer link made room for a newer one");
                return;
            }
            _ = self.shutdown.cancelled() => return,
        };
        drop(slot);
        let (link, key, hello) = match handshake {
            Ok(x) => x,
            // A link that never spoke is what a flood is made of: the
            // listener already logs floods (rate-limited).
            Err(e @ noise::NoiseError::Silent) => {
                tracing::debug!(%addr, reason = %e, "peer handshake failed");
                return;
            }
            Err(e) => {
                warn!(%addr, reason = %e, "peer handshake failed");
                return;
            }
        };
        let (tx, rx) = oneshot::channel();
        self.apply(Input::DialedIn {
            user: hello.user.clone(),
            key: key.clone(),
            invite: hello.invite,
            link: tx,
        });
        let verdict = tokio::select! {
            v = rx => v,
            _ = self.shutdown.cancelled() => return,
        };
        match verdict {
            Ok(Verdict::Admit(waiter)) => {
                let info = self.install(
                    &hello.user,
                    false,
                    hello.invite,
                    SessionPath::Direct,
                    link,
                    Vec::new(),
                );
                if let Some(w) = waiter {
                    let _ = w.send(Ok(Some(info)));
                }
            }
            Ok(Verdict::Refuse) | Err(_) => {
                warn!(%addr, claimed = %hello.user, key = %hex::encode(&key), "refused peer link: it matches no invitation we accepted");
            }
        }
    }
}

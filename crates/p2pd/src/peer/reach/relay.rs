//! The last resort: the server's relay (see `p2p_proto::wire`, relay
//! flow). Joined with our one-time token when no link is up
//! [`RELAY_AFTER`] after the acceptance; the relayed stream then carries a
//! peer link like any other (preamble `Relay` at both ends, Noise), so the
//! server only ever sees ciphertext.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use p2p_proto::ctl::SessionPath;
use p2p_proto::peer::{LinkRole, PeerHello};
use p2p_proto::Secret;
use tokio::time::{sleep_until, timeout_at};
use tracing::debug;

use super::link::{self, Reaching};
use super::{RelayState, Report, Target, RELAY_AFTER};
use crate::peer::invitations::SESSION_SETUP_DEADLINE;
use crate::peer::{lock, Peers};
use crate::relay_client::{self, RelayError};

/// Why the relay gave no link.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayFailure {
    /// No connection to the server.
    #[error("{0}")]
    Aux(#[from] crate::link::AuxError),
    /// The relay refused or failed.
    #[error("{0}")]
    Relay(#[from] RelayError),
    /// The server paired us with someone else.
    #[error("the relay paired us with {0}, not the peer we accepted")]
    WrongPeer(String),
    /// The link over the relay failed.
    #[error("{0}")]
    Setup(#[from] link::LinkSetupError),
}

impl Peers {
    /// Waits until the relay is due, then joins it (unless a direct
    /// session came up meanwhile) and hands the link on.
    pub(super) async fn relay_when_due(
        self: Arc<Self>,
        t: &Target,
        hello: &PeerHello,
        report: &Mutex<Report>,
    ) {
        let Some(token) = t.relay.clone() else {
            return;
        };
        if !t.paths.is_empty() {
            sleep_until(t.until - SESSION_SETUP_DEADLINE + RELAY_AFTER).await;
        }
        if self.direct_session(&t.user, t.invite) {
            return;
        }
        lock(report).relay = RelayState::Trying;
        self.tell(t, report);
        let joined = timeout_at(t.until, self.relay_link(t, token, hello)).await;
        match joined {
            Ok(Ok(secured)) => {
                debug!(peer = %t.user, "relayed link verified");
                let _ = self.clone().take_link(secured, SessionPath::Relayed).await;
            }
            Ok(Err(e)) => {
                debug!(peer = %t.user, why = %e, "relay failed");
                let words = match &e {
                    RelayFailure::Relay(r @ RelayError::Refused { .. }) => r.to_string(),
                    other => format!("the relay failed: {other}"),
                };
                lock(report).relay = RelayState::Failed(words);
                self.tell(t, report);
            }
            // The report already says the relay had not paired us.
            Err(_) => {}
        }
    }

    /// Joins the relay with `token` and runs the peer link over it.
    async fn relay_link(
        &self,
        t: &Target,
        token: Secret,
        hello: &PeerHello,
    ) -> Result<link::Secured, RelayFailure> {
        // The server's family is only known once its name is resolved: an
        // unspecified source takes it (handshake.rs); a specific one must match.
        let from = self.listen.get().and_then(|l| {
            let ip = l.ip();
            (l.port() != 0).then(|| {
                SocketAddr::new(
                    if ip.is_unspecified() {
                        Ipv4Addr::UNSPECIFIED.into()
                    } else {
                        ip
                    },
                    l.port(),
                )
            })
        });
        let conn = match self.link.open_aux(from).await {
            Ok(conn) => conn,
            Err(e) if from.is_some() => {
                debug!(cause = %e, "relay connection from the listener's port failed; using another");
                self.link.open_aux(None).await?
            }
            Err(e) => return Err(e.into()),
        };
        let (peer, stream) = relay_client::join(conn, token).await?;
        if peer != t.user {
            return Err(RelayFailure::WrongPeer(peer));
        }
        let reaching = Reaching {
            key: &t.key,
            user: &t.user,
            hello,
        };
        let secured = link::secure(
            stream,
            LinkRole::Relay,
            &self.private_key,
            &self.public_key,
            Some(reaching),
        )
        .await?;
        Ok(secured)
    }
}

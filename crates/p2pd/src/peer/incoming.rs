//! Links that come in on the peer listener: let through only if they match
//! an invitation we accepted (see the module doc of [`super`]), and what the
//! listener asks while admitting them.

use std::net::IpAddr;
use std::sync::Arc;

use p2p_proto::limits::DIAL_IN_GRACE;
use p2p_proto::peer::PeerHello;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::warn;

use super::{listener, noise, Expected, Peers};

impl Peers {
    /// A link came in on the listener: let it through only if it matches an
    /// invitation we accepted (key, name and invitation id).
    /// `slot` is this link's admission slot, held until its handshake is
    /// done (the link ends if a newcomer takes the slot first).
    pub(super) async fn incoming(self: Arc<Self>, stream: TcpStream, slot: listener::Slot) {
        let addr = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let handshake = tokio::select! {
            r = noise::respond(stream, &self.private_key) => r,
            _ = slot.evicted() => {
                // Only under a flood (the listener logs those, rate-limited).
                tracing::debug!(%addr, "half-open peer link made room for a newer one");
                return;
            }
        };
        drop(slot);
        let (link, key, hello) = match handshake {
            Ok(x) => x,
            // A link that never spoke is what a flood is made of: the
            // listener already logs floods (rate-limited).
            Err(e) if e == noise::SILENT_LINK => {
                tracing::debug!(%addr, reason = %e, "peer handshake failed");
                return;
            }
            Err(e) => {
                warn!(%addr, reason = %e, "peer handshake failed");
                return;
            }
        };
        let matched = self.matching_expectation(&key, &hello).await;
        let Some(mut expected) = matched else {
            warn!(%addr, claimed = %hello.user, key = %hex::encode(&key), "refused peer link: it matches no invitation we accepted");
            return;
        };
        let info = self.install(&hello.user, false, link);
        if let Some(n) = expected.notify.take() {
            let _ = n.send(Ok(info));
        }
    }

    /// Whether `ip` is where a peer whose invitation we accepted is.
    pub(super) fn expects_from(&self, ip: IpAddr) -> bool {
        let source = Some(listener::Source::of(ip));
        let now = Instant::now();
        self.lock()
            .expected
            .iter()
            .any(|e| e.until > now && e.source == source)
    }

    /// Whether we are accepting an invitation (and do not know yet where
    /// its inviter will dial from).
    pub(super) fn accepting_any(&self) -> bool {
        !self.lock().accepting.is_empty()
    }

    /// The accepted invitation this link matches, waiting (up to the dial-in
    /// grace) if it claims one we are still in the middle of accepting.
    async fn matching_expectation(&self, key: &[u8], hello: &PeerHello) -> Option<Expected> {
        let deadline = Instant::now() + DIAL_IN_GRACE;
        loop {
            let changed = self.expectations.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut inner = self.lock();
                let now = Instant::now();
                inner.expected.retain(|e| e.until > now);
                let pos = inner
                    .expected
                    .iter()
                    .position(|e| e.key == key && e.user == hello.user && e.invite == hello.invite);
                if let Some(i) = pos {
                    return Some(inner.expected.swap_remove(i));
                }
                if !inner
                    .accepting
                    .contains(&(hello.user.clone(), hello.invite))
                {
                    return None;
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Marks (or, with `on = false`, unmarks) an invitation as being accepted.
    pub fn accepting(&self, user: &str, invite: u64, on: bool) {
        let mut inner = self.lock();
        if on {
            inner.accepting.insert((user.to_string(), invite));
        } else {
            inner.accepting.remove(&(user.to_string(), invite));
        }
        drop(inner);
        self.expectations.notify_waiters();
    }
}

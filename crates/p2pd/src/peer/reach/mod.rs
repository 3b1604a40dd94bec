//! Reaching a peer after an acceptance (SPEC §10, design in
//! docs/architecture.md): every path of its contact at once, each from the
//! listener's port and retried quickly until the setup deadline
//! (`dial.rs`); the server's relay if no link is up after
//! [`RELAY_AFTER`] (`relay.rs`). Every link, whoever opened it, starts with
//! the link preamble and the Noise handshake (`link.rs`) and then goes to
//! [`Peers::take_link`], as the listener's links do.

mod dial;
pub(crate) mod link;
mod relay;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use p2p_proto::ctl::SessionPath;
use p2p_proto::peer::{LinkRole, PeerHello, PeerMsg};
use p2p_proto::Secret;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, warn};

use super::invitations::{Input, SESSION_SETUP_DEADLINE};
use super::noise::{NoiseError, NoiseLink};
use super::{lock, registry, Peers, Verdict, Waiter};
use dial::{connect_from, Failed, RETRY_PAUSE};
pub(crate) use link::{LinkSetupError, Reaching, Secured};

/// The relay is tried when no link is up this long after the acceptance:
/// a direct path on a LAN or through a cone NAT is up well before, and the
/// relay (pairing included) still fits in the setup deadline.
pub(crate) const RELAY_AFTER: Duration = Duration::from_millis(1500);

/// Whom to reach, where, until when.
pub(crate) struct Target {
    /// The peer's account name.
    pub(crate) user: String,
    /// Its static key, from the server.
    pub(crate) key: Vec<u8>,
    /// The invitation (the session's name).
    pub(crate) invite: u64,
    /// Its addresses, best first.
    pub(crate) paths: Vec<SocketAddr>,
    /// Our relay token, if the server runs a relay.
    pub(crate) relay: Option<Secret>,
    /// The setup deadline.
    pub(crate) until: Instant,
}

/// What reaching a peer has done so far, in words for the failure message.
struct Report {
    /// Per path: its last failure, if any.
    paths: Vec<(SocketAddr, Option<String>)>,
    relay: RelayState,
}

enum RelayState {
    NoToken,
    NotYet,
    Trying,
    Failed(String),
}

impl Report {
    fn words(&self, user: &str) -> String {
        let direct = if self.paths.is_empty() {
            format!("the server gave no address for {user}")
        } else {
            let tried: Vec<String> = self
                .paths
                .iter()
                .map(|(a, why)| format!("{a}: {}", why.as_deref().unwrap_or("no answer yet")))
                .collect();
            format!("no direct path worked (tried {})", tried.join(", "))
        };
        let relay = match &self.relay {
            RelayState::NoToken => {
                "the server offers no relay (it is turned off, or the server is older)".to_string()
            }
            RelayState::NotYet => "the relay was not tried yet".to_string(),
            RelayState::Trying => "the relay had not paired us yet".to_string(),
            RelayState::Failed(why) => why.clone(),
        };
        format!("{direct}, and {relay}")
    }
}

impl Peers {
    /// Where a connection to `to` leaves from (see [`super::source_for`]).
    pub(crate) fn source(&self, to: SocketAddr) -> Option<SocketAddr> {
        super::source_for(self.listen.get().copied(), to)
    }

    /// Whether the session with `user` for `invite` is up and direct (then
    /// nothing more is worth dialling).
    fn direct_session(&self, user: &str, invite: u64) -> bool {
        lock(&self.sessions)
            .link_of(user)
            .is_some_and(|(i, _, path)| i == invite && path == SessionPath::Direct)
    }

    /// Reaches `t` on every path and, later, the relay, until the deadline
    /// or a direct link; verified links go to [`Peers::take_link`].
    pub(crate) async fn reach(self: Arc<Self>, t: Target) {
        let me = self.link.status().user.unwrap_or_default();
        let hello = PeerHello {
            user: me,
            invite: t.invite,
        };
        let report = Mutex::new(Report {
            paths: t.paths.iter().map(|a| (*a, None)).collect(),
            relay: if t.relay.is_some() {
                RelayState::NotYet
            } else {
                RelayState::NoToken
            },
        });
        self.tell(&t, &report);
        let mut direct: FuturesUnordered<_> = t
            .paths
            .iter()
            .map(|p| self.clone().path(&t, *p, &hello, &report))
            .collect();
        let relay = self.clone().relay_when_due(&t, &hello, &report);
        tokio::pin!(relay);
        let mut relay_done = false;
        let deadline = sleep_until(t.until);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = self.shutdown.cancelled() => break,
                // A relayed session still wants a direct link (the session
                // can switch to it), until the deadline.
                Some(linked) = direct.next() => if linked && self.direct_session(&t.user, t.invite) { break },
                _ = &mut relay, if !relay_done => relay_done = true,
            }
            if relay_done && direct.is_empty() {
                break;
            }
        }
    }

    /// Passes the report on to the machine (what a failure will say).
    fn tell(self: &Arc<Self>, t: &Target, report: &Mutex<Report>) {
        let why = lock(report).words(&t.user);
        self.apply(Input::Tried {
            user: t.user.clone(),
            invite: t.invite,
            why,
        });
    }

    /// Dials `to` until a link is verified (true), the deadline passes or
    /// a direct session is up (false). A link the leader did not choose
    /// does not count: the path is tried again while no session is up.
    async fn path(
        self: Arc<Self>,
        t: &Target,
        to: SocketAddr,
        hello: &PeerHello,
        report: &Mutex<Report>,
    ) -> bool {
        loop {
            if Instant::now() >= t.until || self.direct_session(&t.user, t.invite) {
                return false;
            }
            let failed = match self.dial_once(t, to, hello).await {
                Ok(secured) => {
                    debug!(peer = %t.user, %to, "direct link verified");
                    if self.clone().take_link(secured, SessionPath::Direct).await {
                        return true;
                    }
                    Failed::Setup("the link was not chosen".into())
                }
                Err(e) => e,
            };
            debug!(peer = %t.user, %to, why = %failed, "direct path failed");
            if let Some(p) = lock(report).paths.iter_mut().find(|(a, _)| *a == to) {
                p.1 = Some(failed.to_string());
            }
            self.tell(t, report);
            if let Failed::WrongKey(_) = failed {
                warn!(peer = %t.user, %to, why = %failed, "not dialling this path again");
                return false;
            }
            let pause = Instant::now() + RETRY_PAUSE;
            if pause >= t.until {
                return false;
            }
            sleep_until(pause).await;
        }
    }

    /// One attempt on one path: connect, preamble, Noise, bounded by the
    /// deadline.
    async fn dial_once(
        &self,
        t: &Target,
        to: SocketAddr,
        hello: &PeerHello,
    ) -> Result<Secured, Failed> {
        let stream = connect_from(to, self.source(to)).await?;
        let reaching = Reaching {
            key: &t.key,
            user: &t.user,
            hello,
        };
        let setup = link::secure(
            stream,
            LinkRole::Dial,
            &self.private_key,
            &self.public_key,
            Some(reaching),
        );
        tokio::time::timeout_at(t.until, setup)
            .await
            .map_err(|_| Failed::TimedOut)?
            .map_err(|e| match e {
                LinkSetupError::Noise(NoiseError::WrongKey { .. }) => {
                    Failed::WrongKey(e.to_string())
                }
                e => Failed::Setup(e.to_string()),
            })
    }

    /// A link verified (from a dial, the relay or the listener): to the live
    /// session it belongs to, or to the invitation machine for a verdict.
    /// True if it opened the session or went to the live one.
    pub(crate) async fn take_link(self: Arc<Self>, s: Secured, path: SessionPath) -> bool {
        let Secured { link, key, hello } = s;
        if lock(&self.sessions)
            .link_of(&hello.user)
            .is_some_and(|(i, k, _)| i == hello.invite && k == key)
        {
            self.hand_to_session(&hello.user, link, path).await;
            return true;
        }
        let (tx, rx) = oneshot::channel();
        self.apply(Input::Verified {
            user: hello.user.clone(),
            key: key.clone(),
            invite: hello.invite,
            link: tx,
        });
        let about = registry::Link {
            invite: hello.invite,
            key,
            path,
        };
        self.carry_out(hello.user, about, link, Vec::new(), rx)
            .await
    }

    /// Carries out the machine's verdict on a link.
    async fn carry_out(
        self: Arc<Self>,
        user: String,
        about: registry::Link,
        mut link: NoiseLink,
        first: Vec<PeerMsg>,
        verdict: oneshot::Receiver<Verdict>,
    ) -> bool {
        let verdict = tokio::select! {
            v = verdict => v,
            _ = self.shutdown.cancelled() => return false,
        };
        match verdict {
            Ok(Verdict::Admit {
                waiter,
                lead,
                inviter,
            }) => {
                self.open(&user, about, link, first, lead, inviter, waiter)
                    .await;
                true
            }
            Ok(Verdict::Hold(until)) => {
                // The leader's first message on the link it chose is `Switch`.
                let first = tokio::select! {
                    r = tokio::time::timeout_at(until, link.recv()) => r,
                    _ = self.shutdown.cancelled() => return false,
                };
                match first {
                    Ok(Ok(Some(msgs))) if matches!(msgs.first(), Some(PeerMsg::Switch { .. })) => {
                        let (tx, rx) = oneshot::channel();
                        self.apply(Input::Switched {
                            user: user.clone(),
                            invite: about.invite,
                            link: tx,
                        });
                        // The rest of the batch goes to the session first.
                        Box::pin(self.carry_out(user, about, link, msgs, rx)).await
                    }
                    _ => {
                        debug!(peer = %user, "a link the leader did not choose was dropped");
                        false
                    }
                }
            }
            Ok(Verdict::Live) => {
                self.hand_to_session(&user, link, about.path).await;
                true
            }
            Ok(Verdict::Refuse) | Err(_) => {
                warn!(claimed = %user, invite = about.invite, key = %hex::encode(&about.key), "refused peer link: it matches no invitation we accepted");
                false
            }
        }
    }

    /// Opens the session on `link`: the leader names it with `Switch`, the
    /// follower answers the leader's `Switch` with its own.
    #[allow(clippy::too_many_arguments)] // the verdict's parts, taken apart by the caller
    async fn open(
        self: &Arc<Self>,
        user: &str,
        about: registry::Link,
        mut link: NoiseLink,
        first: Vec<PeerMsg>,
        lead: bool,
        inviter: bool,
        waiter: Option<Waiter>,
    ) {
        // The accepted invitation makes a contact, durably, before the
        // session is visible (SPEC §11).
        self.make_contact(user, hex::encode(&about.key)).await;
        let switch = [PeerMsg::Switch { received_upto: 0 }];
        let sent = tokio::time::timeout(p2p_proto::limits::WRITE_TIMEOUT, link.send(&switch)).await;
        if !matches!(sent, Ok(Ok(()))) {
            // The session task notices the dead link and reports it.
            debug!(peer = %user, lead, "the chosen link failed at once");
        }
        let info = self.install(user, about, inviter, link, first);
        if let Some(w) = waiter {
            let _ = w.send(Ok(Some(info)));
        }
    }

    /// A verified link for a session that is up: the session task moves to
    /// it (relayed → direct) or closes it.
    async fn hand_to_session(&self, user: &str, link: NoiseLink, path: SessionPath) {
        debug!(peer = %user, ?path, "a further link for a live session");
        self.adopt(user, link, path).await;
    }

    /// Dials `paths` for the live session with `peer` (invitation
    /// `invite`), as after an acceptance, for the setup deadline; verified
    /// links go to the session ([`Peers::take_link`]). For the upgrade of a
    /// relayed session (`TryDirect`).
    pub(crate) fn dial_for_session(
        self: &Arc<Self>,
        peer: &str,
        invite: u64,
        paths: Vec<SocketAddr>,
    ) {
        let Some((i, key, _)) = lock(&self.sessions).link_of(peer) else {
            return;
        };
        if i != invite {
            return;
        }
        let t = Target {
            user: peer.to_string(),
            key,
            invite,
            paths,
            relay: None,
            until: Instant::now() + SESSION_SETUP_DEADLINE,
        };
        self.tasks.spawn(self.clone().reach(t));
    }
}

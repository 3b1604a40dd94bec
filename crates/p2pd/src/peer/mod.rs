//! Peer sessions (SPEC §5, "the heart of the product"): invitations in both
//! directions, the direct Noise links they lead to, and the sessions on top.
//!
//! [`Peers`] is the I/O around two pieces of pure state:
//!
//! - [`invitations::Invitations`], the invitation state machine: it gets
//!   the server's events (from the link, on a channel, see [`run`]), the
//!   control commands and the links that dial in, and says what to do;
//! - [`registry::Sessions`], the open sessions by peer.
//!
//! `Peers` carries out the machine's actions: answers to the server through
//! [`LinkHandle`] (only ever called downward), dials, verdicts on links,
//! events. Every task it starts is in [`Peers::tasks`], which the daemon
//! waits for (with a bound) at shutdown.

mod consent;
mod error;
pub use error::{PeerError, SessionError, SetupError};
pub(crate) mod invitations;
mod invite;
pub(crate) mod keeper;
mod listener;
pub mod noise;
pub(crate) mod reach;
pub(crate) mod registry;
pub(crate) mod session;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use p2p_proto::ctl::{Event, PendingRequest, SessionInfo, SessionPath};
use p2p_proto::time;
use p2p_proto::wire::{Reply, Request, ServerEvent};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::contacts::Contacts;
use crate::inbox::Inbox;
use crate::link::{reply_error, LinkEvent, LinkHandle};
use crate::state::StateDir;
use invitations::{Action, Input, Invitations, Now};
pub(crate) use listener::{bind_listener, serve, DEFAULT_HANDSHAKES_PER_SOURCE};
use registry::Sessions;
pub use session::reach::LocalPeer;
use session::SessionCmd;

/// Whoever waits for a `connect` or `accept`: the session, `None` when
/// answered without one (a rejection), or why not.
type Waiter = oneshot::Sender<Result<Option<SessionInfo>, PeerError>>;

/// What a verified link is told (see `invitations/establish.rs`).
enum Verdict {
    /// Open the session on it; the command waiting (if any) gets the session.
    Admit {
        waiter: Option<Waiter>,
        /// We lead: name the link with `Switch`.
        lead: bool,
        /// We invited (the session's `initiator`).
        inviter: bool,
    },
    /// We follow: wait (until then) for the leader's `Switch` on it.
    Hold(Instant),
    /// Its session is up: hand it to the session.
    Live,
    /// Close it.
    Refuse,
}

type Machine = Invitations<Waiter, oneshot::Sender<Verdict>>;

/// The peer registry.
pub struct Peers {
    private_key: Vec<u8>,
    /// Our key, listener port and addresses.
    pub(crate) local: LocalPeer,
    /// Ours, derived from `private_key` (roles and leadership compare keys).
    public_key: Vec<u8>,
    /// Where the peer listener is bound, set when it starts serving: every
    /// dial leaves from its port (SPEC §10, see [`source_for`]).
    listen: OnceLock<SocketAddr>,
    state: StateDir,
    /// Where received messages go (the daemon's inbox).
    pub(crate) inbox: Inbox,
    /// Contacts and blocked users (SPEC §11), in the inbox's database.
    pub(crate) contacts: Contacts,
    /// The daemon's event bus (`watch`).
    pub(crate) events: broadcast::Sender<Event>,
    /// Daemon shutdown.
    pub(crate) shutdown: CancellationToken,
    link: LinkHandle,
    invitations: Mutex<Machine>,
    sessions: Mutex<Sessions>,
    /// The contact keeper's memory (`keeper.rs`).
    keeper: Mutex<keeper::Keeper>,
    /// Held while a keeper round runs (one at a time).
    keeping: tokio::sync::Mutex<()>,
    /// Reads of the contact store started / applied to the machine
    /// (`consent.rs`: an older read never replaces a newer one).
    book_read: AtomicU64,
    book_applied: AtomicU64,
    /// Signalled whenever the invitations' expectations change (the
    /// listener's admission reads them).
    expectations: Notify,
    /// Signalled when the invitations' next deadline may have moved.
    deadline: Notify,
    /// Every task started here (sessions, dials, answers, handshakes), so
    /// shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// The outbox, whose flusher each new session starts (set once by
    /// `lib.rs`; without it sessions carry nothing queued).
    outbox: OnceLock<crate::outbox::Outbox>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now() -> Now {
    Now {
        at: Instant::now(),
        unix_ms: time::now_ms(),
    }
}

impl Peers {
    /// A registry for this daemon; `link` is the server session below it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        private_key: Vec<u8>,
        local: LocalPeer,
        state: StateDir,
        inbox: Inbox,
        contacts: Contacts,
        events: broadcast::Sender<Event>,
        auto_accept: Vec<String>,
        link: LinkHandle,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let public_key = public_key_of(&private_key);
        Arc::new(Peers {
            invitations: Mutex::new(Invitations::new(auto_accept, public_key.clone())),
            private_key,
            local,
            public_key,
            listen: OnceLock::new(),
            state,
            inbox,
            contacts,
            events,
            shutdown,
            link,
            sessions: Mutex::new(Sessions::default()),
            keeper: Mutex::new(keeper::Keeper::default()),
            keeping: tokio::sync::Mutex::new(()),
            book_read: AtomicU64::new(0),
            book_applied: AtomicU64::new(0),
            expectations: Notify::new(),
            deadline: Notify::new(),
            tasks: TaskTracker::new(),
            outbox: OnceLock::new(),
        })
    }

    /// Gives the registry the daemon's outbox (once, before any session).
    pub fn set_outbox(&self, outbox: crate::outbox::Outbox) {
        let _ = self.outbox.set(outbox);
    }

    /// The session with `peer`, if any: its id and command queue.
    pub(crate) fn session_ref(&self, peer: &str) -> Option<crate::outbox::SessionRef> {
        lock(&self.sessions).sender(peer)
    }

    /// Open sessions, by peer name.
    pub(crate) fn sessions(&self) -> Vec<SessionInfo> {
        lock(&self.sessions).list()
    }

    /// Open sessions: (direct, relayed).
    pub(crate) fn session_counts(&self) -> (u64, u64) {
        lock(&self.sessions).counts()
    }

    /// A new verified link with `peer` for its live session: the session
    /// moves to it or closes it (relayed → direct only). Without a session
    /// the link is closed.
    pub async fn adopt(&self, peer: &str, link: noise::NoiseLink, path: SessionPath) {
        if let Some((_, cmds)) = self.session(peer) {
            let link = Box::new(link);
            let _ = cmds.send(SessionCmd::Adopt { link, path }).await;
        }
    }

    /// The session with `peer`, if any.
    pub(crate) fn session(&self, peer: &str) -> Option<(SessionInfo, mpsc::Sender<SessionCmd>)> {
        lock(&self.sessions).get(peer)
    }

    /// Invitations waiting for our answer, oldest first.
    pub(crate) fn requests(&self) -> Vec<PendingRequest> {
        lock(&self.invitations).requests(now())
    }

    /// Feeds the machine one input and carries out what it says.
    /// Replaces the `auto_accept` list (SIGHUP); it applies to invitations
    /// that arrive from now on.
    pub fn set_auto_accept(&self, users: Vec<String>) {
        lock(&self.invitations).set_auto_accept(users);
    }

    fn apply(self: &Arc<Self>, input: Input<Waiter, oneshot::Sender<Verdict>>) {
        let actions = lock(&self.invitations).handle(input, now());
        // The driver recomputes its sleep (a stored permit: never missed).
        self.deadline.notify_one();
        for action in actions {
            self.act(action);
        }
    }

    fn act(self: &Arc<Self>, action: Action<Waiter, oneshot::Sender<Verdict>>) {
        match action {
            Action::SendAnswer {
                from,
                invite,
                accept,
            } => {
                let peers = self.clone();
                self.tasks.spawn(async move {
                    let req = Request::Answer { invite, accept };
                    let result = match peers.link.request(req).await {
                        Ok(Reply::Answered { contact, .. }) => Ok(contact),
                        Ok(other) => Err(reply_error(other)),
                        Err(e) => Err(e),
                    };
                    peers.apply(Input::Answered {
                        from,
                        invite,
                        accept,
                        result,
                    });
                });
            }
            Action::CheckKey(contact) => self.check_key(contact),
            Action::Establish {
                contact,
                invite,
                relay,
                until,
            } => {
                let Ok(key) = hex::decode(&contact.public_key) else {
                    return; // the machine checked it
                };
                let target = reach::Target {
                    user: contact.user,
                    key,
                    invite,
                    paths: contact.paths,
                    relay,
                    until,
                };
                self.tasks.spawn(self.clone().reach(target));
            }
            Action::Emit(event) => {
                let _ = self.events.send(event);
            }
            Action::Reply { waiter, result } => {
                let _ = waiter.send(result.map(|()| None));
            }
            Action::Admit {
                link,
                waiter,
                lead,
                inviter,
            } => {
                let _ = link.send(Verdict::Admit {
                    waiter,
                    lead,
                    inviter,
                });
            }
            Action::Hold { link, until } => {
                let _ = link.send(Verdict::Hold(until));
            }
            Action::Live { link } => {
                let _ = link.send(Verdict::Live);
            }
            Action::Refuse { link } => {
                let _ = link.send(Verdict::Refuse);
            }
            Action::ExpectationsChanged => self.expectations.notify_waiters(),
        }
    }

    /// Handles one invitation event from the server, as [`Peers::run`] does
    /// for each one the link publishes (public for the fuzz targets).
    pub fn server_event(self: &Arc<Self>, event: ServerEvent) {
        self.apply(Input::Server(event));
    }

    /// Runs the invitation machine until shutdown: server events from the
    /// link's channel, and a sleep until the machine's next deadline.
    pub async fn run(self: Arc<Self>, mut from_link: mpsc::Receiver<LinkEvent>) {
        self.reload_contacts().await;
        let first = Instant::now() + keeper::CONTACT_SWEEP;
        let mut sweep = tokio::time::interval_at(first, keeper::CONTACT_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = lock(&self.invitations).next_deadline();
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.apply(Input::Tick);
                }
                _ = self.deadline.notified() => {}
                _ = sweep.tick() => {
                    self.tasks.spawn(self.clone().keep_contacts(keeper::Round::Sweep));
                }
                event = from_link.recv() => match event {
                    None => {
                        self.shutdown.cancelled().await;
                        break;
                    }
                    Some(LinkEvent::LoggedIn { user, clock_skew_ms }) => {
                        lock(&self.sessions).set_me(&user);
                        lock(&self.keeper).logged_in(&user);
                        self.apply(Input::LoggedIn { clock_skew_ms });
                        self.tasks.spawn(self.clone().keep_contacts(keeper::Round::Login));
                    }
                    Some(LinkEvent::Server(event)) => self.server_event(event),
                },
            }
        }
        // Commands still waiting are answered now rather than waited out.
        self.apply(Input::Shutdown);
    }

    /// Whether `ip` is where a peer whose invitation we accepted is.
    fn expects_from(&self, ip: std::net::IpAddr) -> bool {
        let source = listener::Source::of(ip);
        lock(&self.invitations).expects_from(now(), |s| listener::Source::of(s) == source)
    }

    /// Whether we are accepting an invitation (and do not know yet where
    /// its inviter will dial from).
    fn accepting_any(&self) -> bool {
        lock(&self.invitations).accepting_any()
    }

    /// Starts the session task for invitation `invite` on `link`, first
    /// handling `first` (frames already read from it); a previous session
    /// with the same peer ends.
    fn install(
        self: &Arc<Self>,
        peer: &str,
        link_of: registry::Link,
        initiator: bool,
        link: noise::NoiseLink,
        first: Vec<p2p_proto::peer::PeerMsg>,
    ) -> SessionInfo {
        let (invite, path) = (link_of.invite, link_of.path);
        let installed = lock(&self.sessions).install(peer, link_of, initiator, time::now_ms());
        let new = match installed {
            Ok(new) => new,
            Err(kept) => {
                // Both invited each other at once: both daemons keep the
                // session invited by the smaller name; this link goes
                // quietly (the other side drops its end the same way).
                info!(peer = %peer, "crossed invitations: keeping the other session");
                return kept;
            }
        };
        info!(peer = %peer, initiator, ?path, "peer session established");
        let _ = self.events.send(Event::Connected(new.info.clone()));
        let env = session::SessionEnv {
            inbox: self.inbox.clone(),
            events: self.events.clone(),
            shutdown: self.shutdown.clone(),
            reach: Arc::new(session::reach::LinkReach {
                link: self.link.clone(),
                local: self.local.clone(),
                peers: Arc::downgrade(self),
            }),
        };
        let start = session::Start {
            peer: peer.to_string(),
            invite,
            leader: p2p_proto::peer::leads(&self.local.public_key, link.remote_key()),
            link,
            first,
            path: new.path,
            cmds: new.cmds,
            closer: new.closer,
        };
        if let (Some(outbox), Some((id, cmds))) = (self.outbox.get(), self.session_ref(peer)) {
            // Before the session task starts: its end then implies its
            // flusher is known (see `Outbox::send`).
            if id == new.id {
                outbox.session_opened(peer, id, cmds, &self.tasks);
            }
        }
        let (peers, peer, id) = (self.clone(), peer.to_string(), new.id);
        self.tasks.spawn(async move {
            let reason = session::run(env, start).await;
            peers.session_ended(&peer, id, reason);
        });
        new.info
    }

    /// Called by a session task when it ends.
    pub(crate) fn session_ended(&self, peer: &str, id: u64, reason: String) {
        if lock(&self.sessions).ended(peer, id) {
            let _ = self.events.send(Event::Disconnected {
                peer: peer.to_string(),
                reason,
            });
        }
    }
}

/// The address to make a connection to `to` from, for a listener bound to
/// `listen`: its port, so the address the other end (or a NAT) sees is the
/// listener's (SPEC §10). An unspecified listener address leaves the
/// source address to the kernel; a specific one is also the source, in its
/// own family only. `None` (any port) where the listener's port cannot
/// serve: another family, or no listener.
pub(crate) fn source_for(listen: Option<SocketAddr>, to: SocketAddr) -> Option<SocketAddr> {
    let listen = listen.filter(|l| l.port() != 0)?;
    let ip = listen.ip();
    if ip.is_unspecified() {
        let any: std::net::IpAddr = if to.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        return Some(SocketAddr::new(any, listen.port()));
    }
    (ip.is_ipv4() == to.is_ipv4()).then_some(listen)
}

/// The X25519 public key of `private` (computed by the Noise library's own
/// curve implementation; empty if the key is unusable, which the first
/// handshake then reports).
fn public_key_of(private: &[u8]) -> Vec<u8> {
    use snow::resolvers::CryptoResolver;
    let Some(mut dh) =
        snow::resolvers::DefaultResolver.resolve_dh(&snow::params::DHChoice::Curve25519)
    else {
        return Vec::new();
    };
    if private.len() != dh.priv_len() {
        return Vec::new();
    }
    dh.set(private);
    dh.pubkey().to_vec()
}

#[cfg(test)]
mod driver_tests;

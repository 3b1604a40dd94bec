//! Peer sessions (SPEC §5, "the heart of the product"): invitations in both
//! directions, the direct Noise links they lead to, and the sessions on top.
//!
//! [`Peers`] is the registry every handler and the server link share:
//!
//! - `requests`: invitations we received, by inviter, until answered;
//! - `outgoing`: our invitations, by id, with whoever waits for the answer;
//! - `expected`: accepted invitations whose inviter has not dialled in yet —
//!   the *only* links the listener lets through;
//! - `sessions`: established sessions, by peer.

mod crossing;
mod incoming;
mod invite;
mod listener;
pub mod noise;
pub mod session;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_proto::ctl::{CtlError, ErrorCode, Event, PendingRequest, SessionInfo};
use p2p_proto::limits::{DIAL_IN_GRACE, INVITATION_TTL};
use p2p_proto::peer::PeerHello;
use p2p_proto::time::{self, rfc3339};
use p2p_proto::wire::{Contact, InviteEnd, ServerEvent};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::inbox::Inbox;
use crate::link::LinkHandle;
use crate::state::StateDir;
pub use crossing::CROSSING_WINDOW_MS;
use crossing::{crossed, wins};
pub use listener::{serve, DEFAULT_HANDSHAKES_PER_SOURCE};
use session::{SessionCmd, SessionHandle, SESSION_QUEUE};

/// Dialling a peer's listener gives up after this.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Invitations held for an answer (and early answers held for an
/// invitation) at most: the server limits what one user receives to far
/// fewer, so only a broken or hostile server reaches this, and it must not
/// grow the daemon's memory without bound.
pub const MAX_HELD_INVITATIONS: usize = 256;

type Answer = oneshot::Sender<Result<SessionInfo, CtlError>>;

struct Expected {
    user: String,
    key: Vec<u8>,
    /// Where the server says the peer is: its links get admission room
    /// (see [`listener`]).
    source: Option<listener::Source>,
    invite: u64,
    until: Instant,
    notify: Option<Answer>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, SessionHandle>,
    requests: HashMap<String, (u64, i64)>,
    outgoing: HashMap<u64, (String, Option<Answer>)>,
    /// Answers to our invitations that arrived before `connect` registered
    /// the invitation id (the server's reply and event race inside p2pd).
    early: HashMap<u64, (ServerEvent, Instant)>,
    expected: Vec<Expected>,
    /// Invitations we are accepting right now: the server tells the inviter
    /// (who dials at once) while its answer to us, with the key to expect,
    /// is still on the way. A link claiming one of these waits for the key.
    accepting: HashSet<(String, u64)>,
    /// Our own account name (for the crossed-invitation tie-break).
    me: String,
    /// Server clock minus ours: invitation expiries are server times.
    clock_skew_ms: i64,
}

/// The peer registry.
pub struct Peers {
    private_key: Vec<u8>,
    state: StateDir,
    /// Where received messages go.
    pub inbox: Inbox,
    /// Events for `watch`.
    pub events: broadcast::Sender<Event>,
    auto_accept: Vec<String>,
    /// Daemon shutdown.
    pub shutdown: CancellationToken,
    next_session: AtomicU64,
    inner: Mutex<Inner>,
    /// Signalled whenever `expected` or `accepting` changes.
    expectations: Notify,
    /// Session tasks, so shutdown can let them finish an acknowledgement.
    pub tasks: tokio_util::task::TaskTracker,
}

fn session_info(peer: &str, h: &SessionHandle) -> SessionInfo {
    SessionInfo {
        peer: peer.to_string(),
        since: rfc3339(h.since_ms),
        initiator: h.initiator,
    }
}

fn decline_error(to: &str, reason: InviteEnd) -> CtlError {
    match reason {
        InviteEnd::Rejected => {
            CtlError::new(ErrorCode::Rejected, format!("{to} declined the invitation"))
        }
        InviteEnd::Expired => {
            CtlError::new(ErrorCode::Timeout, format!("{to} did not answer in time"))
        }
        InviteEnd::Offline => CtlError::new(ErrorCode::NotOnline, format!("{to} went offline")),
        InviteEnd::Other => {
            CtlError::new(ErrorCode::Rejected, format!("the invitation to {to} ended"))
        }
    }
}

impl Peers {
    /// A registry for this daemon.
    pub fn new(
        private_key: Vec<u8>,
        state: StateDir,
        inbox: Inbox,
        events: broadcast::Sender<Event>,
        auto_accept: Vec<String>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Peers {
            private_key,
            state,
            inbox,
            events,
            auto_accept,
            shutdown,
            next_session: AtomicU64::new(1),
            expectations: Notify::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open sessions, by peer name.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let inner = self.lock();
        let mut v: Vec<_> = inner
            .sessions
            .iter()
            .map(|(p, h)| session_info(p, h))
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    /// The session with `peer`, if any.
    pub fn session(&self, peer: &str) -> Option<(SessionInfo, mpsc::Sender<SessionCmd>)> {
        self.lock()
            .sessions
            .get(peer)
            .map(|h| (session_info(peer, h), h.cmds.clone()))
    }

    /// Invitations waiting for our answer, oldest first.
    pub fn requests(&self) -> Vec<PendingRequest> {
        let mut inner = self.lock();
        let now = time::now_ms() + inner.clock_skew_ms;
        inner.requests.retain(|_, (_, exp)| *exp > now);
        let mut v: Vec<_> = inner
            .requests
            .iter()
            .map(|(f, (id, exp))| (*id, f.clone(), *exp))
            .collect();
        // Server-given times are formatted after the lock is released.
        drop(inner);
        v.sort();
        v.into_iter()
            .map(|(_, from, exp)| PendingRequest {
                from,
                expires_at: rfc3339(exp),
            })
            .collect()
    }

    /// Removes and returns our pending invitation from `user`.
    pub fn take_request(&self, user: &str) -> Option<u64> {
        let mut inner = self.lock();
        let now = time::now_ms() + inner.clock_skew_ms;
        inner
            .requests
            .remove(user)
            .filter(|(_, exp)| *exp > now)
            .map(|(id, _)| id)
    }

    /// Registers our invitation `invite` to `to`; the receiver (if any)
    /// gets the session or the reason there is none.
    pub fn register_outgoing(
        self: &Arc<Self>,
        link: &LinkHandle,
        invite: u64,
        to: &str,
        answer: Option<Answer>,
    ) {
        let early = {
            let mut inner = self.lock();
            inner.outgoing.insert(invite, (to.to_string(), answer));
            inner.early.remove(&invite)
        };
        if let Some((event, _)) = early {
            self.clone().server_event(event, link);
        }
    }

    /// A login succeeded as `me`: remember our name, and forget answers to
    /// invitations nobody registered (after a server restart, invitation ids
    /// start over).
    pub fn logged_in(&self, me: &str, clock_skew_ms: i64) {
        let mut inner = self.lock();
        inner.early.clear();
        inner.me = me.to_string();
        inner.clock_skew_ms = clock_skew_ms;
    }

    /// Forgets an outgoing invitation we stopped waiting for.
    pub fn forget_outgoing(&self, invite: u64) {
        self.lock().outgoing.remove(&invite);
    }

    /// Remembers `contact`'s key; a change from what we saw before is loud.
    pub fn check_key(&self, contact: &Contact) {
        match self.state.known_key(&contact.user) {
            Ok(Some(old)) if old != contact.public_key => {
                warn!(peer = %contact.user, %old, new = %contact.public_key, "PEER KEY CHANGED");
                let _ = self.events.send(Event::KeyChanged {
                    peer: contact.user.clone(),
                    old_key: old,
                    new_key: contact.public_key.clone(),
                });
            }
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => warn!(cause = %e, "cannot read known peer keys"),
        }
        if let Err(e) = self.state.set_known_key(&contact.user, &contact.public_key) {
            warn!(cause = %e, "cannot save peer key");
        }
    }

    /// After we accepted: let `contact` dial in for invitation `invite`.
    pub fn expect(&self, contact: &Contact, invite: u64, notify: Answer) -> Result<(), CtlError> {
        let key = hex::decode(&contact.public_key)
            .map_err(|_| CtlError::new(ErrorCode::Internal, "server gave a malformed key"))?;
        let mut inner = self.lock();
        let now = Instant::now();
        inner.expected.retain(|e| e.until > now);
        inner.expected.push(Expected {
            user: contact.user.clone(),
            key,
            source: contact
                .addr
                .parse::<std::net::SocketAddr>()
                .ok()
                .map(|a| listener::Source::of(a.ip())),
            invite,
            until: now + DIAL_IN_GRACE,
            notify: Some(notify),
        });
        drop(inner);
        self.expectations.notify_waiters();
        Ok(())
    }

    /// Handles an invitation event from the server (called by the link).
    pub fn server_event(self: Arc<Self>, event: ServerEvent, link: &LinkHandle) {
        match event {
            ServerEvent::Invitation {
                invite,
                from,
                expires_ms,
            } => {
                info!(from = %from, invite, "invitation received");
                {
                    let mut inner = self.lock();
                    let now = time::now_ms() + inner.clock_skew_ms;
                    inner.requests.retain(|_, (_, exp)| *exp > now);
                    if inner.requests.len() >= MAX_HELD_INVITATIONS
                        && !inner.requests.contains_key(&from)
                    {
                        warn!(invite, "too many invitations held; ignoring one more");
                        return;
                    }
                    inner.requests.insert(from.clone(), (invite, expires_ms));
                }
                let request = PendingRequest {
                    from: from.clone(),
                    expires_at: rfc3339(expires_ms),
                };
                let _ = self.events.send(Event::Request(request));
                if self.auto_accept.contains(&from) {
                    info!(from = %from, "auto-accepting (auto_accept in the config)");
                    let link = link.clone();
                    tokio::spawn(async move {
                        if let Err(e) = self.answer(&link, &from, true).await {
                            warn!(from = %from, reason = %e.message, "auto-accept failed");
                        }
                    });
                }
            }
            // Broadcasts are the link's (they go to the inbox, not to a peer).
            ServerEvent::Broadcast { id, .. } => {
                warn!(id, "broadcast routed to the peer registry; ignored")
            }
            ServerEvent::InvitationClosed { invite, reason } => {
                self.lock().requests.retain(|_, (id, _)| *id != invite);
                info!(invite, ?reason, "invitation to us closed");
            }
            ServerEvent::Accepted { invite, contact } => {
                let event = ServerEvent::Accepted {
                    invite,
                    contact: contact.clone(),
                };
                let Some((to, answer)) = self.take_outgoing(invite, event) else {
                    return;
                };
                let me = link.status().user.unwrap_or_default();
                tokio::spawn(async move {
                    let result = self.dial(&contact, invite, me).await;
                    if let Err(e) = &result {
                        warn!(peer = %to, reason = %e.message, "could not open the session");
                        let _ = self.events.send(Event::Rejected {
                            peer: to,
                            reason: e.message.clone(),
                        });
                    }
                    if let Some(a) = answer {
                        let _ = a.send(result);
                    }
                });
            }
            ServerEvent::Declined { invite, to, reason } => {
                let event = ServerEvent::Declined {
                    invite,
                    to: to.clone(),
                    reason,
                };
                let Some((_, answer)) = self.take_outgoing(invite, event) else {
                    return;
                };
                let err = decline_error(&to, reason);
                let reason = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                let _ = self.events.send(Event::Rejected { peer: to, reason });
                if let Some(a) = answer {
                    let _ = a.send(Err(err));
                }
            }
        }
    }

    fn take_outgoing(&self, invite: u64, event: ServerEvent) -> Option<(String, Option<Answer>)> {
        let mut inner = self.lock();
        let found = inner.outgoing.remove(&invite);
        if found.is_none() {
            let now = Instant::now();
            inner
                .early
                .retain(|_, (_, t)| now.duration_since(*t) < INVITATION_TTL);
            if inner.early.len() < MAX_HELD_INVITATIONS {
                inner.early.insert(invite, (event, now));
            }
        }
        found
    }

    /// Dials `contact` for invitation `invite` and opens the session.
    async fn dial(
        self: &Arc<Self>,
        contact: &Contact,
        invite: u64,
        me: String,
    ) -> Result<SessionInfo, CtlError> {
        self.check_key(contact);
        let fail = |m: String| CtlError::new(ErrorCode::Other, m);
        let key = hex::decode(&contact.public_key)
            .map_err(|_| fail("server gave a malformed key".into()))?;
        let stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&contact.addr))
            .await
            .map_err(|_| {
                fail(format!(
                    "could not reach {} at {} (timed out)",
                    contact.user, contact.addr
                ))
            })?
            .map_err(|e| {
                fail(format!(
                    "could not reach {} at {}: {e}",
                    contact.user, contact.addr
                ))
            })?;
        let hello = PeerHello { user: me, invite };
        let link = noise::initiate(stream, &self.private_key, &key, &hello)
            .await
            .map_err(|e| fail(format!("secure link to {} failed: {e}", contact.user)))?;
        Ok(self.install(&contact.user, true, link))
    }

    /// Starts the session task; a previous session with the same peer ends.
    fn install(
        self: &Arc<Self>,
        peer: &str,
        initiator: bool,
        link: noise::NoiseLink,
    ) -> SessionInfo {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (cmds, rx) = mpsc::channel(SESSION_QUEUE);
        let closer = tokio_util::sync::CancellationToken::new();
        let handle = SessionHandle {
            id,
            since_ms: time::now_ms(),
            initiator,
            cmds,
            closer: closer.clone(),
        };
        let info = session_info(peer, &handle);
        {
            let mut inner = self.lock();
            if let Some(old) = inner.sessions.get(peer) {
                if crossed(old, &handle) && !wins(&inner.me, peer, initiator) {
                    // Both invited each other at once: both daemons keep the
                    // session invited by the smaller name; this link goes
                    // quietly (the other side drops its end the same way).
                    info!(peer = %peer, "crossed invitations: keeping the other session");
                    return session_info(peer, old);
                }
            }
            if let Some(old) = inner.sessions.insert(peer.to_string(), handle) {
                old.closer.cancel();
            }
        }
        info!(peer = %peer, initiator, "peer session established");
        let _ = self.events.send(Event::Connected(info.clone()));
        self.tasks.spawn(session::run(
            self.clone(),
            peer.to_string(),
            id,
            link,
            rx,
            closer,
        ));
        info
    }

    /// Called by a session task when it ends.
    pub fn session_ended(&self, peer: &str, id: u64, reason: String) {
        let mut inner = self.lock();
        if inner.sessions.get(peer).is_some_and(|h| h.id == id) {
            inner.sessions.remove(peer);
            drop(inner);
            let _ = self.events.send(Event::Disconnected {
                peer: peer.to_string(),
                reason,
            });
        }
    }
}

//! Invitations in both directions as a pure state machine: no I/O, no
//! clock of its own. [`Invitations::handle`] takes one [`Input`] (a server
//! event, a control command, a link that dialled in, the passing of time)
//! and the current [`Now`], and returns the [`Action`]s the daemon must
//! carry out (`peer/mod.rs` does the I/O). Expiry is by deadline:
//! [`Invitations::next_deadline`] says when to feed [`Input::Tick`].
//!
//! Once an invitation is accepted, both sides *establish* (see
//! `establish.rs`): both reach the other on every path at once and both let
//! links for it in, until [`SESSION_SETUP_DEADLINE`]. The side with the
//! lower static key leads: it opens the session on its first verified link;
//! the other holds its verified links until the leader's `Switch` names one.
//!
//! `W` is whoever waits for a control command's outcome (a `oneshot` in the
//! daemon, a number in the tests); `L` is a link that dialled in and waits
//! to be let through or refused.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use p2p_proto::ctl::{Event, PendingRequest};
use std::time::Duration;

use p2p_proto::time::rfc3339;
use p2p_proto::wire::{Contact, InviteEnd, ServerEvent};
use tokio::time::Instant;
use tracing::{info, warn};

use super::error::PeerError;
use crate::link::LinkError;

mod establish;
mod standing;
mod types;
pub(crate) use standing::{ContactBook, ContactView};
pub(crate) use types::{Action, Input, Now, PeerContact};

/// From an acceptance to a session, on both sides: SPEC §10 promises a
/// session within 5 s of the acceptance, or both sides told why not within
/// 5 s. It bounds the dials, the relay and the links let in.
pub(crate) const SESSION_SETUP_DEADLINE: Duration = Duration::from_secs(5);

/// Invitations held for an answer (and early answers held for an
/// invitation, and links held while we accept) at most: the server limits
/// what one user receives to far fewer, so only a broken or hostile server
/// or peer reaches this, and it must not grow the daemon's memory without
/// bound.
pub(crate) const MAX_HELD_INVITATIONS: usize = 256;

/// An answer to our invitation that arrived before `connect` registered it
/// is held this long. The race is between the server's reply and its event
/// inside p2pd (milliseconds apart), whatever the invitation's life; the
/// bound only keeps answers to invitations we never made from piling up.
pub(crate) const EARLY_ANSWER_HOLD: Duration = Duration::from_secs(30);

struct Request {
    invite: u64,
    expires_ms: i64,
}

/// One of our invitations, waiting for its answer.
struct Outgoing<W> {
    /// The invitee.
    to: String,
    /// The waiting `connect`, if any.
    waiter: Option<W>,
    /// Sent by the contact keeper, not by a command: its failures are only
    /// logged, never published as `rejected`.
    auto: bool,
}

/// An accepted invitation (ours or theirs) with no session yet.
struct Establishing<W> {
    user: String,
    key: Vec<u8>,
    /// Where the server says the peer is (the listener gives such links room).
    sources: Vec<IpAddr>,
    invite: u64,
    until: Instant,
    waiter: Option<W>,
    /// We invited (a failure is also published as `rejected`).
    inviter: bool,
    /// Automatic (a standing contact): failures are only logged.
    auto: bool,
    /// How reaching the peer has gone, in words (from [`Input::Tried`]).
    why: Option<String>,
}

/// An invitation whose session was opened, until its setup deadline: later
/// links for it belong to the session.
struct Settled {
    user: String,
    key: Vec<u8>,
    invite: u64,
    until: Instant,
}

struct Held<L> {
    user: String,
    key: Vec<u8>,
    invite: u64,
    until: Instant,
    link: L,
}

/// The invitation state of one daemon.
pub(crate) struct Invitations<W, L> {
    /// Invitations to us, by inviter (a newer one from the same user wins).
    requests: HashMap<String, Request>,
    /// Ours, by id, with the waiting `connect`.
    outgoing: HashMap<u64, Outgoing<W>>,
    /// Answers to our invitations that beat `connect`'s registration (the
    /// server's reply and event race inside p2pd).
    early: HashMap<u64, (ServerEvent, Instant)>,
    /// Answers under way, by (inviter, invitation, accepted), with their
    /// waiters. For an acceptance, the server tells the inviter (who dials
    /// at once) while its answer to us, with the key, is on the way.
    answering: HashMap<(String, u64, bool), Option<W>>,
    /// Accepted, no session yet: the only links let through.
    establishing: Vec<Establishing<W>>,
    /// Sessions opened within their setup deadline.
    settled: Vec<Settled>,
    /// Links that claim an invitation whose acceptance we have not seen
    /// yet (our answer, or the server's `Accepted`, is on its way).
    held: Vec<Held<L>>,
    auto_accept: HashSet<String>,
    /// Contacts and blocked users (standing consent, `standing.rs`).
    book: ContactBook,
    /// Contacts whose automatic sessions `disconnect` paused.
    paused: HashSet<String>,
    /// Contacts who let our last automatic invitation expire or declined
    /// it (they forgot us, or their daemon holds us): sweeps leave them
    /// alone until our next login, their invitation, or a session, so a
    /// one-sided contact does not prompt them every sweep.
    unanswered: HashSet<String>,
    clock_skew_ms: i64,
    /// Our static public key (who leads a session, see `p2p_proto::peer::leads`).
    my_key: Vec<u8>,
}

fn decline_error(to: &str, reason: InviteEnd) -> PeerError {
    let to = to.to_string();
    match reason {
        InviteEnd::Rejected => PeerError::Declined { to },
        InviteEnd::Expired => PeerError::Expired { to },
        InviteEnd::Offline => PeerError::WentOffline { to },
        InviteEnd::Other => PeerError::Ended { to },
    }
}

fn reply<W, L>(out: &mut Vec<Action<W, L>>, waiter: Option<W>, result: Result<(), PeerError>) {
    match waiter {
        Some(waiter) => out.push(Action::Reply { waiter, result }),
        None => {
            if let Err(e) = result {
                warn!(reason = %e, "automatic accept failed");
            }
        }
    }
}

impl<W, L> Invitations<W, L> {
    /// No invitations; `auto_accept` lists inviters accepted without
    /// asking; `my_key` is our static public key.
    pub(crate) fn new(auto_accept: impl IntoIterator<Item = String>, my_key: Vec<u8>) -> Self {
        Invitations {
            requests: HashMap::new(),
            outgoing: HashMap::new(),
            early: HashMap::new(),
            answering: HashMap::new(),
            establishing: Vec::new(),
            settled: Vec::new(),
            held: Vec::new(),
            auto_accept: auto_accept.into_iter().collect(),
            book: ContactBook::default(),
            paused: HashSet::new(),
            unanswered: HashSet::new(),
            clock_skew_ms: 0,
            my_key,
        }
    }

    /// Replaces the inviters accepted without asking (a config reload);
    /// invitations already waiting for an answer keep waiting.
    pub(crate) fn set_auto_accept(&mut self, auto_accept: impl IntoIterator<Item = String>) {
        self.auto_accept = auto_accept.into_iter().collect();
    }

    /// When [`Input::Tick`] is next due, if anything waits on a deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let establishing = self.establishing.iter().map(|e| e.until);
        let settled = self.settled.iter().map(|s| s.until);
        let held = self.held.iter().map(|h| h.until);
        establishing.chain(settled).chain(held).min()
    }

    /// How long until the server's clock reads `server_ms` (zero if past):
    /// an invitation's expiry is the server's time, not ours.
    pub(crate) fn until_server_time(&self, server_ms: i64, now: Now) -> Duration {
        let left = server_ms.saturating_sub(now.unix_ms.saturating_add(self.clock_skew_ms));
        Duration::from_millis(u64::try_from(left).unwrap_or(0))
    }

    /// Invitations waiting for our answer, oldest first.
    pub(crate) fn requests(&self, now: Now) -> Vec<PendingRequest> {
        let server_now = now.unix_ms + self.clock_skew_ms;
        let mut v: Vec<_> = self
            .requests
            .iter()
            .filter(|(_, r)| r.expires_ms > server_now)
            .map(|(from, r)| (r.invite, from.clone(), r.expires_ms))
            .collect();
        v.sort();
        v.into_iter()
            .map(|(_, from, exp)| PendingRequest {
                from,
                expires_at: rfc3339(exp),
            })
            .collect()
    }

    /// Whether `ip` is where a peer whose invitation we accepted is
    /// (`same` decides what counts as the same place).
    pub(crate) fn expects_from(&self, now: Now, same: impl Fn(IpAddr) -> bool) -> bool {
        self.establishing
            .iter()
            .any(|e| e.until > now.at && e.sources.iter().any(|s| same(*s)))
    }

    /// Whether an `accept` is under way (its inviter's address still unknown).
    pub(crate) fn accepting_any(&self) -> bool {
        self.answering.keys().any(|(_, _, accept)| *accept)
    }

    /// Applies one input; returns what to do, in order.
    pub(crate) fn handle(&mut self, input: Input<W, L>, now: Now) -> Vec<Action<W, L>> {
        let mut out = Vec::new();
        match input {
            Input::LoggedIn { clock_skew_ms } => {
                // Invitation ids are per server run: old answers mean
                // nothing, and invitations nobody waits for are gone.
                self.early.clear();
                self.outgoing.retain(|_, o| o.waiter.is_some());
                self.unanswered.clear();
                self.clock_skew_ms = clock_skew_ms;
            }
            Input::Server(event) => self.server(event, now, &mut out),
            Input::Invited { invite, to, waiter } => {
                let auto = false;
                self.invited(invite, Outgoing { to, waiter, auto }, now, &mut out)
            }
            Input::AutoInvited { invite, to } => {
                let (waiter, auto) = (None, true);
                self.invited(invite, Outgoing { to, waiter, auto }, now, &mut out)
            }
            Input::ConnectGaveUp { invite } => {
                self.outgoing.remove(&invite);
            }
            Input::Answer {
                from,
                accept,
                waiter,
            } => self.answer(from, accept, waiter, now, &mut out),
            Input::Answered {
                from,
                invite,
                accept,
                result,
            } => self.answered(from, invite, accept, result, now, &mut out),
            Input::Verified {
                user,
                key,
                invite,
                link,
            } => self.verified(user, key, invite, link, now, &mut out),
            Input::Switched { user, invite, link } => {
                self.switched(user, invite, link, now, &mut out)
            }
            Input::Tried { user, invite, why } => self.tried(&user, invite, why),
            Input::Tick => self.expire(now, &mut out),
            Input::Shutdown => self.shut_down(&mut out),
        }
        out
    }

    fn server(&mut self, event: ServerEvent, now: Now, out: &mut Vec<Action<W, L>>) {
        match event {
            ServerEvent::Invitation {
                invite,
                from,
                expires_ms,
            } => {
                if self.ignores(&from) {
                    return;
                }
                info!(from = %from, invite, "invitation received");
                let server_now = now.unix_ms + self.clock_skew_ms;
                self.requests.retain(|_, r| r.expires_ms > server_now);
                if self.requests.len() >= MAX_HELD_INVITATIONS && !self.requests.contains_key(&from)
                {
                    warn!(invite, "too many invitations held; ignoring one more");
                    return;
                }
                self.unanswered.remove(&from);
                let request = Request { invite, expires_ms };
                self.requests.insert(from.clone(), request);
                if self.standing(&from) {
                    info!(from = %from, "accepting a contact (standing consent)");
                    return self.answer(from, true, None, now, out);
                }
                out.push(Action::Emit(Event::Request(PendingRequest {
                    from: from.clone(),
                    expires_at: rfc3339(expires_ms),
                })));
                if self.auto_accept.contains(&from) {
                    info!(from = %from, "auto-accepting (auto_accept in the config)");
                    self.answer(from, true, None, now, out);
                }
            }
            // Broadcasts are the link's (they go to the inbox, not to a peer).
            ServerEvent::Broadcast { id, .. } => {
                warn!(id, "broadcast routed to the invitations; ignored")
            }
            ServerEvent::InvitationClosed { invite, reason } => {
                self.requests.retain(|_, r| r.invite != invite);
                info!(invite, ?reason, "invitation to us closed");
            }
            ServerEvent::Accepted { invite, contact } => {
                let Some(o) = self.outgoing.remove(&invite) else {
                    let event = ServerEvent::Accepted { invite, contact };
                    return self.hold_early(invite, event, now);
                };
                if contact.user != o.to {
                    warn!(
                        invite,
                        "the server's acceptance names someone we did not invite"
                    );
                    return reply(out, o.waiter, Err(PeerError::WrongAnswer));
                }
                let how = establish::How {
                    inviter: true,
                    auto: o.auto,
                };
                self.establish(contact, invite, o.waiter, how, now, out);
            }
            ServerEvent::Declined { invite, to, reason } => {
                let Some(Outgoing { waiter, auto, .. }) = self.outgoing.remove(&invite) else {
                    let event = ServerEvent::Declined { invite, to, reason };
                    return self.hold_early(invite, event, now);
                };
                if auto {
                    if reason != InviteEnd::Offline {
                        self.unanswered.insert(to.clone());
                    }
                    return info!(peer = %to, ?reason, "automatic invitation not accepted");
                }
                let err = decline_error(&to, reason);
                let reason = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                out.push(Action::Emit(Event::Rejected { peer: to, reason }));
                if let Some(waiter) = waiter {
                    out.push(Action::Reply {
                        waiter,
                        result: Err(err),
                    });
                }
            }
        }
    }

    fn invited(&mut self, invite: u64, o: Outgoing<W>, now: Now, out: &mut Vec<Action<W, L>>) {
        self.outgoing.insert(invite, o);
        if let Some((event, _)) = self.early.remove(&invite) {
            self.server(event, now, out);
        }
    }

    fn hold_early(&mut self, invite: u64, event: ServerEvent, now: Now) {
        self.early
            .retain(|_, (_, t)| now.at.duration_since(*t) < EARLY_ANSWER_HOLD);
        if self.early.len() < MAX_HELD_INVITATIONS {
            self.early.insert(invite, (event, now.at));
        }
    }

    fn answer(
        &mut self,
        from: String,
        accept: bool,
        waiter: Option<W>,
        now: Now,
        out: &mut Vec<Action<W, L>>,
    ) {
        let server_now = now.unix_ms + self.clock_skew_ms;
        let waiter = if accept {
            match self.refuse_held(&from, waiter, out) {
                Some(waiter) => waiter,
                None => return,
            }
        } else {
            waiter
        };
        let invite = self
            .requests
            .remove(&from)
            .filter(|r| r.expires_ms > server_now)
            .map(|r| r.invite);
        let Some(invite) = invite else {
            return reply(out, waiter, Err(PeerError::NoRequest { from }));
        };
        self.answering
            .insert((from.clone(), invite, accept), waiter);
        if accept {
            out.push(Action::ExpectationsChanged);
        }
        out.push(Action::SendAnswer {
            from,
            invite,
            accept,
        });
    }

    fn answered(
        &mut self,
        from: String,
        invite: u64,
        accept: bool,
        result: Result<Option<Contact>, LinkError>,
        now: Now,
        out: &mut Vec<Action<W, L>>,
    ) {
        let Some(waiter) = self.answering.remove(&(from.clone(), invite, accept)) else {
            return;
        };
        if accept {
            out.push(Action::ExpectationsChanged);
        }
        let contact = match result {
            Err(e) => {
                self.settle_held(&from, invite, out);
                return reply(out, waiter, Err(e.into()));
            }
            Ok(contact) => contact.filter(|_| accept),
        };
        let Some(contact) = contact else {
            self.settle_held(&from, invite, out);
            return reply(out, waiter, Ok(()));
        };
        let how = establish::How {
            inviter: false,
            auto: false,
        };
        self.establish(contact, invite, waiter, how, now, out);
    }

    fn expire(&mut self, now: Now, out: &mut Vec<Action<W, L>>) {
        let server_now = now.unix_ms + self.clock_skew_ms;
        self.requests.retain(|_, r| r.expires_ms > server_now);
        self.early
            .retain(|_, (_, t)| now.at.duration_since(*t) < EARLY_ANSWER_HOLD);
        self.expire_establishing(now, out);
    }

    fn shut_down(&mut self, out: &mut Vec<Action<W, L>>) {
        let outgoing = self.outgoing.drain().filter_map(|(_, o)| o.waiter);
        let answering = self.answering.drain().filter_map(|(_, w)| w);
        let expected = self.establishing.drain(..).filter_map(|e| e.waiter);
        let waiters: Vec<W> = outgoing.chain(answering).chain(expected).collect();
        for waiter in waiters {
            out.push(Action::Reply {
                waiter,
                result: Err(PeerError::ShuttingDown),
            });
        }
        for h in self.held.drain(..) {
            out.push(Action::Refuse { link: h.link });
        }
    }
}

#[cfg(test)]
mod establish_tests;
#[cfg(test)]
mod standing_tests;
#[cfg(test)]
mod tests;

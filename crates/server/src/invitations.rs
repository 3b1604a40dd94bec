//! Invitations (SPEC §3, talkd's model done right): the server forwards
//! "alice wants to talk" to bob, and hands each side the other's address and
//! key only when bob says yes. A "no", an expiry, or either side leaving ends
//! the invitation, and the inviter learns nothing.
//!
//! Each invitation is bound to the two *sessions* that made and received it:
//! if either logs in again elsewhere, the old invitation cannot be answered
//! on the new session's behalf. Expiry is one owned driver
//! ([`Invitations::run_expiry`]) over a deadline heap, not a task per
//! invitation; which invitations are due is a pure function of `now`
//! ([`Invitations::take_expired`]), so tests inject the time.
//!
//! Rate limits ([`crate::invite_limits`]) apply per inviter, per inviter's
//! address and per invitee. A name without an account and an account that
//! is offline get the same `not_online`, in the same place, so inviting
//! cannot be used to find out which accounts exist.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use p2p_proto::limits::{MAX_INVITATION_TTL, MIN_INVITATION_TTL};
use p2p_proto::time;
use p2p_proto::wire::{Contact, InviteEnd, ServerEvent, ServerMsg};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::invite_limits::{InviteLimiter, InviteLimits};
use crate::presence::Presence;
use crate::reach::contact;
use crate::refused::Refused;
use crate::relay::Relay;

#[derive(Debug, Clone)]
struct Invite {
    from: String,
    from_session: u64,
    to: String,
    to_session: u64,
}

#[derive(Debug)]
struct Inner {
    next_id: u64,
    open: HashMap<u64, Invite>,
    /// (deadline, id), earliest first. Answered or ended invitations stay
    /// here until their deadline passes and are then skipped: ids are never
    /// reused, so a stale entry cannot expire a newer invitation.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    limits: InviteLimiter,
}

impl Inner {
    /// Opens `invite` with `deadline`; true if that deadline is now the
    /// earliest (the expiry driver must re-arm its timer).
    fn open(&mut self, id: u64, invite: Invite, deadline: Instant) -> bool {
        let earliest = self
            .deadlines
            .peek()
            .is_none_or(|Reverse((d, _))| deadline < *d);
        self.open.insert(id, invite);
        self.deadlines.push(Reverse((deadline, id)));
        earliest
    }

    /// Removes and returns the open invitations whose deadline is at or
    /// before `now`, dropping stale heap entries on the way.
    fn take_expired(&mut self, now: Instant) -> Vec<(u64, Invite)> {
        let mut due = Vec::new();
        while let Some(Reverse((deadline, id))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if let Some(inv) = self.open.remove(&id) {
                due.push((id, inv));
            }
        }
        due
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((d, _))| *d)
    }
}

/// Parses `--invitation-ttl`: a duration between [`MIN_INVITATION_TTL`] and
/// [`MAX_INVITATION_TTL`].
pub(crate) fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = time::parse_duration(s)?;
    if !(MIN_INVITATION_TTL..=MAX_INVITATION_TTL).contains(&ttl) {
        return Err(format!(
            "{s} is outside {} to {}",
            time::human_duration(MIN_INVITATION_TTL),
            time::human_duration(MAX_INVITATION_TTL)
        ));
    }
    Ok(ttl)
}

/// Open invitations.
#[derive(Debug)]
pub struct Invitations {
    /// Life of a new invitation, in ms (a reload changes it).
    ttl_ms: AtomicU64,
    inner: Mutex<Inner>,
    /// The limits in force (the shared database counts the invitee's).
    limits: Mutex<InviteLimits>,
    /// Wakes the expiry driver when a new earliest deadline arrives.
    rearm: Notify,
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

fn event(event: ServerEvent) -> ServerMsg {
    ServerMsg::Event { event }
}

impl Invitations {
    /// Invitations that expire after `ttl`, rate-limited by `limits`.
    pub fn new(ttl: Duration, limits: InviteLimits) -> Self {
        Invitations {
            ttl_ms: AtomicU64::new(ttl_ms(ttl)),
            inner: Mutex::new(Inner {
                next_id: 0,
                open: HashMap::new(),
                deadlines: BinaryHeap::new(),
                limits: InviteLimiter::new(limits),
            }),
            limits: Mutex::new(limits),
            rearm: Notify::new(),
        }
    }

    /// Applies new rate limits (a reload) from the next invitation on.
    pub(crate) fn set_limits(&self, limits: InviteLimits) {
        let mut inner = self.inner.lock().expect("invitations poisoned");
        inner.limits.set_limits(limits);
        *self.limits.lock().expect("invitations poisoned") = limits;
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> InviteLimits {
        *self.limits.lock().expect("invitations poisoned")
    }

    /// Applies a new invitation life (a reload) from the next invitation
    /// on; open ones keep the expiry they were sent with.
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(ttl_ms(ttl), Ordering::Relaxed);
    }

    /// The life of a new invitation.
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    /// The sender's limits, for an invitation made through the shared
    /// database (`crate::cluster`): the inviter's session is on this
    /// instance, so its counts are here. Checked before the invitee is
    /// looked up, as in [`Invitations::invite`].
    pub(crate) fn check_sender(&self, from: &str, ip: IpAddr, now: Instant) -> Result<(), Refused> {
        let mut inner = self.inner.lock().expect("invitations poisoned");
        inner.limits.check_sender(from, ip, now)
    }

    /// Counts an invitation delivered through the shared database (the
    /// database counts the invitee's side: see `crate::cluster`).
    pub(crate) fn record(&self, from: &str, to: &str, ip: IpAddr, now: Instant) {
        let mut inner = self.inner.lock().expect("invitations poisoned");
        inner.limits.record(from, to, ip, now);
    }

    /// `from` (on session `from_session`, connected from `ip`) invites
    /// `to`, which may be any string: unknown names are simply not online.
    /// Returns the id and expiry (Unix ms); the invitee has been told.
    pub fn invite(
        &self,
        presence: &Presence,
        from: &str,
        from_session: u64,
        ip: IpAddr,
        to: &str,
    ) -> Result<(u64, i64), Refused> {
        if from == to {
            return Err(Refused::InviteSelf);
        }
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("invitations poisoned");
        inner.limits.check_sender(from, ip, now)?;
        let not_online = || Refused::NotOnline(to.to_string());
        let to_session = presence.peer(to).ok_or_else(not_online)?.session;
        inner.limits.check_invitee(to, now)?;
        inner.next_id += 1;
        let id = inner.next_id;
        let ttl = Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed));
        let expires_ms = time::now_ms() + ttl.as_millis() as i64;
        let msg = event(ServerEvent::Invitation {
            invite: id,
            from: from.to_string(),
            expires_ms,
        });
        if !presence.push(to, to_session, msg) {
            return Err(not_online());
        }
        inner.limits.record(from, to, ip, now);
        let invite = Invite {
            from: from.to_string(),
            from_session,
            to: to.to_string(),
            to_session,
        };
        let earliest = inner.open(id, invite, now + ttl);
        drop(inner);
        if earliest {
            // notify_one keeps a permit if the driver is busy: no lost wakeup.
            self.rearm.notify_one();
        }
        Ok((id, expires_ms))
    }

    /// The expiry driver: ends invitations as their deadlines pass, until
    /// `stop` is cancelled. One per server, owned and awaited by
    /// [`crate::Server::run`].
    pub async fn run_expiry(&self, presence: &Presence, stop: CancellationToken) {
        loop {
            let now = Instant::now();
            let (due, next) = {
                let mut inner = self.inner.lock().expect("invitations poisoned");
                (inner.take_expired(now), inner.next_deadline())
            };
            for (id, inv) in due {
                crate::metrics::metrics().invitation("expired");
                Self::tell_ended(presence, id, &inv, InviteEnd::Expired);
            }
            let timer = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.rearm.notified() => {}
                _ = timer => {}
            }
        }
    }

    /// Ends `id` without a session, telling both sides.
    fn end(&self, presence: &Presence, id: u64, reason: InviteEnd) {
        let Some(inv) = self
            .inner
            .lock()
            .expect("invitations poisoned")
            .open
            .remove(&id)
        else {
            return;
        };
        Self::tell_ended(presence, id, &inv, reason);
    }

    fn tell_ended(presence: &Presence, id: u64, inv: &Invite, reason: InviteEnd) {
        tracing::debug!(invite = id, from = %inv.from, to = %inv.to, ?reason, "invitation ended");
        presence.push(
            &inv.from,
            inv.from_session,
            event(ServerEvent::Declined {
                invite: id,
                to: inv.to.clone(),
                reason,
            }),
        );
        presence.push(
            &inv.to,
            inv.to_session,
            event(ServerEvent::InvitationClosed { invite: id, reason }),
        );
    }

    /// `me` (on session `session`) answers invitation `id`. On acceptance
    /// returns the inviter's contact, and the inviter has been sent ours;
    /// each contact carries its receiver's own relay token from `relay`.
    pub fn answer<A>(
        &self,
        presence: &Presence,
        relay: &Relay<A>,
        me: &str,
        session: u64,
        id: u64,
        accept: bool,
    ) -> Result<Option<Contact>, Refused> {
        let inv = {
            let mut inner = self.inner.lock().expect("invitations poisoned");
            match inner.open.get(&id) {
                Some(inv) if inv.to == me && inv.to_session == session => {
                    inner.open.remove(&id).expect("present")
                }
                _ => return Err(Refused::NoInvitation(id)),
            }
        };
        if !accept {
            presence.push(
                &inv.from,
                inv.from_session,
                event(ServerEvent::Declined {
                    invite: id,
                    to: inv.to,
                    reason: InviteEnd::Rejected,
                }),
            );
            return Ok(None);
        }
        let inviter = presence
            .peer(&inv.from)
            .filter(|p| p.session == inv.from_session);
        // Our own contact must be this session's: a newer login of ours has
        // no record of the invitation and would refuse the inviter's link.
        let mine = presence.peer(me).filter(|p| p.session == session);
        let (Some(inviter), Some(mine)) = (inviter, mine) else {
            return Err(Refused::NoLongerOnline(inv.from));
        };
        let (inviter_token, my_token) = relay
            .issue(&inv.from, me, Instant::now())
            .map_or((None, None), |(a, b)| (Some(a), Some(b)));
        let to_inviter = contact(
            me,
            &mine.public_key,
            &mine.reach,
            &inviter.reach,
            inviter_token,
        );
        let to_me = contact(
            &inv.from,
            &inviter.public_key,
            &inviter.reach,
            &mine.reach,
            my_token,
        );
        if !presence.push(
            &inv.from,
            inv.from_session,
            event(ServerEvent::Accepted {
                invite: id,
                contact: to_inviter,
            }),
        ) {
            return Err(Refused::NoLongerOnline(inv.from));
        }
        tracing::info!(invite = id, from = %inv.from, to = %inv.to, "invitation accepted");
        Ok(Some(to_me))
    }

    /// A session ended: its open invitations end too ("offline").
    pub(crate) fn session_ended(&self, presence: &Presence, user: &str, session: u64) {
        let ids: Vec<u64> = {
            let inner = self.inner.lock().expect("invitations poisoned");
            inner
                .open
                .iter()
                .filter(|(_, i)| {
                    (i.from == user && i.from_session == session)
                        || (i.to == user && i.to_session == session)
                })
                .map(|(id, _)| *id)
                .collect()
        };
        for id in ids {
            self.end(presence, id, InviteEnd::Offline);
        }
    }
}

#[cfg(test)]
#[path = "invitations_tests.rs"]
mod tests;

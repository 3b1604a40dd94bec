//! Invitations (SPEC §3, talkd's model done right): the server forwards
//! "alice wants to talk" to bob, and hands each side the other's address and
//! key only when bob says yes. A "no", an expiry, or either side leaving ends
//! the invitation, and the inviter learns nothing.
//!
//! Each invitation is bound to the two *sessions* that made and received it:
//! if either logs in again elsewhere, the old invitation cannot be answered
//! on the new session's behalf. Expiry runs on tokio time, so tests can pause
//! the clock.
//!
//! Rate limits ([`crate::invite_limits`]) apply per inviter, per inviter's
//! address and per invitee. A name without an account and an account that
//! is offline get the same `not_online`, in the same place, so inviting
//! cannot be used to find out which accounts exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_proto::time;
use p2p_proto::wire::{Contact, InviteEnd, ServerEvent, ServerMsg};
use tokio::time::Instant;

use crate::invite_limits::{InviteLimiter, InviteLimits};
use crate::presence::Presence;
use crate::refused::Refused;

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
    limits: InviteLimiter,
}

/// Open invitations.
#[derive(Debug)]
pub struct Invitations {
    ttl: Duration,
    inner: Mutex<Inner>,
}

fn event(event: ServerEvent) -> ServerMsg {
    ServerMsg::Event { event }
}

impl Invitations {
    /// Invitations that expire after `ttl`, rate-limited by `limits`.
    pub fn new(ttl: Duration, limits: InviteLimits) -> Self {
        Invitations {
            ttl,
            inner: Mutex::new(Inner {
                next_id: 0,
                open: HashMap::new(),
                limits: InviteLimiter::new(limits),
            }),
        }
    }

    /// `from` (on session `from_session`, connected from `ip`) invites
    /// `to`, which may be any string: unknown names are simply not online.
    /// Returns the id and expiry (Unix ms); the invitee has been told.
    pub fn invite(
        self: &Arc<Self>,
        presence: &Arc<Presence>,
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
        let (to_session, _) = presence.contact(to).ok_or_else(not_online)?;
        inner.limits.check_invitee(to, now)?;
        inner.next_id += 1;
        let id = inner.next_id;
        let expires_ms = time::now_ms() + self.ttl.as_millis() as i64;
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
        inner.open.insert(id, invite);
        drop(inner);
        let (me, presence) = (self.clone(), presence.clone());
        tokio::spawn(async move {
            tokio::time::sleep(me.ttl).await;
            me.end(&presence, id, InviteEnd::Expired);
        });
        Ok((id, expires_ms))
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
    /// returns the inviter's contact, and the inviter has been sent ours.
    pub fn answer(
        &self,
        presence: &Presence,
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
            .contact(&inv.from)
            .filter(|(s, _)| *s == inv.from_session);
        // Our own contact must be this session's: a newer login of ours has
        // no record of the invitation and would refuse the inviter's link.
        let mine = presence.contact(me).filter(|(s, _)| *s == session);
        let (Some((_, inviter)), Some((_, mine))) = (inviter, mine) else {
            return Err(Refused::NoLongerOnline(inv.from));
        };
        if !presence.push(
            &inv.from,
            inv.from_session,
            event(ServerEvent::Accepted {
                invite: id,
                contact: mine,
            }),
        ) {
            return Err(Refused::NoLongerOnline(inv.from));
        }
        tracing::info!(invite = id, from = %inv.from, to = %inv.to, "invitation accepted");
        Ok(Some(inviter))
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

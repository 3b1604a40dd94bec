//! From an acceptance to a session (SPEC §10): both sides reach each other
//! at once and both let links for the invitation in, until
//! [`SESSION_SETUP_DEADLINE`]. Every link that verified goes through here:
//!
//! - the leader (lower static key, `p2p_proto::peer::leads`) opens the
//!   session on its first verified link ([`Action::Admit`] with `lead`);
//! - the follower holds its verified links ([`Action::Hold`]) until the
//!   leader's `Switch` arrives on one ([`Input::Switched`]), and opens the
//!   session on that one;
//! - a link for an invitation whose session is up goes to the session
//!   ([`Action::Live`]); one that matches nothing is refused;
//! - at the deadline, the waiting command is told what was tried and how it
//!   failed (never that the *other* side did not connect).

use p2p_proto::ctl::Event;
use p2p_proto::peer::leads;
use p2p_proto::wire::{Contact, ServerEvent};
use tracing::{info, warn};

use super::{
    reply, Action, Establishing, Held, Invitations, Now, PeerContact, Settled,
    MAX_HELD_INVITATIONS, SESSION_SETUP_DEADLINE,
};
use crate::peer::error::{PeerError, SetupError};

/// How an invitation came to be accepted.
#[derive(Debug, Clone, Copy)]
pub(super) struct How {
    /// We invited (a failure is also published as `rejected`).
    pub(super) inviter: bool,
    /// The contact keeper invited (a failure is only logged).
    pub(super) auto: bool,
}

impl<W, L> Invitations<W, L> {
    /// `contact` accepted (we invited: `how.inviter`) or we accepted its
    /// invitation: reach it, and let its links in, until the deadline.
    /// A contact held for a changed key is not reached (SPEC §11).
    pub(super) fn establish(
        &mut self,
        contact: Contact,
        invite: u64,
        waiter: Option<W>,
        how: How,
        now: Now,
        out: &mut Vec<Action<W, L>>,
    ) {
        self.unanswered.remove(&contact.user);
        out.push(Action::CheckKey(contact.clone()));
        if !self.key_allowed(&contact.user, &contact.public_key) {
            self.settle_held(&contact.user, invite, out);
            let user = contact.user.clone();
            return reply(out, waiter, Err(PeerError::KeyChanged { user }));
        }
        let Ok(key) = hex::decode(&contact.public_key) else {
            self.settle_held(&contact.user, invite, out);
            let e = SetupError::MalformedKey {
                user: contact.user.clone(),
            };
            return reply(out, waiter, Err(e.into()));
        };
        let peer = PeerContact::from(&contact);
        let until = now.at + SESSION_SETUP_DEADLINE;
        self.establishing.retain(|e| e.until > now.at);
        self.establishing.push(Establishing {
            user: contact.user.clone(),
            key,
            sources: peer.paths.iter().map(|a| a.ip()).collect(),
            invite,
            until,
            waiter,
            inviter: how.inviter,
            auto: how.auto,
            why: None,
        });
        out.push(Action::ExpectationsChanged);
        out.push(Action::Establish {
            contact: peer,
            invite,
            relay: contact.relay.clone(),
            until,
        });
        self.settle_held(&contact.user, invite, out);
    }

    /// The acceptance of (`user`, `invite`) is in, or failed: links held
    /// for it get their verdict.
    pub(super) fn settle_held(&mut self, user: &str, invite: u64, out: &mut Vec<Action<W, L>>) {
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].user == user && self.held[i].invite == invite {
                let h = self.held.swap_remove(i);
                self.decide(h.user, h.key, h.invite, h.link, out);
            } else {
                i += 1;
            }
        }
    }

    /// Whether the acceptance of (`user`, `invite`) may still arrive: our
    /// answer accepting it, or the server's `Accepted` for our invitation,
    /// is on its way (or came before `connect` registered the invitation).
    fn acceptance_pending(&self, user: &str, invite: u64) -> bool {
        let answering = self
            .answering
            .contains_key(&(user.to_string(), invite, true));
        let ours = self.outgoing.get(&invite).is_some_and(|o| o.to == user);
        let early = self.early.get(&invite).is_some_and(|(event, _)| {
            matches!(event, ServerEvent::Accepted { contact, .. } if contact.user == user)
        });
        answering || ours || early
    }

    /// A link for `invite` with `user`, who proved `key`, is up.
    pub(super) fn verified(
        &mut self,
        user: String,
        key: Vec<u8>,
        invite: u64,
        link: L,
        now: Now,
        out: &mut Vec<Action<W, L>>,
    ) {
        self.drop_expired(now);
        let known = self
            .establishing
            .iter()
            .any(|e| e.user == user && e.invite == invite);
        let settled = self
            .settled
            .iter()
            .any(|s| s.user == user && s.invite == invite);
        if !known && !settled && self.acceptance_pending(&user, invite) {
            if self.held.len() < MAX_HELD_INVITATIONS {
                let until = now.at + SESSION_SETUP_DEADLINE;
                self.held.push(Held {
                    user,
                    key,
                    invite,
                    until,
                    link,
                });
            } else {
                out.push(Action::Refuse { link });
            }
            return;
        }
        self.decide(user, key, invite, link, out);
    }

    /// The verdict on a verified link whose invitation's state is known.
    fn decide(
        &mut self,
        user: String,
        key: Vec<u8>,
        invite: u64,
        link: L,
        out: &mut Vec<Action<W, L>>,
    ) {
        let matches = |u: &str, k: &[u8], i: u64| u == user && k == key && i == invite;
        if self
            .settled
            .iter()
            .any(|s| matches(&s.user, &s.key, s.invite))
        {
            return out.push(Action::Live { link });
        }
        let Some(pos) = self
            .establishing
            .iter()
            .position(|e| matches(&e.user, &e.key, e.invite))
        else {
            return out.push(Action::Refuse { link });
        };
        if leads(&self.my_key, &key) {
            self.open(pos, link, true, out);
        } else {
            let until = self.establishing[pos].until;
            out.push(Action::Hold { link, until });
        }
    }

    /// The leader chose this held link for (`user`, `invite`).
    pub(super) fn switched(
        &mut self,
        user: String,
        invite: u64,
        link: L,
        now: Now,
        out: &mut Vec<Action<W, L>>,
    ) {
        self.drop_expired(now);
        let pos = self
            .establishing
            .iter()
            .position(|e| e.user == user && e.invite == invite);
        match pos {
            Some(pos) => self.open(pos, link, false, out),
            None if self
                .settled
                .iter()
                .any(|s| s.user == user && s.invite == invite) =>
            {
                out.push(Action::Live { link })
            }
            None => out.push(Action::Refuse { link }),
        }
    }

    /// Opens the session of `establishing[pos]` on `link`.
    fn open(&mut self, pos: usize, link: L, lead: bool, out: &mut Vec<Action<W, L>>) {
        let e = self.establishing.swap_remove(pos);
        let inviter = e.inviter;
        info!(peer = %e.user, invite = e.invite, lead, "session link chosen");
        self.settled.push(Settled {
            user: e.user,
            key: e.key,
            invite: e.invite,
            until: e.until,
        });
        out.push(Action::ExpectationsChanged);
        out.push(Action::Admit {
            link,
            waiter: e.waiter,
            lead,
            inviter,
        });
    }

    /// Progress in reaching `user` for `invite`, for the failure message.
    pub(super) fn tried(&mut self, user: &str, invite: u64, why: String) {
        if let Some(e) = self
            .establishing
            .iter_mut()
            .find(|e| e.user == user && e.invite == invite)
        {
            e.why = Some(why);
        }
    }

    fn drop_expired(&mut self, now: Now) {
        self.settled.retain(|s| s.until > now.at);
    }

    /// The setup deadline passed: the waiting commands are told why.
    pub(super) fn expire_establishing(&mut self, now: Now, out: &mut Vec<Action<W, L>>) {
        self.drop_expired(now);
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.establishing)
            .into_iter()
            .partition(|e| e.until <= now.at);
        self.establishing = kept;
        if !gone.is_empty() {
            out.push(Action::ExpectationsChanged);
        }
        for e in gone {
            let err = SetupError::NoSession {
                user: e.user.clone(),
                secs: SESSION_SETUP_DEADLINE.as_secs(),
                why: e
                    .why
                    .unwrap_or_else(|| "no path was tried (nothing to dial, no relay)".into()),
            };
            warn!(peer = %e.user, invite = e.invite, reason = %err, "no session");
            if e.inviter && !e.auto {
                out.push(Action::Emit(Event::Rejected {
                    peer: e.user,
                    reason: err.to_string(),
                }));
            }
            reply(out, e.waiter, Err(PeerError::from(err)));
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.until <= now.at);
        self.held = kept;
        for h in gone {
            out.push(Action::Refuse { link: h.link });
        }
    }
}

//! Standing consent (SPEC §11) as the invitation machine sees it: the
//! contacts and blocked users (a view of `crate::contacts::Contacts`, fed
//! by `Peers` whenever the store changes) and the contacts whose automatic
//! sessions `disconnect` paused.
//!
//! - an invitation from a blocked user is dropped without a trace the
//!   inviter could see: no request, no event, no answer (the server expires
//!   it as if it went unanswered);
//! - an invitation from a contact (not held, not paused) is accepted with
//!   no `request` event;
//! - the key the server hands out at an acceptance is checked against the
//!   contact's: a verified contact with another key is *held*, and no
//!   session opens with them until `trust`.

use std::collections::{HashMap, HashSet};

use tracing::{info, warn};

use super::{reply, Action, Invitations};
use crate::peer::error::PeerError;

/// One contact, as the machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContactView {
    /// The key we trust for them, hex.
    pub(crate) key: String,
    /// Their safety number was confirmed for `key`.
    pub(crate) verified: bool,
    /// A key change not yet confirmed or trusted (commands warn).
    pub(crate) key_changed: bool,
    /// The key changed after verification: no session until `trust`.
    pub(crate) held: bool,
}

/// The contacts and blocked users, from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContactBook {
    /// By name.
    pub(crate) contacts: HashMap<String, ContactView>,
    /// Blocked users.
    pub(crate) blocked: HashSet<String>,
}

impl From<(Vec<crate::contacts::Contact>, Vec<String>)> for ContactBook {
    fn from((contacts, blocked): (Vec<crate::contacts::Contact>, Vec<String>)) -> Self {
        let contacts = contacts
            .into_iter()
            .map(|c| {
                let view = ContactView {
                    key: c.key,
                    verified: c.verified,
                    key_changed: c.key_changed,
                    held: c.held,
                };
                (c.user, view)
            })
            .collect();
        ContactBook {
            contacts,
            blocked: blocked.into_iter().collect(),
        }
    }
}

/// Whether two hex keys are the same key (whatever the letter case).
fn same_key(a: &str, b: &str) -> bool {
    match (hex::decode(a), hex::decode(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl<W, L> Invitations<W, L> {
    /// Replaces the view of the contact store. Invitations held from users
    /// who are blocked now are dropped (unanswered, as a block wants).
    pub(crate) fn set_contacts(&mut self, book: ContactBook) {
        self.requests.retain(|from, _| !book.blocked.contains(from));
        self.book = book;
    }

    /// `disconnect USER`: no automatic session (nor automatic accept) with
    /// `user` until [`Invitations::resume`] or a restart.
    pub(crate) fn pause(&mut self, user: &str) {
        self.paused.insert(user.to_string());
    }

    /// `connect USER` / `trust USER`: automatic sessions with `user` again.
    pub(crate) fn resume(&mut self, user: &str) {
        self.paused.remove(user);
    }

    /// The contact `user`, if they are one.
    pub(crate) fn contact(&self, user: &str) -> Option<&ContactView> {
        self.book.contacts.get(user)
    }

    /// Contacts whose key changed and was not confirmed or trusted, by name.
    pub(crate) fn key_changed(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .book
            .contacts
            .iter()
            .filter(|(_, c)| c.key_changed || c.held)
            .map(|(u, _)| u.clone())
            .collect();
        v.sort();
        v
    }

    /// Whether `user` is a contact whose sessions open by themselves now:
    /// not held, not paused, not blocked.
    pub(crate) fn standing(&self, user: &str) -> bool {
        self.book.contacts.get(user).is_some_and(|c| !c.held)
            && !self.paused.contains(user)
            && !self.book.blocked.contains(user)
    }

    /// Contacts to invite automatically: standing, with no invitation
    /// open between us either way and no session being set up. By name.
    pub(crate) fn to_reinvite(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .book
            .contacts
            .keys()
            .filter(|u| self.standing(u) && !self.busy_with(u) && !self.unanswered.contains(*u))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Whether an invitation between us and `user` is open (either way) or
    /// a session with them is being set up.
    fn busy_with(&self, user: &str) -> bool {
        self.outgoing.values().any(|o| o.to == user)
            || self.requests.contains_key(user)
            || self.answering.keys().any(|(from, _, _)| from == user)
            || self.establishing.iter().any(|e| e.user == user)
    }

    /// Whether an invitation from `from` is dropped unseen (blocked).
    pub(super) fn ignores(&self, from: &str) -> bool {
        if self.book.blocked.contains(from) {
            info!("invitation from a blocked user ignored");
            return true;
        }
        false
    }

    /// `accept` of a held contact: refused before the server hears of it.
    pub(super) fn refuse_held(
        &self,
        from: &str,
        waiter: Option<W>,
        out: &mut Vec<Action<W, L>>,
    ) -> Option<Option<W>> {
        if self.book.contacts.get(from).is_some_and(|c| c.held) {
            let user = from.to_string();
            reply(out, waiter, Err(PeerError::KeyChanged { user }));
            return None;
        }
        Some(waiter)
    }

    /// The server handed out `key` for `user` at an acceptance. Returns
    /// false when no session may open: a verified (or already held)
    /// contact with another key is held until `trust`. An unverified
    /// contact takes the new key (and is marked changed).
    pub(super) fn key_allowed(&mut self, user: &str, key: &str) -> bool {
        let Some(c) = self.book.contacts.get_mut(user) else {
            return true;
        };
        if same_key(&c.key, key) {
            return !c.held;
        }
        if c.held || c.verified {
            warn!(peer = %user, "contact key changed after verification: no session until trust");
            c.held = true;
            c.verified = false;
            c.key_changed = true;
            return false;
        }
        c.key = key.to_string();
        c.key_changed = true;
        true
    }
}

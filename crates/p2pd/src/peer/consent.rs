//! The I/O side of standing consent (SPEC §11): the contact store
//! (`crate::contacts`, blocking SQLite, always on the blocking pool) and
//! the invitation machine's view of it, kept in step.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use p2p_proto::ctl::Event;
use p2p_proto::time;
use p2p_proto::wire::Contact;
use tracing::warn;

use super::invitations::{ContactBook, ContactView};
use super::{lock, Peers};
use crate::contacts::Contacts;
use crate::error::Result;
use crate::state::StateDir;

impl Peers {
    /// Runs `f` on the contact store, on the blocking pool, then refreshes
    /// the machine's view of the store.
    pub(crate) async fn with_contacts<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Contacts) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let contacts = self.contacts.clone();
        let out = tokio::task::spawn_blocking(move || f(&contacts)).await?;
        self.reload_contacts().await;
        out
    }

    /// Reads the contact store again and hands it to the machine. Reads
    /// are numbered so an older one finishing late never wins.
    pub(crate) async fn reload_contacts(&self) {
        let generation = self.book_read.fetch_add(1, Ordering::SeqCst) + 1;
        let contacts = self.contacts.clone();
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::error::DaemonError>((contacts.list()?, contacts.blocked()?))
        })
        .await;
        let book = match read {
            Ok(Ok(read)) => ContactBook::from(read),
            Ok(Err(e)) => return warn!(cause = %e, "cannot read the contacts"),
            Err(e) => return warn!(cause = %e, "cannot read the contacts"),
        };
        let mut machine = lock(&self.invitations);
        if self.book_applied.fetch_max(generation, Ordering::SeqCst) < generation {
            machine.set_contacts(book);
        }
    }

    /// The contact `user`, as the machine knows them.
    pub(crate) fn contact_view(&self, user: &str) -> Option<ContactView> {
        lock(&self.invitations).contact(user).cloned()
    }

    /// Contacts whose key changed and was not confirmed or trusted.
    pub(crate) fn key_changed(&self) -> Vec<String> {
        lock(&self.invitations).key_changed()
    }

    /// `disconnect USER`: no automatic session with `user` until `connect`
    /// (or a restart).
    pub(crate) fn pause(&self, user: &str) {
        lock(&self.invitations).pause(user);
    }

    /// `connect USER` / `trust USER`: automatic sessions with `user` again.
    pub(crate) fn resume(&self, user: &str) {
        lock(&self.invitations).resume(user);
    }

    /// A session with `user`, who proved `key` (hex), is about to open: an
    /// accepted invitation makes the two contacts. Durable (on the
    /// blocking pool) before the session is visible to anyone.
    pub(crate) async fn make_contact(&self, user: &str, key: String) {
        let user = user.to_string();
        let seen = self
            .with_contacts(move |c| c.seen(&user, &key, time::now_ms()))
            .await;
        if let Err(e) = seen {
            warn!(cause = %e, "cannot save the contact");
        }
    }

    /// The server handed out `contact`'s key at an acceptance: remember it
    /// (`known_peers.json`), tell `watch` loudly if it changed, and let a
    /// contact's record say so (held or changed, see `crate::contacts`).
    pub(super) fn check_key(self: &Arc<Self>, contact: Contact) {
        let peers = self.clone();
        self.tasks.spawn(async move {
            let state = peers.state.clone();
            let (user, key) = (contact.user.clone(), contact.public_key.clone());
            let checked = state.blocking(move |s| check_known(s, &user, &key)).await;
            match checked {
                Ok(Some(old)) => {
                    warn!(peer = %contact.user, %old, new = %contact.public_key, "PEER KEY CHANGED");
                    let _ = peers.events.send(Event::KeyChanged {
                        peer: contact.user.clone(),
                        old_key: old,
                        new_key: contact.public_key.clone(),
                    });
                }
                Ok(None) => {}
                Err(e) => warn!(cause = %e, "cannot check the peer key"),
            }
            let (user, key) = (contact.user, contact.public_key);
            let recorded = peers
                .with_contacts(move |c| match c.get(&user)? {
                    Some(_) => c.seen(&user, &key, time::now_ms()).map(|_| ()),
                    // Not a contact: the session makes one when it opens.
                    None => Ok(()),
                })
                .await;
            if let Err(e) = recorded {
                warn!(cause = %e, "cannot record the contact's key");
            }
        });
    }
}

/// Compares `key` with the one remembered for `user` and remembers it if
/// it is new or changed. Returns the old key when it changed. Blocking.
fn check_known(state: &StateDir, user: &str, key: &str) -> Result<Option<String>> {
    let old = match state.known_key(user) {
        Ok(Some(old)) if old == key => return Ok(None),
        Ok(old) => old,
        Err(e) => {
            // Unreadable: say so, and still remember the key we were given.
            warn!(cause = %e, "cannot read known peer keys");
            None
        }
    };
    if let Err(e) = state.set_known_key(user, key) {
        warn!(cause = %e, "cannot save peer key");
    }
    Ok(old)
}

//! The contact keeper (SPEC §11, standing consent): sessions between
//! contacts open by themselves whenever both are online.
//!
//! - At each login the daemon asks the server who is online and invites
//!   every online contact that is not held, not paused, has no session and
//!   no open invitation from us (their daemon accepts without a prompt).
//! - Every [`CONTACT_SWEEP`] while online, only the side with the lower
//!   account name of each pair re-invites its online contacts that have no
//!   session, so two daemons do not cross invitations every sweep. (At a
//!   login both may invite at once; the session registry's
//!   crossed-invitation rule leaves one session on both sides.)
//! - Automatic invitations spend at most [`AUTO_INVITES_PER_WINDOW`] of the
//!   server's per-inviter allowance, so `connect` always has room left.
//!
//! Failures of automatic invitations are logged, never shown as errors.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use p2p_proto::limits::{INVITES_PER_WINDOW, INVITE_WINDOW};
use p2p_proto::wire::{Reply, Request};
use tokio::time::Instant;
use tracing::{debug, info};

use super::invitations::Input;
use super::{lock, Peers};
use crate::link::reply_error;

/// How often the lower-named side of each pair of online contacts without
/// a session invites again: a session lost to a network change comes back
/// within this time, and at most one invitation per contact per sweep
/// leaves the server's per-inviter limit mostly for people.
pub(crate) const CONTACT_SWEEP: Duration = Duration::from_secs(30);

/// Automatic invitations per [`INVITE_WINDOW`]: half of what the server
/// allows one inviter ([`INVITES_PER_WINDOW`]), so a `connect` typed by
/// the user is never refused for invitations the daemon sent by itself.
pub(crate) const AUTO_INVITES_PER_WINDOW: usize = INVITES_PER_WINDOW as usize / 2;

/// Why the keeper invites now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Round {
    /// We just logged in: invite every online contact.
    Login,
    /// A periodic sweep: invite only contacts whose name is above ours.
    Sweep,
}

/// The keeper's memory: who we are and when automatic invitations went
/// out (for [`AUTO_INVITES_PER_WINDOW`]). Pure, with injected time.
#[derive(Debug, Default)]
pub(crate) struct Keeper {
    me: String,
    sent: VecDeque<Instant>,
}

impl Keeper {
    /// We logged in as `me`.
    pub(crate) fn logged_in(&mut self, me: &str) {
        self.me = me.to_string();
    }

    /// The contacts a round is for: of `candidates` (the standing contacts
    /// with no invitation between us), those without a session, and at a
    /// sweep only those whose name is above ours.
    pub(crate) fn due(
        &self,
        round: Round,
        candidates: Vec<String>,
        with_session: &HashSet<String>,
    ) -> Vec<String> {
        candidates
            .into_iter()
            .filter(|u| *u != self.me && !with_session.contains(u))
            .filter(|u| round == Round::Login || self.me.as_str() < u.as_str())
            .collect()
    }

    /// Whom to invite now: those of `due` who are `online`, at most what
    /// the budget allows (and spends it).
    pub(crate) fn pick(
        &mut self,
        due: Vec<String>,
        online: &HashSet<String>,
        now: Instant,
    ) -> Vec<String> {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= INVITE_WINDOW)
        {
            self.sent.pop_front();
        }
        let room = AUTO_INVITES_PER_WINDOW.saturating_sub(self.sent.len());
        let picked: Vec<String> = due
            .into_iter()
            .filter(|u| online.contains(u))
            .take(room)
            .collect();
        self.sent.extend(picked.iter().map(|_| now));
        picked
    }
}

impl Peers {
    /// One round of the keeper: invite the contacts it picks. Runs as a
    /// task; at most one round at a time.
    pub(crate) async fn keep_contacts(self: Arc<Self>, round: Round) {
        let Ok(_running) = self.keeping.try_lock() else {
            return;
        };
        let candidates = lock(&self.invitations).to_reinvite();
        let with_session: HashSet<String> = self.sessions().into_iter().map(|s| s.peer).collect();
        let due = lock(&self.keeper).due(round, candidates, &with_session);
        if due.is_empty() {
            // Nobody to invite: the server is not asked.
            return;
        }
        let online: HashSet<String> = match self.link.request(Request::List).await {
            Ok(Reply::Users { users }) => users.into_iter().map(|u| u.user).collect(),
            Ok(other) => {
                return debug!(reason = %reply_error(other), "contact keeper: no user list")
            }
            Err(e) => return debug!(reason = %e, "contact keeper: no user list"),
        };
        let picked = lock(&self.keeper).pick(due, &online, Instant::now());
        for to in picked {
            let req = Request::Invite { to: to.clone() };
            match self.link.request(req).await {
                Ok(Reply::Invited { invite, .. }) => {
                    info!(peer = %to, invite, "invited a contact (standing consent)");
                    self.apply(Input::AutoInvited { invite, to });
                }
                Ok(other) => {
                    info!(peer = %to, reason = %reply_error(other), "automatic invitation failed")
                }
                Err(e) => info!(peer = %to, reason = %e, "automatic invitation failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn login_invites_online_contacts_without_a_session() {
        let mut k = Keeper::default();
        k.logged_in("bob");
        let due = k.due(
            Round::Login,
            names(&["alice", "carol", "dave", "erin"]),
            &set(&["carol"]),
        );
        // carol has a session; at login names below ours count too.
        assert_eq!(due, ["alice", "dave", "erin"]);
        let online = set(&["alice", "bob", "carol", "dave"]);
        // erin is offline.
        assert_eq!(k.pick(due, &online, Instant::now()), ["alice", "dave"]);
    }

    #[test]
    fn a_sweep_is_the_lower_names_job() {
        let mut k = Keeper::default();
        k.logged_in("bob");
        let due = k.due(Round::Sweep, names(&["alice", "carol"]), &HashSet::new());
        assert_eq!(due, ["carol"], "alice sweeps for the pair alice/bob");
        assert!(k
            .due(Round::Sweep, names(&["carol"]), &set(&["carol"]))
            .is_empty());
    }

    #[test]
    fn automatic_invitations_spend_at_most_half_the_servers_allowance() {
        let start = Instant::now();
        let mut k = Keeper::default();
        k.logged_in("a");
        let many: Vec<String> = (0..20).map(|i| format!("user{i:02}")).collect();
        let online: HashSet<String> = many.iter().cloned().collect();
        let first = k.pick(many.clone(), &online, start);
        assert_eq!(first.len(), AUTO_INVITES_PER_WINDOW);
        assert!(2 * AUTO_INVITES_PER_WINDOW <= INVITES_PER_WINDOW as usize);
        let later = start + INVITE_WINDOW / 2;
        assert!(
            k.pick(many.clone(), &online, later).is_empty(),
            "the window's budget is spent"
        );
        let next = start + INVITE_WINDOW;
        assert_eq!(k.pick(many, &online, next).len(), AUTO_INVITES_PER_WINDOW);
    }
}

//! Rate limits on invitations: per inviter, per inviter's network address,
//! and per invitee, each a [`SlidingWindow`]. Pure: every call takes `now`,
//! so the tests run on an injected clock.
//!
//! Order matters for privacy: the sender's limits are checked before the
//! invitee is looked up, and the invitee's after it is known to be online
//! (which `list` shows anyway). So an account that exists but is offline
//! and a name nobody has get the same answer whatever the limits say.

use std::net::IpAddr;
use std::time::Duration;

use p2p_proto::limits::{INVITES_PER_WINDOW, INVITE_WINDOW};
use tokio::time::Instant;

use crate::rate::SlidingWindow;
use crate::refused::Refused;
use crate::sources::{address_key, SourceKey};

/// Invitations one user may *receive* per window from everyone together:
/// twice what one inviter may send, so a couple of friends inviting at
/// once get through, while sixty accounts cannot bury one user under six
/// hundred requests a minute.
pub(crate) const INVITES_RECEIVED_PER_WINDOW: u32 = 20;
/// Default for `--invites-per-address`: invitations per window from one
/// network address (IPv4, or an IPv6 /64), all its users together. Ten
/// users behind one NAT can each send at the full per-user rate; an office
/// of people inviting by hand stays far below it.
pub(crate) const DEFAULT_INVITES_PER_ADDRESS: u32 = 100;

/// The invitation limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InviteLimits {
    /// Per inviter per window.
    pub(crate) per_inviter: u32,
    /// Per invitee per window.
    pub(crate) per_invitee: u32,
    /// Per source address per window.
    pub(crate) per_address: u32,
    /// The sliding window.
    pub(crate) window: Duration,
}

impl Default for InviteLimits {
    fn default() -> Self {
        InviteLimits {
            per_inviter: INVITES_PER_WINDOW,
            per_invitee: INVITES_RECEIVED_PER_WINDOW,
            per_address: DEFAULT_INVITES_PER_ADDRESS,
            window: INVITE_WINDOW,
        }
    }
}

/// The invitation limiter.
#[derive(Debug)]
pub(crate) struct InviteLimiter {
    by_inviter: SlidingWindow<String>,
    by_address: SlidingWindow<SourceKey>,
    by_invitee: SlidingWindow<String>,
}

fn limited(what: impl Into<String>, wait: Duration) -> Refused {
    Refused::InviteRate {
        what: what.into(),
        wait,
    }
}

impl InviteLimiter {
    /// A limiter with nothing counted.
    pub(crate) fn new(limits: InviteLimits) -> Self {
        InviteLimiter {
            by_inviter: SlidingWindow::new(limits.per_inviter, limits.window),
            by_address: SlidingWindow::new(limits.per_address, limits.window),
            by_invitee: SlidingWindow::new(limits.per_invitee, limits.window),
        }
    }

    /// Applies new limits (a reload) to the next invitation; the counts are
    /// kept.
    pub(crate) fn set_limits(&mut self, limits: InviteLimits) {
        self.by_inviter.set(limits.per_inviter, limits.window);
        self.by_address.set(limits.per_address, limits.window);
        self.by_invitee.set(limits.per_invitee, limits.window);
    }

    /// May `from`, connected from `ip`, send an invitation now? Checked
    /// before anything about the invitee is looked at.
    pub(crate) fn check_sender(
        &mut self,
        from: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), Refused> {
        if let Some(w) = self.by_inviter.wait(from, now) {
            return Err(limited("too many invitations", w));
        }
        if let Some(w) = self.by_address.wait(&address_key(ip), now) {
            return Err(limited("too many invitations from your network address", w));
        }
        Ok(())
    }

    /// May `to` (known to be online) receive another invitation now?
    pub(crate) fn check_invitee(&mut self, to: &str, now: Instant) -> Result<(), Refused> {
        match self.by_invitee.wait(to, now) {
            Some(w) => Err(limited(format!("{to} has too many invitations"), w)),
            None => Ok(()),
        }
    }

    /// Counts an invitation that was delivered.
    pub(crate) fn record(&mut self, from: &str, to: &str, ip: IpAddr, now: Instant) {
        self.by_inviter.record(from.to_string(), now);
        self.by_address.record(address_key(ip), now);
        self.by_invitee.record(to.to_string(), now);
    }

    /// Keys currently remembered (for the memory test).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.by_inviter.tracked() + self.by_address.tracked() + self.by_invitee.tracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limiter() -> InviteLimiter {
        InviteLimiter::new(InviteLimits {
            per_inviter: 3,
            per_invitee: 5,
            per_address: 8,
            window: Duration::from_secs(60),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Checks and, if allowed, records one invitation.
    fn invite(l: &mut InviteLimiter, from: &str, to: &str, ip: IpAddr, now: Instant) -> bool {
        let ok = l.check_sender(from, ip, now).is_ok() && l.check_invitee(to, now).is_ok();
        if ok {
            l.record(from, to, ip, now);
        }
        ok
    }

    #[test]
    fn many_inviters_cannot_flood_one_invitee() {
        let mut l = limiter();
        let t0 = Instant::now();
        let mut delivered = 0;
        // 60 accounts, each within its own limit, from 60 addresses.
        for i in 0..60 {
            let from = format!("spam{i}");
            let addr = ip(&format!("10.0.{i}.1"));
            for _ in 0..3 {
                delivered += usize::from(invite(&mut l, &from, "bob", addr, t0));
            }
        }
        assert_eq!(delivered, 5);
        let refused = l.check_invitee("bob", t0 + 10 * SECOND).unwrap_err();
        assert_eq!(refused.code(), p2p_proto::wire::RefusalCode::RateLimited);
        let message = refused.to_string();
        assert!(message.contains("try again in 50s"), "{message}");
        // Others are not affected, and bob can be invited again later.
        assert!(invite(&mut l, "spam59", "carol", ip("10.9.9.9"), t0));
        assert!(invite(
            &mut l,
            "alice",
            "bob",
            ip("10.9.9.8"),
            t0 + 60 * SECOND
        ));
    }

    #[test]
    fn one_address_is_limited_across_its_users() {
        let mut l = limiter();
        let t0 = Instant::now();
        let nat = ip("203.0.113.5");
        let mut delivered = 0;
        for i in 0..10 {
            for j in 0..3 {
                let to = format!("target{i}{j}");
                delivered += usize::from(invite(&mut l, &format!("user{i}"), &to, nat, t0));
            }
        }
        assert_eq!(delivered, 8);
        let message = l.check_sender("user9", nat, t0).unwrap_err().to_string();
        assert!(message.contains("network address"), "{message}");
        assert!(l.check_sender("user9", ip("203.0.113.6"), t0).is_ok());
    }

    #[test]
    fn an_inviter_is_limited_and_recovers_with_time() {
        let mut l = limiter();
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for i in 0..3 {
            assert!(invite(
                &mut l,
                "alice",
                &format!("u{i}"),
                a,
                t0 + i * SECOND
            ));
        }
        let message = l
            .check_sender("alice", a, t0 + 30 * SECOND)
            .unwrap_err()
            .to_string();
        assert!(message.contains("try again in 30s"), "{message}");
        assert!(l.check_sender("alice", a, t0 + 60 * SECOND).is_ok());
    }

    #[test]
    fn memory_follows_recent_invitations_only() {
        let mut l = limiter();
        let t0 = Instant::now();
        for i in 0..100 {
            let ok = invite(
                &mut l,
                &format!("a{i}"),
                &format!("b{i}"),
                ip("10.0.0.1"),
                t0,
            );
            assert_eq!(ok, i < 8);
        }
        assert!(l.tracked() > 0);
        l.record("late", "x", ip("10.1.1.1"), t0 + 120 * SECOND);
        assert_eq!(l.tracked(), 3, "only the latest invitation's keys are left");
    }
}

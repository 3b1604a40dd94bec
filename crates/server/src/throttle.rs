//! Slowing down password guessing (SPEC §3): after a few free failures, each
//! further failure for a user name, or from an address, locks that key out
//! for an exponentially growing time. While locked out, a login is refused
//! at once without any argon2 work, so guessing costs the attacker time and
//! the server nothing.
//!
//! Time is passed in (`now`), so the policy is tested without sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures a user name gets before lock-outs start: room for typos.
pub const USER_FREE_FAILURES: u32 = 3;
/// Failures an address gets before lock-outs start: higher, because many
/// people may share one address behind NAT.
pub const ADDR_FREE_FAILURES: u32 = 10;
/// First lock-out after the free failures; doubles with each failure.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(1);
/// Longest lock-out.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// A key with no failure for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Past this many tracked keys, stale ones are pruned, so a spray of names or
/// addresses cannot grow memory without bound.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Instant,
    last: Instant,
}

#[derive(Debug)]
struct Table<K> {
    free: u32,
    map: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(free: u32) -> Self {
        Table {
            free,
            map: HashMap::new(),
        }
    }

    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let f = self.map.get(key)?;
        (f.locked_until > now).then(|| f.locked_until - now)
    }

    fn fail(&mut self, key: K, now: Instant) {
        if self.map.len() >= MAX_TRACKED {
            self.map
                .retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        }
        let f = self.map.entry(key).or_insert(Failures {
            count: 0,
            locked_until: now,
            last: now,
        });
        if now.duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count > self.free {
            let doublings = (f.count - self.free - 1).min(16);
            let lockout = (FIRST_LOCKOUT * 2u32.pow(doublings)).min(MAX_LOCKOUT);
            f.locked_until = now + lockout;
        }
    }
}

/// Per-user and per-address failure tracking.
#[derive(Debug)]
pub struct Throttle {
    users: Table<String>,
    addrs: Table<IpAddr>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            users: Table::new(USER_FREE_FAILURES),
            addrs: Table::new(ADDR_FREE_FAILURES),
        }
    }
}

impl Throttle {
    /// How long this user or address must still wait, if locked out.
    pub fn wait(&self, user: &str, addr: IpAddr, now: Instant) -> Option<Duration> {
        let u = self.users.wait(&user.to_string(), now);
        let a = self.addrs.wait(&addr, now);
        u.max(a)
    }

    /// Records a failed password check.
    pub fn failed(&mut self, user: &str, addr: IpAddr, now: Instant) {
        self.users.fail(user.to_string(), now);
        self.addrs.fail(addr, now);
    }

    /// A correct password clears the user's record (not the address's: one
    /// right guess among many must not reset the attacker's penalty).
    pub fn succeeded(&mut self, user: &str) {
        self.users.map.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn free_failures_then_doubling_lockouts() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..USER_FREE_FAILURES {
            t.failed("alice", A, t0);
            assert_eq!(t.wait("alice", A, t0), None);
        }
        t.failed("alice", A, t0);
        assert_eq!(t.wait("alice", A, t0), Some(FIRST_LOCKOUT));
        t.failed("alice", A, t0);
        assert_eq!(t.wait("alice", A, t0), Some(FIRST_LOCKOUT * 2));
        // The lock-out is on the name: another address is refused too.
        assert!(t.wait("alice", B, t0).is_some());
        // Other users are not affected.
        assert_eq!(t.wait("bob", B, t0), None);
        // It ends by itself.
        assert_eq!(t.wait("alice", A, t0 + FIRST_LOCKOUT * 2), None);
    }

    #[test]
    fn lockout_is_capped_and_forgotten() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..40 {
            t.failed("alice", A, t0);
        }
        assert_eq!(t.wait("alice", A, t0), Some(MAX_LOCKOUT));
        let later = t0 + FORGET_AFTER;
        t.failed("alice", A, later);
        assert_eq!(t.wait("alice", A, later), None);
    }

    #[test]
    fn address_spraying_many_names_is_locked_out() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..=ADDR_FREE_FAILURES {
            t.failed(&format!("user{i}"), A, t0);
        }
        assert!(t.wait("fresh", A, t0).is_some());
        assert_eq!(t.wait("fresh", B, t0), None);
    }

    #[test]
    fn success_clears_the_user_only() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..=ADDR_FREE_FAILURES {
            t.failed("alice", A, t0);
        }
        t.succeeded("alice");
        assert!(t.wait("alice", A, t0).is_some(), "address still locked");
        assert_eq!(t.wait("alice", B, t0), None);
    }
}

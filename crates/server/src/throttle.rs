//! Slowing down password guessing and account farming (SPEC §3) without
//! letting anyone lock a real user out.
//!
//! Every refusal here is decided before any argon2 work, so refused guesses
//! cost the server nothing. The limits, from narrowest to widest:
//!
//! - **(user, source)**, a source being an IPv4 address or an IPv6 /64
//!   (see [`source`]): a few free failures, then lock-outs that
//!   double up to [`MAX_LOCKOUT`]. This is what a single guesser meets. It
//!   refuses even the right password *from that address*, but nowhere else:
//!   failures for bob from one address never stop bob from another.
//! - **source address** ([`Limits::per_source`]): failures for any names;
//!   stops one address from spraying many names.
//! - **prefix** ([`Limits::per_prefix`], /24 for IPv4, /64 for IPv6): one
//!   attacker rarely has one address but often has a block of them (and an
//!   IPv6 host has a whole /64). This limit refuses clean addresses of the
//!   block too: the cost of a prefix limit, paid by the attacker's
//!   neighbours, with a generous default.
//! - **user** ([`USER_BUDGET`]) and **everyone** ([`Limits::global`]):
//!   against a spray from many addresses. These two refuse only sources
//!   that have themselves failed recently ([`DIRTY_FOR`]); see
//!   [`Throttle::check`] for why.
//!
//! Limits are token buckets in GCRA form (one `Instant` per key). Time is
//! passed in (`now`), so the policy is tested without sleeping.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Failures one user name gets from one address before lock-outs start:
/// room for typos.
pub(crate) const PAIR_FREE_FAILURES: u32 = 3;
/// First (user, address) lock-out after the free failures; doubles with each
/// further failure.
pub(crate) const FIRST_LOCKOUT: Duration = Duration::from_secs(1);
/// Longest (user, address) lock-out.
pub(crate) const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// A (user, address) pair with no failure for this long is forgotten; an
/// address that failed within this time is "dirty" for the user and global
/// budgets.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(900);
/// See [`FORGET_AFTER`].
pub(crate) const DIRTY_FOR: Duration = FORGET_AFTER;
/// Failures one user name may collect across all addresses before dirty
/// addresses are refused for it: a distributed guesser gets one guess per
/// fresh address once this runs out, a real user's few typos never reach it.
pub(crate) const USER_BUDGET: Budget = Budget::new(20, Duration::from_secs(600));
/// Longest accepted budget period: far beyond any sensible limit, and small
/// enough that `now + period` can never overflow.
pub(crate) const MAX_BUDGET_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);
/// Past this many tracked keys in one table, stale ones are pruned. Keys are
/// only added after an argon2 check (or a registration attempt), so they
/// grow at most as fast as the server can hash.
pub(crate) const MAX_TRACKED: usize = 100_000;

/// "`burst` events, refilled at `burst` per `per`": up to `burst` at once,
/// then one every `per / burst`. Written `N/DURATION` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Events allowed at once.
    pub(crate) burst: u32,
    /// Time to refill the whole burst.
    pub(crate) per: Duration,
}

impl Budget {
    /// `burst` per `per` (`burst` of 0 is taken as 1).
    pub(crate) const fn new(burst: u32, per: Duration) -> Self {
        Budget {
            burst: if burst == 0 { 1 } else { burst },
            per,
        }
    }

    fn interval(&self) -> Duration {
        self.per / self.burst.max(1)
    }

    /// How long until one more event fits, if it does not now.
    fn wait(&self, tat: Option<Instant>, now: Instant) -> Option<Duration> {
        let next = tat?.max(now) + self.interval();
        let limit = now + self.per;
        (next > limit).then(|| next - limit)
    }

    /// Records one event on the bucket whose "theoretical arrival time" is
    /// `tat`; never more than a full burst of debt.
    fn charge(&self, tat: &mut Instant, now: Instant) {
        *tat = ((*tat).max(now) + self.interval()).min(now + self.per);
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.burst, humantime::format_duration(self.per))
    }
}

impl FromStr for Budget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: write a budget as COUNT/DURATION, like 60/10m");
        let (n, per) = s.split_once('/').ok_or_else(bad)?;
        let burst: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = humantime::parse_duration(per.trim()).map_err(|_| bad())?;
        if burst == 0 || per.is_zero() {
            return Err(format!("{s:?}: count and duration must be above zero"));
        }
        if per > MAX_BUDGET_PERIOD {
            return Err(format!("{s:?}: the duration may be at most a year"));
        }
        Ok(Budget { burst, per })
    }
}

/// The configurable limits (server flags, see docs/config.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failed password checks from one address. Default 60 per 10 minutes:
    /// an office of a hundred people behind one NAT address makes a few
    /// typos an hour, and each person's own repeats meet the per-(user,
    /// address) lock-out first.
    pub(crate) per_source: Budget,
    /// Failed password checks from one /24 (IPv4) or /64 (IPv6). Default
    /// 300 per 10 minutes: five busy offices in one block.
    pub(crate) per_prefix: Budget,
    /// Failed password checks per second across all sources, past which
    /// dirty sources are refused. Default 50 per 5 s (10 a second, about a
    /// third of a core of argon2).
    pub(crate) global: Budget,
    /// Registration attempts from one address. Default 20 per hour:
    /// a class signing up behind one NAT, not a farm of throw-away accounts.
    pub(crate) registrations_per_source: Budget,
    /// Registration attempts from one /24 or /64. Default 60 per hour.
    pub(crate) registrations_per_prefix: Budget,
}

impl Default for Limits {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        Limits {
            per_source: Budget::new(60, min(10)),
            per_prefix: Budget::new(300, min(10)),
            global: Budget::new(50, Duration::from_secs(5)),
            registrations_per_source: Budget::new(20, min(60)),
            registrations_per_prefix: Budget::new(60, min(60)),
        }
    }
}

/// Why an attempt is refused before any argon2 work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// This address's own failures (or registrations): wait this long.
    Throttled(Duration),
    /// Other people's failures (the address's block, the user under attack,
    /// the whole server): retry after this long.
    Busy(Duration),
}

/// The source as a key: an IPv4 address (IPv4-mapped IPv6 counts as
/// IPv4) or the /64 of an IPv6 one. One IPv6 host usually has a whole /64:
/// keyed by full address, it could take a fresh address for every guess and
/// so escape its (user, source) lock-out, its per-source budget and, being
/// always clean, the user and global budgets. Connection caps and invitation
/// limits key sources the same way.
fn source(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !0u128 << 64)),
        v4 => v4,
    }
}

/// The /24 or /64 an address belongs to (for IPv6 the same as its
/// [`source`]).
pub(crate) fn prefix(addr: IpAddr) -> IpAddr {
    match source(addr) {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & 0xffff_ff00)),
        v6 => v6,
    }
}

#[derive(Debug, Clone, Copy)]
struct Lockout {
    count: u32,
    locked_until: Instant,
    last: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    tat: Instant,
    last_failure: Instant,
}

/// Drops entries `keep` rejects once `map` reaches [`MAX_TRACKED`].
fn prune<K: Hash + Eq, V>(map: &mut HashMap<K, V>, keep: impl FnMut(&K, &mut V) -> bool) {
    if map.len() >= MAX_TRACKED {
        map.retain(keep);
    }
}

/// Failure and registration tracking for the whole server.
#[derive(Debug)]
pub(crate) struct Throttle {
    limits: Limits,
    pairs: HashMap<(String, IpAddr), Lockout>,
    sources: HashMap<IpAddr, Source>,
    prefixes: HashMap<IpAddr, Instant>,
    users: HashMap<String, Instant>,
    global: Option<Instant>,
    reg_sources: HashMap<IpAddr, Instant>,
    reg_prefixes: HashMap<IpAddr, Instant>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(Limits::default())
    }
}

impl Throttle {
    /// Empty tables with these limits.
    pub(crate) fn new(limits: Limits) -> Self {
        Throttle {
            limits,
            pairs: HashMap::new(),
            sources: HashMap::new(),
            prefixes: HashMap::new(),
            users: HashMap::new(),
            global: None,
            reg_sources: HashMap::new(),
            reg_prefixes: HashMap::new(),
        }
    }

    fn dirty(&self, src: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&src)
            .is_some_and(|s| now.saturating_duration_since(s.last_failure) < DIRTY_FOR)
    }

    /// Whether a password login for `user` from `addr` may be checked now.
    ///
    /// The per-user and global budgets hold back only *dirty* sources
    /// (addresses that failed within [`DIRTY_FOR`]). Refusing everyone for a
    /// user under attack would hand the attacker the lock-out this module
    /// exists to prevent; refusing everyone when the server is flooded would
    /// do the same for all users at once. Holding back only addresses that
    /// have already guessed wrong still bounds a spray: each address gets
    /// one argon2 check before it is dirty, then waits like the others,
    /// and the per-source and per-prefix limits bound how many fresh
    /// addresses a block can bring. A real user on a clean address is
    /// checked at once (only the hashing capacity can make it wait, with
    /// "busy, retry").
    pub(crate) fn check(&self, user: &str, addr: IpAddr, now: Instant) -> Result<(), Hold> {
        let src = source(addr);
        if let Some(l) = self.pairs.get(&(user.to_string(), src)) {
            if l.locked_until > now {
                return Err(Hold::Throttled(l.locked_until - now));
            }
        }
        let l = &self.limits;
        if let Some(w) = l
            .per_source
            .wait(self.sources.get(&src).map(|s| s.tat), now)
        {
            return Err(Hold::Throttled(w));
        }
        if let Some(w) = l
            .per_prefix
            .wait(self.prefixes.get(&prefix(src)).copied(), now)
        {
            return Err(Hold::Busy(w));
        }
        if self.dirty(src, now) {
            let user_wait = USER_BUDGET.wait(self.users.get(user).copied(), now);
            let global_wait = l.global.wait(self.global, now);
            if let Some(w) = user_wait.max(global_wait) {
                return Err(Hold::Busy(w));
            }
        }
        Ok(())
    }

    /// Records a failed password check.
    pub(crate) fn failed(&mut self, user: &str, addr: IpAddr, now: Instant) {
        let src = source(addr);
        let l = self.limits;
        prune(&mut self.pairs, |_, f| {
            now.saturating_duration_since(f.last) < FORGET_AFTER
        });
        let f = self
            .pairs
            .entry((user.to_string(), src))
            .or_insert(Lockout {
                count: 0,
                locked_until: now,
                last: now,
            });
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count > PAIR_FREE_FAILURES {
            let doublings = (f.count - PAIR_FREE_FAILURES - 1).min(16);
            f.locked_until = now + (FIRST_LOCKOUT * 2u32.pow(doublings)).min(MAX_LOCKOUT);
        }

        prune(&mut self.sources, |_, s| {
            now.saturating_duration_since(s.last_failure) < DIRTY_FOR || s.tat > now
        });
        let s = self.sources.entry(src).or_insert(Source {
            tat: now,
            last_failure: now,
        });
        l.per_source.charge(&mut s.tat, now);
        s.last_failure = now;
        prune(&mut self.prefixes, |_, tat| *tat > now);
        l.per_prefix
            .charge(self.prefixes.entry(prefix(src)).or_insert(now), now);
        prune(&mut self.users, |_, tat| *tat > now);
        USER_BUDGET.charge(self.users.entry(user.to_string()).or_insert(now), now);
        l.global.charge(self.global.get_or_insert(now), now);
    }

    /// A correct password clears the (user, address) lock-out only: the
    /// address and block budgets stay, so one right guess (an attacker's own
    /// account) does not wash away the failures around it.
    pub(crate) fn succeeded(&mut self, user: &str, addr: IpAddr) {
        self.pairs.remove(&(user.to_string(), source(addr)));
    }

    /// Charges one registration attempt from `addr`, or says how long to
    /// wait. Counted before the argon2 work, whatever the outcome.
    pub(crate) fn register(&mut self, addr: IpAddr, now: Instant) -> Result<(), Hold> {
        let (src, l) = (source(addr), self.limits);
        let net = prefix(src);
        if let Some(w) = l
            .registrations_per_source
            .wait(self.reg_sources.get(&src).copied(), now)
        {
            return Err(Hold::Throttled(w));
        }
        if let Some(w) = l
            .registrations_per_prefix
            .wait(self.reg_prefixes.get(&net).copied(), now)
        {
            return Err(Hold::Throttled(w));
        }
        prune(&mut self.reg_sources, |_, tat| *tat > now);
        prune(&mut self.reg_prefixes, |_, tat| *tat > now);
        l.registrations_per_source
            .charge(self.reg_sources.entry(src).or_insert(now), now);
        l.registrations_per_prefix
            .charge(self.reg_prefixes.entry(net).or_insert(now), now);
        Ok(())
    }
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;

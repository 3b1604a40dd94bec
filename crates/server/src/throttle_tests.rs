//! Unit tests of [`super::Throttle`], with injected time.

use super::*;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn a_users_failures_from_one_address_do_not_lock_out_another() {
    let mut t = Throttle::default();
    let t0 = Instant::now();
    for _ in 0..PAIR_FREE_FAILURES {
        t.failed("bob", B, t0);
        assert_eq!(t.check("bob", B, t0), Ok(()));
    }
    t.failed("bob", B, t0);
    assert_eq!(t.check("bob", B, t0), Err(Hold::Throttled(FIRST_LOCKOUT)));
    t.failed("bob", B, t0);
    assert_eq!(
        t.check("bob", B, t0),
        Err(Hold::Throttled(FIRST_LOCKOUT * 2))
    );
    // The old contract locked bob out everywhere; now bob from a clean
    // address is checked at once.
    assert_eq!(t.check("bob", A, t0), Ok(()));
    // Other users from the guessing address are not held by bob's lock-out.
    assert_eq!(t.check("alice", B, t0), Ok(()));
    // It ends by itself.
    assert_eq!(t.check("bob", B, t0 + FIRST_LOCKOUT * 2), Ok(()));
}

#[test]
fn pair_lockout_is_capped_forgotten_and_cleared_by_success() {
    let mut t = Throttle::new(Limits {
        per_source: Budget::new(1000, secs(1)),
        ..Limits::default()
    });
    let t0 = Instant::now();
    for _ in 0..40 {
        t.failed("alice", A, t0);
    }
    assert_eq!(t.check("alice", A, t0), Err(Hold::Throttled(MAX_LOCKOUT)));
    let later = t0 + FORGET_AFTER;
    t.failed("alice", A, later);
    assert_eq!(t.check("alice", A, later), Ok(()), "count restarted");
    for _ in 0..PAIR_FREE_FAILURES {
        t.failed("alice", A, later);
    }
    assert!(t.check("alice", A, later).is_err());
    t.succeeded("alice", A);
    assert_eq!(t.check("alice", A, later), Ok(()));
}

#[test]
fn one_address_spraying_many_names_is_throttled_then_refilled() {
    let per_source = Budget::new(10, secs(100));
    let mut t = Throttle::new(Limits {
        per_source,
        ..Limits::default()
    });
    let t0 = Instant::now();
    for i in 0..10 {
        assert_eq!(t.check(&format!("u{i}"), A, t0), Ok(()));
        t.failed(&format!("u{i}"), A, t0);
    }
    assert_eq!(t.check("fresh", A, t0), Err(Hold::Throttled(secs(10))));
    assert_eq!(
        t.check("fresh", B, t0),
        Ok(()),
        "other addresses unaffected"
    );
    // One failure's worth refills every per/burst.
    assert_eq!(t.check("fresh", A, t0 + secs(10)), Ok(()));
}

#[test]
fn a_block_of_addresses_shares_a_prefix_budget() {
    let mut t = Throttle::new(Limits {
        per_prefix: Budget::new(20, secs(200)),
        ..Limits::default()
    });
    let t0 = Instant::now();
    for i in 0..20 {
        t.failed(&format!("u{i}"), v4(203, 0, 113, i), t0);
    }
    // A clean address in the block waits too (told busy, not throttled)...
    assert_eq!(
        t.check("carol", v4(203, 0, 113, 200), t0),
        Err(Hold::Busy(secs(10)))
    );
    // ...but not one in the next block.
    assert_eq!(t.check("carol", v4(203, 0, 114, 200), t0), Ok(()));

    // IPv6: the /64 is the block; IPv4-mapped addresses count as IPv4.
    let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
    for i in 0..20 {
        t.failed("u", v6(&format!("2001:db8:1:2::{i:x}")), t0);
    }
    assert!(t.check("carol", v6("2001:db8:1:2:ffff::1"), t0).is_err());
    assert_eq!(t.check("carol", v6("2001:db8:1:3::1"), t0), Ok(()));
    assert!(t.check("carol", v6("::ffff:203.0.113.250"), t0).is_err());
    assert_eq!(prefix(v6("::ffff:10.1.2.3")), v4(10, 1, 2, 0));
}

#[test]
fn a_distributed_guesser_is_held_back_but_not_the_user() {
    let mut t = Throttle::default();
    let t0 = Instant::now();
    // One guess for bob from each of many addresses (each its own block).
    let n = USER_BUDGET.burst as u8;
    for i in 0..n {
        t.failed("bob", v4(10, i, 0, 1), t0);
    }
    // An address that already guessed is refused for bob without argon2...
    assert!(matches!(
        t.check("bob", v4(10, 0, 0, 1), t0),
        Err(Hold::Busy(_))
    ));
    // ...while a clean address (the real bob) is checked.
    assert_eq!(t.check("bob", v4(10, 200, 0, 1), t0), Ok(()));
    // And the dirty addresses may still try other names.
    assert_eq!(t.check("alice", v4(10, 0, 0, 1), t0), Ok(()));
}

#[test]
fn the_global_budget_holds_back_only_sources_that_failed() {
    let global = Budget::new(30, secs(3));
    let mut t = Throttle::new(Limits {
        global,
        ..Limits::default()
    });
    let t0 = Instant::now();
    for i in 0..30 {
        t.failed(&format!("u{i}"), v4(10, i, 0, 1), t0);
    }
    // A failed address is refused for a name nobody guessed: busy, retry
    // after one failure's worth of refill.
    assert_eq!(
        t.check("carol", v4(10, 0, 0, 1), t0),
        Err(Hold::Busy(Duration::from_millis(100)))
    );
    // A clean address and a clean user go through.
    assert_eq!(t.check("carol", v4(10, 250, 0, 1), t0), Ok(()));
    // Retry after the wait succeeds.
    assert_eq!(
        t.check("carol", v4(10, 0, 0, 1), t0 + Duration::from_millis(100)),
        Ok(())
    );
    // A dirty address stays dirty for DIRTY_FOR, then is clean again.
    assert!(!t.dirty(v4(10, 0, 0, 1), t0 + DIRTY_FOR));
}

#[test]
fn registrations_are_limited_per_address_and_per_block() {
    let mut t = Throttle::new(Limits {
        registrations_per_source: Budget::new(3, secs(30)),
        registrations_per_prefix: Budget::new(5, secs(50)),
        ..Limits::default()
    });
    let t0 = Instant::now();
    let a = v4(203, 0, 113, 1);
    for _ in 0..3 {
        assert_eq!(t.register(a, t0), Ok(()));
    }
    assert_eq!(t.register(a, t0), Err(Hold::Throttled(secs(10))));
    // Another address in the block has the rest of the block's budget.
    let b = v4(203, 0, 113, 2);
    assert_eq!(t.register(b, t0), Ok(()));
    assert_eq!(t.register(b, t0), Ok(()));
    assert!(t.register(b, t0).is_err(), "block exhausted");
    // Another block is untouched; the first refills in time.
    assert_eq!(t.register(v4(203, 0, 114, 1), t0), Ok(()));
    assert_eq!(t.register(a, t0 + secs(10)), Ok(()));
}

#[test]
fn budgets_parse_and_print() {
    let b: Budget = "60/10m".parse().unwrap();
    assert_eq!(b, Budget::new(60, secs(600)));
    assert_eq!(b.to_string(), "60/10m");
    assert_eq!(" 5 / 1s ".parse::<Budget>(), Ok(Budget::new(5, secs(1))));
    for bad in [
        "", "60", "/1s", "0/1s", "5/0s", "x/1s", "5/soon", "-1/1s", "1/500y",
    ] {
        assert!(bad.parse::<Budget>().is_err(), "{bad:?}");
    }
}

/// An IPv6 host owns its /64: a fresh address per guess is the same source,
/// so it meets the (user, source) lock-out and stays dirty.
#[test]
fn an_ipv6_host_cannot_dodge_its_limits_by_changing_address() {
    let mut t = Throttle::default();
    let t0 = Instant::now();
    let v6 = |i: u32| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, 7, 0, 0, i as u16, 1));
    for i in 0..=PAIR_FREE_FAILURES {
        t.failed("bob", v6(i), t0);
    }
    assert_eq!(
        t.check("bob", v6(1000), t0),
        Err(Hold::Throttled(FIRST_LOCKOUT)),
        "a new address of the same /64 is locked out like the old ones"
    );
    // bob himself, on another network, is not.
    let elsewhere = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 8, 8, 0, 0, 0, 1));
    assert_eq!(t.check("bob", elsewhere, t0), Ok(()));
}

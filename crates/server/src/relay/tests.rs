//! The token table with injected time: pairing, single use, expiry, caps.

use super::*;

type R = Arc<Relay<u32>>;

fn relay(policy: RelayPolicy) -> R {
    Arc::new(Relay::new(policy))
}

fn code<T: std::fmt::Debug>(r: Result<T, Refusal>) -> RelayRefusal {
    r.expect_err("refused").code
}

fn first(c: Result<Claim<u32>, Refusal>) -> (Seat<u32>, oneshot::Receiver<u32>) {
    match c {
        Ok(Claim::First { seat, rx }) => (seat, rx),
        other => panic!("expected to wait first, got {other:?}"),
    }
}

fn second(c: Result<Claim<u32>, Refusal>) -> (Seat<u32>, oneshot::Sender<u32>) {
    match c {
        Ok(Claim::Second { seat, tx }) => (seat, tx),
        other => panic!("expected to join a waiting side, got {other:?}"),
    }
}

#[test]
fn two_tokens_pair_once_and_die_with_their_pair() {
    let r = relay(RelayPolicy::default());
    let t0 = Instant::now();
    let (ta, tb) = r.issue("alice", "bob", t0).unwrap();
    assert_ne!(ta.expose(), tb.expose());
    assert_eq!(ta.expose().len(), 64, "32 random bytes, hex");
    let (a, mut rx) = first(r.claim(&tb, t0));
    assert_eq!((a.user(), a.peer()), ("bob", "alice"));
    // The same token again, while waiting: used.
    assert_eq!(code(r.claim(&tb, t0)), RelayRefusal::UnknownToken);
    let (b, tx) = second(r.claim(&ta, t0));
    assert_eq!((b.user(), b.peer()), ("alice", "bob"));
    tx.send(7).unwrap();
    assert_eq!(rx.try_recv().unwrap(), 7);
    // Paired: both tokens are used.
    assert_eq!(code(r.claim(&ta, t0)), RelayRefusal::UnknownToken);
    assert_eq!(code(r.claim(&tb, t0)), RelayRefusal::UnknownToken);
    drop((a, b));
    assert_eq!(r.live_tokens(), 0);
    assert_eq!(code(r.claim(&ta, t0)), RelayRefusal::UnknownToken);
    assert!(r.lock().pairs.is_empty() && r.lock().users.is_empty());
}

#[test]
fn unknown_and_forged_tokens_are_refused() {
    let r = relay(RelayPolicy::default());
    let t0 = Instant::now();
    r.issue("alice", "bob", t0).unwrap();
    for forged in ["", "00", &"ab".repeat(32), &"x".repeat(100_000)] {
        assert_eq!(
            code(r.claim(&Secret::new(forged), t0)),
            RelayRefusal::UnknownToken
        );
    }
}

#[test]
fn unused_tokens_expire_after_the_ttl_not_before() {
    let ttl = Duration::from_secs(60);
    let r = relay(RelayPolicy {
        token_ttl: ttl,
        ..RelayPolicy::default()
    });
    let t0 = Instant::now();
    let (ta, tb) = r.issue("alice", "bob", t0).unwrap();
    let (_a, _rx) = first(r.claim(&ta, t0 + ttl - Duration::from_millis(1)));
    assert_eq!(code(r.claim(&tb, t0 + ttl)), RelayRefusal::UnknownToken);
    // A later issue sweeps the rest: nothing piles up.
    let (tc, _) = r.issue("carol", "dave", t0 + ttl * 3).unwrap();
    assert_eq!(code(r.claim(&tc, t0 + ttl * 4)), RelayRefusal::UnknownToken);
    assert_eq!(r.live_tokens(), 1, "only the waiting side's token is left");
}

#[test]
fn a_side_that_gave_up_turns_its_peer_away_with_peer_absent() {
    let r = relay(RelayPolicy::default());
    let t0 = Instant::now();
    let (ta, tb) = r.issue("alice", "bob", t0).unwrap();
    let (a, _rx) = first(r.claim(&ta, t0));
    assert!(r.give_up(&a));
    drop(a);
    let refused = r.claim(&tb, t0).expect_err("absent");
    assert_eq!(refused.code, RelayRefusal::PeerAbsent);
    assert!(refused.message.contains("alice"), "{}", refused.message);
    assert_eq!(r.live_tokens(), 0);
    assert_eq!(code(r.claim(&ta, t0)), RelayRefusal::UnknownToken);
}

#[test]
fn giving_up_after_the_peer_came_keeps_the_pair() {
    let r = relay(RelayPolicy::default());
    let t0 = Instant::now();
    let (ta, tb) = r.issue("alice", "bob", t0).unwrap();
    let (a, mut rx) = first(r.claim(&ta, t0));
    let (_b, tx) = second(r.claim(&tb, t0));
    assert!(!r.give_up(&a), "the peer is here");
    tx.send(1).unwrap();
    assert_eq!(rx.try_recv().unwrap(), 1);
}

#[test]
fn seats_are_capped_per_user_counting_waiting_and_paired_sides() {
    let r = relay(RelayPolicy {
        sessions_per_user: 2,
        ..RelayPolicy::default()
    });
    let t0 = Instant::now();
    let pairs: Vec<_> = (0..3)
        .map(|i| r.issue("alice", &format!("p{i}"), t0).unwrap())
        .collect();
    // One live pair, one waiting side: alice is at her cap.
    let (_w0, _r0) = first(r.claim(&pairs[0].0, t0));
    let (_p0, _t0) = second(r.claim(&pairs[0].1, t0));
    let (w1, _r1) = first(r.claim(&pairs[1].0, t0));
    let refused = r.claim(&pairs[2].0, t0).expect_err("over the cap");
    assert_eq!(refused.code, RelayRefusal::OverCap);
    assert!(
        refused.message.contains("--relay-sessions-per-user 2"),
        "{}",
        refused.message
    );
    // Her peers are not affected, and her refused token stays usable.
    let (_p2, _r2) = first(r.claim(&pairs[2].1, t0));
    drop(w1);
    let (_a2, _t2) = second(r.claim(&pairs[2].0, t0));
}

#[test]
fn a_users_pairs_share_one_pacer() {
    let r = relay(RelayPolicy::default());
    let t0 = Instant::now();
    let (a1, _) = r.issue("alice", "bob", t0).unwrap();
    let (a2, _) = r.issue("alice", "carol", t0).unwrap();
    let (s1, _r1) = first(r.claim(&a1, t0));
    let (s2, _r2) = first(r.claim(&a2, t0));
    assert!(Arc::ptr_eq(s1.pacer(), s2.pacer()));
}

#[test]
fn without_a_relay_no_tokens_and_every_join_is_refused() {
    let r = relay(RelayPolicy {
        enabled: false,
        ..RelayPolicy::default()
    });
    let t0 = Instant::now();
    assert!(r.issue("alice", "bob", t0).is_none());
    assert_eq!(
        code(r.claim(&Secret::new("ab".repeat(32)), t0)),
        RelayRefusal::Disabled
    );
}

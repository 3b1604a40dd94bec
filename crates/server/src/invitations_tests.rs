//! Unit tests of [`super`]: expiry on an injected (paused) clock, the
//! reloadable life and its bounds.

use std::sync::Arc;

use super::*;
use crate::mailbox::Mailbox;

fn invite(to: &str) -> Invite {
    Invite {
        from: "alice".into(),
        from_session: 1,
        to: to.into(),
        to_session: 2,
    }
}

fn inner() -> Inner {
    Inner {
        next_id: 0,
        open: HashMap::new(),
        deadlines: BinaryHeap::new(),
        limits: InviteLimiter::new(InviteLimits::default()),
    }
}

fn ids(due: Vec<(u64, Invite)>) -> Vec<u64> {
    due.into_iter().map(|(id, _)| id).collect()
}

#[test]
fn expires_exactly_at_the_deadline_not_before() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(60);
    let mut i = inner();
    assert!(i.open(1, invite("bob"), t0 + ttl));
    assert!(i.take_expired(t0).is_empty());
    assert!(i
        .take_expired(t0 + ttl - Duration::from_millis(1))
        .is_empty());
    assert_eq!(i.next_deadline(), Some(t0 + ttl));
    assert_eq!(ids(i.take_expired(t0 + ttl)), vec![1]);
    assert!(i.open.is_empty());
    assert_eq!(i.next_deadline(), None);
}

#[test]
fn answered_invitations_do_not_expire_later() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(60);
    let mut i = inner();
    i.open(1, invite("bob"), t0 + ttl);
    i.open(2, invite("carol"), t0 + ttl + Duration::from_secs(1));
    // Answering removes the invitation from `open` only.
    i.open.remove(&1);
    assert_eq!(ids(i.take_expired(t0 + ttl)), Vec::<u64>::new());
    // The stale heap entry is gone; the other invitation still expires.
    assert_eq!(i.next_deadline(), Some(t0 + ttl + Duration::from_secs(1)));
    assert_eq!(ids(i.take_expired(t0 + ttl * 2)), vec![2]);
}

#[test]
fn expires_in_deadline_order_and_reports_new_earliest() {
    let t0 = Instant::now();
    let mut i = inner();
    assert!(i.open(1, invite("bob"), t0 + Duration::from_secs(30)));
    assert!(!i.open(2, invite("carol"), t0 + Duration::from_secs(40)));
    assert!(i.open(3, invite("dave"), t0 + Duration::from_secs(10)));
    assert_eq!(
        ids(i.take_expired(t0 + Duration::from_secs(35))),
        vec![3, 1]
    );
    assert_eq!(ids(i.take_expired(t0 + Duration::from_secs(40))), vec![2]);
}

fn online(p: &Presence, user: &str, session: u64) -> Arc<Mailbox> {
    let mailbox = Arc::new(Mailbox::default());
    let entry = crate::presence::Online {
        session,
        since_ms: 0,
        reach: crate::reach::Reach {
            link: ([127, 0, 0, 1], 1000 + session as u16).into(),
            listen_port: 1000 + session as u16,
            advertise: None,
            lan: Vec::new(),
        },
        public_key: String::new(),
        mailbox: mailbox.clone(),
    };
    p.register(user, entry);
    mailbox
}

fn closed(msg: Option<Box<ServerMsg>>) -> (u64, InviteEnd) {
    match msg.map(|m| *m) {
        Some(ServerMsg::Event {
            event: ServerEvent::InvitationClosed { invite, reason },
        }) => (invite, reason),
        other => panic!("expected InvitationClosed, got {other:?}"),
    }
}

/// The driver ends an invitation at exactly its deadline on the (paused)
/// tokio clock, re-arms for invitations made while it sleeps, and stops
/// when told.
#[tokio::test(start_paused = true)]
async fn the_driver_expires_each_invitation_at_its_deadline() {
    let ttl = Duration::from_secs(60);
    let inv = Arc::new(Invitations::new(ttl, InviteLimits::default()));
    let presence = Arc::new(Presence::default());
    let _alice = online(&presence, "alice", 1);
    let bob = online(&presence, "bob", 2);
    let stop = CancellationToken::new();
    let driver = tokio::spawn({
        let (inv, presence, stop) = (inv.clone(), presence.clone(), stop.clone());
        async move { inv.run_expiry(&presence, stop).await }
    });
    let ip = IpAddr::from([127, 0, 0, 1]);
    let t0 = Instant::now();
    let (first, _) = inv.invite(&presence, "alice", 1, ip, "bob").unwrap();
    assert!(matches!(
        bob.recv().await.map(|m| *m),
        Some(ServerMsg::Event {
            event: ServerEvent::Invitation { .. }
        })
    ));
    tokio::time::advance(Duration::from_secs(10)).await;
    let (second, _) = inv.invite(&presence, "alice", 1, ip, "bob").unwrap();
    bob.recv().await.expect("second invitation");
    // Paused clock: recv auto-advances to the driver's next timer.
    assert_eq!(closed(bob.recv().await), (first, InviteEnd::Expired));
    assert_eq!(Instant::now() - t0, ttl);
    assert_eq!(closed(bob.recv().await), (second, InviteEnd::Expired));
    assert_eq!(Instant::now() - t0, ttl + Duration::from_secs(10));
    stop.cancel();
    driver.await.expect("driver stops");
}

/// A reload's new life applies to the next invitation (its expiry and
/// its deadline); the open one keeps its own.
#[tokio::test(start_paused = true)]
async fn a_reloaded_ttl_applies_from_the_next_invitation() {
    let inv = Arc::new(Invitations::new(
        Duration::from_secs(300),
        InviteLimits::default(),
    ));
    let presence = Arc::new(Presence::default());
    let _alice = online(&presence, "alice", 1);
    let bob = online(&presence, "bob", 2);
    let stop = CancellationToken::new();
    let driver = tokio::spawn({
        let (inv, presence, stop) = (inv.clone(), presence.clone(), stop.clone());
        async move { inv.run_expiry(&presence, stop).await }
    });
    let ip = IpAddr::from([127, 0, 0, 1]);
    let t0 = Instant::now();
    let (first, first_expiry) = inv.invite(&presence, "alice", 1, ip, "bob").unwrap();
    bob.recv().await.expect("first invitation");
    inv.set_ttl(Duration::from_secs(20));
    let (second, second_expiry) = inv.invite(&presence, "alice", 1, ip, "bob").unwrap();
    bob.recv().await.expect("second invitation");
    let shorter = (first_expiry - second_expiry) as u64;
    assert!((279_000..=281_000).contains(&shorter), "{shorter} ms");
    assert_eq!(closed(bob.recv().await), (second, InviteEnd::Expired));
    assert_eq!(Instant::now() - t0, Duration::from_secs(20));
    assert_eq!(closed(bob.recv().await), (first, InviteEnd::Expired));
    assert_eq!(Instant::now() - t0, Duration::from_secs(300));
    stop.cancel();
    driver.await.expect("driver stops");
}

#[test]
fn the_ttl_flag_is_bounded() {
    assert_eq!(parse_ttl("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_ttl("10s"), Ok(MIN_INVITATION_TTL));
    assert_eq!(parse_ttl("1h"), Ok(MAX_INVITATION_TTL));
    for bad in ["9s", "61m", "0s"] {
        let e = parse_ttl(bad).unwrap_err();
        assert!(e.contains("outside 10s to 1h"), "{bad}: {e}");
    }
    assert!(parse_ttl("five").is_err());
}

//! Unit tests of establishment (`establish.rs`) on the injected clock:
//! both sides reach out, links come in either direction, the leader picks
//! the link, and the setup deadline fails both sides with the reason.

use std::time::Duration;

use p2p_proto::ctl::{ErrorCode, Event};
use p2p_proto::wire::{Contact, ServerEvent};

use super::tests::{
    admitted, answer, answered, bob, dialed_in, invitation, machine, refused, replies, Acts, Clock,
    BOB_KEY, HIGH_KEY, M,
};
use super::{Action, Input, SESSION_SETUP_DEADLINE};

fn verified_as(user: &str, key: &str, invite: u64, link: u32) -> Input<u32, u32> {
    Input::Verified {
        user: user.into(),
        key: hex::decode(key).unwrap(),
        invite,
        link,
    }
}

fn invited(invite: u64, waiter: u32) -> Input<u32, u32> {
    Input::Invited {
        invite,
        to: "bob".into(),
        waiter: Some(waiter),
    }
}

fn accepted(invite: u64, contact: Contact) -> Input<u32, u32> {
    Input::Server(ServerEvent::Accepted { invite, contact })
}

fn establishes(acts: &Acts) -> Vec<(u64, Vec<String>, bool)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Establish {
                contact,
                invite,
                relay,
                ..
            } => Some((
                *invite,
                contact.paths.iter().map(|p| p.to_string()).collect(),
                relay.is_some(),
            )),
            _ => None,
        })
        .collect()
}

fn failure(acts: &Acts, waiter: u32) -> String {
    acts.iter()
        .find_map(|a| match a {
            Action::Reply {
                waiter: w,
                result: Err(e),
            } if *w == waiter => {
                assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
                Some(e.to_string())
            }
            _ => None,
        })
        .expect("a failure for the waiter")
}

/// After an acceptance both sides reach out: the inviter with the contact
/// from `Accepted`, the invitee with the one in the server's answer; every
/// path of the contact (the old single `addr` when it lists none), and the
/// side's own relay token.
#[test]
fn both_sides_establish_on_every_path() {
    let c = Clock::new();
    let mut with_paths = bob();
    with_paths.paths = vec![
        "203.0.113.5:4401".into(),
        "not an address".into(),
        "10.0.0.2:4401".into(),
        "203.0.113.5:4401".into(),
        "0.0.0.0:4401".into(),
    ];
    with_paths.relay = Some(p2p_proto::Secret::new("ab".repeat(32)));

    let mut inviter = machine();
    inviter.handle(invited(3, 1), c.now());
    let acts = inviter.handle(accepted(3, with_paths.clone()), c.now());
    let paths = vec!["203.0.113.5:4401".to_string(), "10.0.0.2:4401".to_string()];
    assert_eq!(establishes(&acts), [(3, paths.clone(), true)]);
    assert!(inviter.expects_from(c.now(), |ip| ip.to_string() == "10.0.0.2"));

    let mut invitee = machine();
    invitee.handle(invitation("bob", 7), c.now());
    invitee.handle(answer(true, 1), c.now());
    let reply = Input::Answered {
        from: "bob".into(),
        invite: 7,
        accept: true,
        result: Ok(Some(with_paths)),
    };
    assert_eq!(
        establishes(&invitee.handle(reply, c.now())),
        [(7, paths, true)]
    );
    // An older server: no paths, its one address.
    let mut old = machine();
    old.handle(invited(4, 1), c.now());
    let acts = old.handle(accepted(4, bob()), c.now());
    assert_eq!(
        establishes(&acts),
        [(4, vec!["10.0.0.2:4000".to_string()], false)]
    );
}

/// The invitee's link reaches the inviter before the server's `Accepted`
/// does: held, then let in (links come in either direction).
#[test]
fn the_inviter_lets_in_a_link_that_beats_the_acceptance() {
    let c = Clock::new();
    let mut m = machine();
    m.handle(invited(3, 1), c.now());
    let acts = m.handle(dialed_in(3, 100), c.now());
    assert!(acts.is_empty(), "held: {acts:?}");
    // A link claiming an invitation we did not make is refused at once.
    assert_eq!(refused(&m.handle(dialed_in(5, 101), c.now())), [101]);
    let acts = m.handle(accepted(3, bob()), c.now());
    assert_eq!(admitted(&acts), [(100, Some(1))]);

    // The acceptance even beat `connect`'s registration of the id (the
    // invitee accepts automatically): its link is held until then too.
    let mut m = machine();
    assert!(m.handle(accepted(4, bob()), c.now()).is_empty());
    assert!(m.handle(dialed_in(4, 102), c.now()).is_empty(), "held");
    let acts = m.handle(invited(4, 2), c.now());
    assert_eq!(admitted(&acts), [(102, Some(2))]);
}

/// The side with the lower key leads: it opens the session on its first
/// verified link. The other holds its links until the leader's `Switch`
/// names one, opens the session on that one, and later links go to it.
#[test]
fn the_lower_key_leads_and_the_other_follows_its_switch() {
    let c = Clock::new();
    let mut leader = machine();
    leader.handle(invited(3, 1), c.now());
    leader.handle(accepted(3, bob()), c.now());
    let acts = leader.handle(dialed_in(3, 100), c.now());
    assert!(matches!(
        acts.as_slice(),
        [
            Action::ExpectationsChanged,
            Action::Admit {
                link: 100,
                waiter: Some(1),
                lead: true,
                inviter: true
            }
        ]
    ));

    let mut follower = M::new([], HIGH_KEY.to_vec());
    follower.handle(invitation("bob", 7), c.now());
    follower.handle(answer(true, 2), c.now());
    follower.handle(answered(7, true), c.now());
    let until = c.now().at + SESSION_SETUP_DEADLINE;
    for link in [100, 101] {
        let acts = follower.handle(dialed_in(7, link), c.now());
        assert!(
            matches!(acts.as_slice(), [Action::Hold { link: l, until: u }] if *l == link && *u == until),
            "{acts:?}"
        );
    }
    let switched = |link| Input::Switched {
        user: "bob".into(),
        invite: 7,
        link,
    };
    let acts = follower.handle(switched(101), c.now());
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Admit {
            link: 101,
            waiter: Some(2),
            lead: false,
            inviter: false
        }
    )));
    // A later link (or a stray Switch) belongs to the session now.
    assert!(matches!(
        follower.handle(switched(100), c.now()).as_slice(),
        [Action::Live { link: 100 }]
    ));
    // Someone else's Switch, for no invitation of ours, is refused.
    let stray = Input::Switched {
        user: "carol".into(),
        invite: 7,
        link: 102,
    };
    assert_eq!(refused(&follower.handle(stray, c.now())), [102]);
}

/// With no session by the setup deadline, both sides are told what was
/// tried and how it failed; the acceptor is never told the inviter did
/// not connect.
#[test]
fn the_setup_deadline_fails_both_sides_with_the_reason() {
    let mut c = Clock::new();
    let why =
        "no direct path worked (tried 10.0.0.2:4000: timed out), and the server offers no relay";
    let tried = |invite| Input::Tried {
        user: "bob".into(),
        invite,
        why: why.into(),
    };
    let mut inviter = machine();
    inviter.handle(invited(3, 1), c.now());
    inviter.handle(accepted(3, bob()), c.now());
    inviter.handle(tried(3), c.now());

    let mut acceptor = M::new([], HIGH_KEY.to_vec());
    acceptor.handle(invitation("bob", 7), c.now());
    acceptor.handle(answer(true, 2), c.now());
    acceptor.handle(answered(7, true), c.now());
    acceptor.handle(tried(7), c.now());
    // A link held (we follow) whose Switch never comes.
    acceptor.handle(dialed_in(7, 100), c.now());

    c.advance(SESSION_SETUP_DEADLINE - Duration::from_millis(1));
    assert!(replies(&inviter.handle(Input::Tick, c.now())).is_empty());
    assert!(replies(&acceptor.handle(Input::Tick, c.now())).is_empty());
    c.advance(Duration::from_millis(1));
    assert_eq!(inviter.next_deadline(), Some(c.now().at));

    let acts = inviter.handle(Input::Tick, c.now());
    let msg = failure(&acts, 1);
    assert_eq!(msg, format!("could not reach bob within 5s: {why}"));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Emit(Event::Rejected { peer, .. }) if peer == "bob")));
    let acts = acceptor.handle(Input::Tick, c.now());
    let msg = failure(&acts, 2);
    assert_eq!(msg, format!("could not reach bob within 5s: {why}"));
    assert!(!msg.contains("did not connect"), "{msg}");
    assert_eq!(inviter.next_deadline(), None);
    assert_eq!(acceptor.next_deadline(), None);
    // Too late: a Switch or a link after the deadline is refused.
    let late = Input::Switched {
        user: "bob".into(),
        invite: 7,
        link: 100,
    };
    assert_eq!(refused(&acceptor.handle(late, c.now())), [100]);
    assert_eq!(refused(&inviter.handle(dialed_in(3, 101), c.now())), [101]);
}

/// A link whose key is not the one the server vouched for is refused even
/// when its name and invitation match; one from the right key under
/// another name too.
#[test]
fn a_verified_link_must_match_name_key_and_invitation() {
    let c = Clock::new();
    let mut m = machine();
    m.handle(invited(3, 1), c.now());
    m.handle(accepted(3, bob()), c.now());
    assert_eq!(
        refused(&m.handle(verified_as("bob", "0e0e", 3, 100), c.now())),
        [100]
    );
    assert_eq!(
        refused(&m.handle(verified_as("carol", BOB_KEY, 3, 101), c.now())),
        [101]
    );
    assert_eq!(
        admitted(&m.handle(verified_as("bob", BOB_KEY, 3, 102), c.now())),
        [(102, Some(1))]
    );
}

//! Unit tests of the invitation machine, on an injected clock: waiters and
//! links are plain numbers, so each test reads as input → actions.

use std::time::Duration;

use p2p_proto::ctl::{ErrorCode, Event};
use p2p_proto::limits::INVITATION_TTL;
use p2p_proto::wire::{Contact, InviteEnd, ServerEvent};
use tokio::time::Instant;

use super::{Action, Input, Invitations, Now, MAX_HELD_INVITATIONS, SESSION_SETUP_DEADLINE};

pub(super) type M = Invitations<u32, u32>;
pub(super) type Acts = Vec<Action<u32, u32>>;

pub(super) const T0_MS: i64 = 1_700_000_000_000;
pub(super) const BOB_KEY: &str = "0b0b";
/// Lower than bob's: we lead unless a test says otherwise.
pub(super) const MY_KEY: &[u8] = &[0x0a, 0x0a];
/// Higher than bob's: we follow.
pub(super) const HIGH_KEY: &[u8] = &[0x0c, 0x0c];

pub(super) fn machine() -> M {
    M::new([], MY_KEY.to_vec())
}

pub(super) struct Clock {
    start: Instant,
    elapsed: Duration,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock {
            start: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }
    pub(super) fn now(&self) -> Now {
        Now {
            at: self.start + self.elapsed,
            unix_ms: T0_MS + self.elapsed.as_millis() as i64,
        }
    }
    pub(super) fn advance(&mut self, d: Duration) {
        self.elapsed += d;
    }
}

pub(super) fn bob() -> Contact {
    Contact {
        user: "bob".into(),
        addr: "10.0.0.2:4000".into(),
        public_key: BOB_KEY.into(),
        paths: Vec::new(),
        your_addr: None,
        relay: None,
    }
}

pub(super) fn invitation(from: &str, invite: u64) -> Input<u32, u32> {
    Input::Server(ServerEvent::Invitation {
        invite,
        from: from.into(),
        expires_ms: T0_MS + INVITATION_TTL.as_millis() as i64,
    })
}

pub(super) fn dialed_in(invite: u64, link: u32) -> Input<u32, u32> {
    Input::Verified {
        user: "bob".into(),
        key: hex::decode(BOB_KEY).unwrap(),
        invite,
        link,
    }
}

pub(super) fn answer(accept: bool, waiter: u32) -> Input<u32, u32> {
    Input::Answer {
        from: "bob".into(),
        accept,
        waiter: Some(waiter),
    }
}

pub(super) fn answered(invite: u64, accept: bool) -> Input<u32, u32> {
    Input::Answered {
        from: "bob".into(),
        invite,
        accept,
        result: Ok(accept.then(bob)),
    }
}

pub(super) fn sends_answer(acts: &Acts, want: u64, yes: bool) -> bool {
    acts.iter().any(
        |a| matches!(a, Action::SendAnswer { invite, accept, .. } if *invite == want && *accept == yes),
    )
}

pub(super) fn admitted(acts: &Acts) -> Vec<(u32, Option<u32>)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Admit { link, waiter, .. } => Some((*link, *waiter)),
            _ => None,
        })
        .collect()
}

pub(super) fn refused(acts: &Acts) -> Vec<u32> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Refuse { link } => Some(*link),
            _ => None,
        })
        .collect()
}

pub(super) fn replies(acts: &Acts) -> Vec<(u32, Result<(), ErrorCode>)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Reply { waiter, result } => {
                Some((*waiter, result.as_ref().map(|_| ()).map_err(|e| e.code())))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn accept_lets_the_inviter_in_once() {
    let c = Clock::new();
    let mut m = machine();
    let acts = m.handle(invitation("bob", 7), c.now());
    assert!(matches!(&acts[0], Action::Emit(Event::Request(r)) if r.from == "bob"));
    assert_eq!(m.requests(c.now()).len(), 1);

    let acts = m.handle(answer(true, 1), c.now());
    assert!(sends_answer(&acts, 7, true));
    assert!(m.accepting_any());
    assert!(
        m.requests(c.now()).is_empty(),
        "answered: no longer pending"
    );

    let acts = m.handle(answered(7, true), c.now());
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::CheckKey(k) if k.user == "bob")));
    assert!(!m.accepting_any());
    assert!(m.expects_from(c.now(), |ip| ip.to_string() == "10.0.0.2"));
    assert_eq!(m.next_deadline(), Some(c.now().at + SESSION_SETUP_DEADLINE));

    // The right link is let through, with the waiting accept.
    assert_eq!(
        admitted(&m.handle(dialed_in(7, 100), c.now())),
        [(100, Some(1))]
    );
    // The session is up: a second link with the same claim goes to it
    // (until the setup deadline), not to a second session.
    let acts = m.handle(dialed_in(7, 101), c.now());
    assert!(admitted(&acts).is_empty());
    assert!(matches!(acts.as_slice(), [Action::Live { link: 101 }]));
}

#[test]
fn a_link_with_the_wrong_key_or_invitation_is_refused() {
    let c = Clock::new();
    let mut m = machine();
    m.handle(invitation("bob", 7), c.now());
    m.handle(answer(true, 1), c.now());
    m.handle(answered(7, true), c.now());
    let wrong_key = Input::Verified {
        user: "bob".into(),
        key: vec![0xee],
        invite: 7,
        link: 100,
    };
    assert_eq!(refused(&m.handle(wrong_key, c.now())), [100]);
    assert_eq!(refused(&m.handle(dialed_in(8, 101), c.now())), [101]);
    assert_eq!(
        admitted(&m.handle(dialed_in(7, 102), c.now())),
        [(102, Some(1))]
    );
}

#[test]
fn reject_answers_without_a_session_and_expects_nobody() {
    let c = Clock::new();
    let mut m = machine();
    m.handle(invitation("bob", 7), c.now());
    let acts = m.handle(answer(false, 1), c.now());
    assert!(sends_answer(&acts, 7, false));
    assert!(!m.accepting_any(), "a rejection holds no link");
    // A link claiming it while the rejection is on its way is refused.
    assert_eq!(refused(&m.handle(dialed_in(7, 100), c.now())), [100]);
    assert_eq!(
        replies(&m.handle(answered(7, false), c.now())),
        [(1, Ok(()))]
    );
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn answering_without_an_invitation_is_no_request() {
    let c = Clock::new();
    let mut m = machine();
    let acts = m.handle(answer(true, 1), c.now());
    assert_eq!(replies(&acts), [(1, Err(ErrorCode::NoRequest))]);
    assert!(!sends_answer(&acts, 0, true));
}

#[test]
fn invitations_and_expectations_expire() {
    let mut c = Clock::new();
    let mut m = machine();
    m.handle(invitation("bob", 7), c.now());
    m.handle(invitation("carol", 8), c.now());
    m.handle(answer(true, 1), c.now());
    m.handle(answered(7, true), c.now());

    // Nothing before the deadline.
    c.advance(SESSION_SETUP_DEADLINE - Duration::from_millis(1));
    assert!(replies(&m.handle(Input::Tick, c.now())).is_empty());
    assert!(m.expects_from(c.now(), |_| true));
    c.advance(Duration::from_millis(1));
    assert_eq!(m.next_deadline(), Some(c.now().at));
    let acts = m.handle(Input::Tick, c.now());
    assert_eq!(replies(&acts), [(1, Err(ErrorCode::Timeout))]);
    assert!(!m.expects_from(c.now(), |_| true));
    assert_eq!(m.next_deadline(), None);
    // Too late to dial in.
    assert_eq!(refused(&m.handle(dialed_in(7, 100), c.now())), [100]);

    // carol's invitation lapses at its server-given expiry.
    assert_eq!(m.requests(c.now()).len(), 1);
    c.advance(INVITATION_TTL);
    assert!(m.requests(c.now()).is_empty());
    let late = Input::Answer {
        from: "carol".into(),
        accept: true,
        waiter: Some(2),
    };
    assert_eq!(
        replies(&m.handle(late, c.now())),
        [(2, Err(ErrorCode::NoRequest))]
    );
}

#[test]
fn clock_skew_moves_expiry_to_the_servers_clock() {
    let c = Clock::new();
    let mut m = machine();
    // The server is a minute ahead of us: its invitation is already over.
    let skew = INVITATION_TTL.as_millis() as i64;
    m.handle(
        Input::LoggedIn {
            clock_skew_ms: skew,
        },
        c.now(),
    );
    m.handle(invitation("bob", 7), c.now());
    assert!(m.requests(c.now()).is_empty());
}

/// The inviter dials in before our own daemon has read the server's answer
/// (the server tells the inviter first): the link is held, then let in.
#[test]
fn an_early_dial_in_waits_for_our_answer() {
    let c = Clock::new();
    let mut m = machine();
    m.handle(invitation("bob", 7), c.now());
    m.handle(answer(true, 1), c.now());
    let acts = m.handle(dialed_in(7, 100), c.now());
    assert!(
        admitted(&acts).is_empty() && refused(&acts).is_empty(),
        "held"
    );
    assert_eq!(m.next_deadline(), Some(c.now().at + SESSION_SETUP_DEADLINE));
    let acts = m.handle(answered(7, true), c.now());
    assert_eq!(admitted(&acts), [(100, Some(1))]);
}

#[test]
fn a_held_link_is_refused_when_the_answer_fails_or_time_runs_out() {
    let mut c = Clock::new();
    let mut m = machine();
    m.handle(invitation("bob", 7), c.now());
    m.handle(answer(true, 1), c.now());
    m.handle(dialed_in(7, 100), c.now());
    let failed = Input::Answered {
        from: "bob".into(),
        invite: 7,
        accept: true,
        result: Err(crate::link::LinkError::Lost),
    };
    let acts = m.handle(failed, c.now());
    assert_eq!(refused(&acts), [100]);
    assert_eq!(replies(&acts), [(1, Err(ErrorCode::ServerUnreachable))]);

    m.handle(invitation("bob", 9), c.now());
    m.handle(answer(true, 2), c.now());
    m.handle(dialed_in(9, 101), c.now());
    c.advance(SESSION_SETUP_DEADLINE);
    assert_eq!(refused(&m.handle(Input::Tick, c.now())), [101]);
}

#[test]
fn accepted_then_dial_and_declined_then_reject() {
    let c = Clock::new();
    let mut m = machine();
    m.handle(
        Input::Invited {
            invite: 3,
            to: "bob".into(),
            waiter: Some(1),
        },
        c.now(),
    );
    let acts = m.handle(
        Input::Server(ServerEvent::Accepted {
            invite: 3,
            contact: bob(),
        }),
        c.now(),
    );
    let dial = acts.iter().find_map(|a| match a {
        Action::Establish { contact, until, .. } => Some((contact.paths.clone(), *until)),
        _ => None,
    });
    assert_eq!(
        dial,
        Some((
            vec!["10.0.0.2:4000".parse().unwrap()],
            c.now().at + SESSION_SETUP_DEADLINE
        ))
    );
    // The session comes with the first verified link, either way it came.
    assert_eq!(
        admitted(&m.handle(dialed_in(3, 100), c.now())),
        [(100, Some(1))]
    );

    m.handle(
        Input::Invited {
            invite: 4,
            to: "bob".into(),
            waiter: Some(2),
        },
        c.now(),
    );
    let declined = ServerEvent::Declined {
        invite: 4,
        to: "bob".into(),
        reason: InviteEnd::Rejected,
    };
    let acts = m.handle(Input::Server(declined), c.now());
    assert!(acts.iter().any(
        |a| matches!(a, Action::Emit(Event::Rejected { reason, .. }) if reason == "rejected")
    ));
    assert_eq!(replies(&acts), [(2, Err(ErrorCode::Rejected))]);
}

/// The server's answer event beats `connect`'s registration of the id.
#[test]
fn an_early_answer_is_applied_when_connect_registers() {
    let mut c = Clock::new();
    let mut m = machine();
    let accepted = ServerEvent::Accepted {
        invite: 3,
        contact: bob(),
    };
    assert!(m
        .handle(Input::Server(accepted.clone()), c.now())
        .is_empty());
    let invited = |invite| Input::Invited {
        invite,
        to: "bob".into(),
        waiter: Some(1),
    };
    let acts = m.handle(invited(3), c.now());
    assert!(acts.iter().any(|a| matches!(a, Action::Establish { .. })));

    // One held past the hold is forgotten.
    m.handle(Input::Server(accepted), c.now());
    c.advance(super::EARLY_ANSWER_HOLD);
    m.handle(Input::Tick, c.now());
    assert!(m.handle(invited(3), c.now()).is_empty());
    // A login forgets them too (ids start over after a server restart).
    let again = ServerEvent::Accepted {
        invite: 5,
        contact: bob(),
    };
    m.handle(Input::Server(again), c.now());
    m.handle(Input::LoggedIn { clock_skew_ms: 0 }, c.now());
    assert!(m.handle(invited(5), c.now()).is_empty());
}

/// alice and bob invite each other at once: each side both dials (its own
/// invitation, accepted) and lets the other in (the one it accepted); the
/// session registry then keeps the same one at both ends
/// (`registry::tests::crossed_sessions_settle_on_the_same_link_at_both_ends`).
#[test]
fn crossed_invitations_run_both_ways_independently() {
    let c = Clock::new();
    let mut m = machine();
    m.handle(
        Input::Invited {
            invite: 3,
            to: "bob".into(),
            waiter: Some(1),
        },
        c.now(),
    );
    m.handle(invitation("bob", 4), c.now());
    m.handle(answer(true, 2), c.now());
    let acts = m.handle(
        Input::Server(ServerEvent::Accepted {
            invite: 3,
            contact: bob(),
        }),
        c.now(),
    );
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Establish { invite: 3, .. })));
    assert_eq!(
        admitted(&m.handle(dialed_in(3, 99), c.now())),
        [(99, Some(1))]
    );
    m.handle(answered(4, true), c.now());
    assert_eq!(
        admitted(&m.handle(dialed_in(4, 100), c.now())),
        [(100, Some(2))]
    );
}

#[test]
fn auto_accept_answers_by_itself() {
    let c = Clock::new();
    let mut m = M::new(["bob".to_string()], MY_KEY.to_vec());
    let acts = m.handle(invitation("bob", 7), c.now());
    assert!(sends_answer(&acts, 7, true));
    assert!(m.accepting_any());
    m.handle(answered(7, true), c.now());
    assert_eq!(
        admitted(&m.handle(dialed_in(7, 100), c.now())),
        [(100, None)]
    );
    // Someone not in the list waits for a human.
    assert!(!sends_answer(
        &m.handle(invitation("carol", 8), c.now()),
        8,
        true
    ));
}

#[test]
fn held_invitations_are_bounded() {
    let c = Clock::new();
    let mut m = machine();
    for i in 0..MAX_HELD_INVITATIONS as u64 + 10 {
        m.handle(invitation(&format!("u{i}"), i), c.now());
    }
    assert_eq!(m.requests(c.now()).len(), MAX_HELD_INVITATIONS);
    // A newer invitation from someone already held still replaces theirs.
    m.handle(invitation("u0", 999), c.now());
    assert_eq!(m.requests(c.now()).len(), MAX_HELD_INVITATIONS);
}

#[test]
fn shutdown_answers_every_waiter_and_refuses_held_links() {
    let c = Clock::new();
    let mut m = machine();
    m.handle(
        Input::Invited {
            invite: 3,
            to: "carol".into(),
            waiter: Some(1),
        },
        c.now(),
    );
    m.handle(invitation("bob", 7), c.now());
    m.handle(answer(true, 2), c.now());
    m.handle(dialed_in(7, 100), c.now());
    let acts = m.handle(Input::Shutdown, c.now());
    let mut waiters: Vec<_> = replies(&acts).into_iter().map(|(w, _)| w).collect();
    waiters.sort();
    assert_eq!(waiters, [1, 2]);
    assert_eq!(refused(&acts), [100]);
}

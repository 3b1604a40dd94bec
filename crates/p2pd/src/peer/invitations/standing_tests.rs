//! Unit tests of standing consent in the invitation machine: automatic
//! accepts between contacts, silence towards blocked users, paused
//! contacts, and the refusal of a verified contact whose key changed.

use p2p_proto::ctl::{ErrorCode, Event};
use p2p_proto::wire::{InviteEnd, ServerEvent};

use super::tests::{
    admitted, answer, answered, bob, dialed_in, invitation, machine, refused, replies,
    sends_answer, Acts, Clock, BOB_KEY, M,
};
use super::{Action, ContactBook, ContactView, Input};

fn book(verified: bool, held: bool) -> ContactBook {
    let mut b = ContactBook::default();
    let view = ContactView {
        key: BOB_KEY.into(),
        verified,
        key_changed: held,
        held,
    };
    b.contacts.insert("bob".into(), view);
    b
}

fn with_bob(verified: bool) -> M {
    let mut m = machine();
    m.set_contacts(book(verified, false));
    m
}

fn requests_emitted(acts: &Acts) -> usize {
    acts.iter()
        .filter(|a| matches!(a, Action::Emit(Event::Request(_))))
        .count()
}

/// The server hands out another key for bob than the one we trust.
fn answered_with_new_key(invite: u64) -> Input<u32, u32> {
    let mut contact = bob();
    contact.public_key = "0d0d".into();
    Input::Answered {
        from: "bob".into(),
        invite,
        accept: true,
        result: Ok(Some(contact)),
    }
}

#[test]
fn a_contacts_invitation_is_accepted_without_a_prompt() {
    let c = Clock::new();
    let mut m = with_bob(false);
    let acts = m.handle(invitation("bob", 7), c.now());
    assert_eq!(requests_emitted(&acts), 0, "no request event");
    assert!(sends_answer(&acts, 7, true));
    assert!(m.requests(c.now()).is_empty());
    m.handle(answered(7, true), c.now());
    assert_eq!(
        admitted(&m.handle(dialed_in(7, 100), c.now())),
        [(100, None)]
    );
}

#[test]
fn a_stranger_still_gets_a_prompt() {
    let c = Clock::new();
    let mut m = machine();
    let acts = m.handle(invitation("bob", 7), c.now());
    assert_eq!(requests_emitted(&acts), 1);
    assert!(!sends_answer(&acts, 7, true));
    assert_eq!(m.requests(c.now()).len(), 1);
}

#[test]
fn a_blocked_users_invitation_leaves_no_trace() {
    let c = Clock::new();
    let mut m = M::new(["bob".to_string()], super::tests::MY_KEY.to_vec());
    let mut b = ContactBook::default();
    b.blocked.insert("bob".into());
    m.set_contacts(b);
    // Not even auto_accept answers a blocked user.
    let acts = m.handle(invitation("bob", 7), c.now());
    assert!(acts.is_empty(), "no event, no answer: {acts:?}");
    assert!(m.requests(c.now()).is_empty());
    let acts = m.handle(answer(true, 1), c.now());
    assert_eq!(replies(&acts), [(1, Err(ErrorCode::NoRequest))]);
}

#[test]
fn blocking_drops_a_pending_invitation_unanswered() {
    let c = Clock::new();
    let mut m = machine();
    m.handle(invitation("bob", 7), c.now());
    let mut b = ContactBook::default();
    b.blocked.insert("bob".into());
    m.set_contacts(b);
    assert!(m.requests(c.now()).is_empty());
}

#[test]
fn a_paused_contact_prompts_until_resumed() {
    let c = Clock::new();
    let mut m = with_bob(false);
    m.pause("bob");
    assert!(m.to_reinvite().is_empty(), "no automatic invitation");
    let acts = m.handle(invitation("bob", 7), c.now());
    assert_eq!(requests_emitted(&acts), 1, "an ordinary request");
    assert!(!sends_answer(&acts, 7, true));
    m.resume("bob");
    assert!(m.standing("bob"));
    let acts = m.handle(invitation("bob", 8), c.now());
    assert_eq!(requests_emitted(&acts), 0);
    assert!(sends_answer(&acts, 8, true));
}

#[test]
fn a_verified_contact_with_a_new_key_gets_no_session() {
    let c = Clock::new();
    let mut m = with_bob(true);
    m.handle(invitation("bob", 7), c.now());
    let acts = m.handle(answered_with_new_key(7), c.now());
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::CheckKey(k) if k.public_key == "0d0d")),
        "the store records the new key"
    );
    assert!(!acts.iter().any(|a| matches!(a, Action::Establish { .. })));
    assert!(!m.expects_from(c.now(), |_| true));
    assert!(m.contact("bob").unwrap().held);
    assert_eq!(m.key_changed(), ["bob"]);
    // A link from the new key is refused; nothing is reinvited automatically.
    let link = Input::Verified {
        user: "bob".into(),
        key: vec![0x0d, 0x0d],
        invite: 7,
        link: 100,
    };
    assert_eq!(refused(&m.handle(link, c.now())), [100]);
    assert!(m.to_reinvite().is_empty());

    // Held: the next invitation is an ordinary request, and accepting it
    // is refused before the server hears of it.
    let acts = m.handle(invitation("bob", 8), c.now());
    assert_eq!(requests_emitted(&acts), 1);
    let acts = m.handle(answer(true, 2), c.now());
    assert_eq!(replies(&acts), [(2, Err(ErrorCode::KeyChanged))]);
    assert!(!sends_answer(&acts, 8, true));

    // trust (the store releases bob with the new key): sessions again.
    let mut trusted = book(false, false);
    trusted.contacts.get_mut("bob").unwrap().key = "0d0d".into();
    m.set_contacts(trusted);
    assert!(m.standing("bob"));
}

#[test]
fn our_invitation_to_a_held_contact_is_refused_at_the_acceptance() {
    let c = Clock::new();
    let mut m = with_bob(true);
    m.handle(
        Input::Invited {
            invite: 7,
            to: "bob".into(),
            waiter: Some(1),
        },
        c.now(),
    );
    let mut contact = bob();
    contact.public_key = "0d0d".into();
    let acts = m.handle(
        Input::Server(ServerEvent::Accepted { invite: 7, contact }),
        c.now(),
    );
    assert_eq!(replies(&acts), [(1, Err(ErrorCode::KeyChanged))]);
    assert!(!acts.iter().any(|a| matches!(a, Action::Establish { .. })));
}

#[test]
fn an_unverified_contact_with_a_new_key_opens_and_warns() {
    let c = Clock::new();
    let mut m = with_bob(false);
    m.handle(invitation("bob", 7), c.now());
    let acts = m.handle(answered_with_new_key(7), c.now());
    assert!(acts.iter().any(|a| matches!(a, Action::Establish { .. })));
    let bob = m.contact("bob").unwrap();
    assert!(bob.key_changed && !bob.held);
    assert_eq!(m.key_changed(), ["bob"]);
}

#[test]
fn automatic_invitations_fail_quietly() {
    let c = Clock::new();
    let mut m = with_bob(false);
    let auto = Input::AutoInvited {
        invite: 7,
        to: "bob".into(),
    };
    m.handle(auto, c.now());
    assert!(m.to_reinvite().is_empty(), "one open invitation at a time");
    let declined = ServerEvent::Declined {
        invite: 7,
        to: "bob".into(),
        reason: InviteEnd::Expired,
    };
    let acts = m.handle(Input::Server(declined), c.now());
    assert!(acts.is_empty(), "no rejected event: {acts:?}");
    // Bob let it expire (he forgot us, say): sweeps leave him alone...
    assert!(m.to_reinvite().is_empty(), "no invitation every sweep");
    // ...until our next login.
    m.handle(Input::LoggedIn { clock_skew_ms: 0 }, c.now());
    assert_eq!(m.to_reinvite(), ["bob"]);
    // Gone offline is no answer at all: he is invited when back.
    let auto = Input::AutoInvited {
        invite: 9,
        to: "bob".into(),
    };
    m.handle(auto, c.now());
    let offline = ServerEvent::Declined {
        invite: 9,
        to: "bob".into(),
        reason: InviteEnd::Offline,
    };
    m.handle(Input::Server(offline), c.now());
    assert_eq!(m.to_reinvite(), ["bob"]);
    // A new server run forgets invitations nobody waits for.
    let auto = Input::AutoInvited {
        invite: 8,
        to: "bob".into(),
    };
    m.handle(auto, c.now());
    m.handle(Input::LoggedIn { clock_skew_ms: 0 }, c.now());
    assert_eq!(m.to_reinvite(), ["bob"]);
}

#[test]
fn no_automatic_invitation_while_one_from_them_is_being_answered() {
    let c = Clock::new();
    let mut m = with_bob(false);
    assert_eq!(m.to_reinvite(), ["bob"]);
    m.handle(invitation("bob", 7), c.now());
    assert!(m.to_reinvite().is_empty(), "answering bob's");
    m.handle(answered(7, true), c.now());
    assert!(m.to_reinvite().is_empty(), "setting the session up");
}

//! Issue 14, invitations under attack, against the real server:
//! - many accounts cannot bury one user in invitations (per-invitee limit);
//! - an account that exists but is offline and a name nobody has get the
//!   same answer, before and after the inviter hits its rate limit, so
//!   inviting cannot tell which accounts exist.

use p2p_loadgen::{register_users, Client};
use p2p_proto::wire::{Reply, Request};
use p2p_testkit::TestServer;

async fn invite(c: &mut Client, to: &str) -> Reply {
    c.request(Request::Invite { to: to.into() }).await.unwrap()
}

/// `(code, message with the name and digits taken out)` of a refusal.
fn refusal(reply: Reply, name: &str) -> (String, String) {
    match reply {
        Reply::Error { code, message } => {
            let shape = message
                .replace(name, "NAME")
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .collect();
            (code.to_string(), shape)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_unknown_invitees_look_the_same() {
    let server = TestServer::start(&[]);
    // load0000 invites; load0001 is online; load0002 exists but is offline.
    let names = register_users(&server, 3);
    let (addr, fp) = (server.addr, server.fingerprint.clone());
    let mut alice = Client::login(addr, &fp, &names[0]).await.unwrap();
    let _bob = Client::login(addr, &fp, &names[1]).await.unwrap();
    let (offline, unknown) = (names[2].as_str(), "nobody-here");

    let a = refusal(invite(&mut alice, offline).await, offline);
    let b = refusal(invite(&mut alice, unknown).await, unknown);
    assert_eq!(a.0, "not_online");
    assert_eq!(a, b, "offline vs unknown, under the limit");

    // Use up alice's invitations on the online user.
    let mut sent = 0;
    while matches!(invite(&mut alice, &names[1]).await, Reply::Invited { .. }) {
        sent += 1;
        assert!(sent <= 10, "no per-inviter limit");
    }
    let a = refusal(invite(&mut alice, offline).await, offline);
    let b = refusal(invite(&mut alice, unknown).await, unknown);
    assert_eq!(a.0, "rate_limited");
    assert_eq!(a, b, "offline vs unknown, over the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_accounts_cannot_flood_one_user_with_invitations() {
    let server = TestServer::start(&[]);
    let names = register_users(&server, 7);
    let (addr, fp) = (server.addr, server.fingerprint.clone());
    let target = &names[0];
    let _bob = Client::login(addr, &fp, target).await.unwrap();
    let mut delivered = 0;
    let mut last = None;
    for name in &names[1..] {
        let mut c = Client::login(addr, &fp, name).await.unwrap();
        // Each inviter stays within its own limit (10 a minute).
        for _ in 0..5 {
            match invite(&mut c, target).await {
                Reply::Invited { .. } => delivered += 1,
                other => last = Some(refusal(other, target)),
            }
        }
    }
    // 30 tried, each sender within its own limit: the invitee's cap holds.
    assert_eq!(delivered, 20);
    let (code, message) = last.expect("some were refused");
    assert_eq!(code, "rate_limited");
    assert!(
        message.contains("NAME has too many invitations"),
        "{message}"
    );
}

//! Broadcasts and the 30-minute promise (SPEC §4), end to end with real
//! processes, including `kill -9` of the server and of a recipient.

use std::time::{Duration, SystemTime};

use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};

fn online(server: &TestServer, user: &str) -> TestDaemon {
    online_with(server, user, &[])
}

fn online_with(server: &TestServer, user: &str, env: &[(&str, &str)]) -> TestDaemon {
    let pw = format!("{user}-password");
    if !server.has_user(user) {
        server.add_user(user, &pw);
    }
    let d = TestDaemon::start_with_env(FAST_RECONNECT, env);
    let (code, doc) = d.login(server, user, &pw);
    assert_eq!(code, 0, "{user}: {doc}");
    d
}

#[test]
fn online_users_get_it_and_the_sender_gets_an_id_but_no_copy() {
    let server = TestServer::start(&[]);
    let (alice, bob, carol) = (
        online(&server, "alice"),
        online(&server, "bob"),
        online(&server, "carol"),
    );
    let mut watch = std::process::Command::new(p2p_testkit::bin("p2pctl"))
        .args([
            "--json",
            "--socket",
            carol.socket().to_str().unwrap(),
            "watch",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let events = p2p_testkit::Lines::new(watch.stdout.take().unwrap());
    let next = || events.next_json("carol's next watch event");
    assert_eq!(next()["event"], "server");
    let b = alice.broadcast("server maintenance at 18:00");
    let ev = next();
    assert_eq!(
        (ev["event"].as_str(), ev["from"].as_str()),
        (Some("broadcast"), Some("alice"))
    );
    assert_eq!(ev["text"], "server maintenance at 18:00");
    assert_eq!(ev["kind"], "broadcast");
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(b["id"].as_u64().unwrap() >= 1);
    let expires = humantime::parse_rfc3339(b["expires_at"].as_str().unwrap()).unwrap();
    let left = expires.duration_since(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(29 * 60) && left <= Duration::from_secs(30 * 60),
        "{left:?}"
    );
    for d in [&bob, &carol] {
        assert_eq!(d.broadcasts(1), ["server maintenance at 18:00"]);
        let (_, inbox) = d.ctl_json(&["inbox", "--all"]);
        assert_eq!(inbox["messages"][0]["from"], "alice");
        assert_eq!(inbox["messages"][0]["id"], b["id"]);
    }
    // A second broadcast: in id order, and still none for the sender.
    bob.broadcast("second");
    assert_eq!(
        carol.broadcasts(2),
        ["server maintenance at 18:00", "second"]
    );
    assert_eq!(alice.broadcasts(1), ["second"]);
}

#[test]
fn late_logins_get_it_until_it_expires() {
    let server = TestServer::start(&["--broadcast-ttl", "6s"]);
    let alice = online(&server, "alice");
    let first = alice.broadcast("first");
    // dave did not even have an account when it was sent.
    let dave = online(&server, "dave");
    assert_eq!(dave.broadcasts(1), ["first"]);
    // Past the expiry, a new login does not get it.
    let expires = humantime::parse_rfc3339(first["expires_at"].as_str().unwrap()).unwrap();
    wait_for(Duration::from_secs(30), "the broadcast's expiry", || {
        (SystemTime::now() > expires + Duration::from_secs(1)).then_some(())
    });
    let eve = online(&server, "eve");
    alice.broadcast("second");
    // Delivery is in id order, so once "second" is there, "first" never comes.
    assert_eq!(eve.broadcasts(1), ["second"]);
}

#[test]
fn a_server_crash_right_after_the_answer_loses_nothing() {
    let mut server = TestServer::start(&[]);
    let alice = online(&server, "alice");
    let bob = online(&server, "bob");
    server.add_user("carol", "carol-password");
    for i in 0..5 {
        alice.broadcast(&format!("crash {i}"));
    }
    server.kill9();
    server.restart();
    // bob (online before) reconnects by himself; carol logs in for the first time.
    bob.wait_state("online", DEADLINE);
    let carol = online(&server, "carol");
    let want: Vec<String> = (0..5).map(|i| format!("crash {i}")).collect();
    for d in [&bob, &carol] {
        assert_eq!(d.broadcasts(5), want, "each exactly once, in order");
    }
    // And again after another restart: nothing is delivered twice.
    server.kill9();
    server.restart();
    // Both come back by themselves; alice must be online to broadcast.
    bob.wait_state("online", DEADLINE);
    alice.wait_state("online", DEADLINE);
    alice.broadcast("after");
    let mut want = want;
    want.push("after".into());
    assert_eq!(bob.broadcasts(6), want);
}

#[test]
fn a_recipient_crash_before_its_ack_is_redelivered_once() {
    let server = TestServer::start(&[]);
    let alice = online(&server, "alice");
    let mut bob = online_with(
        &server,
        "bob",
        &[("P2PD_FAILPOINT", "crash-before-broadcast-ack")],
    );
    alice.broadcast("are you there?");
    let status = bob.wait_exit(DEADLINE);
    assert!(
        !status.success(),
        "the failpoint aborts p2pd after storing, before acknowledging"
    );
    bob.clear_env();
    bob.restart();
    bob.wait_state("online", DEADLINE);
    alice.broadcast("marker");
    assert_eq!(
        bob.broadcasts(2),
        ["are you there?", "marker"],
        "redelivered, stored once"
    );
}

#[test]
fn oversize_and_over_the_rate_limit_are_refused_and_store_nothing() {
    let server = TestServer::start(&["--broadcast-limit", "2", "--broadcast-window", "1h"]);
    let alice = online(&server, "alice");
    let bob = online(&server, "bob");
    let (code, e) = alice.ctl_json(&["broadcast", &"x".repeat(4097)]);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (2, Some("too_large")),
        "{e}"
    );
    alice.broadcast("one");
    alice.broadcast("two");
    let (code, e) = alice.ctl_json(&["broadcast", "three"]);
    assert_ne!(code, 0);
    assert_eq!(e["error"]["code"], "rate_limited", "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("try again"));
    bob.broadcast("marker");
    let seen = alice.broadcasts(1);
    assert_eq!(seen, ["marker"]);
    let texts = bob.inbox_texts(&["--all"]);
    assert_eq!(
        texts,
        ["one", "two"],
        "nothing of the refused ones was stored"
    );
}

#[test]
fn inbox_follow_streams_broadcasts_and_marks_them_read() {
    let server = TestServer::start(&[]);
    let (alice, bob) = (online(&server, "alice"), online(&server, "bob"));
    let mut follow = std::process::Command::new(p2p_testkit::bin("p2pctl"))
        .args([
            "--json",
            "--socket",
            bob.socket().to_str().unwrap(),
            "inbox",
            "--follow",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = p2p_testkit::Lines::new(follow.stdout.take().unwrap());
    // The follower is subscribed once its (empty) listing is done; a
    // broadcast sent before that would simply be in the listing instead.
    alice.broadcast("followed");
    let entry = lines.next_json("the followed broadcast");
    assert_eq!(
        (entry["kind"].as_str(), entry["text"].as_str()),
        (Some("broadcast"), Some("followed"))
    );
    wait_for(DEADLINE, "the followed broadcast to be read", || {
        (bob.status()["unread"] == 0).then_some(())
    });
    let _ = follow.kill();
    let _ = follow.wait();
}

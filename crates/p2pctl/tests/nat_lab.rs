//! Reaching peers through NAT routers (SPEC §10), in a lab of network
//! namespaces made by each test (`p2p_testkit::netlab`): the real server in
//! the "wan", real daemons behind home routers that masquerade and let only
//! replies in. Cone routers keep one public mapping per local port
//! (endpoint-independent); symmetric ones pick a new port per connection.
//!
//! | alice behind | bob behind | session ends |
//! |---|---|---|
//! | the same router (one LAN) | | direct, over the LAN addresses |
//! | cone | cone | direct, by a simultaneous open |
//! | symmetric | symmetric | relayed |
//! | cone | symmetric | relayed: bob's mapping towards alice is unknown to anyone |
//!
//! Needs root (namespaces, nftables); without it each test says so loudly
//! and returns. CI runs as root.

use std::time::Duration;

use p2p_testkit::netlab::{self, Host, Lab, Nat, Router, WAN_IP};
use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE};
use serde_json::Value;

/// Lines streamed each way in every scenario.
const LINES: usize = 1000;

fn server_in(lab: &Lab, extra: &[&str]) -> TestServer {
    TestServer::start_in(&lab.wan().ns, &format!("{WAN_IP}:0"), extra)
}

/// alice on `a`, bob on `b`, both logged in to `server`.
fn users(server: &TestServer, a: &Host, b: &Host) -> (TestDaemon, TestDaemon) {
    let alice = TestDaemon::online_in(&a.ns, server, "alice");
    let bob = TestDaemon::online_in(&b.ns, server, "bob");
    (alice, bob)
}

/// alice behind a router of kind `a`, bob behind one of kind `b`, the
/// server (with `server_args`) in the wan, both logged in. Fields drop in
/// order: the processes before the lab they run in.
struct Behind {
    alice: TestDaemon,
    bob: TestDaemon,
    _server: TestServer,
    routers: (Router, Router),
    lab: Lab,
}

fn behind(a: Nat, b: Nat, server_args: &[&str]) -> Behind {
    let mut lab = Lab::new();
    let (r1, r2) = (lab.router(a), lab.router(b));
    let (ha, hb) = (lab.host(&r1), lab.host(&r2));
    let server = server_in(&lab, server_args);
    let (alice, bob) = users(&server, &ha, &hb);
    Behind {
        alice,
        bob,
        _server: server,
        routers: (r1, r2),
        lab,
    }
}

/// alice invites bob and bob accepts; returns both commands' exit codes and
/// documents (`connect` waits for the session, run beside `accept`).
fn invite(alice: &TestDaemon, bob: &TestDaemon) -> ((i32, Value), (i32, Value)) {
    std::thread::scope(|s| {
        let connect = s.spawn(|| alice.ctl_json(&["connect", "bob", "--timeout", "30s"]));
        wait_for(DEADLINE, "bob's pending request", || {
            let (_, r) = bob.ctl_json(&["requests"]);
            (r["requests"].as_array()?.first()?["from"] == "alice").then_some(())
        });
        let accept = bob.ctl_json(&["accept", "alice"]);
        (connect.join().expect("connect thread"), accept)
    })
}

/// The path of `d`'s session with `peer`, as `sessions --json` shows it.
fn path(d: &TestDaemon, peer: &str) -> String {
    let (code, s) = d.ctl_json(&["sessions"]);
    assert_eq!(code, 0, "{s}");
    let sessions = s["sessions"].as_array().cloned().unwrap_or_default();
    let session = sessions
        .iter()
        .find(|x| x["peer"] == peer)
        .unwrap_or_else(|| panic!("no session with {peer}: {s}"));
    session["path"].as_str().unwrap_or_default().to_string()
}

/// Connects the pair and checks both sides agree on the path; returns it.
fn connect(alice: &TestDaemon, bob: &TestDaemon) -> String {
    let ((c, cdoc), (a, adoc)) = invite(alice, bob);
    assert_eq!(c, 0, "alice's connect: {cdoc}\n{}", alice.log());
    assert_eq!(a, 0, "bob's accept: {adoc}\n{}", bob.log());
    let (pa, pb) = (path(alice, "bob"), path(bob, "alice"));
    assert_eq!(pa, pb, "both sides see the same path");
    pa
}

fn numbered(who: &str) -> Vec<String> {
    (1..=LINES).map(|i| format!("{who} line {i:04}")).collect()
}

/// `LINES` lines each way, streamed through `send USER -`; each side's
/// inbox then holds exactly the other's lines, once, in order.
fn stream_both_ways(alice: &TestDaemon, bob: &TestDaemon) {
    for (from, to, name, peer) in [(alice, bob, "alice", "bob"), (bob, alice, "bob", "alice")] {
        let lines = numbered(name);
        let out = from.ctl_stdin(&["send", peer, "-"], &(lines.join("\n") + "\n"));
        assert!(
            out.status.success(),
            "{name}'s send: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            to.inbox_texts(&["--from", name]),
            lines,
            "{peer}'s inbox from {name}"
        );
    }
}

#[test]
fn two_hosts_on_one_lan_talk_directly() {
    if !netlab::require_root("two_hosts_on_one_lan_talk_directly") {
        return;
    }
    let mut lab = Lab::new();
    let router = lab.router(Nat::Cone);
    let (a, b) = (lab.host(&router), lab.host(&router));
    let server = server_in(&lab, &[]);
    let (alice, bob) = users(&server, &a, &b);
    assert_eq!(connect(&alice, &bob), "direct");
    stream_both_ways(&alice, &bob);
}

#[test]
fn two_cone_nats_are_punched_through_and_end_direct() {
    if !netlab::require_root("two_cone_nats_are_punched_through_and_end_direct") {
        return;
    }
    let setup = behind(Nat::Cone, Nat::Cone, &[]);
    let (alice, bob) = (&setup.alice, &setup.bob);
    assert_eq!(connect(alice, bob), "direct");
    stream_both_ways(alice, bob);
}

#[test]
fn two_symmetric_nats_are_relayed_and_the_relay_sees_only_ciphertext() {
    if !netlab::require_root("two_symmetric_nats_are_relayed_and_the_relay_sees_only_ciphertext") {
        return;
    }
    let setup = behind(Nat::Symmetric, Nat::Symmetric, &[]);
    let (alice, bob) = (&setup.alice, &setup.bob);
    let lab = &setup.lab;
    assert_eq!(connect(alice, bob), "relayed");
    let status = alice.status();
    assert_eq!(
        (status["relayed"].as_u64(), status["direct"].as_u64()),
        (Some(1), Some(0)),
        "{status}"
    );

    // Everything to and from the server, while a marker goes through it.
    let capture = lab.capture_filtered(&lab.wan().ns, "br0", &format!("host {WAN_IP}"));
    let marker = "MARKER-7f3a9c-only-the-peers-may-read-this";
    assert_eq!(alice.ctl_json(&["send", "bob", marker]).0, 0);
    assert_eq!(bob.inbox_texts(&["--from", "alice"]), [marker]);
    let seen = capture.stop();
    assert!(!seen.is_empty(), "the capture saw the relayed traffic");
    assert!(
        !netlab::contains(&seen, marker.as_bytes()),
        "the marker crossed the wire in clear"
    );
    stream_both_ways(alice, bob);
}

#[test]
fn a_cone_and_a_symmetric_nat_end_relayed() {
    if !netlab::require_root("a_cone_and_a_symmetric_nat_end_relayed") {
        return;
    }
    let setup = behind(Nat::Cone, Nat::Symmetric, &[]);
    let (alice, bob) = (&setup.alice, &setup.bob);
    assert_eq!(connect(alice, bob), "relayed");
    stream_both_ways(alice, bob);
}

#[test]
fn without_the_relay_both_sides_are_told_why_at_the_setup_deadline() {
    if !netlab::require_root("without_the_relay_both_sides_are_told_why_at_the_setup_deadline") {
        return;
    }
    let setup = behind(Nat::Symmetric, Nat::Symmetric, &["--no-relay"]);
    let (alice, bob) = (&setup.alice, &setup.bob);
    let started = std::time::Instant::now();
    let ((c, cdoc), (a, adoc)) = invite(alice, bob);
    let took = started.elapsed();
    // `connect` would wait 30 s for an answer: failing well before that
    // shows the 5 s setup deadline ended it, not a wait running out.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    eprintln!("both sides told after {took:?}");
    for (who, code, doc) in [("alice", c, &cdoc), ("bob", a, &adoc)] {
        assert_ne!(code, 0, "{who}: {doc}");
        let msg = doc["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(
            msg.contains("relay"),
            "{who} is told the relay is off: {doc}"
        );
        assert!(
            !msg.contains("did not connect in time"),
            "{who} blames the other side: {doc}"
        );
    }
    assert!(alice.ctl_json(&["sessions"]).1["sessions"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(bob.ctl_json(&["sessions"]).1["sessions"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn a_relayed_session_goes_direct_when_it_can_and_loses_nothing() {
    if !netlab::require_root("a_relayed_session_goes_direct_when_it_can_and_loses_nothing") {
        return;
    }
    let setup = behind(Nat::Symmetric, Nat::Symmetric, &[]);
    let (alice, bob) = (&setup.alice, &setup.bob);
    let lab = &setup.lab;
    let (r1, r2) = (&setup.routers.0, &setup.routers.1);
    assert_eq!(connect(alice, bob), "relayed");
    // Past the setup's own direct attempts: the session's upgrade loop has
    // offered paths once (every UPGRADE_EVERY) and it is still relayed.
    wait_for(DEADLINE, "a first upgrade attempt", || {
        alice
            .log()
            .contains("peer offered direct paths")
            .then_some(())
    });
    assert_eq!(path(alice, "bob"), "relayed");

    // The routers relax to cone while messages flow; the session's next
    // upgrade attempt punches through and it moves to the direct link.
    lab.set_nat(r1, Nat::Cone);
    lab.set_nat(r2, Nat::Cone);
    let mut sent = Vec::new();
    let mut n = 0;
    wait_for(Duration::from_secs(60), "the session to go direct", || {
        n += 1;
        let text = format!("during the switch {n:04}");
        let (code, doc) = alice.ctl_json(&["send", "bob", &text]);
        assert_eq!(code, 0, "{doc}");
        sent.push(text);
        (path(alice, "bob") == "direct" && path(bob, "alice") == "direct").then_some(())
    });
    assert_eq!(
        bob.inbox_texts(&["--from", "alice"]),
        sent,
        "every message once, in order, across the switch"
    );
    stream_both_ways(alice, bob);
}

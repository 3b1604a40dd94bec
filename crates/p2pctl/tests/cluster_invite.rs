//! Invitations across instances on one PostgreSQL (SPEC §3 and §9, issue
//! 13): alice on one instance, bob on another; the invitation, its answer,
//! its expiry and a logout each cross. Real instances, a real throwaway
//! database, real daemons.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use p2p_testkit::{bin, wait_for, TestDaemon, TestPostgres, TestServer, DEADLINE, FAST_RECONNECT};
use serde_json::Value;

/// Two instances on one fresh database, with `extra` flags.
fn pair(pg: &TestPostgres, extra: &[&str]) -> (TestServer, TestServer) {
    let mut both = TestServer::cluster(pg, 2, extra);
    let b = both.pop().expect("two");
    (both.pop().expect("two"), b)
}

/// `p2pctl --json connect <to> <extra>` on `d`, running until answered.
fn connecting(d: &TestDaemon, to: &str, extra: &[&str]) -> Child {
    Command::new(bin("p2pctl"))
        .args([
            "--socket",
            d.socket().to_str().unwrap(),
            "--json",
            "connect",
            to,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A finished `connecting` failed with exit code `exit`, error `code` and a
/// message containing `text`.
fn refused(waiting: Child, exit: i32, code: &str, text: &str) {
    let (got, e) = outcome(waiting);
    assert_eq!(
        (got, e["error"]["code"].as_str()),
        (Some(exit), Some(code)),
        "{e}"
    );
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "{e}");
}

/// `connect NAME` from `d` is refused as `not_online`; its message with the
/// name replaced by `NAME`.
fn not_online(d: &TestDaemon, name: &str) -> String {
    let (code, e) = d.ctl_json(&["connect", name]);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (6, Some("not_online")),
        "{e}"
    );
    e["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .replace(name, "NAME")
}

/// The exit code and JSON document of a finished `connecting`.
fn outcome(child: Child) -> (Option<i32>, Value) {
    let out = child.wait_with_output().unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), doc)
}

/// Waits until `d` holds `n` pending requests.
fn wait_pending(d: &TestDaemon, n: u64) {
    wait_for(DEADLINE, &format!("{n} pending requests"), || {
        (d.status()["pending"] == n).then_some(())
    });
}

fn peers(d: &TestDaemon) -> Vec<String> {
    let (_, s) = d.ctl_json(&["sessions"]);
    s["sessions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["peer"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// alice (instance A) invites bob (instance B), bob accepts, and they talk
/// both ways over a direct session.
#[test]
fn an_invitation_accepted_on_another_instance_opens_a_session() {
    let pg = TestPostgres::start();
    let (a, b) = pair(&pg, &[]);
    let alice = TestDaemon::online(&a, "alice");
    let bob = TestDaemon::online(&b, "bob");
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "bob's request from alice", || {
        let (_, r) = bob.ctl_json(&["requests"]);
        (r["requests"].as_array()?.first()?["from"] == "alice").then_some(())
    });
    let (code, doc) = bob.ctl_json(&["accept", "alice"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "alice's session with bob", || {
        peers(&alice).iter().any(|p| p == "bob").then_some(())
    });
    let (_, s) = alice.ctl_json(&["sessions"]);
    assert_eq!(s["sessions"][0]["path"], "direct", "{s}");
    assert_eq!(alice.ctl_json(&["send", "bob", "hello across"]).0, 0);
    assert_eq!(bob.ctl_json(&["send", "alice", "and back"]).0, 0);
    assert_eq!(bob.inbox_texts(&[]), ["hello across"]);
    assert_eq!(alice.inbox_texts(&[]), ["and back"]);
}

/// bob's "no" on instance B reaches alice waiting on instance A.
#[test]
fn a_rejection_crosses_instances() {
    let pg = TestPostgres::start();
    let (a, b) = pair(&pg, &[]);
    let alice = TestDaemon::online(&a, "alice");
    let bob = TestDaemon::online(&b, "bob");
    let waiting = connecting(&alice, "bob", &[]);
    wait_pending(&bob, 1);
    let (code, doc) = bob.ctl_json(&["reject", "alice"]);
    assert_eq!((code, doc["accepted"].as_bool()), (0, Some(false)), "{doc}");
    refused(waiting, 5, "rejected", "");
    assert!(peers(&alice).is_empty());
}

/// A user online on another instance gets the invitation; once offline
/// everywhere, inviting them says `not_online`, exactly as for a name
/// nobody has (no account probing).
#[test]
fn an_invitation_to_a_user_offline_everywhere_is_not_online() {
    let pg = TestPostgres::start();
    let (a, b) = pair(&pg, &[]);
    let alice = TestDaemon::online(&a, "alice");
    let bob = TestDaemon::online(&b, "bob");
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--no-wait"]);
    assert_eq!(code, 0, "bob is online on the other instance: {doc}");
    wait_pending(&bob, 1);
    assert_eq!(bob.ctl_json(&["logout"]).0, 0);
    let offline = not_online(&alice, "bob");
    let unknown = not_online(&alice, "nobody");
    assert_eq!(offline, unknown, "an offline account looks like no account");
}

/// bob logging out on instance B ends alice's invitation on instance A:
/// she is told he went offline, not left waiting.
#[test]
fn a_logout_ends_the_invitation_across_instances() {
    let pg = TestPostgres::start();
    let (a, b) = pair(&pg, &[]);
    let alice = TestDaemon::online(&a, "alice");
    let bob = TestDaemon::online(&b, "bob");
    let waiting = connecting(&alice, "bob", &["--timeout", "2m"]);
    wait_pending(&bob, 1);
    assert_eq!(bob.ctl_json(&["logout"]).0, 0);
    refused(waiting, 6, "not_online", "went offline");
}

/// An unanswered invitation across instances expires for both sides:
/// alice's wait ends with the server's expiry, bob's request is withdrawn.
#[test]
fn an_unanswered_invitation_expires_across_instances() {
    let pg = TestPostgres::start();
    let (a, b) = pair(&pg, &["--invitation-ttl", "10s"]);
    let alice = TestDaemon::online(&a, "alice");
    let bob = TestDaemon::online(&b, "bob");
    // alice would wait longer than the invitation lives: the answer she
    // gets is the server's expiry ("did not answer in time"), not her own
    // timeout ("did not answer within 25s").
    let waiting = connecting(&alice, "bob", &["--timeout", "25s"]);
    wait_pending(&bob, 1);
    refused(waiting, 5, "timeout", "did not answer in time");
    wait_for(
        Duration::from_secs(30),
        "bob's request to be withdrawn",
        || (bob.status()["pending"] == 0).then_some(()),
    );
}

/// An invitation is bound to the invitee's session: bob logging in again
/// on alice's instance replaces his session on the other one, which ends
/// the invitation (alice is told he went offline), and the new session
/// holds nothing to answer.
#[test]
fn a_login_elsewhere_ends_the_invitation_of_the_replaced_session() {
    let pg = TestPostgres::start();
    let (a, b) = pair(&pg, &[]);
    let alice = TestDaemon::online(&a, "alice");
    let bob = TestDaemon::online(&b, "bob");
    let waiting = connecting(&alice, "bob", &["--timeout", "2m"]);
    wait_pending(&bob, 1);
    let again = TestDaemon::start(FAST_RECONNECT);
    let (code, doc) = again.login(&a, "bob", "bob-password");
    assert_eq!(code, 0, "{doc}");
    bob.wait_state("replaced", DEADLINE);
    refused(waiting, 6, "not_online", "went offline");
    assert_eq!(again.status()["pending"], 0);
    let (code, e) = again.ctl_json(&["accept", "alice"]);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (1, Some("no_request")),
        "{e}"
    );
}

/// The invitee's instance is killed: the invitation still ends at its
/// expiry (the surviving instance runs it) and alice is told.
#[test]
fn an_invitation_to_a_killed_instance_still_expires() {
    let pg = TestPostgres::start();
    let (a, mut b) = pair(&pg, &["--invitation-ttl", "10s"]);
    let alice = TestDaemon::online(&a, "alice");
    let bob = TestDaemon::online(&b, "bob");
    let waiting = connecting(&alice, "bob", &["--timeout", "25s"]);
    wait_pending(&bob, 1);
    b.kill9();
    refused(waiting, 5, "timeout", "did not answer in time");
}

/// The limit on invitations one user receives holds across instances:
/// 10 from alice (instance A) and 10 from carol (instance B) fill bob's
/// 20 a minute, so dave's on A is refused although A delivered only 10.
#[test]
fn the_invitees_limit_counts_every_instance() {
    let pg = TestPostgres::start();
    let (a, b) = pair(&pg, &[]);
    let _bob = TestDaemon::online(&b, "bob");
    for (inviter, server) in [("alice", &a), ("carol", &b)] {
        let d = TestDaemon::online(server, inviter);
        for i in 0..10 {
            let (code, doc) = d.ctl_json(&["connect", "bob", "--no-wait"]);
            assert_eq!(code, 0, "{inviter}'s invitation {i}: {doc}");
        }
    }
    let dave = TestDaemon::online(&a, "dave");
    let (code, e) = dave.ctl_json(&["connect", "bob", "--no-wait"]);
    assert_ne!(code, 0, "{e}");
    assert_eq!(e["error"]["code"], "rate_limited", "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("bob has too many invitations"), "{e}");
}

/// The inviter's instance is killed and its lease runs out: bob's accept
/// says alice is no longer online, and hands out nothing.
#[test]
fn accepting_after_the_inviters_instance_died_says_no_longer_online() {
    let pg = TestPostgres::start();
    let (mut a, b) = pair(&pg, &["--presence-lease", "3s"]);
    let alice = TestDaemon::online(&a, "alice");
    let bob = TestDaemon::online(&b, "bob");
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    wait_pending(&bob, 1);
    a.kill9();
    wait_for(DEADLINE, "alice's lease to run out", || {
        let (_, doc) = bob.ctl_json(&["list"]);
        let users = doc["users"].as_array()?.clone();
        (!users.iter().any(|u| u["user"] == "alice")).then_some(())
    });
    let (code, e) = bob.ctl_json(&["accept", "alice"]);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (6, Some("not_online")),
        "{e}"
    );
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no longer online"), "{e}");
    assert!(peers(&bob).is_empty());
}

//! Local time in human output, RFC 3339 UTC in JSON (SPEC §11), and the
//! greeting's hints on stderr.

use std::process::{Command, Output};

use p2p_testkit::{bin, wait_for, TestDaemon, TestServer, DEADLINE};
use serde_json::Value;

/// `p2pctl ARGS` against `d` with `TZ=tz`.
fn ctl_tz(d: &TestDaemon, tz: &str, args: &[&str]) -> Output {
    let out = Command::new(bin("p2pctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(args)
        .env("TZ", tz)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A server; alice and bob online with a session, and a message from bob
/// in alice's inbox.
fn pair_with_a_message() -> (TestServer, TestDaemon, TestDaemon) {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let bob = TestDaemon::online(&server, "bob");
    assert_eq!(alice.ctl_json(&["connect", "bob", "--no-wait"]).0, 0);
    wait_for(DEADLINE, "bob's pending request", || {
        (bob.status()["pending"] == 1).then_some(())
    });
    assert_eq!(bob.ctl_json(&["accept", "alice"]).0, 0);
    wait_for(DEADLINE, "alice's session", || {
        (alice.status()["sessions"] == 1).then_some(())
    });
    assert!(bob.ctl(&["send", "alice", "hi alice"]).status.success());
    (server, alice, bob)
}

#[test]
fn tz_changes_human_times_and_leaves_json_in_utc() {
    let (_server, alice, _bob) = pair_with_a_message();
    let new_york = |s: &str| s.contains(" EST") || s.contains(" EDT");
    for args in [
        &["inbox", "--all"][..],
        &["sessions"],
        &["status"],
        &["list"],
    ] {
        let ny = stdout(&ctl_tz(&alice, "America/New_York", args));
        let utc = stdout(&ctl_tz(&alice, "UTC", args));
        assert!(new_york(&ny), "{args:?} in New York time:\n{ny}");
        assert!(
            !new_york(&utc) && utc.contains(" UTC"),
            "{args:?} in UTC:\n{utc}"
        );
    }
    // JSON: the same RFC 3339 UTC values whatever TZ says.
    let json = |tz: &str, args: &[&str]| -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_slice(&ctl_tz(&alice, tz, &all).stdout).unwrap()
    };
    for args in [&["inbox", "--all"][..], &["sessions"]] {
        let (ny, utc) = (json("America/New_York", args), json("UTC", args));
        assert_eq!(ny, utc, "{args:?}");
    }
    let inbox = json("America/New_York", &["inbox", "--all"]);
    let at = inbox["messages"][0]["at"].as_str().unwrap();
    assert!(at.ends_with('Z'), "{at}");
    let sessions = json("America/New_York", &["sessions"]);
    assert!(sessions["sessions"][0]["since"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
}

#[test]
fn a_pending_invitation_is_hinted_on_stderr_in_human_mode_only() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let bob = TestDaemon::online(&server, "bob");
    assert_eq!(alice.ctl_json(&["connect", "bob", "--no-wait"]).0, 0);
    wait_for(DEADLINE, "bob's pending request", || {
        (bob.status()["pending"] == 1).then_some(())
    });
    let hint = "alice wants to talk: p2pctl accept alice";
    let status = ctl_tz(&bob, "UTC", &["status"]);
    assert!(stderr(&status).contains(hint), "{status:?}");
    assert!(!stdout(&status).contains(hint), "hints go to stderr only");
    let list = ctl_tz(&bob, "UTC", &["list"]);
    assert!(stderr(&list).contains(hint), "{list:?}");
    // Not with --json, and not where the invitation is the point.
    for args in [&["--json", "status"][..], &["requests"]] {
        let out = ctl_tz(&bob, "UTC", args);
        assert!(!stderr(&out).contains("wants to talk"), "{args:?}: {out:?}");
    }
    // The requests listing says how long is left, in words.
    let requests = stdout(&ctl_tz(&bob, "UTC", &["requests"]));
    assert!(
        requests.contains(" UTC (in ") && requests.contains("s)"),
        "{requests}"
    );
}

//! `send USER -` that stops at an error after some lines were delivered
//! says how many (stderr) and which (`--json`: `sent` next to `error`).

use std::io::Write;
use std::process::{Command, Stdio};

use p2p_testkit::{bin, wait_for, TestDaemon, TestServer, DEADLINE};
use serde_json::Value;

fn pair() -> (TestServer, TestDaemon, TestDaemon) {
    let server = TestServer::start(&[]);
    let mut it = ["alice", "bob"]
        .into_iter()
        .map(|u| TestDaemon::online(&server, u));
    let (alice, bob) = (it.next().unwrap(), it.next().unwrap());
    assert_eq!(alice.ctl_json(&["connect", "bob", "--no-wait"]).0, 0);
    wait_for(DEADLINE, "bob's request", || {
        (bob.status()["pending"] == 1).then_some(())
    });
    assert_eq!(bob.ctl_json(&["accept", "alice"]).0, 0);
    (server, alice, bob)
}

/// A line over 64 KiB in the middle of stdin: everything before it is
/// delivered (even when it was read in the same batch as the long line),
/// nothing after it is, and both outputs say so.
#[test]
fn a_long_line_midway_reports_the_lines_delivered_before_it() {
    let (_server, alice, bob) = pair();
    let before: Vec<String> = (1..=20).map(|i| format!("line {i}")).collect();
    let input = format!(
        "{}\n{}\nafter 1\nafter 2\n",
        before.join("\n"),
        "x".repeat(70 * 1024)
    );

    let out = alice.ctl_stdin(&["--json", "send", "bob", "-"], &input);
    assert_eq!(out.status.code(), Some(2), "too_large is a usage error");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "too_large", "{doc}");
    let sent = doc["sent"]
        .as_array()
        .expect("the delivered ones are listed");
    assert_eq!(sent.len(), 20, "{doc}");
    assert!(sent.iter().all(|s| s["to"] == "bob"));
    let ids: Vec<u64> = sent.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    assert_eq!(bob.inbox_texts(&["--all"]), before);
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("line 21 is 71680 bytes"));

    // The same for people: the error, then how many made it.
    let out = alice.ctl_stdin(&["send", "bob", "-"], &input);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("20 of 21 lines delivered before the error; nothing after line 20 was sent"),
        "{err}"
    );
    assert_eq!(bob.inbox_texts(&["--all"]).len(), 40);
}

/// The session ends after the first lines were acknowledged: those are
/// reported, and the lines sent after it are not counted as delivered.
/// (`--now`: without it, bob being a contact, the rest would be queued.)
#[test]
fn a_session_that_ends_midway_reports_what_was_acknowledged() {
    let (_server, alice, bob) = pair();
    let mut send = Command::new(bin("p2pctl"))
        .args(["--socket", alice.socket().to_str().unwrap()])
        .args(["--json", "send", "--now", "bob", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = send.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\nthree\nfour\nfive\n").unwrap();
    wait_for(DEADLINE, "five stored at bob", || {
        (bob.inbox_texts(&["--all"]).len() == 5).then_some(())
    });
    // bob stored them before he says goodbye, and acknowledged them
    // before the goodbye goes out (one ordered link).
    assert_eq!(bob.ctl_json(&["disconnect", "alice"]).0, 0);
    wait_for(DEADLINE, "alice's session to end", || {
        let (_, s) = alice.ctl_json(&["sessions"]);
        s["sessions"].as_array()?.is_empty().then_some(())
    });
    stdin.write_all(b"six\nseven\n").unwrap();
    drop(stdin);
    let out = send.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(6), "no session");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "no_session", "{doc}");
    assert_eq!(doc["sent"].as_array().unwrap().len(), 5, "{doc}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("5 of "), "{err}");
    assert!(
        err.contains("lines delivered before the error; lines 6-"),
        "{err}"
    );
}

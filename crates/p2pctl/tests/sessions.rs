//! Peer sessions end to end (SPEC §5): invitations through the real server,
//! direct Noise links between real daemons, durable inboxes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use p2p_testkit::{bin, wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};
use serde_json::Value;

/// A server with alice and bob (and carol) logged in.
fn trio() -> (TestServer, TestDaemon, TestDaemon, TestDaemon) {
    let server = TestServer::start(&[]);
    let daemons: Vec<TestDaemon> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| TestDaemon::online(&server, u))
        .collect();
    let mut it = daemons.into_iter();
    let (a, b, c) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    (server, a, b, c)
}

/// alice invites bob (--no-wait), bob sees the request and accepts.
fn connect(alice: &TestDaemon, bob: &TestDaemon) {
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["invited"]["from"], "bob");
    wait_for(DEADLINE, "bob's pending request", || {
        let (_, r) = bob.ctl_json(&["requests"]);
        (r["requests"].as_array()?.first()?["from"] == "alice").then_some(())
    });
    let (code, doc) = bob.ctl_json(&["accept", "alice"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["session"]["peer"], "alice");
    wait_for(DEADLINE, "alice's session", || {
        let (_, s) = alice.ctl_json(&["sessions"]);
        (s["sessions"].as_array()?.first()?["peer"] == "bob").then_some(())
    });
}

#[test]
fn invite_accept_and_talk_both_ways_in_order() {
    let (_server, alice, bob, _carol) = trio();
    connect(&alice, &bob);
    let (_, s) = alice.ctl_json(&["sessions"]);
    assert_eq!(s["sessions"][0]["initiator"], true);
    assert_eq!(s["sessions"][0]["path"], "direct");
    let status = alice.status();
    assert_eq!(
        (status["direct"].as_u64(), status["relayed"].as_u64()),
        (Some(1), Some(0))
    );
    let human = String::from_utf8(alice.ctl(&["sessions"]).stdout).unwrap();
    assert!(
        human.contains("PATH") && human.contains(" direct "),
        "{human}"
    );
    let human = String::from_utf8(alice.ctl(&["status"]).stdout).unwrap();
    assert!(
        human.contains("sessions  1 (1 direct, 0 relayed)"),
        "{human}"
    );
    let (_, s) = bob.ctl_json(&["sessions"]);
    assert_eq!(
        (
            s["sessions"][0]["peer"].as_str(),
            s["sessions"][0]["initiator"].as_bool()
        ),
        (Some("alice"), Some(false))
    );

    let (code, sent) = alice.ctl_json(&["send", "bob", "hello", "bob"]);
    assert_eq!(code, 0, "{sent}");
    assert_eq!(sent["sent"][0]["to"], "bob");
    assert_eq!(sent["sent"][0]["id"], 1);
    assert_eq!(bob.ctl_json(&["send", "alice", "hi alice"]).0, 0);
    assert_eq!(bob.inbox_texts(&[]), ["hello bob"]);
    assert_eq!(alice.inbox_texts(&[]), ["hi alice"]);
    assert!(
        bob.inbox_texts(&[]).is_empty(),
        "read messages are not shown again"
    );
    assert_eq!(
        bob.inbox_texts(&["--all", "--from", "alice"]),
        ["hello bob"]
    );

    // 1,000 streamed lines arrive complete and in order.
    let lines: Vec<String> = (1..=1000).map(|i| format!("line {i}")).collect();
    let out = alice.ctl_stdin(&["--json", "send", "bob", "-"], &(lines.join("\n") + "\n"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["sent"].as_array().unwrap().len(), 1000);
    assert_eq!(bob.inbox_texts(&[]), lines);
    let status = bob.status();
    assert_eq!(
        (status["sessions"].as_u64(), status["unread"].as_u64()),
        (Some(1), Some(0))
    );
    // Message bodies never reach the logs, at any level (tests run at debug).
    for log in [alice.log(), bob.log()] {
        assert!(
            !log.contains("hello bob") && !log.contains("line 500"),
            "a message body was logged"
        );
    }
}

#[test]
fn exact_bytes_and_the_size_limit() {
    let (_server, alice, bob, _carol) = trio();
    connect(&alice, &bob);
    let big: String = "é😀x".repeat(60 * 1024 / 7);
    assert!(big.len() > 60_000 && big.len() <= 65_536);
    let tricky = "tabs\tquotes\"backslash\\ and \u{1} control, RTL \u{202e}, NUL-free";
    for text in [big.as_str(), tricky] {
        let (code, doc) = alice.ctl_json(&["send", "bob", text]);
        assert_eq!(code, 0, "{doc}");
    }
    assert_eq!(bob.inbox_texts(&[]), [big.clone(), tricky.to_string()]);
    let too_big = "x".repeat(65 * 1024 + 1);
    let (code, e) = alice.ctl_json(&["send", "bob", &too_big]);
    assert_eq!(code, 2, "{e}");
    assert_eq!(e["error"]["code"], "too_large");
    assert!(
        bob.inbox_texts(&["--all"]).len() == 2,
        "nothing of it was delivered"
    );
}

#[test]
fn rejected_unanswered_and_bad_requests() {
    let (_server, alice, bob, carol) = trio();
    // bob says no: alice exits 5 and has no session.
    let mut waiting = Command::new(bin("p2pctl"));
    let wait = alice_ctl(&alice, &mut waiting, &["--json", "connect", "bob"]);
    wait_for(DEADLINE, "bob's request", || {
        (bob.status()["pending"] == 1).then_some(())
    });
    let (code, doc) = bob.ctl_json(&["reject", "alice"]);
    assert_eq!((code, doc["accepted"].as_bool()), (0, Some(false)));
    let out = wait.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["error"]["code"], "rejected");
    let (code, e) = alice.ctl_json(&["send", "bob", "hello?"]);
    assert_eq!((code, e["error"]["code"].as_str()), (6, Some("no_session")));

    // carol never answers: alice's connect times out with exit 5.
    let (code, e) = alice.ctl_json(&["connect", "carol", "--timeout", "1s"]);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (5, Some("timeout")),
        "{e}"
    );
    assert_eq!(carol.status()["pending"], 1);

    // Accepting or rejecting what was never asked is an error that changes nothing.
    let (code, e) = bob.ctl_json(&["accept", "carol"]);
    assert_eq!((code, e["error"]["code"].as_str()), (1, Some("no_request")));
    let (code, e) = bob.ctl_json(&["reject", "nobody"]);
    assert_eq!((code, e["error"]["code"].as_str()), (1, Some("no_request")));
    // Inviting someone offline or unknown is exit 6 at once.
    let (code, e) = alice.ctl_json(&["connect", "dave"]);
    assert_eq!((code, e["error"]["code"].as_str()), (6, Some("not_online")));
    let (code, _) = alice.ctl_json(&["connect", "alice"]);
    assert_eq!(code, 2, "inviting yourself is refused");
    let (code, _) = alice.ctl_json(&["disconnect", "bob"]);
    assert_eq!(code, 6);
}

fn alice_ctl(alice: &TestDaemon, cmd: &mut Command, args: &[&str]) -> std::process::Child {
    cmd.args(["--socket", alice.socket().to_str().unwrap()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn watch_reports_request_connected_message_disconnected_in_order() {
    let (_server, alice, bob, _carol) = trio();
    let mut watch = Command::new(bin("p2pctl"));
    let mut child = alice_ctl(&bob, &mut watch, &["--json", "watch"]);
    let lines = p2p_testkit::Lines::new(child.stdout.take().unwrap());
    let next = || lines.next_json("alice's next watch event");
    assert_eq!(next()["event"], "server", "current state first");
    connect(&alice, &bob);
    assert_eq!(alice.ctl_json(&["send", "bob", "one"]).0, 0);
    assert_eq!(alice.ctl_json(&["send", "bob", "two"]).0, 0);
    assert_eq!(alice.ctl_json(&["disconnect", "bob"]).0, 0);
    let events: Vec<Value> = (0..5).map(|_| next()).collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["request", "connected", "message", "message", "disconnected"]
    );
    assert_eq!(events[0]["from"], "alice");
    assert_eq!(events[1]["peer"], "alice");
    assert_eq!(
        (events[2]["text"].as_str(), events[3]["text"].as_str()),
        (Some("one"), Some("two"))
    );
    assert_eq!(events[2]["from"], "alice");
    assert!(humantime::parse_rfc3339(events[2]["at"].as_str().unwrap()).is_ok());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sessions_survive_the_server_going_away() {
    let (mut server, alice, bob, _carol) = trio();
    connect(&alice, &bob);
    server.kill9();
    wait_for(DEADLINE, "alice to notice", || {
        (alice.state() == "connecting").then_some(())
    });
    assert_eq!(alice.ctl_json(&["send", "bob", "server is down"]).0, 0);
    assert_eq!(bob.ctl_json(&["send", "alice", "still here"]).0, 0);
    server.restart();
    alice.wait_state("online", DEADLINE);
    assert_eq!(alice.ctl_json(&["send", "bob", "server is back"]).0, 0);
    assert_eq!(bob.inbox_texts(&[]), ["server is down", "server is back"]);
    assert_eq!(alice.inbox_texts(&[]), ["still here"]);
}

#[test]
fn kill_9_keeps_every_acknowledged_message() {
    let (_server, alice, mut bob, _carol) = trio();
    connect(&alice, &bob);
    let lines: Vec<String> = (1..=200).map(|i| format!("m{i}")).collect();
    let out = alice.ctl_stdin(&["send", "bob", "-"], &(lines.join("\n") + "\n"));
    assert_eq!(out.status.code(), Some(0));
    bob.kill9();
    wait_for(DEADLINE, "alice to see the session end", || {
        let (_, s) = alice.ctl_json(&["sessions"]);
        s["sessions"].as_array()?.is_empty().then_some(())
    });
    // bob is a contact: a plain send is queued, `--now` refuses (SPEC §11).
    let (code, e) = alice.ctl_json(&["send", "--now", "bob", "anyone?"]);
    assert_eq!((code, e["error"]["code"].as_str()), (6, Some("no_session")));
    let (code, q) = alice.ctl_json(&["send", "bob", "later"]);
    assert_eq!((code, q["sent"][0]["status"].as_str()), (0, Some("queued")));
    bob.restart();
    assert_eq!(
        bob.inbox_texts(&[]),
        lines,
        "every acknowledged message survived kill -9"
    );
}

#[test]
fn auto_accept_and_key_memory() {
    let server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    server.add_user("bob", "bob-password");
    let alice = TestDaemon::start(FAST_RECONNECT);
    let bob = TestDaemon::start(&format!("{FAST_RECONNECT}auto_accept = [\"alice\"]\n"));
    assert_eq!(alice.login(&server, "alice", "alice-password").0, 0);
    assert_eq!(bob.login(&server, "bob", "bob-password").0, 0);
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--timeout", "20s"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["connected"]["peer"], "bob");
    let known: Value =
        serde_json::from_slice(&std::fs::read(alice.state_dir().join("known_peers.json")).unwrap())
            .unwrap();
    assert_eq!(known["bob"], bob.status()["public_key"]);

    // bob's key changes (new identity): alice is warned loudly.
    let mut watch = Command::new(bin("p2pctl"));
    let mut child = alice_ctl(&alice, &mut watch, &["--json", "watch"]);
    let lines = p2p_testkit::Lines::new(child.stdout.take().unwrap());
    assert_eq!(alice.ctl_json(&["disconnect", "bob"]).0, 0);
    drop(bob);
    let bob2 = TestDaemon::start(&format!("{FAST_RECONNECT}auto_accept = [\"alice\"]\n"));
    assert_eq!(bob2.login(&server, "bob", "bob-password").0, 0);
    assert_eq!(alice.ctl_json(&["connect", "bob", "--timeout", "20s"]).0, 0);
    let changed = wait_for(Duration::from_secs(30), "key_changed event", || {
        let ev: Value = serde_json::from_str(&lines.try_next_line(p2p_testkit::POLL)?).ok()?;
        (ev["event"] == "key_changed").then_some(ev)
    });
    assert_eq!(changed["peer"], "bob");
    assert_eq!(changed["new_key"], bob2.status()["public_key"]);
    assert!(alice.log().contains("PEER KEY CHANGED"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn chat_in_a_pipe_and_inbox_follow() {
    let (_server, alice, bob, _carol) = trio();
    // bob follows his inbox as a script would: one JSON object per line.
    let mut follow = Command::new(bin("p2pctl"));
    let mut child = alice_ctl(&bob, &mut follow, &["--json", "inbox", "--follow"]);
    let lines = p2p_testkit::Lines::new(child.stdout.take().unwrap());
    // alice chats from a pipe; bob's daemon is set to accept her.
    let accept = std::thread::spawn({
        let socket = bob.socket();
        move || {
            wait_for(DEADLINE, "alice's request", || {
                let out = Command::new(bin("p2pctl"))
                    .args(["--socket", socket.to_str().unwrap(), "accept", "alice"])
                    .output()
                    .ok()?;
                out.status.success().then_some(())
            })
        }
    });
    let out = alice.ctl_stdin(&["chat", "bob"], "hi bob\nhow are you?\n");
    accept.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        let v = lines.next_json("a followed message in bob's inbox");
        assert_eq!(v["kind"], "message");
        assert_eq!(v["from"], "alice");
        got.push(v["text"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ["hi bob", "how are you?"]);
    // Followed messages are marked read once they were written out.
    wait_for(DEADLINE, "followed messages to be marked read", || {
        (bob.status()["unread"] == 0).then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn big_requests_and_big_inboxes() {
    let (_server, alice, bob, _carol) = trio();
    connect(&alice, &bob);
    // Words that join to far over 64 KiB: refused at once, nothing sent.
    let word = "x".repeat(60_000);
    let words: Vec<&str> = std::iter::repeat_n(word.as_str(), 10).collect();
    let mut args = vec!["send", "bob"];
    args.extend(words);
    let (code, e) = alice.ctl_json(&args);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (2, Some("too_large")),
        "{e}"
    );
    // A raw control line over the daemon's limit gets an answer, not silence.
    let huge = format!(
        r#"{{"id":5,"cmd":"send","user":"bob","texts":["{}"]}}"#,
        "y".repeat(600 * 1024)
    );
    assert_eq!(bob.request(&huge)["error"]["code"], "too_large");
    // Lines that grow sixfold when escaped still go, in batches that fit.
    let control = "\u{1}".repeat(60_000);
    let out = alice.ctl_stdin(
        &["send", "bob", "-"],
        &format!("{control}\n{control}\n{control}\n"),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        bob.inbox_texts(&[]),
        [control.clone(), control.clone(), control]
    );
    // An inbox larger than one page (2 MiB) comes back whole, in one document.
    let line = "z".repeat(60_000);
    let lines: Vec<&str> = std::iter::repeat_n(line.as_str(), 45).collect();
    let out = alice.ctl_stdin(&["send", "bob", "-"], &(lines.join("\n") + "\n"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(bob.status()["unread"], 45);
    assert_eq!(bob.inbox_texts(&[]).len(), 45);
    assert_eq!(bob.status()["unread"], 0);
}

#[test]
fn shutdown_does_not_wait_for_a_pending_connect() {
    let (_server, mut alice, _bob, carol) = trio();
    let mut cmd = Command::new(bin("p2pctl"));
    let waiting = alice_ctl(
        &alice,
        &mut cmd,
        &["--json", "connect", "carol", "--timeout", "1h"],
    );
    wait_for(DEADLINE, "carol's request", || {
        (carol.status()["pending"] == 1).then_some(())
    });
    alice.terminate();
    // Far sooner than the hour the connect would wait (and than the 65 s default).
    let status = alice.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let out = waiting.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn crossed_invitations_leave_one_working_session() {
    let server = TestServer::start(&[]);
    let daemons: Vec<TestDaemon> = [("alice", "bob"), ("bob", "alice")]
        .iter()
        .map(|(me, other)| {
            server.add_user(me, &format!("{me}-password"));
            let d = TestDaemon::start(&format!("{FAST_RECONNECT}auto_accept = [\"{other}\"]\n"));
            assert_eq!(d.login(&server, me, &format!("{me}-password")).0, 0);
            d
        })
        .collect();
    let (alice, bob) = (&daemons[0], &daemons[1]);
    // Both ask at the same moment; both invitations are accepted.
    let (mut c1, mut c2) = (Command::new(bin("p2pctl")), Command::new(bin("p2pctl")));
    let a = alice_ctl(
        alice,
        &mut c1,
        &["--json", "connect", "bob", "--timeout", "20s"],
    );
    let b = alice_ctl(
        bob,
        &mut c2,
        &["--json", "connect", "alice", "--timeout", "20s"],
    );
    assert_eq!(a.wait_with_output().unwrap().status.code(), Some(0));
    assert_eq!(b.wait_with_output().unwrap().status.code(), Some(0));
    // Whatever crossed, both end with one session, the same one, and it works.
    let (_, s) = alice.ctl_json(&["sessions"]);
    assert_eq!(s["sessions"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(alice.ctl_json(&["send", "bob", "after the crossing"]).0, 0);
    assert_eq!(bob.ctl_json(&["send", "alice", "and back"]).0, 0);
    assert_eq!(bob.inbox_texts(&[]), ["after the crossing"]);
    assert_eq!(alice.inbox_texts(&[]), ["and back"]);
}

#[test]
fn inbox_follow_delivers_a_backlog_larger_than_a_page() {
    let (_server, alice, bob, _carol) = trio();
    connect(&alice, &bob);
    let line = "q".repeat(60_000);
    let lines: Vec<&str> = std::iter::repeat_n(line.as_str(), 45).collect();
    let out = alice.ctl_stdin(&["send", "bob", "-"], &(lines.join("\n") + "\n"));
    assert_eq!(out.status.code(), Some(0));
    // Straight to the daemon: one `inbox --follow` over 2.7 MB of unread text.
    let mut s = std::os::unix::net::UnixStream::connect(bob.socket()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    std::io::Write::write_all(&mut s, b"{\"id\":1,\"cmd\":\"inbox\",\"follow\":true}\n").unwrap();
    let mut r = BufReader::new(s).lines();
    let _hello = r.next().unwrap().unwrap();
    let first: Value = serde_json::from_str(&r.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        first["result"]["more"], true,
        "the first page is not all of it"
    );
    let mut seen = first["result"]["messages"].as_array().unwrap().len();
    while seen < 45 {
        let ev: Value = serde_json::from_str(&r.next().unwrap().unwrap()).unwrap();
        assert_eq!(ev["event"], "message");
        seen += 1;
    }
    wait_for(DEADLINE, "the followed backlog to be marked read", || {
        (bob.status()["unread"] == 0).then_some(())
    });
}

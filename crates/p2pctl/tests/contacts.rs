//! Contacts (SPEC §11, standing consent) end to end: real server, real
//! daemons, real Noise links. Sessions between contacts come back by
//! themselves; forget and block end the consent; safety numbers match on
//! both sides; a verified contact whose key changed is held until `trust`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use p2p_testkit::{bin, wait_for, Lines, TestDaemon, TestServer, DEADLINE};
use serde_json::Value;

/// Long enough for a daemon to log in again and its contact keeper to
/// bring the session back (a few seconds on a quiet machine).
const COME_BACK: Duration = Duration::from_secs(60);

/// A server with alice and bob logged in, and a session between them
/// (bob accepted alice's invitation: they are contacts).
fn contacts() -> (TestServer, TestDaemon, TestDaemon) {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let bob = TestDaemon::online(&server, "bob");
    invite_and_accept(&alice, "alice", &bob, "bob");
    (server, alice, bob)
}

/// `from` invites `to` (--no-wait), `to` sees the request and accepts.
fn invite_and_accept(from: &TestDaemon, from_name: &str, to: &TestDaemon, to_name: &str) {
    let (code, doc) = from.ctl_json(&["connect", to_name, "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "the pending request", || {
        let (_, r) = to.ctl_json(&["requests"]);
        (r["requests"].as_array()?.first()?["from"] == from_name).then_some(())
    });
    let (code, doc) = to.ctl_json(&["accept", from_name]);
    assert_eq!(code, 0, "{doc}");
    wait_session(from, to_name, DEADLINE);
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

fn wait_session(d: &TestDaemon, peer: &str, deadline: Duration) {
    wait_for(deadline, &format!("a session with {peer}"), || {
        peers(d).iter().any(|p| p == peer).then_some(())
    });
}

fn wait_no_session(d: &TestDaemon) {
    wait_for(DEADLINE, "no session", || peers(d).is_empty().then_some(()));
}

fn contact<'a>(doc: &'a Value, user: &str) -> Option<&'a Value> {
    doc["contacts"]
        .as_array()?
        .iter()
        .find(|c| c["user"] == user)
}

/// `p2pctl --json watch` on `d`, its lines.
fn watch(d: &TestDaemon) -> (Child, Lines) {
    let mut child = Command::new(bin("p2pctl"))
        .args(["--socket", d.socket().to_str().unwrap(), "--json", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Lines::new(child.stdout.take().unwrap());
    // The first line says the watch is subscribed.
    lines.next_line("the watch's first line");
    (child, lines)
}

/// Every event the watch printed so far (it is stopped first).
fn events(mut child: Child, lines: &Lines) -> Vec<Value> {
    let _ = child.kill();
    let _ = child.wait();
    let mut out = Vec::new();
    while let Some(line) = lines.try_next_line(p2p_testkit::POLL) {
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            out.push(v);
        }
    }
    out
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["event"].as_str().map(String::from))
        .collect()
}

#[test]
fn the_session_comes_back_after_both_daemons_and_the_server_restart_without_a_prompt() {
    let (mut server, mut alice, mut bob) = contacts();
    let (_, doc) = alice.ctl_json(&["contacts"]);
    let bob_as_contact = contact(&doc, "bob").expect("bob is alice's contact");
    assert_eq!(bob_as_contact["online"], true);
    assert_eq!(bob_as_contact["verified"], false);
    assert_eq!(bob_as_contact["key"], bob.status()["public_key"]);
    let (_, doc) = bob.ctl_json(&["contacts"]);
    assert!(contact(&doc, "alice").is_some(), "{doc}");
    let human = String::from_utf8(alice.ctl(&["contacts"]).stdout).unwrap();
    let row = human
        .lines()
        .find(|l| l.starts_with("bob "))
        .unwrap_or_default();
    assert!(
        row.contains("online") && row.contains("not verified"),
        "{human}"
    );

    alice.stop();
    bob.stop();
    server.restart();
    alice.restart();
    alice.wait_state("online", DEADLINE);
    let (alice_watch, alice_lines) = watch(&alice);
    bob.restart();
    let (bob_watch, bob_lines) = watch(&bob);

    wait_session(&alice, "bob", COME_BACK);
    wait_session(&bob, "alice", COME_BACK);
    let (_, doc) = alice.ctl_json(&["requests"]);
    assert_eq!(doc["requests"], serde_json::json!([]), "no prompt: {doc}");
    let (_, doc) = bob.ctl_json(&["requests"]);
    assert_eq!(doc["requests"], serde_json::json!([]), "no prompt: {doc}");
    // Contacts survived the restarts.
    let (_, doc) = alice.ctl_json(&["contacts"]);
    assert_eq!(contact(&doc, "bob").unwrap()["online"], true, "{doc}");
    let (_, doc) = bob.ctl_json(&["contacts"]);
    assert_eq!(contact(&doc, "alice").unwrap()["online"], true, "{doc}");

    let alice_events = kinds(&events(alice_watch, &alice_lines));
    let bob_events = kinds(&events(bob_watch, &bob_lines));
    assert!(
        alice_events.contains(&"connected".to_string()),
        "{alice_events:?}"
    );
    for (who, evs) in [("alice", &alice_events), ("bob", &bob_events)] {
        assert!(
            !evs.iter().any(|e| e == "request" || e == "rejected"),
            "{who} saw {evs:?}"
        );
    }
    assert_eq!(peers(&alice), ["bob"], "exactly one session");
    assert_eq!(peers(&bob), ["alice"], "exactly one session");
}

/// Both daemons restart while the server is down, then log in together
/// and may invite each other at once: crossed invitations end with exactly
/// one session on each side, the same one.
#[test]
fn contacts_logging_in_together_end_with_one_session() {
    let (mut server, mut alice, mut bob) = contacts();
    server.stop();
    alice.restart();
    bob.restart();
    server.restart();
    wait_session(&alice, "bob", COME_BACK);
    wait_session(&bob, "alice", COME_BACK);
    assert_eq!(peers(&alice), ["bob"]);
    assert_eq!(peers(&bob), ["alice"]);
    // Both kept the same session: a message goes through.
    let (code, doc) = alice.ctl_json(&["send", "bob", "still here"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(bob.inbox_texts(&[]), ["still here"]);
    let (code, doc) = bob.ctl_json(&["send", "alice", "me too"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(alice.inbox_texts(&[]), ["me too"]);
}

#[test]
fn forget_ends_the_session_and_the_next_invitation_prompts_again() {
    let (_server, alice, bob) = contacts();
    let (code, doc) = alice.ctl_json(&["forget", "bob"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["forgotten"], true);
    wait_no_session(&alice);
    wait_no_session(&bob);
    let (_, doc) = alice.ctl_json(&["contacts"]);
    assert!(contact(&doc, "bob").is_none(), "{doc}");

    let (code, doc) = bob.ctl_json(&["connect", "alice", "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "alice's prompt", || {
        let (_, r) = alice.ctl_json(&["requests"]);
        (r["requests"].as_array()?.first()?["from"] == "bob").then_some(())
    });
    assert!(peers(&alice).is_empty(), "no session without consent");
    let human = String::from_utf8(alice.ctl(&["forget", "carol"]).stdout).unwrap();
    assert!(human.contains("carol was not a contact"), "{human}");
}

#[test]
fn a_blocked_user_learns_nothing_and_unblock_shows_them_again() {
    let (server, alice, bob) = contacts();
    let carol = TestDaemon::online(&server, "carol");
    let (alice_watch, alice_lines) = watch(&alice);
    let (code, doc) = alice.ctl_json(&["block", "bob"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        (doc["forgotten"].as_bool(), doc["blocked"].as_bool()),
        (Some(true), Some(true))
    );
    wait_no_session(&bob);

    // bob's invitation ends exactly like one nobody answers (carol's).
    let blocked = bob.ctl_json(&["connect", "alice", "--timeout", "3s"]);
    let unanswered = bob.ctl_json(&["connect", "carol", "--timeout", "3s"]);
    assert_eq!(blocked.0, 5, "{}", blocked.1);
    assert_eq!(blocked.0, unanswered.0);
    assert_eq!(blocked.1["error"]["code"], unanswered.1["error"]["code"]);
    assert_eq!(
        blocked.1["error"]["message"]
            .as_str()
            .unwrap()
            .replace("alice", "X"),
        unanswered.1["error"]["message"]
            .as_str()
            .unwrap()
            .replace("carol", "X"),
    );
    let (_, doc) = alice.ctl_json(&["requests"]);
    assert_eq!(doc["requests"], serde_json::json!([]), "{doc}");
    let (_, doc) = alice.ctl_json(&["contacts"]);
    assert_eq!(doc["blocked"], serde_json::json!(["bob"]), "{doc}");
    let evs = kinds(&events(alice_watch, &alice_lines));
    assert!(!evs.iter().any(|e| e == "request"), "{evs:?}");
    drop(carol);

    let (code, doc) = alice.ctl_json(&["unblock", "bob"]);
    assert_eq!(code, 0, "{doc}");
    let (_, doc) = alice.ctl_json(&["contacts"]);
    assert_eq!(doc["blocked"], serde_json::json!([]), "{doc}");
    let (code, doc) = bob.ctl_json(&["connect", "alice", "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "alice's prompt", || {
        let (_, r) = alice.ctl_json(&["requests"]);
        (r["requests"].as_array()?.first()?["from"] == "bob").then_some(())
    });
}

/// bob's daemon starts again with a new identity (his identity.json moved
/// away): a new key for the same account.
fn new_identity(bob: &mut TestDaemon) {
    bob.stop();
    let id = bob.state_dir().join("identity.json");
    std::fs::rename(&id, id.with_extension("old")).unwrap();
    bob.restart();
    bob.wait_state("online", DEADLINE);
}

#[test]
fn safety_numbers_match_and_a_verified_contacts_new_key_is_held_until_trust() {
    let (_server, alice, mut bob) = contacts();
    let (code, a) = alice.ctl_json(&["verify", "bob"]);
    assert_eq!(code, 0, "{a}");
    let (_, b) = bob.ctl_json(&["verify", "alice"]);
    let number = a["verify"]["safety_number"].as_str().unwrap();
    assert_eq!(
        number, b["verify"]["safety_number"],
        "the same on both sides"
    );
    assert_eq!(number.split(' ').count(), 12);
    let human = String::from_utf8(alice.ctl(&["verify", "bob"]).stdout).unwrap();
    let groups: Vec<&str> = number.split(' ').collect();
    assert!(human.contains(&groups[..4].join(" ")), "{human}");
    assert!(human.contains("p2pctl verify bob --confirm"), "{human}");
    assert_eq!(a["verify"]["verified"], false);
    let (code, doc) = alice.ctl_json(&["verify", "bob", "--confirm"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["verify"]["verified"], true);
    let (_, doc) = alice.ctl_json(&["contacts"]);
    assert_eq!(contact(&doc, "bob").unwrap()["verified"], true);
    // --qr draws nothing when stdout is not a terminal.
    let out = alice.ctl(&["verify", "bob", "--qr"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\u{2588}'));
    let (code, doc) = alice.ctl_json(&["verify", "carol"]);
    assert_eq!(
        (code, doc["error"]["code"].as_str()),
        (1, Some("not_contact"))
    );

    new_identity(&mut bob);
    wait_no_session(&alice);
    let out = alice.ctl(&["--json", "connect", "bob", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = p2p_testkit::parse_json(&out);
    assert_eq!(doc["error"]["code"], "key_changed", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("p2pctl verify bob") && message.contains("p2pctl trust bob"),
        "{message}"
    );
    wait_for(DEADLINE, "bob held in alice's contacts", || {
        let (_, doc) = alice.ctl_json(&["contacts"]);
        let bob = contact(&doc, "bob")?;
        (bob["held"] == true && bob["verified"] == false).then_some(())
    });
    assert!(peers(&alice).is_empty(), "no session with a held contact");
    // The number shown now is the new key's, and it matches bob's side.
    let (_, a) = alice.ctl_json(&["verify", "bob"]);
    let (_, b) = bob.ctl_json(&["verify", "alice"]);
    assert_eq!(a["verify"]["held"], true);
    assert_eq!(a["verify"]["safety_number"], b["verify"]["safety_number"]);
    assert_ne!(a["verify"]["safety_number"], number);

    let (code, doc) = alice.ctl_json(&["trust", "bob"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["key"], bob.status()["public_key"]);
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--timeout", "20s"]);
    assert_eq!(code, 0, "{doc}");
    wait_session(&bob, "alice", DEADLINE);
}

#[test]
fn an_unverified_contacts_new_key_opens_the_session_and_is_marked() {
    let (_server, alice, mut bob) = contacts();
    new_identity(&mut bob);
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--timeout", "20s"]);
    assert_eq!(code, 0, "{doc}");
    let (_, doc) = alice.ctl_json(&["contacts"]);
    let changed = contact(&doc, "bob").unwrap();
    assert_eq!(changed["key_changed"], true, "{doc}");
    assert_eq!(changed["held"], false, "{doc}");
    assert_eq!(changed["key"], bob.status()["public_key"]);
    // Every command's greeting names bob, so p2pctl can warn about him.
    assert_eq!(
        greeting(&alice)["hello"]["key_changed"],
        serde_json::json!(["bob"])
    );
    // ...and it does, on stderr, for the commands that touch him.
    let warning = "warning: bob's key changed; compare the safety number with p2pctl verify bob";
    let stderr = |args: &[&str]| String::from_utf8_lossy(&alice.ctl(args).stderr).into_owned();
    for args in [
        &["send", "bob", "still you?"][..],
        &["connect", "bob", "--no-wait"],
        &["sessions"],
        &["contacts"],
        &["status"],
    ] {
        assert!(stderr(args).contains(warning), "{args:?}: no warning");
    }
    assert!(
        !stderr(&["list"]).contains(warning),
        "list touches no contact"
    );
    // Confirming the new number clears the warning.
    let (code, doc) = alice.ctl_json(&["verify", "bob", "--confirm"]);
    assert_eq!(code, 0, "{doc}");
    assert!(greeting(&alice)["hello"].get("key_changed").is_none());
    assert!(!stderr(&["status"]).contains(warning));
}

/// The daemon's first line on a new control connection.
fn greeting(d: &TestDaemon) -> Value {
    use std::io::BufRead;
    let s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

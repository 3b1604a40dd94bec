//! `connect`, `chat` and `accept` wording (issue 11): nothing says someone
//! was asked before the name was checked, or when a session is already up;
//! `accept` says what it waits for.

use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn names_and_self_are_checked_before_anyone_is_said_to_be_asked() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    for args in [
        &["connect", "Not A Name"][..],
        &["connect", "alice"],
        &["chat", "Not A Name"],
        &["chat", "alice"],
    ] {
        let out = alice.ctl(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("asked"), "{args:?}: {err}");
    }
    assert!(stderr(&alice.ctl(&["connect", "alice"])).contains("alice is you"));
}

#[test]
fn accept_shows_progress_and_connect_with_a_session_up_says_so() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let bob = TestDaemon::online(&server, "bob");
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "bob's pending request", || {
        let (_, r) = bob.ctl_json(&["requests"]);
        (r["requests"].as_array()?.first()?["from"] == "alice").then_some(())
    });
    let out = bob.ctl(&["accept", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stderr(&out)
            .contains("accepting alice's invitation; waiting for alice's daemon to connect"),
        "{out:?}"
    );
    wait_for(DEADLINE, "alice's session", || {
        let (_, s) = alice.ctl_json(&["sessions"]);
        (s["sessions"].as_array()?.first()?["peer"] == "bob").then_some(())
    });
    let out = alice.ctl(&["connect", "bob"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "already connected to bob\n"
    );
    assert!(!stderr(&out).contains("asked"), "{out:?}");
}

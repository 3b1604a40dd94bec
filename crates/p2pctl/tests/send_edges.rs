//! Empty messages (issue 11): `send USER TEXT` with nothing but blanks is
//! a usage error; `send USER -` skips empty lines and says how many.

use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE};

#[test]
fn empty_messages_are_refused_and_empty_lines_skipped() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let bob = TestDaemon::online(&server, "bob");
    assert_eq!(alice.ctl_json(&["connect", "bob", "--no-wait"]).0, 0);
    wait_for(DEADLINE, "bob's request", || {
        (bob.status()["pending"] == 1).then_some(())
    });
    assert_eq!(bob.ctl_json(&["accept", "alice"]).0, 0);

    for text in ["", "   ", " \t "] {
        let out = alice.ctl(&["send", "bob", text]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        assert!(err.contains("empty"), "{err}");
    }

    let out = alice.ctl_stdin(&["send", "bob", "-"], "one\n\n   \ntwo\n\n");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("delivered 2 messages"), "{stdout}");
    assert!(stderr.contains("skipped 3 empty lines"), "{stderr}");
    assert_eq!(bob.inbox_texts(&[]), ["one", "two"]);
}

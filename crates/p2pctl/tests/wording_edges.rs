//! Words for people (issue 11): `--json` usage errors keep clap's detail,
//! empty lists say so, and `p2p-server user passwd` without a terminal is
//! a usage error like p2pctl's.

use p2p_testkit::{TestDaemon, TestServer, FAST_RECONNECT};

#[test]
fn json_usage_errors_keep_the_detail() {
    let d = TestDaemon::start(FAST_RECONNECT);
    let (code, e) = d.ctl_json(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'frobnicate'"),
        "{e}"
    );
    let (code, e) = d.ctl_json(&["send"]);
    assert_eq!(code, 2);
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("<USER>") && !msg.contains('\n'), "{msg}");
}

#[test]
fn empty_requests_and_sessions_say_so() {
    let server = TestServer::start(&[]);
    let d = TestDaemon::online(&server, "alice");
    let out = d.ctl(&["requests"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no invitations waiting\n"
    );
    let out = d.ctl(&["sessions"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no sessions\n");
}

#[test]
fn server_passwd_without_a_terminal_is_a_usage_error() {
    let server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let out = server.admin(&["user", "passwd", "alice"], "new-password\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--password-stdin"), "{err}");
}

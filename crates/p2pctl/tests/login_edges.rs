//! The rough edges of a first `login` (issue 11): a mistyped address is
//! refused before anything else happens, and a first login to an address
//! where no p2p-server answers is an error instead of an endless
//! background retry (while a server that did let us in before is still
//! retried when it is down).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};

use p2p_testkit::{bin, short_tempdir, TestDaemon, TestServer, FAST_RECONNECT};

#[test]
fn a_mistyped_server_address_is_a_usage_error_before_anything_else() {
    // No daemon at all: the address is checked before the daemon is
    // reached (exit 3) or a password is read.
    let home = short_tempdir();
    for (server, says) in [
        ("127.0.0.1:99999", "99999"),
        ("h:1:2", "more than one ':'"),
        ("", "empty"),
        (":4400", "no host"),
    ] {
        let mut child = Command::new(bin("p2pctl"))
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", home.path())
            .env_remove("P2PD_SOCKET")
            .args([
                "login",
                "--server",
                server,
                "--user",
                "alice",
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It may exit before reading: a broken pipe here is the point.
        let _ = child.stdin.take().unwrap().write_all(b"alice-password\n");
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{server:?}: {err}");
        assert!(
            err.contains("--server") && err.contains(says),
            "{server:?}: {err}"
        );
    }
}

/// A TCP port nothing listens on (bound, then let go).
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn a_first_login_where_no_server_answers_is_an_error_not_a_retry() {
    let d = TestDaemon::start(FAST_RECONNECT);
    let addr = closed_port();
    let (code, e) = d.authenticate("login", &addr, "alice", "alice-password", &[]);
    assert_eq!(code, 4, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("cannot reach {addr}")) && msg.contains("is this a p2p-server?"),
        "{msg}"
    );
    assert!(!msg.contains("keeps trying"), "{msg}");
    let s = d.status();
    assert_eq!(
        s["server"]["state"], "logged_out",
        "no background retry: {s}"
    );

    // Something that accepts and hangs up without the preamble.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let closer = std::thread::spawn(move || {
        let (conn, _) = silent.accept().unwrap();
        drop(conn);
    });
    let (code, e) = d.authenticate("login", &silent_addr, "alice", "alice-password", &[]);
    closer.join().unwrap();
    assert_eq!(code, 4, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is this a p2p-server?"),
        "{e}"
    );
    assert_eq!(d.status()["server"]["state"], "logged_out");
}

#[test]
fn a_server_that_let_us_in_before_is_still_retried_when_down() {
    let mut server = TestServer::start(&[]);
    let d = TestDaemon::online(&server, "alice");
    assert_eq!(d.ctl(&["logout"]).status.code(), Some(0));
    server.stop();
    let (code, e) = d.login(&server, "alice", "alice-password");
    assert_eq!(code, 4, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("keeps trying"), "{msg}");
    assert_eq!(d.status()["server"]["state"], "connecting");
}

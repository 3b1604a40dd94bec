//! The admin socket (SPEC §12): `p2p-server status`, `sessions`, `kick`
//! against the real server, and the uid check.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use p2p_testkit::{bin, parse_json, wait_for, TestDaemon, TestServer};

const WAIT: Duration = Duration::from_secs(20);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn sessions_lists_a_logged_in_user_and_kick_ends_the_session() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");

    let out = server.admin(&["sessions", "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = parse_json(&out);
    let list = doc["sessions"].as_array().expect("a sessions list");
    assert_eq!(list.len(), 1, "{doc}");
    assert_eq!(list[0]["user"], "alice");
    let since = list[0]["since"].as_str().unwrap();
    assert!(since.starts_with("20") && since.ends_with('Z'), "{since}");
    let from = list[0]["address"].as_str().unwrap();
    assert!(from.starts_with("127.0.0.1:"), "{from}");

    let out = server.admin(&["status", "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = parse_json(&out);
    assert_eq!(doc["sessions"], 1, "{doc}");
    assert_eq!(doc["users"], 1, "{doc}");
    assert_eq!(doc["listen"], server.addr.to_string(), "{doc}");
    let out = server.admin(&["status"], "");
    assert!(text(&out.stdout).contains("sessions online: 1"));

    let out = server.admin(&["kick", "alice"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status = alice.wait_state("logged_out", WAIT);
    let why = status["server"]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("p2p-server kick"), "{status}");
    wait_for(WAIT, "the session to be gone", || {
        let out = server.admin(&["sessions"], "");
        text(&out.stdout)
            .contains("no sessions online")
            .then_some(())
    });

    let out = server.admin(&["kick", "alice"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("alice is not online"));
}

/// Even with the file modes opened up, a client of another uid is refused
/// by the server's SO_PEERCRED check.
#[test]
fn the_admin_socket_refuses_another_uid() {
    let server = TestServer::start(&[]);
    let socket = server.data_dir().join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let open = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    open(&server.data_dir(), 0o755);
    open(&socket, 0o666);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("p2p-server"))
        .arg("status")
        .arg("--admin-socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("only the server's own user and root"), "{err}");
    assert!(server.log().contains("refused a client of another user"));

    // Its own user (root here) is served.
    let out = server.admin(&["status", "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

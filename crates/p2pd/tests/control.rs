//! The control socket: permissions, uid check, bad input, stale sockets,
//! a second daemon, clean shutdown.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use p2p_testkit::{bin, TestDaemon, DEADLINE, FAST_RECONNECT};
use serde_json::Value;

fn lines(d: &TestDaemon) -> (UnixStream, BufReader<UnixStream>) {
    let s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut hello = String::new();
    r.read_line(&mut hello).unwrap();
    let hello: Value = serde_json::from_str(&hello).unwrap();
    assert_eq!(hello["hello"]["protocol"], 1);
    (s, r)
}

fn answer(w: &mut UnixStream, r: &mut BufReader<UnixStream>, line: &[u8]) -> Value {
    w.write_all(line).unwrap();
    let mut resp = String::new();
    r.read_line(&mut resp).unwrap();
    serde_json::from_str(&resp).unwrap()
}

#[test]
fn garbage_gets_an_error_and_the_daemon_keeps_serving() {
    let d = TestDaemon::start(FAST_RECONNECT);
    let (mut w, mut r) = lines(&d);
    let e = answer(&mut w, &mut r, b"this is not json\n");
    assert_eq!(e["error"]["code"], "bad_request");
    let e = answer(&mut w, &mut r, b"{\"id\":7,\"cmd\":\"fly\"}\n");
    assert_eq!(
        (e["id"].as_u64(), e["error"]["code"].as_str()),
        (Some(7), Some("bad_request"))
    );
    let e = answer(&mut w, &mut r, b"{\"id\":8}\n");
    assert_eq!(e["error"]["code"], "bad_request");
    let mut huge = vec![b'x'; 600 * 1024];
    huge.push(b'\n');
    let e = answer(&mut w, &mut r, &huge);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large"),
        "{e}"
    );
    // Same connection, still usable.
    let ok = answer(&mut w, &mut r, b"{\"id\":9,\"cmd\":\"status\"}\n");
    assert_eq!(ok["id"], 9);
    assert_eq!(ok["result"]["server"]["state"], "logged_out");
    // Binary junk and an abrupt close do not hurt other clients.
    let mut junk = UnixStream::connect(d.socket()).unwrap();
    junk.write_all(&[0u8, 159, 146, 150, 255, b'\n']).unwrap();
    drop(junk);
    assert_eq!(d.status()["server"]["state"], "logged_out");
}

#[test]
fn watch_streams_server_events() {
    let d = TestDaemon::start(FAST_RECONNECT);
    let (mut w, mut r) = lines(&d);
    let ack = answer(&mut w, &mut r, b"{\"id\":1,\"cmd\":\"watch\"}\n");
    assert_eq!(ack["result"]["watching"], true);
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    let ev: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (ev["event"].as_str(), ev["state"].as_str()),
        (Some("server"), Some("logged_out"))
    );
}

#[test]
fn socket_is_private_and_checks_the_callers_uid() {
    let d = TestDaemon::start(FAST_RECONNECT);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.socket()), 0o600);
    assert_eq!(mode(d.socket().parent().unwrap()), 0o700);
    assert_eq!(mode(&d.state_dir()), 0o700);
    assert_eq!(mode(&d.state_dir().join("identity.json")), 0o600);

    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: the SO_PEERCRED half of this test needs a second uid");
        return;
    }
    // Simulate a careless chmod: the file modes no longer protect the
    // socket, so only the daemon's SO_PEERCRED check stands in the way.
    for p in [
        d.socket().parent().unwrap().parent().unwrap(),
        d.socket().parent().unwrap(),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(d.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut parent = d.socket();
    while let Some(p) = parent.parent() {
        if p == std::path::Path::new("/tmp") {
            break;
        }
        let m = mode(p);
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m | 0o011)).unwrap();
        parent = p.to_path_buf();
    }
    let out = Command::new(bin("p2pctl"))
        .args(["--json", "--socket", d.socket().to_str().unwrap(), "status"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "permission_denied", "{doc}");
    assert!(d.log().contains("control connection refused"));
    // Its own user is still served.
    assert_eq!(d.status()["server"]["state"], "logged_out");
}

#[test]
fn stale_socket_is_replaced_and_a_second_daemon_refused() {
    let mut d = TestDaemon::start(FAST_RECONNECT);
    // A second daemon on the same socket refuses to start and leaves it alone.
    let out = Command::new(bin("p2pd"))
        .args(["--socket", d.socket().to_str().unwrap(), "--state-dir"])
        .arg(d.state_dir())
        .args(["--peer-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    assert_eq!(d.status()["server"]["state"], "logged_out");

    // kill -9 leaves the socket file behind; the next start replaces it.
    d.kill9();
    assert!(d.socket().exists());
    d.restart();
    assert_eq!(d.status()["server"]["state"], "logged_out");

    // SIGTERM is a clean exit that removes the socket.
    let status = d.stop().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!d.socket().exists());
}

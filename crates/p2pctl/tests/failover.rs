//! Daemon failover across a list of servers (SPEC §9, issue 13): `login
//! --server a,b` (or `server = ...` in p2pd.toml), one pin for all of them,
//! `status` naming the one in use, and after `kill -9` of that one the
//! daemon is back online through the other by itself.
//!
//! The two servers are embedded instances sharing one data dir (so the same
//! certificate files, accounts and resume tokens) until instances share
//! PostgreSQL: what is tested here is the daemon's side.

use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};

fn free_port_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// alice logs in with `--server a,b`; kill -9 of `a`: she is back online
/// through `b` without a password, and `status` (JSON and text) says so.
#[test]
fn a_killed_server_fails_over_to_the_next_in_the_list() {
    let mut a = TestServer::start(&[]);
    let b = a.start_sibling(&[]);
    assert_eq!(a.fingerprint, b.fingerprint, "one identity");
    a.add_user("alice", "alice-password");
    let alice = TestDaemon::start(FAST_RECONNECT);
    let list = format!("{},{}", a.address(), b.address());
    let (code, doc) = alice.authenticate(
        "login",
        &list,
        "alice",
        "alice-password",
        &["--fingerprint", &a.fingerprint],
    );
    assert_eq!(code, 0, "{doc}");
    let status = alice.status();
    assert_eq!(status["server"]["state"], "online");
    assert_eq!(status["server"]["address"], list.as_str());
    assert_eq!(status["server"]["current"], a.address().as_str());

    a.kill9();
    let status = wait_for(DEADLINE, "alice online through b", || {
        let s = alice.status();
        (s["server"]["state"] == "online" && s["server"]["current"] == b.address().as_str())
            .then_some(s)
    });
    assert_eq!(status["server"]["address"], list.as_str());
    let text = String::from_utf8(alice.ctl(&["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!("at {} (of {list})", b.address())),
        "{text}"
    );
    // Still the one pin, under the list's name: nothing new pinned.
    let pins = std::fs::read_to_string(alice.state_dir().join("known_servers.json")).unwrap();
    assert!(
        pins.contains(&list) && !pins.contains(&format!("\"{}\"", b.address())),
        "{pins}"
    );
}

/// The first server of the list is down at login: the login goes through
/// the next one at once (no error, no wait), and `server` in p2pd.toml
/// stands in for `--server`.
#[test]
fn login_skips_a_dead_server_and_takes_the_list_from_the_config() {
    let server = TestServer::start(&[]);
    server.add_user("bob", "bob-password");
    let list = format!("{},{}", free_port_address(), server.address());
    let bob = TestDaemon::start(&format!("{FAST_RECONNECT}server = \"{list}\"\n"));
    assert_eq!(bob.status()["server"]["address"], list.as_str());
    let out = bob.ctl_stdin(
        &[
            "--json",
            "login",
            "--user",
            "bob",
            "--password-stdin",
            "--fingerprint",
            &server.fingerprint,
        ],
        "bob-password\n",
    );
    let doc = p2p_testkit::parse_json(&out);
    assert_eq!(out.status.code(), Some(0), "{doc}");
    let status = bob.status();
    assert_eq!(status["server"]["state"], "online");
    assert_eq!(status["server"]["current"], server.address().as_str());
}

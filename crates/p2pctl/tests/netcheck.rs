//! `p2pctl netcheck` end to end (SPEC §10): a real server and daemon on
//! loopback, where the server sees the daemon at 127.0.0.1, one local port
//! keeps one mapping (no NAT), and the relay answers.

use p2p_testkit::{TestDaemon, FAST_RECONNECT};

/// Without a server session there is nothing to probe: `not_logged_in`
/// (exit 4), with the hint, like every command that needs the server.
#[test]
fn netcheck_while_logged_out_says_so() {
    let alice = TestDaemon::start(FAST_RECONNECT);
    let (code, doc) = alice.ctl_json(&["netcheck"]);
    assert_eq!(code, 4, "{doc}");
    assert_eq!(doc["error"]["code"], "not_logged_in");
    let msg = doc["error"]["message"].as_str().unwrap();
    assert!(msg.contains("p2pctl login"), "{msg}");
    let out = alice.ctl(&["netcheck"]);
    assert_eq!(out.status.code(), Some(4));
}

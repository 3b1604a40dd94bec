//! `p2pctl netcheck` end to end (SPEC §10): a real server and daemon on
//! loopback, where the server sees the daemon at 127.0.0.1, one local port
//! keeps one mapping (no NAT), and the relay answers.

use std::net::SocketAddr;

use p2p_testkit::{TestDaemon, TestServer, FAST_RECONNECT};

#[test]
fn netcheck_reports_what_the_server_sees() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let (code, doc) = alice.ctl_json(&["netcheck"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["server"], server.address().as_str());
    let public: SocketAddr = doc["public_addr"].as_str().unwrap().parse().unwrap();
    assert_eq!(public.ip().to_string(), "127.0.0.1", "{doc}");
    assert_ne!(public.port(), 0);
    assert_eq!(doc["peer_listen"], alice.status()["peer_listen"]);
    assert!(doc["lan"].is_array(), "{doc}");
    assert_eq!(doc["endpoint_independent"], true, "{doc}");
    assert_eq!(doc["relay"], true, "{doc}");
    assert!(doc["rtt_ms"].is_u64(), "{doc}");
    assert!(doc.get("problems").is_none(), "{doc}");

    let out = alice.ctl(&["netcheck"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("public       127.0.0.1:"), "{text}");
    assert!(text.contains("nat mapping  endpoint-independent"), "{text}");
    assert!(text.contains("relay        available"), "{text}");
}

/// A server run with `--no-relay` says so: the relay probe is answered
/// "disabled", which is no problem, just no relay.
#[test]
fn netcheck_tells_a_server_without_relay() {
    let server = TestServer::start(&["--no-relay"]);
    let alice = TestDaemon::online(&server, "alice");
    let (code, doc) = alice.ctl_json(&["netcheck"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["relay"], false, "{doc}");
    assert_eq!(doc["endpoint_independent"], true, "{doc}");
    assert!(doc.get("problems").is_none(), "{doc}");
    let text = String::from_utf8(alice.ctl(&["netcheck"]).stdout).unwrap();
    assert!(text.contains("relay        not available"), "{text}");
}

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

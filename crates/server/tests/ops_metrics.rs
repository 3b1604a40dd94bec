//! `/metrics` and `/healthz` (SPEC §12) on the real server: the values move
//! with logins, broadcasts, rate limits and a relayed pair.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use p2p_testkit::{wait_for, TestDaemon, TestServer};
use support::*;

const WAIT: Duration = Duration::from_secs(20);

/// `GET path` on the metrics listener: (status line, body).
fn get(at: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(at).expect("connect to the metrics listener");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the sample `series` (name with its labels, as written), or
/// 0 when it is not there yet (a label set nobody has counted).
fn value(server: &TestServer, series: &str) -> f64 {
    let (_, body) = get(server.metrics.expect("metrics on"), "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

/// Waits until `series` reads `want`.
fn wait_value(server: &TestServer, series: &str, want: f64) {
    wait_for(WAIT, &format!("{series} = {want}"), || {
        (value(server, series) == want).then_some(())
    });
}

#[test]
fn healthz_answers_and_unknown_paths_are_404() {
    let server = TestServer::start(&[]);
    let at = server.metrics.expect("testkit asks for metrics on port 0");
    assert_ne!(at.port(), server.addr.port());
    let (status, body) = get(at, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "ok\n");
    assert!(get(at, "/").0.contains("404"));
    let (status, body) = get(at, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.contains("p2p_server_build_info{version=\"") && body.ends_with("# EOF\n"),
        "{body}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!(value(&server, "p2p_server_tls_certificate_not_after_seconds") > now);

    let off = TestServer::start(&["--metrics-listen", "off"]);
    assert_eq!(off.metrics, None);
}

#[test]
fn metrics_move_with_logins_broadcasts_and_rate_limits() {
    let server = TestServer::start(&["--broadcast-limit", "1"]);
    assert_eq!(value(&server, "p2p_server_sessions_online"), 0.0);
    let alice = TestDaemon::online(&server, "alice");
    let bob = TestDaemon::online(&server, "bob");
    assert_eq!(value(&server, "p2p_server_users_registered"), 2.0);
    wait_value(&server, "p2p_server_sessions_online", 2.0);
    assert_eq!(
        value(&server, "p2p_server_logins_total{result=\"ok\"}"),
        2.0
    );

    let carol = TestDaemon::start("");
    server.add_user("carol", "carol-password");
    let (code, _) = carol.login(&server, "carol", "not-carols-password");
    assert_ne!(code, 0);
    wait_value(
        &server,
        "p2p_server_logins_total{result=\"bad_credentials\"}",
        1.0,
    );

    let (code, doc) = alice.ctl_json(&["broadcast", "hello all"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(value(&server, "p2p_server_broadcasts_stored_total"), 1.0);
    wait_value(&server, "p2p_server_broadcasts_delivered_total", 1.0);
    let (_, doc) = alice.ctl_json(&["broadcast", "again"]);
    assert_eq!(doc["error"]["code"], "rate_limited", "{doc}");
    assert_eq!(
        value(&server, "p2p_server_rate_limited_total{kind=\"broadcast\"}"),
        1.0
    );
    assert_eq!(value(&server, "p2p_server_broadcasts_stored_total"), 1.0);

    drop(bob);
    wait_value(&server, "p2p_server_sessions_online", 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_relayed_pair_and_its_bytes() {
    let server = TestServer::start(&["--relay-bytes-per-sec", "1000000000000"]);
    let (ta, tb, clients) = tokens(&server, "alice", "bob").await;
    let series = |s: &'static str| {
        let server = &server;
        move || value(server, s)
    };
    assert_eq!(
        value(&server, "p2p_server_invitations_total{outcome=\"sent\"}"),
        1.0
    );
    assert_eq!(
        value(
            &server,
            "p2p_server_invitations_total{outcome=\"accepted\"}"
        ),
        1.0
    );
    let (a, b) = pair(&server, ta, tb).await;
    let active = series("p2p_server_relay_sessions_active");
    tokio::task::block_in_place(|| {
        wait_for(WAIT, "one active relayed pair", || {
            (active() == 1.0).then_some(())
        })
    });
    assert_eq!(value(&server, "p2p_server_relay_sessions_total"), 1.0);
    let len = 10_000;
    let (got_a, got_b) = tokio::join!(
        exchange(a, pattern(1, len), len),
        exchange(b, pattern(2, len), len)
    );
    assert_eq!((got_a.len(), got_b.len()), (len, len));
    drop(clients);
    tokio::task::block_in_place(|| {
        wait_value(&server, "p2p_server_relay_sessions_active", 0.0);
        let bytes = value(&server, "p2p_server_relay_bytes_total");
        assert!(bytes >= 2.0 * len as f64, "{bytes}");
    });
}

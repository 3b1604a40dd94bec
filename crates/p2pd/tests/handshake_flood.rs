//! Half-open links cannot keep a daemon's real peers out (issue 14 #6): a
//! host with no account opens hundreds of TCP connections to bob's peer
//! listener and never says a word, reopening each one as soon as bob drops
//! it; alice, whose invitation bob accepts, still gets her session and her
//! messages through.
//!
//! p2pd dials peers from whatever address the system picks (127.0.0.1 here),
//! so the flood comes from other loopback addresses (all of 127/8 is local
//! on Linux): first one address, then several.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use p2p_proto::limits::MAX_PENDING_HANDSHAKES;
use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// Connections the flood keeps open: well over the shared pool.
const FLOOD: usize = 200;
const _: () = assert!(FLOOD > MAX_PENDING_HANDSHAKES);
/// A flood connection that bob dropped is reopened after this (pacing, so
/// the flood does not take both cores from the daemons under test).
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

fn user(server: &TestServer, name: &str, config: &str) -> TestDaemon {
    server.add_user(name, &format!("{name}-password"));
    let d = TestDaemon::start(config);
    assert_eq!(d.login(server, name, &format!("{name}-password")).0, 0);
    d
}

/// Keeps `FLOOD` silent connections from `sources` (round robin) open to
/// `target` until `stop`; `opened` counts successful connects.
fn flood(
    target: SocketAddr,
    sources: &[IpAddr],
    stop: CancellationToken,
    opened: Arc<AtomicUsize>,
) {
    for i in 0..FLOOD {
        let source = SocketAddr::new(sources[i % sources.len()], 0);
        let (stop, opened) = (stop.clone(), opened.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(source).unwrap();
                if let Ok(mut conn) = socket.connect(target).await {
                    opened.fetch_add(1, Ordering::Relaxed);
                    let mut buf = [0u8; 64];
                    // Hold it, silent, until bob closes it.
                    tokio::select! {
                        _ = conn.read(&mut buf) => {}
                        _ = stop.cancelled() => return,
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(REOPEN_PAUSE) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
}

/// Floods bob from `sources`, then alice connects (bob auto-accepts) and
/// sends; both must work while the flood goes on.
async fn alice_gets_through_a_flood_from(sources: &[IpAddr]) {
    let server = TestServer::start(&[]);
    let alice = user(&server, "alice", FAST_RECONNECT);
    let bob = user(
        &server,
        "bob",
        &format!("{FAST_RECONNECT}auto_accept = [\"alice\"]\n"),
    );
    let target: SocketAddr = bob.status()["peer_listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let stop = CancellationToken::new();
    let opened = Arc::new(AtomicUsize::new(0));
    flood(target, sources, stop.clone(), opened.clone());
    // Every flood connection was accepted once: more than the pool holds.
    let opened2 = opened.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(DEADLINE, "the flood to be in place", || {
            (opened2.load(Ordering::Relaxed) >= FLOOD).then_some(())
        })
    })
    .await
    .unwrap();

    let (code, doc, bob) = tokio::task::spawn_blocking(move || {
        let (code, doc) = alice.ctl_json(&["connect", "bob", "--timeout", "20s"]);
        if code == 0 {
            let (c, d) = alice.ctl_json(&["send", "bob", "through the flood"]);
            assert_eq!(c, 0, "{d}");
        }
        (code, doc, bob)
    })
    .await
    .unwrap();
    if code != 0 {
        // bob's log without debug lines: refusals there are rate-limited.
        let log: Vec<String> = bob
            .log()
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .map(String::from)
            .collect();
        panic!("alice could not connect during the flood: {doc}\nbob: {log:#?}");
    }
    let bob = tokio::task::spawn_blocking(move || {
        wait_for(DEADLINE, "alice's message in bob's inbox", || {
            let (_, doc) = bob.ctl_json(&["inbox", "--all"]);
            (doc["messages"][0]["text"] == "through the flood").then_some(())
        });
        bob
    })
    .await
    .unwrap();
    // The flood was still going, and bob was refusing it.
    assert!(!stop.is_cancelled());
    assert!(
        bob.log().contains("peer link dropped before its handshake"),
        "bob never refused a flood connection"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_does_not_keep_an_accepted_peer_out() {
    alice_gets_through_a_flood_from(&["127.0.0.2".parse().unwrap()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_several_addresses_does_not_keep_an_accepted_peer_out() {
    // Eight addresses at the default per-address limit hold 128 slots, twice
    // the shared pool: admission shares it out instead.
    let sources: Vec<IpAddr> = (2..10)
        .map(|i| format!("127.0.0.{i}").parse().unwrap())
        .collect();
    alice_gets_through_a_flood_from(&sources).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_more_addresses_than_the_pool_does_not_keep_an_accepted_peer_out() {
    // A hundred addresses holding one or two links each: the pool is full of
    // addresses holding no more than alice's would, so no slot can be
    // taken from anyone; bob keeps room for the peer he is accepting.
    let sources: Vec<IpAddr> = (2..102)
        .map(|i| format!("127.0.0.{i}").parse().unwrap())
        .collect();
    assert!(sources.len() > MAX_PENDING_HANDSHAKES);
    alice_gets_through_a_flood_from(&sources).await;
}

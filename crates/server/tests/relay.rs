//! The relay in a real `p2p-server` (issue 9): two sides with their tokens
//! are spliced and bytes flow both ways unchanged; tokens pair once and
//! die; caps, timeouts and `--no-relay` refuse with a reason; hostile first
//! messages never disturb a running pair.

mod support;

use std::time::{Duration, Instant};

use futures::SinkExt;
use p2p_proto::limits::WIRE_VERSION;
use p2p_proto::wire::{ClientMsg, CloseReason, RelayRefusal, ServerMsg};
use p2p_proto::Secret;
use p2p_testkit::TestServer;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A byte rate no test reaches, for tests about other things.
const UNPACED: &str = "1000000000000";

/// Server CPU time (user + system) so far.
fn cpu(server: &TestServer) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid().unwrap())).unwrap();
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis((f[0] + f[1]) * 1000 / ticks)
}

/// Bytes flow both ways at once, unchanged, through the relay. Also the
/// CPU-per-MB measurement: `P2P_RELAY_BENCH_MB=100 cargo test -p p2p-server
/// --test relay bytes_flow -- --nocapture` sends that many MB each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_flow_both_ways_unchanged_through_the_relay() {
    let mb: usize = std::env::var("P2P_RELAY_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let len = mb * 1024 * 1024;
    let server = TestServer::start(&["--relay-bytes-per-sec", UNPACED]);
    let (ta, tb, _clients) = tokens(&server, "alice", "bob").await;
    let ((pa, a), (pb, b)) = {
        let (a, b) = tokio::join!(join(&server, ta), join(&server, tb));
        (a.unwrap(), b.unwrap())
    };
    assert_eq!((pa.as_str(), pb.as_str()), ("bob", "alice"));
    let (to_b, to_a) = (pattern(1, len), pattern(2, len));
    let cpu0 = cpu(&server);
    let started = Instant::now();
    let (got_a, got_b) = tokio::join!(
        exchange(a, to_b.clone(), len),
        exchange(b, to_a.clone(), len)
    );
    let took = started.elapsed();
    let spent = cpu(&server) - cpu0;
    assert!(got_b == to_b, "alice → bob changed on the way");
    assert!(got_a == to_a, "bob → alice changed on the way");
    eprintln!(
        "relay: {mb} MB each way in {took:?}; server CPU {spent:?} = {:.2} ms per relayed MB",
        spent.as_secs_f64() * 1000.0 / (2 * mb) as f64
    );
    log_has(&server, "relay pair up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_pairs_once_and_is_dead_after_its_pair_ended() {
    let server = TestServer::start(&["--relay-bytes-per-sec", UNPACED]);
    // Never issued.
    let forged = Secret::new("ab".repeat(32));
    refused(&server, forged, RelayRefusal::UnknownToken).await;
    let (ta, tb, _clients) = tokens(&server, "alice", "bob").await;
    let (a, b) = pair(&server, ta.clone(), tb.clone()).await;
    // Used twice: while its pair runs, neither token joins again.
    refused(&server, ta.clone(), RelayRefusal::UnknownToken).await;
    refused(&server, tb.clone(), RelayRefusal::UnknownToken).await;
    // The pair still works, then ends.
    let (got_a, got_b) = tokio::join!(
        exchange(a, b"to bob".to_vec(), 8),
        exchange(b, b"to alice".to_vec(), 6)
    );
    assert_eq!((&got_a[..], &got_b[..]), (&b"to alice"[..], &b"to bob"[..]));
    log_has(&server, "relay pair over");
    refused(&server, ta, RelayRefusal::UnknownToken).await;
    refused(&server, tb, RelayRefusal::UnknownToken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_token_dies_after_its_lifetime() {
    const TTL: Duration = Duration::from_secs(1);
    let server = TestServer::start(&["--relay-token-ttl", "1s"]);
    let (ta, _tb, _clients) = tokens(&server, "alice", "bob").await;
    // The token was issued before its contact arrived: once TTL has passed
    // since then, it has certainly expired on the server.
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    refused(&server, ta, RelayRefusal::UnknownToken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_alone_is_told_its_peer_is_absent() {
    let server = TestServer::start(&["--relay-pair-timeout", "1s"]);
    let (ta, tb, _clients) = tokens(&server, "alice", "bob").await;
    let message = refused(&server, ta.clone(), RelayRefusal::PeerAbsent).await;
    assert!(message.contains("bob"), "{message}");
    // The late side is told the same at once; both tokens are dead then.
    let message = refused(&server, tb.clone(), RelayRefusal::PeerAbsent).await;
    assert!(message.contains("alice"), "{message}");
    refused(&server, ta, RelayRefusal::UnknownToken).await;
    refused(&server, tb, RelayRefusal::UnknownToken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_the_cap_is_refused_while_another_users_pair_works() {
    let server = TestServer::start(&[
        "--relay-sessions-per-user",
        "1",
        "--relay-bytes-per-sec",
        UNPACED,
    ]);
    let mut alice = Client::plain(&server, "alice", 4001).await;
    let mut bob = Client::plain(&server, "bob", 4002).await;
    let mut carol = Client::plain(&server, "carol", 4003).await;
    let (with_bob, bobs) = accepted(&mut alice, &mut bob).await;
    let (with_carol, _carols) = accepted(&mut alice, &mut carol).await;
    let (_ab, _ba) = pair(&server, with_bob.relay.unwrap(), bobs.relay.unwrap()).await;
    let message = refused(&server, with_carol.relay.unwrap(), RelayRefusal::OverCap).await;
    assert!(
        message.contains("alice") && message.contains("--relay-sessions-per-user 1"),
        "{message}"
    );
    // Other users' pairs are unaffected.
    let (td, te, _clients) = tokens(&server, "dave", "erin").await;
    let (d, e) = pair(&server, td, te).await;
    let (got_d, got_e) = tokio::join!(
        exchange(d, b"hi erin".to_vec(), 7),
        exchange(e, b"hi dave".to_vec(), 7)
    );
    assert_eq!((&got_d[..], &got_e[..]), (&b"hi dave"[..], &b"hi erin"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_relay_no_tokens_are_issued_and_joins_are_refused() {
    let server = TestServer::start(&["--no-relay"]);
    let mut alice = Client::plain(&server, "alice", 4001).await;
    let mut bob = Client::plain(&server, "bob", 4002).await;
    let (for_alice, for_bob) = accepted(&mut alice, &mut bob).await;
    assert!(for_alice.relay.is_none() && for_bob.relay.is_none());
    // Paths are still handed out.
    assert!(!for_alice.paths.is_empty() && !for_bob.paths.is_empty());
    let message = refused(
        &server,
        Secret::new("ab".repeat(32)),
        RelayRefusal::Disabled,
    )
    .await;
    assert!(message.contains("--no-relay"), "{message}");
}

/// Hostile first messages on the relay path are refused or closed, each
/// on its own connection, while a pair keeps carrying bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversize_first_messages_do_not_disturb_a_running_pair() {
    let server = TestServer::start(&["--relay-bytes-per-sec", UNPACED]);
    let (ta, tb, _clients) = tokens(&server, "alice", "bob").await;
    let (mut a, mut b) = pair(&server, ta, tb).await;
    round(&mut a, &mut b).await;

    // The biggest token a frame can carry: unknown, and refused as such.
    let huge = Secret::new("a".repeat(60 * 1024));
    refused(&server, huge, RelayRefusal::UnknownToken).await;
    // Another protocol version.
    let mut conn = connect(&server).await;
    let token = Secret::new("ab".repeat(32));
    conn.send(ClientMsg::Relay {
        version: WIRE_VERSION + 1,
        token,
    })
    .await
    .unwrap();
    match next(&mut conn).await {
        ServerMsg::RelayRefused { code, message } => {
            assert_eq!(code, RelayRefusal::Other);
            assert!(message.contains("protocol"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A frame over the size limit, and JSON that is a relay join of the
    // wrong shape: the connection is closed.
    let wrong_shape = br#"{"type":"relay","version":1,"token":7}"#;
    for (len, body) in [
        (0x7fff_ffffu32, &b"{}"[..]),
        (wrong_shape.len() as u32, &wrong_shape[..]),
    ] {
        let mut s = connect(&server).await.into_inner();
        s.write_all(&len.to_be_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        s.flush().await.unwrap();
        let mut sink = Vec::new();
        let read = tokio::time::timeout(DEADLINE, s.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "still open after a bad first frame");
    }
    // A first side that talks before its peer came is turned away, and
    // its peer is told it left.
    let (tc, td, _more) = tokens(&server, "carol", "dave").await;
    let mut conn = connect(&server).await;
    conn.send(ClientMsg::Relay {
        version: WIRE_VERSION,
        token: tc,
    })
    .await
    .unwrap();
    conn.send(ClientMsg::Ping { nonce: 1 }).await.unwrap();
    match next(&mut conn).await {
        ServerMsg::RelayRefused { code, .. } => assert_eq!(code, RelayRefusal::Other),
        other => panic!("{other:?}"),
    }
    refused(&server, td, RelayRefusal::PeerAbsent).await;
    round(&mut a, &mut b).await;
}

/// One message each way over a relayed pair.
async fn round(a: &mut p2pd::relay_client::RelayStream, b: &mut p2pd::relay_client::RelayStream) {
    let mut buf = [0u8; 5];
    a.write_all(b"ping!").await.unwrap();
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping!");
    b.write_all(b"pong!").await.unwrap();
    a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong!");
}

/// A server told to stop ends its relayed pairs (their tasks are its own
/// and awaited) instead of hanging on them or leaving them behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_ends_its_relayed_pairs() {
    let mut server = TestServer::start(&[]);
    let (ta, tb, _clients) = tokens(&server, "alice", "bob").await;
    let (mut a, mut b) = pair(&server, ta, tb).await;
    round(&mut a, &mut b).await;
    tokio::task::block_in_place(|| server.stop());
    for s in [&mut a, &mut b] {
        let mut rest = Vec::new();
        let end = tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest)).await;
        assert!(end.is_ok(), "a relayed stream outlived its server");
    }
    let log = server.log();
    assert!(log.contains("ended=Shutdown"), "{log}");
    assert!(!log.contains("did not close in time"), "{log}");
}

/// A server told to stop tells each online session why before it closes
/// it (through the session's mailbox, since the session loop no longer
/// watches the shutdown token itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_tells_its_sessions_why() {
    let mut server = TestServer::start(&[]);
    let mut alice = Client::plain(&server, "alice", 7001).await;
    let mut bob = Client::plain(&server, "bob", 7002).await;
    tokio::task::block_in_place(|| server.stop());
    for c in [&mut alice, &mut bob] {
        match next(&mut c.conn).await {
            ServerMsg::Closing { reason, message } => {
                assert_eq!(reason, CloseReason::Shutdown, "{}", c.user);
                assert!(message.contains("shutting down"), "{message}");
            }
            other => panic!("{}: {other:?}", c.user),
        }
    }
    assert!(!server.log().contains("did not close in time"));
}

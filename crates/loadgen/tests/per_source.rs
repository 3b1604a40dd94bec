//! Issue 14: one host must not hold every server slot with idle TCP
//! connections. Connections not yet logged in are capped per source
//! address, and one that sends nothing is closed at the first-byte
//! deadline, long before the login timeout. A legitimate login from
//! another address (127.0.0.2) still gets in.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};

use p2p_loadgen::{register_users, Client};
use p2p_proto::wire::{Preamble, PREAMBLE_LEN};
use p2p_testkit::{read_until_closed, wait_for, TestServer, DEADLINE};

/// Connects from 127.0.0.1 and reads the preamble; keeps the socket open.
fn idle_connection(server: SocketAddr) -> (TcpStream, Preamble) {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut pre = [0u8; PREAMBLE_LEN];
    s.read_exact(&mut pre).unwrap();
    (s, Preamble::decode(&pre).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_slot() {
    // The whole cap (50) is within reach of 127.0.0.1's idle connections;
    // the first-byte deadline is long so only the per-address cap helps.
    let server = TestServer::start(&[
        "--max-clients",
        "50",
        "--max-unauthenticated-per-address",
        "20",
        "--first-byte-timeout",
        "10m",
        "--login-timeout",
        "10m",
    ]);
    let names = register_users(&server, 25);
    let addr = server.addr;
    let (held, refused) = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..60 {
            match idle_connection(addr) {
                (s, Preamble::Ready) => held.push(s),
                (_, Preamble::Busy { .. }) => refused += 1,
            }
        }
        (held, refused)
    })
    .await
    .unwrap();
    assert_eq!(held.len(), 20, "127.0.0.1 holds exactly its cap");
    assert_eq!(refused, 40);
    // 127.0.0.1 itself cannot log in now (it is at its cap)...
    let err = Client::login(server.addr, &server.fingerprint, &names[0])
        .await
        .err()
        .expect("over the per-address cap");
    assert!(err.contains("busy"), "{err}");
    // ...but everyone else can, and logged-in sessions do not count: more
    // logins from 127.0.0.2 than its cap, all held at once.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let mut online = Vec::new();
    for name in &names[..25] {
        let c = Client::login_from(server.addr, other, &server.fingerprint, name)
            .await
            .unwrap_or_else(|e| panic!("{name} from 127.0.0.2: {e}"));
        online.push(c);
    }
    assert_eq!(online[0].list().await.unwrap().len(), 25);
    // Once the idle ones go, 127.0.0.1 gets in again.
    drop(held);
    let mut logged_in = None;
    let end = tokio::time::Instant::now() + DEADLINE;
    while logged_in.is_none() {
        match Client::login(addr, &server.fingerprint, &names[0]).await {
            Ok(c) => logged_in = Some(c),
            Err(e) => {
                assert!(tokio::time::Instant::now() < end, "never got back in: {e}");
                tokio::time::sleep(p2p_testkit::POLL).await;
            }
        }
    }
}

#[test]
fn a_silent_connection_is_closed_at_the_first_byte_deadline() {
    let server = TestServer::start(&["--first-byte-timeout", "1s", "--login-timeout", "10m"]);
    let (mut s, pre) = idle_connection(server.addr);
    assert_eq!(pre, Preamble::Ready);
    let (rest, closed) = read_until_closed(&mut s, DEADLINE);
    assert!(closed, "a silent connection stayed open");
    assert!(rest.is_empty());
    wait_for(DEADLINE, "the reason in the log", || {
        server
            .log()
            .contains("no TLS ClientHello within 1s")
            .then_some(())
    });
}

//! Bad clients (SPEC §3 "Limits"): garbage, non-TLS, oversize or malformed
//! frames, talking before login, never logging in, and over-cap connections.
//! Each gets its own connection closed with a logged reason; a logged-in
//! session on the same server keeps working throughout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use p2p_proto::wire::{Preamble, PREAMBLE_LEN};
use p2p_testkit::{read_until_closed, wait_for, TestDaemon, TestServer, FAST_RECONNECT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLOSE_DEADLINE: Duration = Duration::from_secs(20);

fn bystander(server: &TestServer) -> TestDaemon {
    server.add_user("alice", "alice-password");
    let d = TestDaemon::start(FAST_RECONNECT);
    assert_eq!(d.login(server, "alice", "alice-password").0, 0);
    d
}

fn still_fine(d: &TestDaemon) {
    let (code, list) = d.ctl_json(&["list"]);
    assert_eq!(code, 0, "{list}");
    assert_eq!(list["users"][0]["user"], "alice");
}

fn raw(server: &TestServer) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut pre = [0u8; PREAMBLE_LEN];
    s.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
    s.read_exact(&mut pre).unwrap();
    assert_eq!(Preamble::decode(&pre).unwrap(), Preamble::Ready);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

fn log_has(server: &TestServer, needle: &str) {
    wait_for(CLOSE_DEADLINE, needle, || {
        server.log().contains(needle).then_some(())
    });
}

#[test]
fn garbage_and_plaintext_clients_are_closed() {
    let server = TestServer::start(&[]);
    let alice = bystander(&server);
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xffu8; 4096][..],
        &[0x16, 0x03, 0x01, 0xff, 0xff][..],
    ] {
        let mut s = raw(&server);
        let _ = s.write_all(junk);
        let (_, closed) = read_until_closed(&mut s, CLOSE_DEADLINE);
        assert!(closed, "server kept a garbage connection open");
    }
    log_has(&server, "TLS handshake failed");
    still_fine(&alice);
}

async fn tls(server: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let pin = p2pd::tlsclient::PinVerifier::new(Some(server.fingerprint.clone()));
    p2pd::handshake::connect(&server.addr.to_string(), None, pin)
        .await
        .unwrap()
        .into_inner()
}

async fn closed(stream: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let mut buf = vec![0u8; 65536];
    let res = tokio::time::timeout(CLOSE_DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    res.is_ok()
}

/// Over TLS, sends a frame header claiming `length` bytes and then `body`;
/// the server must close the connection and log `reason`.
async fn closed_after(server: &TestServer, length: u32, body: &[u8], reason: &str) {
    let mut s = tls(server).await;
    s.write_all(&length.to_be_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s.flush().await.unwrap();
    assert!(closed(&mut s).await, "still open after: {reason}");
    log_has(server, reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_malformed_and_early_frames_close_only_that_connection() {
    let server = TestServer::start(&[]);
    let alice = bystander(&server);

    // A 2 GiB length prefix: refused from the header, nothing allocated.
    closed_after(&server, 0x7fff_ffff, b"{}", "frame too large").await;
    // Not JSON.
    closed_after(&server, 5, b"hello", "malformed message").await;
    // Valid JSON, but a request before logging in.
    let frame = br#"{"type":"request","id":1,"req":{"op":"list"}}"#;
    closed_after(&server, frame.len() as u32, frame, "message before login").await;

    tokio::task::spawn_blocking(move || still_fine(&alice))
        .await
        .unwrap();
}

#[test]
fn a_client_that_never_logs_in_is_closed() {
    let server = TestServer::start(&["--login-timeout", "1s"]);
    let alice = bystander(&server);
    let mut s = raw(&server);
    let (_, closed) = read_until_closed(&mut s, CLOSE_DEADLINE);
    assert!(closed);
    log_has(&server, "no login within");
    still_fine(&alice);
}

#[test]
fn over_the_cap_a_client_is_told_busy_before_any_tls() {
    // Held connections stay silent: give them the whole login window, not
    // just the first-byte deadline, however slow the machine is.
    let server = TestServer::start(&["--max-clients", "50", "--first-byte-timeout", "10s"]);
    let held: Vec<TcpStream> = (0..50).map(|_| raw(&server)).collect();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
    let mut pre = [0u8; PREAMBLE_LEN];
    s.read_exact(&mut pre).unwrap();
    match Preamble::decode(&pre).unwrap() {
        Preamble::Busy { retry_after } => assert!(retry_after >= Duration::from_secs(1)),
        other => panic!("expected busy, got {other:?}"),
    }
    let (rest, closed) = read_until_closed(&mut s, CLOSE_DEADLINE);
    assert!(closed && rest.is_empty(), "closed right after the preamble");
    drop(held);
    // Slots come back once those connections go.
    wait_for(CLOSE_DEADLINE, "a free slot", || {
        let mut s = TcpStream::connect(server.addr).ok()?;
        s.set_read_timeout(Some(CLOSE_DEADLINE)).ok()?;
        s.read_exact(&mut pre).ok()?;
        (Preamble::decode(&pre).ok()? == Preamble::Ready).then_some(())
    });
}

/// A login's user name is the client's to choose, before any check: a name
/// no account can have must not reach the log as it is (a newline in it
/// would forge log lines, an escape sequence would reach the terminal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_user_name_is_not_logged_as_sent() {
    use futures::SinkExt;
    use p2p_proto::wire::{Auth, ClientMsg, PeerInfo};
    let server = TestServer::start(&[]);
    let forged = "FORGED INFO p2p_server: logged in user=root";
    let login = ClientMsg::Login {
        version: p2p_proto::limits::WIRE_VERSION,
        user: format!("x\n{forged}\u{1b}]0;owned\u{7}"),
        auth: Auth::Password {
            password: p2p_proto::Secret::new("whatever-password"),
        },
        peer: PeerInfo {
            port: 4000,
            advertise: None,
            public_key: "ab".repeat(32),
            lan: Vec::new(),
        },
    };
    let pin = p2pd::tlsclient::PinVerifier::new(Some(server.fingerprint.clone()));
    let mut conn = p2pd::handshake::connect(&server.addr.to_string(), None, pin)
        .await
        .unwrap();
    conn.send(login).await.unwrap();
    assert!(closed(conn.get_mut()).await);
    log_has(&server, "login refused");
    let log = server.log();
    assert!(
        !log.lines().any(|l| l.starts_with(forged)) && !log.contains('\u{1b}'),
        "{log}"
    );
}

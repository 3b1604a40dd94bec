//! Values from the network and the control socket that used to break the
//! daemon: a peer's impossible message time (a panic under the inbox lock
//! that poisoned it), a control line that is not UTF-8 (the connection was
//! closed), and a control client that stops reading (SIGTERM waited for it
//! forever).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use p2p_proto::peer::{leads, LinkPreamble, LinkRole, PeerMsg, LINK_PREAMBLE_LEN};
use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};
use p2pd::inbox::{Inbox, Incoming, Kind};
use p2pd::peer::noise;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn user(server: &TestServer, name: &str, config: &str) -> TestDaemon {
    server.add_user(name, &format!("{name}-password"));
    let d = TestDaemon::start(config);
    assert_eq!(d.login(server, name, &format!("{name}-password")).0, 0);
    d
}

/// Reads what the other side sends until it closes the link or
/// acknowledges; returns whether an `Ack` came.
async fn acked(link: &mut noise::NoiseLink) -> bool {
    let got = tokio::time::timeout(DEADLINE, async {
        loop {
            match link.recv().await {
                Ok(Some(msgs)) => {
                    if msgs.iter().any(|m| matches!(m, PeerMsg::Ack { .. })) {
                        return true;
                    }
                }
                Ok(None) | Err(_) => return false,
            }
        }
    })
    .await;
    got.expect("the daemon answers or closes the link")
}

/// A daemon's static key pair, from its identity file.
fn keys(d: &TestDaemon) -> (Vec<u8>, Vec<u8>) {
    let identity: Value =
        serde_json::from_slice(&std::fs::read(d.state_dir().join("identity.json")).unwrap())
            .unwrap();
    let key = |k: &str| hex::decode(identity[k].as_str().unwrap()).unwrap();
    (key("private"), key("public"))
}

/// A rogue "bob" (bob's own key, on the address bob advertises) that sends
/// alice messages with the given times; alice's daemon must refuse the
/// impossible ones without breaking its inbox. Neither real daemon can be
/// dialled (listeners on the IPv6 loopback only, the server's paths are
/// IPv4), so alice's only link is the rogue's, although both sides reach
/// out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_message_with_an_impossible_time_breaks_nothing() {
    let server = TestServer::start(&["--no-relay"]);
    let rogue = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bob_cfg = format!(
        "{FAST_RECONNECT}peer_listen = \"[::1]:0\"\nadvertise = \"{}\"\nauto_accept = [\"alice\"]\n",
        rogue.local_addr().unwrap()
    );
    let bob = user(&server, "bob", &bob_cfg);
    let (bob_private, bob_public) = keys(&bob);
    let alice_cfg =
        format!("{FAST_RECONNECT}peer_listen = \"[::1]:0\"\nadvertise = \"127.0.0.1:1\"\n");
    let alice = std::sync::Arc::new(user(&server, "alice", &alice_cfg));
    let (_, alice_public) = keys(&alice);

    let times = [-1, 253_402_300_800_000, i64::MAX, p2p_proto::time::now_ms()];
    for (round, at_ms) in times.into_iter().enumerate() {
        let a = alice.clone();
        let connect = tokio::task::spawn_blocking(move || {
            a.ctl_json(&["connect", "bob", "--timeout", "20s"])
        });
        let (mut stream, _) = tokio::time::timeout(DEADLINE, rogue.accept())
            .await
            .expect("alice dials")
            .unwrap();
        stream
            .write_all(&LinkPreamble(LinkRole::Accept).encode())
            .await
            .unwrap();
        let mut theirs = [0u8; LINK_PREAMBLE_LEN];
        stream.read_exact(&mut theirs).await.unwrap();
        assert_eq!(
            LinkPreamble::decode(&theirs),
            Some(LinkPreamble(LinkRole::Dial))
        );
        let (mut link, _, hello) = noise::respond(stream, &bob_private).await.unwrap();
        assert_eq!(hello.user, "alice");
        if leads(&bob_public, &alice_public) {
            // The leader names the session's link first.
            let switch = PeerMsg::Switch { received_upto: 0 };
            link.send(&[switch]).await.unwrap();
        }
        let text = format!("round {round}");
        link.send(&[PeerMsg::Message {
            id: 1,
            text,
            at_ms,
            mid: None,
        }])
        .await
        .unwrap();
        let ok = p2p_proto::time::in_range(at_ms);
        assert_eq!(acked(&mut link).await, ok, "at_ms {at_ms}");
        drop(link);
        let _ = connect.await.unwrap();
        if !ok {
            let log = wait_for(DEADLINE, "alice's refusal in the log", || {
                let log = alice.log();
                log.contains("impossible time").then_some(log)
            });
            assert!(!log.contains("panicked"), "{log}");
        }
        // The inbox still answers, after every round.
        let (code, inbox) = alice.ctl_json(&["inbox", "--all"]);
        assert_eq!(code, 0, "{inbox}");
    }
    // Only the message with a real time was stored.
    let texts = alice.inbox_texts(&["--all"]);
    assert_eq!(texts, ["round 3"]);
}

#[test]
fn a_control_line_that_is_not_utf8_gets_an_error_and_the_connection_goes_on() {
    let d = TestDaemon::start(FAST_RECONNECT);
    let mut w = UnixStream::connect(d.socket()).unwrap();
    w.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut r = BufReader::new(w.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    w.write_all(b"{\"id\":5,\"cmd\":\"status\xff\xfe\"}\n")
        .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    let e: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line:?}"));
    assert_eq!(e["error"]["code"], "bad_request", "{e}");
    w.write_all(b"{\"id\":6,\"cmd\":\"status\"}\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    let ok: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line:?}"));
    assert_eq!(ok["id"], 6, "{ok}");
    assert_eq!(ok["result"]["server"]["state"], "logged_out");
}

/// A client asks for a page far bigger than the socket buffers and never
/// reads it: SIGTERM still ends the daemon.
#[test]
fn sigterm_is_not_held_up_by_a_client_that_does_not_read() {
    let mut d = TestDaemon::start(FAST_RECONNECT);
    d.stop();
    {
        let inbox = Inbox::open(&d.state_dir()).unwrap();
        let batch: Vec<Incoming> = (1..=20_000)
            .map(|id| Incoming {
                id,
                text: "y".repeat(200),
                at_ms: 1_795_000_000_000,
                mid: None,
            })
            .collect();
        inbox.store(Kind::Message, "bob", &batch).unwrap();
    }
    d.restart();
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"{\"id\":1,\"cmd\":\"inbox\"}\n").unwrap();
    // Read up to the first byte of the answer, so the daemon is writing it
    // when the signal comes; then read nothing more.
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while seen.iter().filter(|&&b| b == b'\n').count() < 1 || seen.last() == Some(&b'\n') {
        s.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
    }
    d.terminate();
    let status = d.wait_exit(DEADLINE);
    assert!(status.success(), "{status:?}");
    assert!(d.log().contains("p2pd stopped"));
    drop(s);
}

/// Rows an older p2pd committed with impossible times (a broadcast with
/// such a `sent_ms` was committed before the panic, so it was there after
/// every restart) no longer break `inbox`.
#[test]
fn old_inbox_rows_with_impossible_times_are_listed() {
    let mut d = TestDaemon::start(FAST_RECONNECT);
    d.stop();
    // Written the way the old version left them: straight into the table.
    let db = rusqlite::Connection::open(d.state_dir().join("inbox.db")).unwrap();
    for (id, at_ms) in [(1i64, -1i64), (2, i64::MAX)] {
        db.execute(
            "INSERT INTO inbox (kind, peer, msg_id, text, at_ms) VALUES ('broadcast', 'admin', ?1, ?2, ?3)",
            rusqlite::params![id, format!("old {id}"), at_ms],
        )
        .unwrap();
    }
    drop(db);
    d.restart();
    let (code, doc) = d.ctl_json(&["inbox"]);
    assert_eq!(code, 0, "{doc}");
    let at: Vec<&str> = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["at"].as_str().unwrap())
        .collect();
    assert_eq!(at, ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]);
    assert_eq!(d.status()["unread"], 0);
}

/// A user name no account can have (here with an escape sequence) is a bad
/// request, for every command that takes one, not looked up or echoed.
#[test]
fn impossible_user_names_in_control_requests_are_bad_requests() {
    let d = TestDaemon::start(FAST_RECONNECT);
    for cmd in [
        r#"{"id":1,"cmd":"send","user":"Bob\u001b[2J","texts":["hi"]}"#,
        r#"{"id":1,"cmd":"disconnect","user":"Bob\u001b[2J"}"#,
        r#"{"id":1,"cmd":"accept","user":"Bob\u001b[2J"}"#,
        r#"{"id":1,"cmd":"reject","user":""}"#,
    ] {
        let e = d.request(cmd);
        assert_eq!(e["error"]["code"], "bad_request", "{cmd}: {e}");
    }
}

//! Links from the wrong key are refused (SPEC §5 step 4), on both sides:
//! bob's listener drops a link that matches no invitation he accepted, and
//! alice refuses a listener whose key is not the one the server gave.

use std::time::Duration;

use p2p_proto::peer::{LinkPreamble, LinkRole, PeerHello, LINK_PREAMBLE_LEN, NOISE_PARAMS};
use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};
use p2pd::peer::noise;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn keypair() -> snow::Keypair {
    snow::Builder::new(NOISE_PARAMS.parse().unwrap())
        .generate_keypair()
        .unwrap()
}

/// The link preamble (before Noise): writes ours, returns theirs.
async fn preamble(stream: &mut tokio::net::TcpStream, mine: LinkRole) -> LinkRole {
    stream
        .write_all(&LinkPreamble(mine).encode())
        .await
        .unwrap();
    let mut theirs = [0u8; LINK_PREAMBLE_LEN];
    stream.read_exact(&mut theirs).await.unwrap();
    LinkPreamble::decode(&theirs).unwrap().0
}

fn user(server: &TestServer, name: &str, config: &str) -> TestDaemon {
    server.add_user(name, &format!("{name}-password"));
    let d = TestDaemon::start(config);
    assert_eq!(d.login(server, name, &format!("{name}-password")).0, 0);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_matching_no_accepted_invitation_is_dropped() {
    let server = TestServer::start(&[]);
    let bob = user(&server, "bob", FAST_RECONNECT);
    let status = bob.status();
    let addr = status["peer_listen"].as_str().unwrap().to_string();
    let bob_key = hex::decode(status["public_key"].as_str().unwrap()).unwrap();

    // A hand-made Noise client that knows bob's public key and claims to be
    // alice with a plausible invitation id: the handshake completes, then
    // bob drops the link without a session.
    let rogue = keypair();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(
        preamble(&mut stream, LinkRole::Dial).await,
        LinkRole::Accept
    );
    let hello = PeerHello {
        user: "alice".into(),
        invite: 1,
    };
    let mut link = noise::initiate(stream, &rogue.private, &bob_key, &hello)
        .await
        .unwrap();
    let closed = tokio::time::timeout(DEADLINE, link.recv())
        .await
        .expect("bob closes the link");
    assert!(
        matches!(closed, Ok(None) | Err(_)),
        "{:?}",
        closed.map(|m| m.is_some())
    );
    wait_for(DEADLINE, "bob's refusal in the log", || {
        bob.log().contains("refused peer link").then_some(())
    });
    let (_, s) = bob.ctl_json(&["sessions"]);
    assert!(s["sessions"].as_array().unwrap().is_empty());

    // Garbage instead of a handshake: dropped, and the listener keeps going.
    let mut junk = tokio::net::TcpStream::connect(&addr).await.unwrap();
    junk.write_all(&[0xff; 300]).await.unwrap();
    drop(junk);
    let mut again = tokio::net::TcpStream::connect(&addr).await.unwrap();
    preamble(&mut again, LinkRole::Dial).await;
    assert!(
        noise::initiate(again, &rogue.private, &bob_key, &hello)
            .await
            .is_ok(),
        "listener still up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_refuses_a_listener_with_the_wrong_key() {
    let server = TestServer::start(&["--no-relay"]);
    // Nobody can dial alice (her listener is on the IPv6 loopback only, the
    // server and its paths are IPv4, she advertises a dead port), so the real bob, who dials her too since
    // both sides reach out, cannot make the session.
    let alice = user(
        &server,
        "alice",
        &format!("{FAST_RECONNECT}peer_listen = \"[::1]:0\"\nadvertise = \"127.0.0.1:1\"\n"),
    );
    // An impostor listener that bob's registration points at (bob's own
    // listener is on the IPv6 loopback only too).
    let impostor = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor_addr = impostor.local_addr().unwrap();
    let bob_cfg = format!(
        "{FAST_RECONNECT}peer_listen = \"[::1]:0\"\nadvertise = \"{impostor_addr}\"\nauto_accept = [\"alice\"]\n"
    );
    let bob = user(&server, "bob", &bob_cfg);
    let rogue = keypair();
    let serve = tokio::spawn(async move {
        let (mut stream, _) = impostor.accept().await.unwrap();
        assert_eq!(
            preamble(&mut stream, LinkRole::Accept).await,
            LinkRole::Dial
        );
        noise::respond(stream, &rogue.private).await.map(|_| ())
    });
    let out = tokio::task::spawn_blocking(move || {
        alice.ctl_json(&["connect", "bob", "--timeout", "20s"])
    })
    .await
    .unwrap();
    assert_ne!(out.0, 0, "{}", out.1);
    let msg = out.1["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("not the key the server gave"), "{msg}");
    // The impostor never learned alice's identity: the handshake stopped
    // before her static key was sent.
    let result = tokio::time::timeout(Duration::from_secs(20), serve)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_err(), "impostor handshake must not complete");
    drop(bob);
}

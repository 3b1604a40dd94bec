//! What the server tells each side of an accepted invitation about reaching
//! the other (paths in design order, its own observed address, its own
//! relay token), and the address probe.

mod support;

use futures::{SinkExt, StreamExt};
use p2p_proto::limits::WIRE_VERSION;
use p2p_proto::wire::{ClientMsg, ServerMsg, MAX_LAN_PATHS};
use p2p_testkit::TestServer;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_carry_paths_in_order_the_receivers_address_and_a_token_each() {
    let server = TestServer::start(&[]);
    let lan = [
        "10.9.0.1:4001",
        "not an address",
        "0.0.0.0:4001",
        "224.0.0.1:4001",
        "10.9.0.2:0",
        "10.9.0.1:4001",
        "[fd00::1]:4001",
    ];
    let mut alice = Client::login(&server, "alice", peer_info(4001, None, &lan)).await;
    let mut bob = Client::login(
        &server,
        "bob",
        peer_info(4002, Some("198.51.100.7:4002"), &[]),
    )
    .await;
    let (for_alice, for_bob) = accepted(&mut alice, &mut bob).await;

    // Bob learns alice's paths: listener port at her observed host, her
    // observed link, then her valid LAN addresses.
    assert_eq!(for_bob.user, "alice");
    assert_eq!(
        for_bob.paths,
        [
            "127.0.0.1:4001".to_string(),
            alice.observed.to_string(),
            "10.9.0.1:4001".into(),
            "[fd00::1]:4001".into(),
        ]
    );
    assert_eq!(for_bob.addr, for_bob.paths[0]);
    assert_eq!(for_bob.your_addr, Some(bob.observed.to_string()));

    // Alice learns bob's: advertised first.
    assert_eq!(for_alice.user, "bob");
    assert_eq!(
        for_alice.paths,
        [
            "198.51.100.7:4002".to_string(),
            "127.0.0.1:4002".into(),
            bob.observed.to_string(),
        ]
    );
    assert_eq!(for_alice.addr, "198.51.100.7:4002");
    assert_eq!(for_alice.your_addr, Some(alice.observed.to_string()));

    // One token each, distinct, 32 random bytes in hex.
    let (ta, tb) = (for_alice.relay.unwrap(), for_bob.relay.unwrap());
    for t in [&ta, &tb] {
        assert_eq!(t.expose().len(), 64);
        assert!(t.expose().bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_ne!(ta.expose(), tb.expose());
    // Tokens never reach the log.
    let log = server.log();
    assert!(!log.contains(ta.expose()) && !log.contains(tb.expose()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lan_list_is_cut_and_never_refuses_the_login() {
    let server = TestServer::start(&[]);
    let lan: Vec<String> = (1..=40).map(|i| format!("10.9.0.{i}:4001")).collect();
    let lan: Vec<&str> = lan.iter().map(String::as_str).collect();
    let mut alice = Client::login(&server, "alice", peer_info(4001, None, &lan)).await;
    let mut bob = Client::plain(&server, "bob", 4002).await;
    let (_, for_bob) = accepted(&mut alice, &mut bob).await;
    let lan_paths: Vec<_> = for_bob
        .paths
        .iter()
        .filter(|p| p.starts_with("10.9."))
        .collect();
    assert_eq!(lan_paths.len(), MAX_LAN_PATHS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_answers_the_clients_address_and_the_server_closes_first() {
    let server = TestServer::start(&[]);
    let mut conn = connect(&server).await;
    let local = conn.get_ref().get_ref().0.local_addr().unwrap();
    conn.send(ClientMsg::Observe {
        version: WIRE_VERSION,
    })
    .await
    .unwrap();
    match next(&mut conn).await {
        ServerMsg::Observed { addr } => assert_eq!(addr, local.to_string()),
        other => panic!("{other:?}"),
    }
    // The server closed its end while ours is still open.
    let end = tokio::time::timeout(DEADLINE, conn.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "expected the server to close: {end:?}"
    );
    // The daemon's probe client agrees.
    let seen = p2pd::relay_client::observe(connect(&server).await)
        .await
        .unwrap();
    assert_eq!(seen.ip(), local.ip());
}

//! SPEC §3 "Keepalive": a client that goes silent (a dead machine, a pulled
//! cable) is dropped from presence once the idle timeout passes, while an
//! active one stays. The timeout is shortened with the server's hidden
//! `--idle-timeout` flag; the mechanism is the same as with the default 45 s.

use std::time::Duration;

use p2p_loadgen::{register_users, Client};
use p2p_testkit::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_from_presence() {
    let server = TestServer::start(&["--idle-timeout", "2s", "--broadcast-limit", "10000"]);
    let names = register_users(&server, 2);
    let mut active = Client::login(server.addr, &server.fingerprint, &names[0])
        .await
        .unwrap();
    let _silent = Client::login(server.addr, &server.fingerprint, &names[1])
        .await
        .unwrap();
    assert_eq!(active.list().await.unwrap(), names);
    // The active client keeps talking (so it stays), and its broadcasts keep
    // *us* writing to the silent one — which must not count as hearing it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        active.broadcast("tick").await.unwrap();
        let online = active.list().await.unwrap();
        if online == [names[0].clone()] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "silent client still listed: {online:?}"
        );
        tokio::time::sleep(p2p_testkit::POLL * 8).await;
    }
    assert!(server.log().contains("keepalive missed"));
}

//! A session that stops reading while broadcasts pour in: its writes wait
//! (the slow path of a delivery, with the write timeout) until it is
//! dropped, and every other session gets every broadcast meanwhile, in
//! order.

mod support;

use p2p_proto::wire::{ServerEvent, ServerMsg};
use p2p_testkit::{wait_for, TestServer};
use support::*;

/// Broadcasts of 4,000 bytes: 8 MB, more than the socket buffers of a
/// client that does not read hold on loopback (about 4 MB sending and
/// 128 KB receiving), so the server's writes to it must wait.
const BROADCASTS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_stops_reading_is_dropped_and_holds_nobody_up() {
    let server = TestServer::start(&["--broadcast-limit", "100000"]);
    let mut alice = Client::plain(&server, "alice", 7101).await;
    let mut bob = Client::plain(&server, "bob", 7102).await;
    // Logged in, then never read again.
    let _carol = Client::plain(&server, "carol", 7103).await;

    let reader = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(BROADCASTS);
        while ids.len() < BROADCASTS {
            match next(&mut bob.conn).await {
                ServerMsg::Event {
                    event: ServerEvent::Broadcast { id, .. },
                } => ids.push(id),
                other => panic!("bob: {other:?}"),
            }
        }
        ids
    });
    let text = "x".repeat(4000);
    let mut sent = Vec::with_capacity(BROADCASTS);
    for _ in 0..BROADCASTS {
        sent.push(alice.broadcast(&text).await);
    }
    assert_eq!(
        reader.await.unwrap(),
        sent,
        "bob: every broadcast, in order"
    );
    tokio::task::block_in_place(|| {
        wait_for(DEADLINE, "carol's session dropped for not reading", || {
            server
                .log()
                .contains("write timed out (client not reading)")
                .then_some(())
        })
    });
}

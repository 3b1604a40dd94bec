//! The invitation driver ([`Peers::run`]) on paused time: the machine's
//! deadlines are unit-tested on an injected clock (`invitations/tests.rs`);
//! these show that the task around it wakes at them by itself, with no
//! server event or command to prompt it.

use std::sync::Arc;

use p2p_proto::wire::{Contact, Reply, Request, ServerEvent};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::invitations::{Input, SESSION_SETUP_DEADLINE};
use super::{PeerError, Peers, SetupError, Verdict};
use crate::inbox::Inbox;
use crate::link::{LinkCmd, LinkHandle, EVENT_QUEUE};
use crate::state::StateDir;

/// A daemon's peer side on a detached link: the test plays the server.
fn peers(dir: &std::path::Path) -> (Arc<Peers>, mpsc::Receiver<LinkCmd>, CancellationToken) {
    let state = StateDir::open(dir).unwrap();
    let inbox = Inbox::open(dir).unwrap();
    let (events, _) = broadcast::channel(16);
    let shutdown = CancellationToken::new();
    let (link, server) = LinkHandle::detached();
    let peers = Peers::new(
        vec![7; 32],
        crate::peer::LocalPeer {
            public_key: vec![8; 32],
            port: 0,
            advertise: None,
            lan: Vec::new(),
            listen: None,
        },
        state,
        inbox.clone(),
        crate::contacts::Contacts::open(&inbox).unwrap(),
        events,
        Vec::new(),
        link,
        shutdown.clone(),
    );
    (peers, server, shutdown)
}

/// We accept bob's invitation, the server answers with his contact (a
/// path where nobody listens, no relay), and then nothing happens: no link
/// comes up either way. The driver alone ends the waiting `accept`, with
/// the reason, once the setup deadline is over.
#[tokio::test(start_paused = true)]
async fn the_driver_ends_an_accept_at_the_setup_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (peers, mut server, shutdown) = peers(dir.path());
    let (to_peers, from_link) = mpsc::channel(EVENT_QUEUE);
    let driver = tokio::spawn(peers.clone().run(from_link));
    // As the link routes it (the same call `run` makes for each event).
    peers.server_event(ServerEvent::Invitation {
        invite: 7,
        from: "bob".into(),
        expires_ms: p2p_proto::time::now_ms() + 60_000,
    });

    let accept = tokio::spawn({
        let peers = peers.clone();
        async move { peers.answer("bob", true).await }
    });
    let Some(LinkCmd::Request { req, reply }) = server.recv().await else {
        panic!("the accept must reach the server");
    };
    assert!(
        matches!(
            req,
            Request::Answer {
                invite: 7,
                accept: true
            }
        ),
        "{req:?}"
    );
    let bob = Contact {
        user: "bob".into(),
        addr: "127.0.0.1:9".into(),
        public_key: hex::encode([0xb0; 32]),
        paths: Vec::new(),
        your_addr: None,
        relay: None,
    };
    let _ = reply.send(Ok(Reply::Answered {
        invite: 7,
        contact: Some(bob),
    }));
    let answered = Instant::now();

    // From here on nothing but time passes (paused: it jumps to the next
    // timer once everything is idle, the driver's deadline being the first).
    let outcome = tokio::time::timeout(SESSION_SETUP_DEADLINE * 4, accept)
        .await
        .expect("the driver must end the accept at the setup deadline")
        .unwrap();
    match outcome {
        Err(PeerError::Setup(SetupError::NoSession { user, why, .. })) => {
            assert_eq!(user, "bob");
            assert!(why.contains("127.0.0.1:9"), "names the path tried: {why}");
        }
        other => panic!("expected the setup deadline, got {other:?}"),
    }
    assert!(
        Instant::now() >= answered + SESSION_SETUP_DEADLINE,
        "fired before the deadline"
    );

    shutdown.cancel();
    driver.await.unwrap();
    // Held open to the end: a closed link channel means shutdown to `run`.
    drop(to_peers);
}

/// Bob's link is verified while our acceptance is still on its way to the
/// server, and the server never answers. The link is held, and the driver
/// alone refuses it when the setup deadline runs out; the `accept` still waiting for the
/// server is answered at shutdown rather than left hanging.
#[tokio::test(start_paused = true)]
async fn the_driver_refuses_a_held_link_at_the_setup_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (peers, mut server, shutdown) = peers(dir.path());
    let (to_peers, from_link) = mpsc::channel(EVENT_QUEUE);
    let driver = tokio::spawn(peers.clone().run(from_link));
    peers.server_event(ServerEvent::Invitation {
        invite: 7,
        from: "bob".into(),
        expires_ms: p2p_proto::time::now_ms() + 60_000,
    });
    let accept = tokio::spawn({
        let peers = peers.clone();
        async move { peers.answer("bob", true).await }
    });
    // The server has the acceptance and says nothing (the reply is kept,
    // unanswered, to the end).
    let Some(LinkCmd::Request {
        reply: _unanswered, ..
    }) = server.recv().await
    else {
        panic!("the accept must reach the server");
    };

    let (link, verdict) = tokio::sync::oneshot::channel();
    peers.apply(Input::Verified {
        user: "bob".into(),
        key: vec![0xb0; 32],
        invite: 7,
        link,
    });
    let held = Instant::now();
    let verdict = tokio::time::timeout(SESSION_SETUP_DEADLINE * 4, verdict)
        .await
        .expect("the driver must refuse the held link at the setup deadline")
        .unwrap();
    assert!(matches!(verdict, Verdict::Refuse), "let through");
    assert!(
        Instant::now() >= held + SESSION_SETUP_DEADLINE,
        "refused before the deadline"
    );
    assert!(!accept.is_finished(), "the accept waits for the server");

    shutdown.cancel();
    driver.await.unwrap();
    let outcome = accept.await.unwrap();
    assert!(
        matches!(outcome, Err(PeerError::ShuttingDown)),
        "{outcome:?}"
    );
    drop(to_peers);
}

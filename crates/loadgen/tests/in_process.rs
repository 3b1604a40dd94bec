//! The seam for tests that need no separate process: `Server::run` on
//! `127.0.0.1:0` inside the test's own runtime, driven by the load
//! generator's real wire client (TLS, login, requests, events).

use std::net::SocketAddr;

use p2p_loadgen::{register_users_in, Client};
use p2p_proto::wire::{RefusalCode, Reply, Request};
use p2p_server::{Server, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A server running in this process, and how to stop it.
struct InProcess {
    addr: SocketAddr,
    fingerprint: String,
    stop: CancellationToken,
    task: JoinHandle<p2p_server::Result<()>>,
}

async fn start(data_dir: &std::path::Path) -> InProcess {
    let server = Server::open(ServerConfig::new(data_dir.to_path_buf()))
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fingerprint = server.fingerprint().to_string();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.run(listener, stop.clone()));
    InProcess {
        addr,
        fingerprint,
        stop,
        task,
    }
}

impl InProcess {
    async fn login(&self, user: &str) -> Client {
        Client::login(self.addr, &self.fingerprint, user)
            .await
            .unwrap()
    }

    /// Stops the server and waits for `run` to return.
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_list_invite_and_answer_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let names = register_users_in(dir.path(), 2);
    let server = start(dir.path()).await;
    let mut alice = server.login(&names[0]).await;
    let mut bob = server.login(&names[1]).await;
    assert_eq!(alice.list().await.unwrap(), names);

    let invite = match alice
        .request(Request::Invite {
            to: names[1].clone(),
        })
        .await
        .unwrap()
    {
        Reply::Invited { invite, .. } => invite,
        other => panic!("{other:?}"),
    };
    // A refusal arrives as the typed code.
    match bob
        .request(Request::Answer {
            invite: invite + 1,
            accept: true,
        })
        .await
        .unwrap()
    {
        Reply::Error { code, .. } => assert_eq!(code, RefusalCode::NoInvitation),
        other => panic!("{other:?}"),
    }
    match bob
        .request(Request::Answer {
            invite,
            accept: true,
        })
        .await
        .unwrap()
    {
        Reply::Answered {
            contact: Some(_), ..
        } => {}
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// A broadcast is delivered and acknowledged; after an in-process restart
/// on the same data directory it is not delivered again (the ack, queued
/// until shutdown if need be, was written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_ack_survives_an_in_process_restart() {
    let dir = tempfile::tempdir().unwrap();
    let names = register_users_in(dir.path(), 2);
    let server = start(dir.path()).await;
    let mut alice = server.login(&names[0]).await;
    let mut bob = server.login(&names[1]).await;
    let id = alice.broadcast("hello").await.unwrap();
    assert_eq!(bob.next_broadcast().await.unwrap(), id);
    // Ack sent by next_broadcast; a request round trip makes sure the
    // server has read it before it stops.
    bob.list().await.unwrap();
    server.stop().await;

    let server = start(dir.path()).await;
    let mut bob = server.login(&names[1]).await;
    let mut alice = server.login(&names[0]).await;
    let next = alice.broadcast("again").await.unwrap();
    assert_eq!(
        bob.next_broadcast().await.unwrap(),
        next,
        "the acknowledged broadcast is not delivered again"
    );
    server.stop().await;
}

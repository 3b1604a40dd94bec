//! Handler tests against an in-process daemon: `p2pd::run` on temp dirs
//! and `127.0.0.1:0` inside the test's runtime, commands driven through
//! `p2pd::handlers::handle` directly, with no separate process and no
//! control socket client. The daemon has no server configured, so it stays
//! logged out and nothing here waits on the network.

use std::sync::Arc;

use p2p_proto::ctl::{Command, ErrorCode, Reply, ServerState};
use p2pd::config::Overrides;
use p2pd::{Daemon, DaemonConfig};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A daemon running in this test's runtime, and what stops it.
struct InProcess {
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<p2pd::Result<()>>,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts `p2pd::run` with every path in a fresh temp dir (an empty config
/// file, so the user's own `p2pd.toml` is never read) and waits until it
/// is ready.
async fn start() -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p2pd.toml");
    std::fs::write(&config, "").unwrap();
    let socket = dir.path().join("p2pd.sock");
    let cfg = DaemonConfig::resolve(Overrides {
        config: Some(config),
        socket: Some(socket.clone()),
        state_dir: Some(dir.path().join("state")),
        peer_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Overrides::default()
    })
    .unwrap();
    let shutdown = CancellationToken::new();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(p2pd::run(cfg, shutdown.clone(), move |d| {
        let _ = tx.send(d.clone());
    }));
    let daemon = rx.await.expect("the daemon became ready");
    InProcess {
        daemon,
        shutdown,
        task,
        socket,
        _dir: dir,
    }
}

impl InProcess {
    async fn handle(&self, cmd: Command) -> Result<Reply, p2p_proto::ctl::CtlError> {
        p2pd::handlers::handle(&self.daemon, cmd).await
    }

    /// Cancels the daemon and waits for `run` to return.
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        assert!(
            !self.socket.exists(),
            "the control socket is removed at exit"
        );
    }
}

#[tokio::test]
async fn status_of_a_fresh_daemon_is_logged_out_and_empty() {
    let d = start().await;
    let Reply::Status(s) = d.handle(Command::Status).await.unwrap() else {
        panic!("status answers with a status report");
    };
    assert_eq!(s.server.state, ServerState::LoggedOut);
    assert_eq!(s.server.user, None);
    assert_eq!((s.sessions, s.pending, s.unread), (0, 0, 0));
    assert_eq!(s.peer_listen, d.daemon.peer_listen.to_string());
    assert_eq!(s.public_key, d.daemon.public_key);
    d.stop().await;
}

#[tokio::test]
async fn requests_and_inbox_start_empty() {
    let d = start().await;
    let Reply::Requests(r) = d.handle(Command::Requests).await.unwrap() else {
        panic!("requests answers with a request list");
    };
    assert!(r.requests.is_empty());
    let inbox = Command::Inbox {
        all: true,
        from: None,
        follow: false,
        after: None,
    };
    let Reply::Inbox(page) = d.handle(inbox).await.unwrap() else {
        panic!("inbox answers with a page");
    };
    assert!(page.messages.is_empty());
    assert!(!page.more);
    d.stop().await;
}

#[tokio::test]
async fn send_without_a_session_is_refused_with_no_session() {
    let d = start().await;
    let err = d
        .handle(Command::Send {
            now: false,
            user: "bob".into(),
            texts: vec!["hello".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NoSession, "{err:?}");
    let Reply::Sessions(s) = d.handle(Command::Sessions).await.unwrap() else {
        panic!("sessions answers with a session list");
    };
    assert!(s.sessions.is_empty(), "a refused send opens nothing");
    d.stop().await;
}

#[tokio::test]
async fn watch_is_not_a_handler_command() {
    let d = start().await;
    let err = d.handle(Command::Watch).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    d.stop().await;
}

/// SPEC §11: a contact without a session gets the message queued (durable,
/// listed by `outbox`, `queued` in `history`); `--now` and a contact whose
/// key changed after verification (held) get nothing stored.
#[tokio::test]
async fn send_queues_for_a_contact_and_refuses_now_and_held_contacts() {
    let d = start().await;
    let contacts = p2pd::contacts::Contacts::open(&d.daemon.inbox).unwrap();
    contacts.seen("bob", "aa", 1).unwrap();
    contacts.seen("carol", "bb", 1).unwrap();
    contacts.confirm("carol").unwrap();
    contacts.seen("carol", "cc", 2).unwrap();
    assert!(contacts.get("carol").unwrap().unwrap().held);
    let send = |user: &str, text: &str, now: bool| Command::Send {
        user: user.into(),
        texts: vec![text.into()],
        now,
    };

    let Reply::Sent(s) = d.handle(send("bob", "later", false)).await.unwrap() else {
        panic!("send answers with a sent list");
    };
    assert_eq!(s.sent[0].status, p2p_proto::ctl::SendStatus::Queued);
    let err = d.handle(send("bob", "now", true)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NoSession, "{err:?}");
    let err = d.handle(send("carol", "hi", false)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::KeyChanged, "{err:?}");
    assert!(
        err.message.contains("p2pctl verify carol") && err.message.contains("p2pctl trust carol"),
        "{}",
        err.message
    );
    let err = d.handle(send("bob", " \t ", false)).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest, "{err:?}");

    let Reply::Outbox(o) = d.handle(Command::Outbox).await.unwrap() else {
        panic!("outbox answers with a list");
    };
    let listed: Vec<(&str, &str)> = o
        .outbox
        .iter()
        .map(|m| (m.to.as_str(), m.text.as_str()))
        .collect();
    assert_eq!(listed, [("bob", "later")], "only the queued message");
    for (user, n) in [("bob", 1), ("carol", 0)] {
        let history = Command::History {
            user: user.into(),
            limit: None,
        };
        let Reply::History(h) = d.handle(history).await.unwrap() else {
            panic!("history answers with a list");
        };
        assert_eq!(h.history.len(), n, "{user}: {h:?}");
    }
    d.stop().await;
}

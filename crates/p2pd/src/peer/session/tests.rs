//! Session tasks on in-memory Noise links (`tokio::io::duplex`): link
//! switches with traffic both ways, repeats, failures, and the upgrade loop
//! on paused time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use p2p_proto::ctl::{ErrorCode, SessionPath};
use p2p_proto::peer::{PeerHello, PeerMsg, NOISE_PARAMS};
use p2p_proto::wire::MAX_PATHS;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::reach::Reach;
use super::*;
use crate::peer::noise::{initiate, respond};

/// A Noise link pair over an in-memory pipe (a TCP connection's worth of
/// buffer, so both ends can write while the other is busy).
async fn link_pair() -> (NoiseLink, NoiseLink) {
    let keys = || {
        snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .generate_keypair()
            .unwrap()
    };
    let (a, b) = tokio::io::duplex(1 << 20);
    let (alice, bob) = (keys(), keys());
    let hello = PeerHello {
        user: "alice".into(),
        invite: 7,
    };
    let (x, y) = tokio::join!(
        initiate(a, &alice.private, &bob.public, &hello),
        respond(b, &bob.private)
    );
    (x.unwrap(), y.unwrap().0)
}

/// A [`Reach`] that answers with fixed paths and records the dials.
#[derive(Default)]
struct FakeReach {
    paths: Vec<String>,
    dials: Mutex<Vec<(String, u64, Vec<SocketAddr>)>>,
}

impl Reach for FakeReach {
    fn my_paths(&self) -> BoxFuture<'static, Vec<String>> {
        let paths = self.paths.clone();
        Box::pin(async move { paths })
    }

    fn dial(&self, peer: &str, invite: u64, paths: Vec<SocketAddr>) {
        self.dials
            .lock()
            .unwrap()
            .push((peer.to_string(), invite, paths));
    }
}

/// One running session and what the test holds of it.
struct Side {
    cmds: mpsc::Sender<SessionCmd>,
    path: PathCell,
    inbox: Inbox,
    task: JoinHandle<String>,
    _dir: tempfile::TempDir,
}

fn start(
    peer: &str,
    leader: bool,
    link: NoiseLink,
    path: SessionPath,
    reach: Arc<FakeReach>,
) -> Side {
    start_with(Vec::new(), peer, leader, link, path, reach)
}

fn start_with(
    first: Vec<PeerMsg>,
    peer: &str,
    leader: bool,
    link: NoiseLink,
    path: SessionPath,
    reach: Arc<FakeReach>,
) -> Side {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let (cmds, rx) = mpsc::channel(SESSION_QUEUE);
    let path = PathCell::new(path);
    let env = SessionEnv {
        inbox: inbox.clone(),
        events: broadcast::channel(16).0,
        shutdown: CancellationToken::new(),
        reach,
    };
    let start = Start {
        peer: peer.into(),
        invite: 7,
        leader,
        link,
        first,
        path: path.clone(),
        cmds: rx,
        closer: CancellationToken::new(),
    };
    Side {
        cmds,
        path,
        inbox,
        task: tokio::spawn(run(env, start)),
        _dir: dir,
    }
}

impl Side {
    /// The texts stored from `peer`, in inbox order, with their ids.
    fn stored(&self, peer: &str) -> Vec<(u64, String)> {
        let (rows, _) = self.inbox.page(true, Some(peer), 0, usize::MAX).unwrap();
        rows.into_iter().map(|r| (r.id, r.text)).collect()
    }

    async fn send(
        &self,
        texts: &[&str],
    ) -> oneshot::Receiver<Result<Vec<u64>, crate::peer::error::PeerError>> {
        let (reply, rx) = oneshot::channel();
        let msgs = out(texts.iter().map(|t| t.to_string()).collect());
        self.cmds
            .send(SessionCmd::Send { msgs, reply })
            .await
            .unwrap();
        rx
    }

    async fn adopt(&self, link: NoiseLink, path: SessionPath) {
        self.cmds
            .send(SessionCmd::Adopt {
                link: Box::new(link),
                path,
            })
            .await
            .unwrap();
    }
}

/// The test's end of a link: answers pings, hands out everything else.
struct Fake {
    link: NoiseLink,
    got: VecDeque<PeerMsg>,
}

impl Fake {
    fn new(link: NoiseLink) -> Self {
        Fake {
            link,
            got: VecDeque::new(),
        }
    }

    /// The next message other than a keepalive; `None` once the link closed.
    async fn next(&mut self) -> Option<PeerMsg> {
        loop {
            if let Some(m) = self.got.pop_front() {
                return Some(m);
            }
            let msgs = self.link.recv().await.ok()??;
            for m in msgs {
                match m {
                    PeerMsg::Ping => self.link.send(&[PeerMsg::Pong]).await.ok()?,
                    PeerMsg::Pong => {}
                    other => self.got.push_back(other),
                }
            }
        }
    }

    async fn send(&mut self, msgs: &[PeerMsg]) {
        self.link.send(msgs).await.unwrap();
    }
}

fn message(id: u64, text: &str) -> PeerMsg {
    PeerMsg::Message {
        id,
        text: text.into(),
        at_ms: p2p_proto::time::now_ms(),
        mid: None,
    }
}

/// Commands of this many texts each carry the streams below.
const TEXTS_PER_SEND: usize = 4;
/// Messages each side streams while the link switches.
const STREAMED: usize = 1000;

/// Streams `STREAMED` messages named `{tag}{n}`; adopts `new` after
/// `adopt_at` commands; returns once every command was acknowledged.
fn stream(side: &Side, tag: &'static str, adopt_at: usize, new: NoiseLink) -> JoinHandle<()> {
    let cmds = side.cmds.clone();
    tokio::spawn(async move {
        let mut new = Some(new);
        let mut replies = Vec::new();
        for c in 0..STREAMED / TEXTS_PER_SEND {
            if c == adopt_at {
                let link = Box::new(new.take().unwrap());
                let path = SessionPath::Direct;
                cmds.send(SessionCmd::Adopt { link, path }).await.unwrap();
            }
            let texts: Vec<String> = (0..TEXTS_PER_SEND)
                .map(|i| format!("{tag}{:04}", c * TEXTS_PER_SEND + i))
                .collect();
            let (reply, rx) = oneshot::channel();
            let msgs = out(texts);
            cmds.send(SessionCmd::Send { msgs, reply }).await.unwrap();
            replies.push(rx);
        }
        for (c, rx) in replies.into_iter().enumerate() {
            let ids = rx.await.unwrap().unwrap();
            let first = (c * TEXTS_PER_SEND) as u64 + 1;
            let want: Vec<u64> = (first..first + TEXTS_PER_SEND as u64).collect();
            assert_eq!(ids, want, "ids keep counting across the switch");
        }
    })
}

/// A relayed session switches to a direct link while both sides stream:
/// every message arrives once, in order, and every send is acknowledged;
/// whichever side adopts the new link first.
#[tokio::test]
async fn a_switch_mid_stream_loses_duplicates_and_reorders_nothing() {
    for (leader_at, follower_at) in [(80, 150), (150, 80)] {
        let (a1, b1) = link_pair().await;
        let (a2, b2) = link_pair().await;
        let reach = Arc::new(FakeReach::default());
        let alice = start("bob", true, a1, SessionPath::Relayed, reach.clone());
        let bob = start("alice", false, b1, SessionPath::Relayed, reach);
        let (x, y) = tokio::join!(
            stream(&alice, "a", leader_at, a2),
            stream(&bob, "b", follower_at, b2)
        );
        if x.is_err() || y.is_err() {
            panic!("{:?} {:?}", alice.task.await, bob.task.await);
        }
        for (side, from, tag) in [(&bob, "alice", "a"), (&alice, "bob", "b")] {
            let want: Vec<(u64, String)> = (0..STREAMED)
                .map(|n| (n as u64 + 1, format!("{tag}{n:04}")))
                .collect();
            assert_eq!(side.stored(from), want, "from {from}");
            assert_eq!(side.path.get(), SessionPath::Direct);
        }
        alice.cmds.send(SessionCmd::Close).await.unwrap();
        assert_eq!(alice.task.await.unwrap(), "closed by this side");
        assert_eq!(bob.task.await.unwrap(), "alice disconnected");
    }
}

/// After a switch the leader resends from a stale `received_upto`: the
/// repeat is not stored again, but it is acknowledged.
#[tokio::test]
async fn a_repeated_id_after_the_switch_is_dropped_but_acknowledged() {
    let (a1, b1) = link_pair().await;
    let (a2, b2) = link_pair().await;
    let bob = start("alice", false, b1, SessionPath::Relayed, Default::default());
    let mut old = Fake::new(a1);
    old.send(&[message(1, "one")]).await;
    assert_eq!(old.next().await, Some(PeerMsg::Ack { upto: 1 }));

    bob.adopt(b2, SessionPath::Direct).await;
    let mut new = Fake::new(a2);
    new.send(&[PeerMsg::Switch { received_upto: 0 }]).await;
    assert_eq!(new.next().await, Some(PeerMsg::Switch { received_upto: 1 }));
    assert_eq!(old.next().await, None, "the follower dropped the old link");
    new.send(&[message(1, "one")]).await;
    assert_eq!(new.next().await, Some(PeerMsg::Ack { upto: 1 }));
    new.send(&[message(2, "two")]).await;
    assert_eq!(new.next().await, Some(PeerMsg::Ack { upto: 2 }));
    let want = [(1, "one".to_string()), (2, "two".to_string())];
    assert_eq!(bob.stored("alice"), want);
    assert_eq!(bob.path.get(), SessionPath::Direct);
}

/// The leader's new link dies before the follower answers the switch: the
/// session ends saying so, and a send still waiting gets an error.
#[tokio::test]
async fn the_new_link_failing_mid_switch_ends_the_session_with_errors() {
    let (a1, b1) = link_pair().await;
    let (a2, b2) = link_pair().await;
    let alice = start("bob", true, a1, SessionPath::Relayed, Default::default());
    let mut old = Fake::new(b1);
    let waiting = alice.send(&["hello"]).await;
    assert!(matches!(
        old.next().await,
        Some(PeerMsg::Message { id: 1, .. })
    ));

    alice.adopt(a2, SessionPath::Direct).await;
    let mut new = Fake::new(b2);
    assert_eq!(new.next().await, Some(PeerMsg::Switch { received_upto: 0 }));
    drop(new);
    let reason = alice.task.await.unwrap();
    assert!(reason.contains("failed while switching"), "{reason}");
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoSession);
    assert!(err.to_string().contains("failed while switching"), "{err}");
    assert_eq!(old.next().await, Some(PeerMsg::Bye), "the follower is told");
}

/// Only relayed → direct: a link offered to a direct session, or a relayed
/// one offered to a relayed session, is closed and the session stays.
#[tokio::test]
async fn a_link_offered_to_a_direct_session_is_closed() {
    for (now, offered) in [
        (SessionPath::Direct, SessionPath::Direct),
        (SessionPath::Relayed, SessionPath::Relayed),
    ] {
        for leader in [true, false] {
            let (a1, b1) = link_pair().await;
            let (a2, b2) = link_pair().await;
            let alice = start("bob", leader, a1, now, Default::default());
            alice.adopt(a2, offered).await;
            let mut extra = Fake::new(b2);
            assert_eq!(extra.next().await, None, "closed");
            let mut old = Fake::new(b1);
            let sent = alice.send(&["still here"]).await;
            assert!(matches!(
                old.next().await,
                Some(PeerMsg::Message { id: 1, .. })
            ));
            old.send(&[PeerMsg::Ack { upto: 1 }]).await;
            assert_eq!(sent.await.unwrap().unwrap(), [1]);
            assert_eq!(alice.path.get(), now);
        }
    }
}

/// A `Switch` on the link a session started on is the link choice made at
/// setup: the follower agrees, the leader takes it as an ack; nothing moves.
#[tokio::test]
async fn a_switch_on_the_current_link_is_answered_and_harmless() {
    let (a1, b1) = link_pair().await;
    let bob = start("alice", false, b1, SessionPath::Direct, Default::default());
    let mut leader = Fake::new(a1);
    leader.send(&[PeerMsg::Switch { received_upto: 0 }]).await;
    assert_eq!(
        leader.next().await,
        Some(PeerMsg::Switch { received_upto: 0 })
    );
    let sent = bob.send(&["hi"]).await;
    assert!(matches!(
        leader.next().await,
        Some(PeerMsg::Message { id: 1, .. })
    ));
    leader.send(&[PeerMsg::Switch { received_upto: 1 }]).await;
    assert_eq!(sent.await.unwrap().unwrap(), [1], "counts as an ack");

    let (a1, b1) = link_pair().await;
    let alice = start("bob", true, a1, SessionPath::Direct, Default::default());
    let mut follower = Fake::new(b1);
    let sent = alice.send(&["hi"]).await;
    assert!(matches!(
        follower.next().await,
        Some(PeerMsg::Message { id: 1, .. })
    ));
    follower.send(&[PeerMsg::Switch { received_upto: 1 }]).await;
    assert_eq!(sent.await.unwrap().unwrap(), [1]);
    let sent = alice.send(&["again"]).await;
    // Not answered, not resent: the next thing on the link is the new message.
    assert!(matches!(
        follower.next().await,
        Some(PeerMsg::Message { id: 2, .. })
    ));
    drop(sent);
}

/// While relayed the leader offers its addresses every UPGRADE_EVERY (and
/// dials what the follower answers); once direct it stops.
#[tokio::test]
async fn the_leader_offers_its_paths_every_interval_only_while_relayed() {
    let (a1, b1) = link_pair().await;
    let (a2, b2) = link_pair().await;
    tokio::time::pause();
    let reach = Arc::new(FakeReach {
        paths: vec!["198.51.100.1:4401".into()],
        ..Default::default()
    });
    let t0 = Instant::now();
    let alice = start("bob", true, a1, SessionPath::Relayed, reach.clone());
    let mut follower = Fake::new(b1);
    for n in 1..=3u32 {
        let got = follower.next().await;
        // Paused time moves in whole milliseconds past each deadline.
        let late = t0.elapsed() - UPGRADE_EVERY * n;
        assert!(late < Duration::from_millis(10), "{late:?}");
        let want = PeerMsg::TryDirect {
            paths: vec!["198.51.100.1:4401".into()],
        };
        assert_eq!(got, Some(want));
    }
    // The follower's answer is dialled.
    let paths = vec!["203.0.113.9:4401".to_string()];
    follower.send(&[PeerMsg::TryDirect { paths }]).await;
    while reach.dials.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    alice.adopt(a2, SessionPath::Direct).await;
    let mut new = Fake::new(b2);
    assert_eq!(new.next().await, Some(PeerMsg::Switch { received_upto: 0 }));
    let dials = reach.dials.lock().unwrap().clone();
    let want: Vec<SocketAddr> = vec!["203.0.113.9:4401".parse().unwrap()];
    assert_eq!(dials, [("bob".to_string(), 7, want)]);
    new.send(&[PeerMsg::Switch { received_upto: 0 }]).await;
    // Direct now: a minute of keepalives and no more offers.
    let sent = alice.send(&["direct"]).await;
    assert!(matches!(new.next().await, Some(PeerMsg::Ack { upto: 0 })));
    assert!(matches!(
        new.next().await,
        Some(PeerMsg::Message { id: 1, .. })
    ));
    new.send(&[PeerMsg::Ack { upto: 1 }]).await;
    sent.await.unwrap().unwrap();
    let quiet = tokio::time::timeout(UPGRADE_EVERY * 6, new.next()).await;
    assert!(quiet.is_err(), "nothing but keepalives: {quiet:?}");
    assert_eq!(alice.path.get(), SessionPath::Direct);
}

/// The follower offers nothing on its own; a `TryDirect` makes it dial the
/// valid paths (at most MAX_PATHS) and answer with its own, once per gap.
#[tokio::test]
async fn a_received_try_direct_is_dialled_and_answered() {
    let (a1, b1) = link_pair().await;
    tokio::time::pause();
    let reach = Arc::new(FakeReach {
        paths: vec!["192.0.2.7:4401".into()],
        ..Default::default()
    });
    let _bob = start("alice", false, b1, SessionPath::Relayed, reach.clone());
    let mut leader = Fake::new(a1);
    let quiet = tokio::time::timeout(UPGRADE_EVERY * 3, leader.next()).await;
    assert!(quiet.is_err(), "a follower does not offer first: {quiet:?}");

    let mut paths = vec!["bogus".to_string(), "0.0.0.0:1".into(), "10.1.1.1:0".into()];
    paths.extend((1..=20).map(|i| format!("10.0.0.{i}:4401")));
    leader
        .send(&[PeerMsg::TryDirect {
            paths: paths.clone(),
        }])
        .await;
    let answer = PeerMsg::TryDirect {
        paths: vec!["192.0.2.7:4401".into()],
    };
    assert_eq!(leader.next().await, Some(answer.clone()));
    let dials = reach.dials.lock().unwrap().clone();
    assert_eq!(dials.len(), 1);
    let (peer, invite, got) = &dials[0];
    assert_eq!((peer.as_str(), *invite), ("alice", 7));
    let want: Vec<SocketAddr> = (1..=MAX_PATHS)
        .map(|i| format!("10.0.0.{i}:4401").parse().unwrap())
        .collect();
    assert_eq!(got, &want);

    // A second one at once is ignored; after the gap it counts again.
    leader
        .send(&[PeerMsg::TryDirect {
            paths: paths.clone(),
        }])
        .await;
    tokio::time::sleep(MIN_TRY_DIRECT_GAP).await;
    leader.send(&[PeerMsg::TryDirect { paths }]).await;
    assert_eq!(leader.next().await, Some(answer));
    assert_eq!(reach.dials.lock().unwrap().len(), 2);
}

/// The frames that came with the leader's `Switch` choosing the link (read
/// by the link setup) are the session's first: answered and stored.
#[tokio::test]
async fn frames_read_with_the_choosing_switch_are_not_lost() {
    let (a1, b1) = link_pair().await;
    let first = vec![PeerMsg::Switch { received_upto: 0 }, message(1, "early")];
    let bob = start_with(
        first,
        "alice",
        false,
        b1,
        SessionPath::Direct,
        Default::default(),
    );
    let mut leader = Fake::new(a1);
    assert_eq!(
        leader.next().await,
        Some(PeerMsg::Switch { received_upto: 0 })
    );
    assert_eq!(leader.next().await, Some(PeerMsg::Ack { upto: 1 }));
    assert_eq!(bob.stored("alice"), [(1, "early".to_string())]);
}

/// Texts as a session sends them (now, without a durable id).
fn out(texts: Vec<String>) -> Vec<super::OutText> {
    texts
        .into_iter()
        .map(|text| super::OutText {
            text,
            at_ms: p2p_proto::time::now_ms(),
            mid: None,
        })
        .collect()
}

//! The hub and the delivery invariant over the real SQLite store in a
//! temporary directory.

use std::sync::Arc;
use std::time::Duration;

use p2p_proto::codec::Prepared;
use p2p_proto::wire::{ServerEvent, ServerMsg};

use super::*;

fn policy() -> BroadcastPolicy {
    BroadcastPolicy {
        ttl: Duration::from_secs(1800),
        limit: 100,
        window: Duration::from_secs(3600),
    }
}

fn hub(dir: &std::path::Path) -> Arc<BroadcastHub> {
    BroadcastHub::start(Arc::new(SqliteBroadcasts::open(dir).unwrap()), policy())
}

/// The ids of the next backlog batch.
async fn backlog_ids(d: &mut Delivery) -> Vec<u64> {
    d.backlog().await.unwrap().unwrap().iter().map(id).collect()
}

fn id(frame: &Prepared<ServerMsg>) -> u64 {
    match serde_json::from_slice(frame.body()).unwrap() {
        ServerMsg::Event {
            event: ServerEvent::Broadcast { id, .. },
        } => id,
        other => panic!("{other:?}"),
    }
}

/// Acknowledgements still queued when the server stops are written before
/// it exits: none is redelivered after the restart. On a current-thread
/// runtime the writer task has not run yet when `close` is called, so
/// without the flush the queue would die with the runtime.
#[tokio::test]
async fn acks_queued_at_shutdown_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(dir.path());
    let mut last = 0;
    for i in 0..3 {
        last = h.publish("alice", format!("m{i}")).await.unwrap().0;
    }
    let mut bob = Delivery::start(h.clone(), "bob").await.unwrap();
    let got = bob.backlog().await.unwrap().unwrap();
    assert_eq!(got.iter().map(id).max(), Some(last));
    bob.ack(last);
    h.close().await;
    drop((bob, h));

    let store = SqliteBroadcasts::open(dir.path()).unwrap();
    assert_eq!(store.acked("bob").unwrap(), last);
    let h = BroadcastHub::start(Arc::new(store), policy());
    let mut bob = Delivery::start(h, "bob").await.unwrap();
    assert!(
        bob.backlog().await.unwrap().is_none(),
        "nothing redelivered"
    );
}

/// Subscribe, catch up, follow live, never the sender's own, and an ack is
/// clamped to what the session was sent.
#[tokio::test]
async fn delivery_catches_up_follows_live_and_clamps_acks() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(dir.path());
    let first = h.publish("alice", "before".into()).await.unwrap().0;
    let mut bob = Delivery::start(h.clone(), "bob").await.unwrap();
    let mut alice = Delivery::start(h.clone(), "alice").await.unwrap();
    let backlog = bob.backlog().await.unwrap().unwrap();
    assert_eq!(backlog.iter().map(id).collect::<Vec<_>>(), [first]);
    assert!(bob.backlog().await.unwrap().is_none());
    assert!(
        alice.backlog().await.unwrap().is_none(),
        "no copy to the sender"
    );

    let second = h.publish("alice", "live".into()).await.unwrap().0;
    match bob.live().await {
        Live::Send(e) => assert_eq!(id(&e), second),
        other => panic!("{other:?}"),
    }
    assert!(matches!(alice.live().await, Live::Skip));

    // A third broadcast bob has not been sent yet: acking past it is
    // clamped to the second.
    let third = h.publish("carol", "unseen".into()).await.unwrap().0;
    bob.ack(third + 10);
    h.close().await;
    assert_eq!(
        SqliteBroadcasts::open(dir.path())
            .unwrap()
            .acked("bob")
            .unwrap(),
        second
    );
}

/// The per-user limit refuses with the old text, per user (the sliding is
/// tested on injected time in `rate.rs`).
#[tokio::test]
async fn broadcast_rate_limit_is_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let h = BroadcastHub::start(
        Arc::new(SqliteBroadcasts::open(dir.path()).unwrap()),
        BroadcastPolicy {
            limit: 2,
            ..policy()
        },
    );
    h.publish("alice", "1".into()).await.unwrap();
    h.publish("alice", "2".into()).await.unwrap();
    let refused = h.publish("alice", "3".into()).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with("at most 2 broadcasts per 1h; try again in"),
        "{refused}"
    );
    h.publish("bob", "other user".into()).await.unwrap();
}

/// `--broadcast-limit 0` refuses every broadcast. It used to index an
/// empty queue: the session task panicked with the rate table locked, and
/// the poisoned lock then failed every later broadcast on the server.
#[tokio::test]
async fn a_zero_limit_refuses_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let h = BroadcastHub::start(
        Arc::new(SqliteBroadcasts::open(dir.path()).unwrap()),
        BroadcastPolicy {
            limit: 0,
            ..policy()
        },
    );
    for _ in 0..2 {
        let refused = h.publish("alice", "x".into()).await.unwrap_err();
        assert_eq!(refused.code(), p2p_proto::wire::RefusalCode::RateLimited);
    }
}

/// The sender is answered before the fan-out: a committed broadcast reaches
/// the live channel only when its `Publish` is dropped, and broadcasts whose
/// `Publish` are dropped out of order still go out in id order (a session's
/// cursor skips any id below one it has seen, so the other order would
/// lose the earlier broadcast).
#[tokio::test]
async fn publication_waits_for_the_answer_and_keeps_id_order() {
    use futures::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let h = hub(dir.path());
    let mut bob = Delivery::start(h.clone(), "bob").await.unwrap();
    let (first, _, publish_first) = h.publish("alice", "one".into()).await.unwrap();
    let (second, _, publish_second) = h.publish("carol", "two".into()).await.unwrap();
    assert!(bob.live().now_or_never().is_none(), "nothing live yet");
    drop(publish_second);
    assert!(
        bob.live().now_or_never().is_none(),
        "the second waits for the first"
    );
    drop(publish_first);
    for want in [first, second] {
        match bob.live().now_or_never() {
            Some(Live::Send(frame)) => assert_eq!(id(&frame), want),
            other => panic!("{other:?}"),
        }
    }
}

/// A late session catches up from memory exactly what the store holds, and
/// the acknowledged mark kept in memory follows the acknowledgements
/// written: the next session starts after them (a stale mark would resend).
#[tokio::test]
async fn catch_up_from_memory_matches_the_store_and_marks_follow_acks() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(dir.path());
    let mut ids = Vec::new();
    for (i, from) in ["alice", "bob", "carol", "alice"].iter().enumerate() {
        ids.push(h.publish(from, format!("m{i}")).await.unwrap().0);
    }
    let mut bob = Delivery::start(h.clone(), "bob").await.unwrap();
    let got: Vec<u64> = backlog_ids(&mut bob).await;
    let stored: Vec<u64> = SqliteBroadcasts::open(dir.path())
        .unwrap()
        .pending("bob", 0, p2p_proto::time::now_ms(), 100)
        .unwrap()
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(got, stored);
    assert_eq!(got, [ids[0], ids[2], ids[3]]);
    bob.ack(ids[2]);
    h.close().await;
    let mut again = Delivery::start(h.clone(), "bob").await.unwrap();
    let rest: Vec<u64> = backlog_ids(&mut again).await;
    assert_eq!(rest, [ids[3]]);
}

/// Counts the acknowledgement writes that reach the store.
struct CountingStore {
    inner: SqliteBroadcasts,
    writes: std::sync::atomic::AtomicUsize,
    rows: std::sync::atomic::AtomicUsize,
}

impl BroadcastStore for CountingStore {
    fn insert(&self, from: &str, text: &str, sent_ms: i64, expires_ms: i64) -> Result<u64> {
        self.inner.insert(from, text, sent_ms, expires_ms)
    }
    fn pending(&self, user: &str, after: u64, now_ms: i64, limit: usize) -> Result<Vec<Broadcast>> {
        self.inner.pending(user, after, now_ms, limit)
    }
    fn acked(&self, user: &str) -> Result<u64> {
        self.inner.acked(user)
    }
    fn ack(&self, acks: &[(String, u64)]) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        self.writes.fetch_add(1, Relaxed);
        self.rows.fetch_add(acks.len(), Relaxed);
        self.inner.ack(acks)
    }
    fn purge(&self, now_ms: i64) -> Result<Purged> {
        self.inner.purge(now_ms)
    }
}

/// Acknowledgements arriving one after another are written once at first,
/// then together at most once per interval, and every one of them is
/// written by the time the hub closes. Writing each wave as it came cost one
/// transaction (and one row per recipient) per broadcast: six writes here.
#[tokio::test(start_paused = true)]
async fn acknowledgements_are_written_at_most_once_per_interval() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore {
        inner: SqliteBroadcasts::open(dir.path()).unwrap(),
        writes: Default::default(),
        rows: Default::default(),
    });
    let h = BroadcastHub::start(store.clone(), policy());
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(h.publish("alice", format!("m{i}")).await.unwrap().0);
    }
    let mut bob = Delivery::start(h.clone(), "bob").await.unwrap();
    let mut carol = Delivery::start(h.clone(), "carol").await.unwrap();
    assert_eq!(bob.backlog().await.unwrap().unwrap().len(), 3);
    assert_eq!(carol.backlog().await.unwrap().unwrap().len(), 3);
    for &id in &ids {
        for d in [&bob, &carol] {
            d.ack(id);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    h.close().await;
    assert_eq!(
        store.writes.load(Relaxed),
        2,
        "the first at once, then the rest together"
    );
    assert_eq!(
        store.rows.load(Relaxed),
        3,
        "bob's first, then bob's and carol's latest"
    );
    for user in ["bob", "carol"] {
        assert_eq!(store.inner.acked(user).unwrap(), ids[2]);
    }
}

//! Unit tests of the outbox store: order, statuses, `--now` messages, and
//! dropping for forget/block.

use super::store::{SentStore, Status};
use crate::inbox::Inbox;

fn open() -> (tempfile::TempDir, Inbox, SentStore) {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let store = SentStore::open(&inbox).unwrap();
    (dir, inbox, store)
}

fn texts(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

fn seqs(rows: &[super::store::Row]) -> Vec<u64> {
    rows.iter().map(|r| r.seq).collect()
}

#[test]
fn queued_messages_come_out_in_order_per_peer_and_once_delivered_stay_out() {
    let (_dir, _inbox, s) = open();
    let a = s
        .queue("bob", &texts(&["1", "2", "3"]), 10, 0, true)
        .unwrap();
    let c = s.queue("carol", &texts(&["x"]), 11, 0, false).unwrap();
    let b = s.queue("bob", &texts(&["4"]), 12, 0, false).unwrap();
    assert_eq!(
        a[1].seq,
        a[0].seq + 1,
        "one command's messages are consecutive"
    );
    assert_ne!(a[0].mid, a[1].mid, "each message has its own durable id");
    let pending = s.pending("bob", 1, 0, 10, usize::MAX).unwrap();
    assert_eq!(
        pending.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3", "4"]
    );
    // Batches: by count, by bytes (at least one), and after a cursor.
    assert_eq!(
        seqs(&s.pending("bob", 1, 0, 2, usize::MAX).unwrap()),
        seqs(&a[..2])
    );
    assert_eq!(s.pending("bob", 1, 0, 10, 0).unwrap().len(), 1);
    assert_eq!(
        seqs(&s.pending("bob", 1, a[2].seq, 10, usize::MAX).unwrap()),
        seqs(&b)
    );
    // Acknowledged: only the told ones get a `delivered` event.
    let told = s.delivered("bob", 1, 0, a[2].seq, 99).unwrap();
    assert_eq!(told, seqs(&a));
    assert_eq!(s.status(a[0].seq).unwrap(), Some(Status::Delivered));
    assert_eq!(
        seqs(&s.pending("bob", 1, 0, 10, usize::MAX).unwrap()),
        seqs(&b)
    );
    // A repeated acknowledgement changes nothing.
    assert!(s.delivered("bob", 1, 0, a[2].seq, 99).unwrap().is_empty());
    // The outbox lists what is still queued, every peer, oldest first.
    let queued = s.queued(100, usize::MAX).unwrap();
    assert_eq!(seqs(&queued), [c[0].seq, b[0].seq]);
    assert!(!s.any_queued(a[0].seq, a[2].seq).unwrap());
    assert!(s.any_queued(b[0].seq, b[0].seq).unwrap());
}

#[test]
fn a_now_message_goes_only_on_its_session_and_fails_when_it_ends() {
    let (dir, inbox, s) = open();
    let plain = s.queue("bob", &texts(&["plain"]), 1, 0, false).unwrap();
    let now = s.queue("bob", &texts(&["now"]), 2, 7, false).unwrap();
    // Session 8's flusher does not send session 7's --now message.
    assert_eq!(
        seqs(&s.pending("bob", 8, 0, 10, usize::MAX).unwrap()),
        seqs(&plain)
    );
    assert_eq!(s.pending("bob", 7, 0, 10, usize::MAX).unwrap().len(), 2);
    // ... nor marks it delivered.
    s.delivered("bob", 8, 0, now[0].seq, 5).unwrap();
    assert_eq!(s.status(now[0].seq).unwrap(), Some(Status::Queued));
    assert!(
        s.queued(10, usize::MAX).unwrap().is_empty(),
        "--now is not in the outbox"
    );
    assert_eq!(s.fail_session(7).unwrap(), 1);
    assert_eq!(s.status(now[0].seq).unwrap(), Some(Status::Failed));
    // After a crash, a --now message still queued fails at the next start.
    let left = s.queue("bob", &texts(&["now2"]), 3, 9, false).unwrap();
    drop((s, inbox));
    let s = SentStore::open(&Inbox::open(dir.path()).unwrap()).unwrap();
    assert_eq!(s.status(left[0].seq).unwrap(), Some(Status::Failed));
}

#[test]
fn settling_a_command_fails_or_announces_what_is_still_queued() {
    let (_dir, _inbox, s) = open();
    let rows = s
        .queue("bob", &texts(&["a", "b", "c"]), 1, 0, false)
        .unwrap();
    let (first, last) = (rows[0].seq, rows[2].seq);
    s.delivered("bob", 1, 0, first, 5).unwrap();
    let got = s.settle(first, last, false).unwrap();
    assert_eq!(
        got,
        [
            (first, Status::Delivered),
            (first + 1, Status::Queued),
            (last, Status::Queued)
        ]
    );
    // Announced now: their delivery is told.
    assert_eq!(
        s.delivered("bob", 1, first, first + 1, 6).unwrap(),
        [first + 1]
    );
    let got = s.settle(first, last, true).unwrap();
    assert_eq!(got[2], (last, Status::Failed));
}

#[test]
fn drop_queued_fails_only_that_peers_queued_messages() {
    let (_dir, _inbox, s) = open();
    let bob = s.queue("bob", &texts(&["1", "2"]), 1, 0, true).unwrap();
    let carol = s.queue("carol", &texts(&["3"]), 1, 0, true).unwrap();
    s.delivered("bob", 1, 0, bob[0].seq, 2).unwrap();
    assert_eq!(s.drop_queued("bob").unwrap(), 1);
    assert_eq!(s.status(bob[0].seq).unwrap(), Some(Status::Delivered));
    assert_eq!(s.status(bob[1].seq).unwrap(), Some(Status::Failed));
    assert_eq!(seqs(&s.queued(10, usize::MAX).unwrap()), seqs(&carol));
}

#[test]
fn history_shows_both_directions_in_order_with_statuses() {
    use crate::inbox::{Incoming, Kind};
    use p2p_proto::ctl::{Direction, SendStatus};
    let (_dir, inbox, s) = open();
    let out = s
        .queue("bob", &texts(&["hi bob"]), 1_000, 0, false)
        .unwrap();
    s.delivered("bob", 1, 0, out[0].seq, 1_001).unwrap();
    inbox
        .store(
            Kind::Message,
            "bob",
            &[Incoming {
                id: 1,
                text: "hi alice".into(),
                at_ms: 500, // their clock is behind: ordered by arrival
                mid: Some(7),
            }],
        )
        .unwrap();
    s.queue(
        "bob",
        &texts(&["later"]),
        p2p_proto::time::now_ms() + 60_000,
        0,
        false,
    )
    .unwrap();
    s.queue("carol", &texts(&["not bob"]), 2_000, 0, false)
        .unwrap();
    let h: Vec<_> = super::history::conversation(&inbox, "bob", 10, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|i| i.entry())
        .collect();
    let got: Vec<(Direction, &str, SendStatus)> = h
        .iter()
        .map(|e| (e.dir, e.text.as_str(), e.status))
        .collect();
    assert_eq!(
        got,
        [
            (Direction::Out, "hi bob", SendStatus::Delivered),
            (Direction::In, "hi alice", SendStatus::Delivered),
            (Direction::Out, "later", SendStatus::Queued),
        ]
    );
    let newest = super::history::conversation(&inbox, "bob", 1, usize::MAX).unwrap();
    assert_eq!(newest.len(), 1);
    assert!(
        super::history::conversation(&inbox, "nobody", 10, usize::MAX)
            .unwrap()
            .is_empty()
    );
}

/// A contact whose key changed after verification (held) gets nothing from
/// the outbox, queued messages included, until `trust`; then the flusher,
/// woken, sends them. The session here is a plain channel.
#[tokio::test]
async fn a_held_contact_gets_no_queued_message_until_trusted() {
    use crate::contacts::Contacts;
    use crate::peer::session::SessionCmd;
    use tokio::sync::{broadcast, mpsc};
    use tokio::time::timeout;
    let deadline = std::time::Duration::from_secs(30);
    let (_dir, inbox, _) = open();
    let contacts = Contacts::open(&inbox).unwrap();
    contacts.seen("bob", "aa", 1).unwrap();
    contacts.confirm("bob").unwrap();
    contacts.seen("bob", "bb", 2).unwrap();
    let (events, _) = broadcast::channel(16);
    let outbox = super::Outbox::open(&inbox, contacts.clone(), events).unwrap();
    outbox
        .send("bob", texts(&["for the old key"]), None, false)
        .await
        .unwrap();
    let mut progress = outbox.hub("bob").progress.subscribe();
    let (cmds, mut session) = mpsc::channel(8);
    let tasks = tokio_util::task::TaskTracker::new();
    outbox.session_opened("bob", 1, cmds, &tasks);
    // The flusher looked, found bob held, and sent nothing.
    timeout(deadline, progress.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(session.try_recv().is_err(), "nothing for a held contact");

    contacts.trust("bob").unwrap();
    outbox.wake("bob");
    let Some(SessionCmd::Send { msgs, reply }) = timeout(deadline, session.recv()).await.unwrap()
    else {
        panic!("the queued message goes out after trust");
    };
    assert_eq!(msgs[0].text, "for the old key");
    assert!(msgs[0].mid.is_some());
    reply.send(Ok(vec![1])).unwrap();
    drop(session);
    tasks.close();
    timeout(deadline, tasks.wait()).await.unwrap();
    let queued = outbox.queued().await.unwrap();
    assert!(queued.is_empty(), "delivered once acknowledged");
}

/// `mid`s count up within a run (so the peer's `(peer, mid)` index grows at
/// its end), across commands and peers, and a new run starts elsewhere
/// (so a restored backup hands out none the peer already holds).
#[test]
fn mids_are_consecutive_within_a_run_and_start_afresh_at_the_next() {
    let (_dir, inbox, s) = open();
    let a = s
        .queue("bob", &texts(&["1", "2", "3"]), 10, 0, false)
        .unwrap();
    let b = s.queue("carol", &texts(&["4"]), 11, 0, false).unwrap();
    let mids: Vec<u64> = a.iter().chain(&b).map(|r| r.mid).collect();
    for pair in mids.windows(2) {
        assert_eq!(pair[1], pair[0].wrapping_add(1), "{mids:?}");
    }
    let again = SentStore::open(&inbox).unwrap();
    let c = again.queue("bob", &texts(&["5"]), 12, 0, false).unwrap();
    assert!(
        !mids.contains(&c[0].mid),
        "a new run draws a new base: {} after {mids:?}",
        c[0].mid
    );
    // What is sent is what was stored.
    let pending = again.pending("bob", 1, 0, 10, usize::MAX).unwrap();
    assert_eq!(
        pending.iter().map(|r| r.mid).collect::<Vec<_>>(),
        [a[0].mid, a[1].mid, a[2].mid, c[0].mid]
    );
}

/// Delivery of plain messages is one mark per peer: what is at or below it
/// is delivered everywhere the status shows (pending, settle, history,
/// drop_queued), while a `--now` message of another session in the range
/// keeps its own status and still goes out on its session.
#[test]
fn a_delivered_mark_covers_plain_messages_only_and_every_view_agrees() {
    use p2p_proto::ctl::SendStatus;
    let (_dir, inbox, s) = open();
    let first = s.queue("bob", &texts(&["1", "2"]), 1, 0, false).unwrap();
    let now = s.queue("bob", &texts(&["now"]), 2, 7, false).unwrap();
    let after = s.queue("bob", &texts(&["3"]), 3, 0, true).unwrap();
    let carol = s.queue("carol", &texts(&["c"]), 4, 0, false).unwrap();
    // Session 1 sent 1, 2, 3 (not session 7's --now message) and bob
    // acknowledged them: the told one (3) gets its `delivered` event.
    assert_eq!(
        s.delivered("bob", 1, 0, after[0].seq, 9).unwrap(),
        seqs(&after)
    );
    for r in first.iter().chain(&after) {
        assert_eq!(s.status(r.seq).unwrap(), Some(Status::Delivered));
    }
    assert_eq!(s.status(now[0].seq).unwrap(), Some(Status::Queued));
    assert_eq!(s.status(carol[0].seq).unwrap(), Some(Status::Queued));
    assert_eq!(
        s.settle(first[0].seq, first[1].seq, true).unwrap(),
        [
            (first[0].seq, Status::Delivered),
            (first[1].seq, Status::Delivered)
        ],
        "settling delivered messages fails none"
    );
    assert!(!s.any_queued(first[0].seq, first[1].seq).unwrap());
    // Nothing plain is sent again, on any session; session 7's message is.
    assert!(s.pending("bob", 1, 0, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(
        seqs(&s.pending("bob", 7, 0, 10, usize::MAX).unwrap()),
        seqs(&now)
    );
    assert_eq!(seqs(&s.queued(10, usize::MAX).unwrap()), seqs(&carol));
    // A repeated or older acknowledgement moves nothing back.
    assert!(s
        .delivered("bob", 2, 0, first[0].seq, 10)
        .unwrap()
        .is_empty());
    assert_eq!(s.status(first[1].seq).unwrap(), Some(Status::Delivered));
    let statuses = |inbox: &Inbox| -> Vec<SendStatus> {
        super::history::conversation(inbox, "bob", 10, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|i| i.entry().status)
            .collect()
    };
    use SendStatus::{Delivered, Failed, Queued};
    assert_eq!(statuses(&inbox), [Delivered, Delivered, Queued, Delivered]);
    // forget/block fails what is still queued, not what was delivered.
    assert_eq!(s.drop_queued("bob").unwrap(), 1);
    assert_eq!(statuses(&inbox), [Delivered, Delivered, Failed, Delivered]);
}

/// An `inbox.db` from before the delivered mark (statuses per row only)
/// opens with every message and status as it was, and its queued messages
/// still go out and get delivered.
#[test]
fn a_sent_table_from_before_the_mark_keeps_its_messages_and_statuses() {
    let dir = tempfile::tempdir().unwrap();
    {
        let inbox = Inbox::open(dir.path()).unwrap();
        inbox
            .with_conn(|c| {
                c.execute_batch(
                    "CREATE TABLE sent (
                         seq INTEGER PRIMARY KEY AUTOINCREMENT,
                         peer TEXT NOT NULL,
                         mid INTEGER NOT NULL,
                         text TEXT NOT NULL,
                         at_ms INTEGER NOT NULL,
                         status TEXT NOT NULL DEFAULT 'queued',
                         now INTEGER NOT NULL DEFAULT 0,
                         announced INTEGER NOT NULL DEFAULT 0,
                         delivered_ms INTEGER
                     );
                     CREATE INDEX sent_peer_status ON sent(peer, status, seq);
                     INSERT INTO sent (peer, mid, text, at_ms, status, delivered_ms)
                         VALUES ('bob', 1, 'old delivered', 1, 'delivered', 2),
                                ('bob', 2, 'old failed', 1, 'failed', NULL),
                                ('bob', 3, 'old queued', 1, 'queued', NULL);",
                )
            })
            .unwrap();
    }
    let s = SentStore::open(&Inbox::open(dir.path()).unwrap()).unwrap();
    assert_eq!(s.status(1).unwrap(), Some(Status::Delivered));
    assert_eq!(s.status(2).unwrap(), Some(Status::Failed));
    assert_eq!(s.status(3).unwrap(), Some(Status::Queued));
    assert_eq!(
        s.settle(1, 3, false).unwrap(),
        [
            (1, Status::Delivered),
            (2, Status::Failed),
            (3, Status::Queued)
        ]
    );
    let pending = s.pending("bob", 1, 0, 10, usize::MAX).unwrap();
    assert_eq!(
        pending.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["old queued"]
    );
    let new = s.queue("bob", &texts(&["new"]), 5, 0, false).unwrap();
    s.delivered("bob", 1, 0, new[0].seq, 6).unwrap();
    for (seq, want) in [
        (1, Status::Delivered),
        (2, Status::Failed),
        (3, Status::Delivered),
    ] {
        assert_eq!(s.status(seq).unwrap(), Some(want), "row {seq}");
    }
    assert_eq!(s.status(new[0].seq).unwrap(), Some(Status::Delivered));
}

/// `history USER` reads that peer's rows through an index, never the whole
/// inbox or outbox, since the index by peer in `inbox` holds only rows
/// without a `mid`; and it still finds both kinds of rows.
#[test]
fn history_reads_one_peer_by_index_and_finds_rows_with_and_without_a_mid() {
    use crate::inbox::{Incoming, Kind};
    let (_dir, inbox, _s) = open();
    for sql in [super::history::RECEIVED, super::history::SENT] {
        let plan = inbox
            .with_conn(|c| {
                let mut q = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = q.query_map(("bob", 10), |r| r.get::<_, String>(3))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap();
        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN")),
            "{sql}: {plan:?}"
        );
    }
    let msg = |id: u64, mid: Option<u64>| Incoming {
        id,
        text: format!("m{id}"),
        at_ms: id as i64,
        mid,
    };
    inbox
        .store(Kind::Message, "bob", &[msg(1, None), msg(2, Some(9))])
        .unwrap();
    inbox
        .store(Kind::Message, "carol", &[msg(3, None)])
        .unwrap();
    let texts: Vec<String> = super::history::conversation(&inbox, "bob", 10, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|i| i.text)
        .collect();
    assert_eq!(texts, ["m1", "m2"]);
}

/// A command longer than one INSERT (`QUEUE_ROWS`) gets consecutive `seq`s
/// and `mid`s, and each row as returned is the row stored.
#[test]
fn a_long_command_is_stored_row_for_row() {
    let (_dir, _inbox, s) = open();
    let many: Vec<String> = (0..150).map(|n| format!("line {n}")).collect();
    let rows = s.queue("bob", &many, 5, 0, false).unwrap();
    assert_eq!(rows.len(), 150);
    for pair in rows.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].mid, pair[0].mid.wrapping_add(1));
    }
    assert_eq!(s.pending("bob", 1, 0, 1000, usize::MAX).unwrap(), rows);
}

//! Unit tests of the inbox.

use super::*;
use proptest::prelude::*;

fn msg(id: u64, text: &str) -> Incoming {
    Incoming {
        id,
        text: text.into(),
        at_ms: 1_000 * id as i64,
        mid: None,
    }
}

/// Reads a page and acknowledges it, as a client does.
fn take(inbox: &Inbox, all: bool, from: Option<&str>, after: u64) -> Vec<Stored> {
    let (page, _) = inbox.page(all, from, after, usize::MAX).unwrap();
    if let Some(last) = page.last() {
        inbox.mark_read_upto(from, last.seq).unwrap();
    }
    page
}

#[test]
fn pages_by_size_as_sent_and_reading_marks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let batch: Vec<Incoming> = (1..=10).map(|i| msg(i, "0123456789")).collect();
    inbox.store(Kind::Message, "bob", &batch).unwrap();
    let one = wire_len("bob", "0123456789");
    let (page, more) = inbox.page(false, None, 0, 3 * one + 1).unwrap();
    assert_eq!((page.len(), more), (3, true));
    assert_eq!(
        inbox.unread().unwrap(),
        10,
        "a page read is not yet received"
    );
    assert_eq!(inbox.mark_read_upto(None, page[2].seq).unwrap(), 3);
    let (rest, more) = inbox.page(false, None, page[2].seq, usize::MAX).unwrap();
    assert_eq!((rest.len(), more), (7, false));
    // A single entry over the budget still comes (alone).
    let (one, more) = inbox.page(true, None, 0, 1).unwrap();
    assert_eq!((one.len(), more), (1, true));
    // Empty texts still cost their envelope: no page of a million.
    let empty: Vec<Incoming> = (11..=1000).map(|i| msg(i, "")).collect();
    inbox.store(Kind::Message, "bob", &empty).unwrap();
    let (page, more) = inbox.page(true, None, 0, 64 * 1024).unwrap();
    assert!(more && page.len() < 1000, "{}", page.len());
}

#[test]
fn mark_read_upto_keeps_to_its_sender() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    inbox.store(Kind::Message, "bob", &[msg(1, "a")]).unwrap();
    let carol = inbox.store(Kind::Message, "carol", &[msg(1, "b")]).unwrap();
    assert_eq!(inbox.mark_read_upto(Some("bob"), carol[0].seq).unwrap(), 1);
    assert_eq!(inbox.unread().unwrap(), 1);
    assert_eq!(inbox.mark_read_upto(None, u64::MAX).unwrap(), 1);
    assert_eq!(inbox.unread().unwrap(), 0);
}

#[test]
fn store_take_and_mark_read() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let stored = inbox
        .store(Kind::Message, "bob", &[msg(1, "héllo"), msg(2, "two")])
        .unwrap();
    assert_eq!(stored[0].seq + 1, stored[1].seq);
    inbox
        .store(Kind::Message, "carol", &[msg(1, "hi")])
        .unwrap();
    assert_eq!(inbox.unread().unwrap(), 3);
    let from_bob = take(&inbox, false, Some("bob"), 0);
    assert_eq!(
        from_bob.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
        ["héllo", "two"]
    );
    assert_eq!(inbox.unread().unwrap(), 1);
    assert_eq!(take(&inbox, false, None, 0).len(), 1);
    assert!(take(&inbox, false, None, 0).is_empty());
    assert_eq!(take(&inbox, true, None, 0).len(), 3);
    // Broadcasts are kept once, however often they arrive.
    let b = msg(7, "maintenance at 18:00");
    assert!(inbox.store_broadcast("admin", &b).unwrap().is_some());
    assert!(inbox.store_broadcast("admin", &b).unwrap().is_none());
    // Same id, but a different broadcast (say, from a reset server).
    let reused = Incoming {
        at_ms: b.at_ms + 1,
        ..b.clone()
    };
    assert!(inbox.store_broadcast("admin", &reused).unwrap().is_some());
    assert_eq!(take(&inbox, false, None, 0).len(), 2);
    // Survives reopening.
    drop(inbox);
    let inbox = Inbox::open(dir.path()).unwrap();
    assert_eq!(take(&inbox, true, None, 0).len(), 5);
}

/// Rows an older version stored with times RFC 3339 cannot show (it
/// panicked on them, under the lock) are listed, and shown clamped.
#[test]
fn out_of_range_times_are_stored_and_listed_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let bad = [-1, i64::MIN, 253_402_300_800_000, i64::MAX];
    for (i, at_ms) in bad.into_iter().enumerate() {
        let m = Incoming {
            id: i as u64 + 1,
            text: "x".into(),
            at_ms,
            mid: None,
        };
        inbox
            .store(Kind::Message, "bob", std::slice::from_ref(&m))
            .unwrap();
        inbox.store_broadcast("admin", &m).unwrap();
    }
    let all = take(&inbox, true, None, 0);
    assert_eq!(all.len(), 8);
    let at = |e: &Stored| p2p_proto::time::rfc3339(e.at_ms);
    assert_eq!(at(&all[0]), "1970-01-01T00:00:00Z");
    assert_eq!(at(&all[7]), "9999-12-31T23:59:59Z");
    assert_eq!(inbox.unread().unwrap(), 0);
}

/// A panic while the lock is held (any cause) does not make the inbox
/// unusable for the rest of the daemon's life.
#[test]
fn a_panic_under_the_lock_does_not_poison_the_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let held = inbox.clone();
    let panicked = std::thread::spawn(move || {
        let _guard = held.lock();
        panic!("simulated");
    })
    .join();
    assert!(panicked.is_err());
    inbox.store(Kind::Message, "bob", &[msg(1, "a")]).unwrap();
    assert_eq!(take(&inbox, false, None, 0).len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever a peer or the server sends (any time, id, text, name),
    /// storing and listing it never panics and lists valid times.
    #[test]
    fn any_values_store_and_list(
        items in proptest::collection::vec(
            (any::<i64>(), any::<u64>(), ".{0,20}", "[a-z]{1,8}", any::<bool>()),
            1..20,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap();
        for (at_ms, id, text, from, broadcast) in &items {
            let m = Incoming { id: *id, text: text.clone(), at_ms: *at_ms, mid: None };
            if *broadcast {
                inbox.store_broadcast(from, &m).unwrap();
            } else {
                inbox.store(Kind::Message, from, std::slice::from_ref(&m)).unwrap();
            }
        }
        let (page, _) = inbox.page(true, None, 0, usize::MAX).unwrap();
        prop_assert!(!page.is_empty());
        for e in page {
            let at = p2p_proto::time::rfc3339(e.at_ms);
            prop_assert!(humantime::parse_rfc3339(&at).is_ok(), "{}", at);
        }
    }
}

/// A message resent with the same durable id (the sender's outbox after a
/// crash or a lost ack) is stored once; the same id from another peer, or
/// messages without one, are not affected.
#[test]
fn a_repeated_mid_is_stored_once_per_peer() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let with = |id: u64, mid: Option<u64>| Incoming {
        mid,
        ..msg(id, "hello")
    };
    let first = inbox
        .store(
            Kind::Message,
            "bob",
            &[with(1, Some(u64::MAX)), with(2, Some(5))],
        )
        .unwrap();
    assert_eq!(first.len(), 2);
    // Resent in a new session (new per-session ids), plus one new message.
    let again = inbox
        .store(
            Kind::Message,
            "bob",
            &[with(1, Some(u64::MAX)), with(2, Some(5)), with(3, Some(6))],
        )
        .unwrap();
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), [3]);
    assert_eq!(
        inbox
            .store(Kind::Message, "carol", &[with(1, Some(5))])
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        inbox
            .store(Kind::Message, "bob", &[with(9, None), with(9, None)])
            .unwrap()
            .len(),
        2
    );
    assert_eq!(take(&inbox, true, None, 0).len(), 6);
}

/// An inbox.db made before `mid` and `recv_ms` existed opens, keeps its
/// rows, and deduplicates from then on.
#[test]
fn an_old_inbox_without_the_new_columns_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join(INBOX_DB)).unwrap();
        conn.execute_batch(
            "CREATE TABLE inbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 kind TEXT NOT NULL,
                 peer TEXT NOT NULL,
                 msg_id INTEGER NOT NULL,
                 text TEXT NOT NULL,
                 at_ms INTEGER NOT NULL,
                 read INTEGER NOT NULL DEFAULT 0
             );
             INSERT INTO inbox (kind, peer, msg_id, text, at_ms) VALUES ('message', 'bob', 1, 'old', 5);",
        )
        .unwrap();
    }
    let inbox = Inbox::open(dir.path()).unwrap();
    let m = Incoming {
        mid: Some(42),
        ..msg(2, "new")
    };
    assert_eq!(
        inbox
            .store(Kind::Message, "bob", std::slice::from_ref(&m))
            .unwrap()
            .len(),
        1
    );
    assert!(inbox.store(Kind::Message, "bob", &[m]).unwrap().is_empty());
    let all = take(&inbox, true, None, 0);
    assert_eq!(
        all.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
        ["old", "new"]
    );
    // Opening again finds the columns there.
    drop(inbox);
    Inbox::open(dir.path()).unwrap();
}

/// Batches longer than one INSERT (`INSERT_ROWS`) store each new message
/// once, in order, each entry with its own `seq`: repeats of stored `mid`s,
/// repeats within the batch, and messages without a `mid` mixed across the
/// statements' boundaries.
#[test]
fn a_long_batch_stores_each_new_message_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let m = |id: u64, mid: Option<u64>| Incoming {
        mid,
        ..msg(id, &format!("t{id}"))
    };
    let first: Vec<Incoming> = (0..150).map(|i| m(i, (i % 7 != 0).then_some(i))).collect();
    let stored = inbox.store(Kind::Message, "bob", &first).unwrap();
    assert_eq!(stored.len(), 150);
    // Every seventh without a `mid`, every third (mostly) a repeat of a
    // stored `mid`, every fifth (often) a repeat of one earlier in this
    // batch, the rest new.
    let second: Vec<Incoming> = (150..450u64)
        .map(|i| {
            let mid = match i {
                _ if i % 7 == 0 => None,
                _ if i % 3 == 0 => Some(i % 150),
                _ if i % 5 == 0 => Some(1000 + i - 5),
                _ => Some(1000 + i),
            };
            m(i, mid)
        })
        .collect();
    let got = inbox.store(Kind::Message, "bob", &second).unwrap();
    let expect: Vec<u64> = {
        let mut have: std::collections::HashSet<u64> = first.iter().filter_map(|x| x.mid).collect();
        second
            .iter()
            .filter(|x| x.mid.is_none_or(|v| have.insert(v)))
            .map(|x| x.id)
            .collect()
    };
    assert!(expect.len() > 100 && expect.len() < 300, "{}", expect.len());
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), expect);
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    // Each entry's seq is the row holding its text.
    let all = take(&inbox, true, None, stored.last().unwrap().seq);
    assert_eq!(
        all.iter()
            .map(|e| (e.seq, e.text.clone()))
            .collect::<Vec<_>>(),
        got.iter()
            .map(|e| (e.seq, e.text.clone()))
            .collect::<Vec<_>>()
    );
}

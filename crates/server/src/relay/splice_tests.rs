//! The splice on paused tokio time over in-memory streams: pacing, idle
//! timeout, activity, closing.

use std::sync::Arc;

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::relay::pace::PACE_BURST;

const IDLE: Duration = Duration::from_secs(120);

/// Two client ends (`a`, `b`) and the running splice between them.
struct Pair {
    a: DuplexStream,
    b: DuplexStream,
    run: JoinHandle<Spliced>,
    stop: CancellationToken,
}

fn pair(a_rate: u64, b_rate: u64) -> Pair {
    let (a, a_srv) = duplex(64 * 1024);
    let (b, b_srv) = duplex(64 * 1024);
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        let now = Instant::now();
        let (ap, bp) = (Pacer::new(a_rate, now), Pacer::new(b_rate, now));
        async move { splice(a_srv, b_srv, &ap, &bp, IDLE, &stop).await }
    });
    Pair { a, b, run, stop }
}

#[tokio::test(start_paused = true)]
async fn the_byte_rate_cap_holds_over_a_simulated_interval_and_nothing_is_lost() {
    const RATE: u64 = 100_000;
    const SPAN: Duration = Duration::from_secs(20);
    let Pair {
        mut a, mut b, run, ..
    } = pair(RATE, u64::MAX);
    // `a` writes as fast as it can; a counting pattern shows loss or reorder.
    let writer = tokio::spawn(async move {
        let mut i = 0u8;
        loop {
            let chunk: Vec<u8> = (0..1000)
                .map(|_| {
                    i = i.wrapping_add(1);
                    i
                })
                .collect();
            if a.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let t0 = Instant::now();
    let (mut got, mut expect, mut buf) = (0u64, 0u8, vec![0u8; 8192]);
    while Instant::now() < t0 + SPAN {
        let n = b.read(&mut buf).await.unwrap();
        for &byte in &buf[..n] {
            expect = expect.wrapping_add(1);
            assert_eq!(byte, expect, "byte {got} changed, lost or reordered");
            got += 1;
        }
    }
    let elapsed = Instant::now() - t0;
    let allowed = RATE as f64 * (elapsed.as_secs_f64() + PACE_BURST.as_secs_f64());
    assert!(
        got as f64 <= allowed + CHUNK as f64,
        "{got} bytes in {elapsed:?}"
    );
    // Paced, not starved: the copy keeps up with the budget.
    assert!(
        got as f64 >= RATE as f64 * (elapsed.as_secs_f64() - 1.0),
        "{got} bytes in {elapsed:?}"
    );
    writer.abort();
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn a_silent_pair_ends_after_the_idle_time() {
    let Pair { a, b, run, .. } = pair(u64::MAX, u64::MAX);
    let t0 = Instant::now();
    let done = run.await.unwrap();
    assert_eq!(done.ended, Ended::Idle);
    assert_eq!(Instant::now() - t0, IDLE);
    drop((a, b));
}

#[tokio::test(start_paused = true)]
async fn activity_either_way_keeps_a_pair_open() {
    let Pair {
        mut a, mut b, run, ..
    } = pair(u64::MAX, u64::MAX);
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    // A keepalive every half idle time, alternating directions, for five
    // idle times: the pair stays up throughout.
    for i in 0..10 {
        tokio::time::sleep(IDLE / 2).await;
        let (from, to) = if i % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        from.write_all(b"ping").await.unwrap();
        to.read_exact(&mut buf[..4]).await.unwrap();
        assert_eq!(&buf[..4], b"ping");
        assert!(!run.is_finished(), "ended at {:?}", Instant::now() - t0);
    }
    let last = Instant::now();
    let done = run.await.unwrap();
    assert_eq!(done.ended, Ended::Idle);
    assert_eq!(
        Instant::now() - last,
        IDLE,
        "idle counts from the last byte"
    );
    assert_eq!((done.a_to_b, done.b_to_a), (20, 20));
}

#[tokio::test(start_paused = true)]
async fn one_side_closing_ends_the_pair_after_its_bytes_went_through() {
    let Pair {
        mut a, mut b, run, ..
    } = pair(u64::MAX, u64::MAX);
    a.write_all(b"last words").await.unwrap();
    a.shutdown().await.unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    let done = run.await.unwrap();
    assert_eq!(done.ended, Ended::Closed);
    assert_eq!(done.a_to_b, 10);
    // The other side is closed as well.
    let mut rest = Vec::new();
    assert_eq!(a.read_to_end(&mut rest).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stop_ends_the_pair() {
    let Pair { a, b, run, stop } = pair(u64::MAX, u64::MAX);
    stop.cancel();
    assert_eq!(run.await.unwrap().ended, Ended::Shutdown);
    drop((a, b));
}

#[tokio::test(start_paused = true)]
async fn two_pairs_of_one_user_share_its_rate() {
    const RATE: u64 = 50_000;
    const SPAN: Duration = Duration::from_secs(10);
    let shared = Arc::new(Pacer::new(RATE, Instant::now()));
    let free = Arc::new(Pacer::new(u64::MAX, Instant::now()));
    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (mut a, a_srv) = duplex(64 * 1024);
        let (mut b, b_srv) = duplex(64 * 1024);
        let (shared, free, stop) = (shared.clone(), free.clone(), stop.clone());
        tokio::spawn(async move { splice(a_srv, b_srv, &shared, &free, IDLE, &stop).await });
        tokio::spawn(async move {
            let chunk = vec![7u8; 4096];
            while a.write_all(&chunk).await.is_ok() {}
        });
        readers.push(tokio::spawn(async move {
            let (t0, mut got, mut buf) = (Instant::now(), 0u64, vec![0u8; 8192]);
            while Instant::now() < t0 + SPAN {
                got += b.read(&mut buf).await.unwrap() as u64;
            }
            got
        }));
    }
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    let allowed = RATE as f64 * (SPAN.as_secs_f64() + 1.0) + 2.0 * CHUNK as f64;
    assert!(
        total as f64 <= allowed,
        "{total} bytes in {SPAN:?} for both pairs"
    );
    stop.cancel();
}

/// A lone small write reaches the other side at once, even when that side's
/// stream holds writes until flushed (as TLS does): on the first relay,
/// a peer's last ack waited for whatever came next (a keepalive, 10 s on).
#[tokio::test(start_paused = true)]
async fn a_lone_small_write_is_flushed_through() {
    let (mut a, a_srv) = duplex(64 * 1024);
    let (mut b, b_srv) = duplex(64 * 1024);
    let b_srv = tokio::io::BufStream::new(b_srv);
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        let now = Instant::now();
        let (ap, bp) = (Pacer::new(u64::MAX, now), Pacer::new(u64::MAX, now));
        async move { splice(a_srv, b_srv, &ap, &bp, IDLE, &stop).await }
    });
    a.write_all(b"ack").await.unwrap();
    let mut got = [0u8; 3];
    let read = tokio::time::timeout(Duration::from_secs(1), b.read_exact(&mut got)).await;
    assert!(read.is_ok(), "the 3 bytes sat in the relay's buffer");
    assert_eq!(&got, b"ack");
    stop.cancel();
    run.await.unwrap();
}

//! Copying bytes between the two sides of a relayed pair: both directions
//! at once, each paced by its sender's [`Pacer`], until either side closes,
//! nothing moves for the idle time, or the server stops. The bytes are
//! Noise ciphertext; nothing here looks at them.

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::pace::Pacer;

/// Bytes read from one side before they are written to the other: one
/// TLS record, so a paced write never waits for more than one record.
pub(crate) const CHUNK: usize = 16 * 1024;

/// How long closing a side (TLS close_notify, FIN) may take once the pair
/// is over: a peer that does not read must not hold the task.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a pair ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum Ended {
    /// One side closed its stream (the normal end).
    Closed,
    /// Nothing moved either way for the idle time.
    Idle,
    /// The server is shutting down.
    Shutdown,
    /// Reading or writing one side failed.
    Failed,
}

/// What a pair carried, for the log.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Spliced {
    /// Why it ended.
    pub(crate) ended: Ended,
    /// Bytes from the first side to the second.
    pub(crate) a_to_b: u64,
    /// Bytes from the second side to the first.
    pub(crate) b_to_a: u64,
}

/// The time of the last byte read from either side.
struct Activity(Mutex<Instant>);

impl Activity {
    fn touch(&self) {
        *self.0.lock().expect("activity poisoned") = Instant::now();
    }
    fn last(&self) -> Instant {
        *self.0.lock().expect("activity poisoned")
    }
}

/// One direction: read a chunk, wait for the sender's budget, write it.
/// Returns on end of stream (after passing the half-close on) or error;
/// `count` holds the bytes written so far either way.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    pacer: &Pacer,
    activity: &Activity,
    count: &Mutex<u64>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        activity.touch();
        pacer.take(n).await;
        to.write_all(&buf[..n]).await?;
        // A TLS stream holds what it was given until flushed: without this
        // a lone small frame (an ack) waited for the next bytes behind it.
        to.flush().await?;
        *count.lock().expect("count poisoned") += n as u64;
    }
}

/// How a direction's end reads: a peer that closes its TCP connection
/// without a TLS close_notify has closed, too.
fn outcome(r: io::Result<()>) -> Ended {
    match r {
        Ok(()) => Ended::Closed,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ended::Closed,
        Err(_) => Ended::Failed,
    }
}

/// Splices `a` and `b` until one side closes, `idle` passes with no byte
/// read from either side, or `stop` fires. Bytes from `a` are paced by
/// `a_pace`, bytes from `b` by `b_pace`.
pub(crate) async fn splice<A, B>(
    a: A,
    b: B,
    a_pace: &Pacer,
    b_pace: &Pacer,
    idle: Duration,
    stop: &CancellationToken,
) -> Spliced
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, mut aw) = tokio::io::split(a);
    let (br, mut bw) = tokio::io::split(b);
    let activity = Activity(Mutex::new(Instant::now()));
    let (a_to_b, b_to_a) = (Mutex::new(0u64), Mutex::new(0u64));
    let ended = {
        let forward = pump(ar, &mut bw, a_pace, &activity, &a_to_b);
        let backward = pump(br, &mut aw, b_pace, &activity, &b_to_a);
        let idle_watch = async {
            loop {
                let due = activity.last() + idle;
                if Instant::now() >= due {
                    return;
                }
                tokio::time::sleep_until(due).await;
            }
        };
        tokio::select! {
            r = forward => outcome(r),
            r = backward => outcome(r),
            _ = idle_watch => Ended::Idle,
            _ = stop.cancelled() => Ended::Shutdown,
        }
    };
    // Either side gone ends the pair: close the other too, boundedly.
    let _ = timeout(CLOSE_TIMEOUT, async {
        let _ = tokio::join!(aw.shutdown(), bw.shutdown());
    })
    .await;
    let a_to_b = *a_to_b.lock().expect("count poisoned");
    let b_to_a = *b_to_a.lock().expect("count poisoned");
    Spliced {
        ended,
        a_to_b,
        b_to_a,
    }
}

#[cfg(test)]
#[path = "splice_tests.rs"]
mod tests;

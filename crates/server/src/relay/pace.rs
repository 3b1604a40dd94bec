//! Pacing one user's relayed bytes (`--relay-bytes-per-sec`): a token
//! bucket that may go into debt. A copy loop reserves what it is about to
//! write and waits until the debt is paid, so the cap holds across all of
//! the user's pairs (they share one [`Pacer`]) and no byte is ever dropped.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How much a user may send at once without waiting, as time at the
/// configured rate: a chat message or a keepalive goes through at once,
/// and any one-second window stays within 1.25 × the rate.
pub(crate) const PACE_BURST: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct Bucket {
    /// Bytes that may go now; negative is debt that later writes wait out.
    tokens: f64,
    last: Instant,
}

/// One user's byte budget through the relay.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

impl Pacer {
    /// `rate` bytes per second (at least 1), full at `now`.
    pub(crate) fn new(rate: u64, now: Instant) -> Self {
        let rate = rate.max(1) as f64;
        let burst = rate * PACE_BURST.as_secs_f64();
        Pacer {
            rate,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                last: now,
            }),
        }
    }

    /// Takes `n` bytes from the budget at `now`; returns when they may be
    /// written (None: at once). Reservations queue behind each other, so
    /// several pairs of one user share the rate.
    pub(crate) fn reserve(&self, n: usize, now: Instant) -> Option<Instant> {
        let mut b = self.bucket.lock().expect("pacer poisoned");
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = b.last.max(now);
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.tokens -= n as f64;
        (b.tokens < 0.0).then(|| now + Duration::from_secs_f64(-b.tokens / self.rate))
    }

    /// Waits until `n` more bytes may be written.
    pub(crate) async fn take(&self, n: usize) {
        if let Some(at) = self.reserve(n, Instant::now()) {
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_bytes_wait_for_the_rate() {
        let t0 = Instant::now();
        let p = Pacer::new(1000, t0);
        assert_eq!(p.reserve(250, t0), None, "the burst is free");
        // 100 bytes of debt at 1000 B/s: 100 ms.
        assert_eq!(p.reserve(100, t0), Some(t0 + Duration::from_millis(100)));
        // The next reservation queues behind the first.
        assert_eq!(p.reserve(100, t0), Some(t0 + Duration::from_millis(200)));
        // A second later the debt is paid and 800 bytes came back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(p.reserve(250, t1), None);
        assert!(
            p.reserve(1, t1).is_some(),
            "the bucket holds only the burst"
        );
    }
}

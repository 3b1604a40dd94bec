//! Reconnect timing: exponential backoff with jitter, as a pure function of
//! the attempt number and a random fraction, so it is tested exactly.

use std::time::Duration;

/// Backoff bounds.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Base delay before the first retry.
    pub min: Duration,
    /// Largest delay; reached after a few doublings and then kept forever.
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based), with `jitter` in
    /// `[0, 1)`: half the base delay fixed, half random ("equal jitter"), so
    /// a crowd of daemons dropped together does not come back together, and
    /// no retry comes sooner than half its base.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        let base = self.min.saturating_mul(1 << doublings).min(self.max);
        base / 2 + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN};

    const DEFAULT: Backoff = Backoff {
        min: DEFAULT_RECONNECT_MIN,
        max: DEFAULT_RECONNECT_MAX,
    };

    #[test]
    fn grows_then_caps() {
        assert_eq!(DEFAULT.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(DEFAULT.delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(DEFAULT.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(DEFAULT.delay(30, 1.0), DEFAULT_RECONNECT_MAX);
        assert_eq!(DEFAULT.delay(30, 0.0), DEFAULT_RECONNECT_MAX / 2);
    }

    /// SPEC §5: at least five more tries within ten minutes, whatever the
    /// jitter.
    #[test]
    fn five_tries_within_ten_minutes_even_with_worst_jitter() {
        let total: Duration = (1..=5).map(|a| DEFAULT.delay(a, 1.0)).sum();
        assert!(total <= Duration::from_secs(600), "{total:?}");
        let total: Duration = (1..=12).map(|a| DEFAULT.delay(a, 1.0)).sum();
        assert!(
            total <= Duration::from_secs(600),
            "even twelve fit: {total:?}"
        );
    }

    /// The schedule as the link lives it, on tokio's (paused) clock: a
    /// retry loop sleeping until each next try with random jitter makes at
    /// least five tries within ten minutes of the drop, and from then on
    /// its gaps stay between half the cap and the cap, forever.
    #[tokio::test(start_paused = true)]
    async fn retry_schedule_on_paused_time() {
        let dropped = tokio::time::Instant::now();
        let mut tries = Vec::new();
        for attempt in 1..=40 {
            let due = tokio::time::Instant::now() + DEFAULT.delay(attempt, rand::random());
            tokio::time::sleep_until(due).await;
            tries.push(dropped.elapsed());
        }
        let early = tries
            .iter()
            .filter(|t| **t <= Duration::from_secs(600))
            .count();
        assert!(early >= 5, "{early} tries in ten minutes: {tries:?}");
        for pair in tries[10..].windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap <= DEFAULT_RECONNECT_MAX, "{gap:?}");
            assert!(gap >= DEFAULT_RECONNECT_MAX / 2, "{gap:?}");
        }
    }
}

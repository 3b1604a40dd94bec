//! The one sliding-window rate limiter: at most `limit` events per key in
//! any `window`. Used for invitations (per inviter, address, invitee) and
//! broadcasts (per user). Pure: every call takes `now`, so tests run on an
//! injected clock. (Login failures use token buckets instead, see
//! [`crate::throttle`]: there a burst must refill gradually.)

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// Sliding-window counts per key.
#[derive(Debug)]
pub(crate) struct SlidingWindow<K> {
    limit: u32,
    window: Duration,
    recent: HashMap<K, VecDeque<Instant>>,
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq> SlidingWindow<K> {
    /// At most `limit` events per key in any `window` (a `limit` of 0
    /// allows nothing).
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        SlidingWindow {
            limit,
            window,
            recent: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Changes the limit and window (a reload); the counts are kept.
    pub(crate) fn set(&mut self, limit: u32, window: Duration) {
        self.limit = limit;
        self.window = window;
    }

    /// How long `key` must wait before one more event fits; `None` if it
    /// fits now.
    pub(crate) fn wait<Q>(&mut self, key: &Q, now: Instant) -> Option<Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.limit == 0 {
            return Some(self.window);
        }
        let q = self.recent.get_mut(key)?;
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        let oldest = *q.front()?;
        (q.len() >= self.limit as usize).then(|| {
            self.window
                .saturating_sub(now.saturating_duration_since(oldest))
        })
    }

    /// Counts one event for `key`. Once per window, keys with nothing
    /// inside the window are forgotten, so memory follows recent activity.
    pub(crate) fn record(&mut self, key: K, now: Instant) {
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= self.window)
        {
            let window = self.window;
            self.recent.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            self.last_sweep = Some(now);
        }
        self.recent.entry(key).or_default().push_back(now);
    }

    /// Counts one event if it fits; otherwise says how long to wait.
    pub(crate) fn take(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        match self.wait(&key, now) {
            Some(wait) => Err(wait),
            None => {
                self.record(key, now);
                Ok(())
            }
        }
    }

    /// Keys currently remembered (for the memory tests).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn limit_per_key_and_slides_with_time() {
        let mut w = SlidingWindow::<String>::new(2, 10 * S);
        let t0 = Instant::now();
        assert!(w.take("a".into(), t0).is_ok());
        assert!(w.take("a".into(), t0 + 4 * S).is_ok());
        assert_eq!(w.take("a".into(), t0 + 6 * S), Err(4 * S));
        assert!(w.take("b".into(), t0 + 6 * S).is_ok(), "keys are separate");
        // The first event leaves the window at t0+10s.
        assert!(w.take("a".into(), t0 + 10 * S).is_ok());
        assert_eq!(w.wait("a", t0 + 11 * S), Some(3 * S));
    }

    #[test]
    fn a_refused_attempt_is_not_counted() {
        let mut w = SlidingWindow::<u8>::new(1, 10 * S);
        let t0 = Instant::now();
        assert!(w.take(1, t0).is_ok());
        for i in 1..10 {
            assert!(w.take(1, t0 + i * S).is_err());
        }
        assert!(w.take(1, t0 + 10 * S).is_ok());
    }

    #[test]
    fn zero_allows_nothing() {
        let mut w = SlidingWindow::<u8>::new(0, 10 * S);
        assert_eq!(w.take(1, Instant::now()), Err(10 * S));
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let mut w = SlidingWindow::<u32>::new(5, 10 * S);
        let t0 = Instant::now();
        for k in 0..100 {
            w.record(k, t0);
        }
        assert_eq!(w.tracked(), 100);
        w.record(1000, t0 + 10 * S);
        assert_eq!(w.tracked(), 1);
    }
}

//! The most recent broadcasts, in memory, so that a late login catches up
//! without a store query (the store stays the truth: anything older than
//! what memory holds is read from it).

use std::collections::VecDeque;
use std::sync::Arc;

use super::Broadcast;

/// Recent broadcasts in id order, with the id below which memory is not
/// complete.
pub(super) struct Recent {
    /// Every unexpired broadcast with an id above this is in `items`; `None`
    /// until the first broadcast stored through this hub (older ones, from
    /// before a restart, are only in the store).
    floor: Option<u64>,
    items: VecDeque<Arc<Broadcast>>,
    bytes: usize,
    max: usize,
    max_bytes: usize,
}

impl Recent {
    /// Keeps at most `max` broadcasts and `max_bytes` of their text.
    pub(super) fn new(max: usize, max_bytes: usize) -> Self {
        Recent {
            floor: None,
            items: VecDeque::new(),
            bytes: 0,
            max,
            max_bytes,
        }
    }

    /// Adds the newest broadcast (ids only increase), dropping the oldest
    /// past the limits and the expired ones at the front.
    pub(super) fn push(&mut self, b: Arc<Broadcast>, now_ms: i64) {
        if self.floor.is_none() {
            self.floor = Some(b.id.saturating_sub(1));
        }
        self.bytes += b.text.len();
        self.items.push_back(b);
        while let Some(front) = self.items.front() {
            let over = self.items.len() > self.max || self.bytes > self.max_bytes;
            if !over && front.expires_ms > now_ms {
                break;
            }
            self.floor = Some(front.id);
            self.bytes -= front.text.len();
            self.items.pop_front();
        }
    }

    /// Up to `limit` broadcasts above `after`, not from `user`, unexpired at
    /// `now_ms`, in id order (what the store's `pending` would return);
    /// `None` when memory does not hold everything above `after`.
    pub(super) fn pending(
        &self,
        user: &str,
        after: u64,
        now_ms: i64,
        limit: usize,
    ) -> Option<Vec<Arc<Broadcast>>> {
        if after < self.floor? {
            return None;
        }
        let start = self.items.partition_point(|b| b.id <= after);
        Some(
            self.items
                .range(start..)
                .filter(|b| b.from != user && b.expires_ms > now_ms)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: u64, from: &str, text: &str, expires_ms: i64) -> Arc<Broadcast> {
        Arc::new(Broadcast::new(id, from.into(), text.into(), 0, expires_ms).unwrap())
    }

    fn ids(got: Option<Vec<Arc<Broadcast>>>) -> Option<Vec<u64>> {
        got.map(|v| v.iter().map(|b| b.id).collect())
    }

    #[test]
    fn nothing_is_claimed_before_the_first_broadcast() {
        let r = Recent::new(8, 1 << 10);
        assert_eq!(ids(r.pending("bob", 0, 0, 10)), None);
    }

    #[test]
    fn serves_above_the_floor_like_the_store() {
        let mut r = Recent::new(8, 1 << 10);
        for (id, from) in [(5, "alice"), (6, "bob"), (7, "carol"), (8, "alice")] {
            r.push(b(id, from, "x", 100), 0);
        }
        // From before the first one seen here: only the store knows.
        assert_eq!(ids(r.pending("bob", 3, 0, 10)), None);
        assert_eq!(ids(r.pending("bob", 4, 0, 10)), Some(vec![5, 7, 8]));
        assert_eq!(ids(r.pending("bob", 5, 0, 10)), Some(vec![7, 8]));
        assert_eq!(ids(r.pending("bob", 4, 0, 2)), Some(vec![5, 7]));
        assert_eq!(ids(r.pending("bob", 8, 0, 10)), Some(vec![]));
        // Expired at the time asked: left out.
        assert_eq!(ids(r.pending("bob", 4, 100, 10)), Some(vec![]));
    }

    #[test]
    fn the_oldest_go_past_the_limits_and_the_floor_follows() {
        let mut r = Recent::new(2, 1 << 10);
        for id in 1..=3 {
            r.push(b(id, "alice", "x", 100), 0);
        }
        assert_eq!(ids(r.pending("bob", 0, 0, 10)), None);
        assert_eq!(ids(r.pending("bob", 1, 0, 10)), Some(vec![2, 3]));

        let mut r = Recent::new(10, 5);
        r.push(b(1, "alice", "abc", 100), 0);
        r.push(b(2, "alice", "abc", 100), 0);
        assert_eq!(ids(r.pending("bob", 0, 0, 10)), None);
        assert_eq!(ids(r.pending("bob", 1, 0, 10)), Some(vec![2]));

        let mut r = Recent::new(10, 1 << 10);
        r.push(b(1, "alice", "x", 50), 0);
        r.push(b(2, "alice", "x", 100), 60);
        assert_eq!(ids(r.pending("bob", 1, 60, 10)), Some(vec![2]));
        assert_eq!(ids(r.pending("bob", 0, 60, 10)), None);
    }
}

//! Keepalive and silence, shared by the server link and the peer sessions:
//! every `KEEPALIVE_INTERVAL` either a ping is due or, after `IDLE_TIMEOUT`
//! with nothing heard, the connection is given up. Only frames *from the
//! other side* count as heard: our own writes succeed into a dead peer's
//! socket buffer too. Time is tokio's, so tests run it on paused time.

use p2p_proto::limits::{IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

/// What a keepalive tick asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Send a ping.
    Ping,
    /// Nothing was heard for `IDLE_TIMEOUT`: the connection is dead.
    Idle,
}

/// The keepalive clock of one connection.
pub(crate) struct Liveness {
    last_heard: Instant,
    keepalive: Interval,
}

impl Liveness {
    /// Starts the clock now, as if the other side had just spoken.
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        let mut keepalive = interval_at(now + KEEPALIVE_INTERVAL, KEEPALIVE_INTERVAL);
        // A stalled task must not fire a burst of catch-up pings.
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Liveness {
            last_heard: now,
            keepalive,
        }
    }

    /// The other side sent something.
    pub(crate) fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Waits for the next keepalive tick and says what it asks for.
    /// Cancel-safe (for `select!`).
    pub(crate) async fn tick(&mut self) -> Tick {
        self.keepalive.tick().await;
        if self.last_heard.elapsed() >= IDLE_TIMEOUT {
            Tick::Idle
        } else {
            Tick::Ping
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{advance, pause};

    /// A silent peer gets pings every interval, and is given up on at the
    /// first tick at or after IDLE_TIMEOUT of silence, not before.
    #[tokio::test(start_paused = true)]
    async fn silence_pings_then_gives_up_at_the_idle_timeout() {
        let start = Instant::now();
        let mut l = Liveness::new();
        let mut pings = 0;
        while l.tick().await == Tick::Ping {
            pings += 1;
        }
        let waited = start.elapsed();
        assert!(waited >= IDLE_TIMEOUT, "{waited:?}");
        assert!(waited < IDLE_TIMEOUT + KEEPALIVE_INTERVAL, "{waited:?}");
        assert_eq!(
            pings,
            IDLE_TIMEOUT.as_secs() / KEEPALIVE_INTERVAL.as_secs() - 1
        );
    }

    /// Hearing from the other side keeps the connection alive for as long
    /// as it keeps talking.
    #[tokio::test]
    async fn a_talking_peer_is_never_idle() {
        pause();
        let mut l = Liveness::new();
        for _ in 0..20 {
            advance(KEEPALIVE_INTERVAL / 2).await;
            l.heard();
            assert_eq!(l.tick().await, Tick::Ping);
        }
        // Then silence: idle once IDLE_TIMEOUT has passed since the last word.
        let last = Instant::now();
        while l.tick().await == Tick::Ping {}
        assert!(last.elapsed() >= IDLE_TIMEOUT);
    }
}

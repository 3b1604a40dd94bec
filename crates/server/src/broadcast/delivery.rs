//! The delivery invariant for one session, in one place:
//!
//! 1. subscribe to the live channel *before* reading the store, so nothing
//!    stored in between is missed;
//! 2. start the cursor at the user's acknowledged high-water mark and catch
//!    up from the store above it;
//! 3. follow the live channel, going back to the store if it fell behind;
//! 4. never send the user's own broadcasts, an expired one, or one twice
//!    (the cursor moves past every id seen);
//! 5. clamp acknowledgements to the cursor: a client cannot acknowledge
//!    what this session never sent it.
//!
//! The connection (`conn.rs`) only writes the events this yields.

use std::sync::Arc;

use p2p_proto::codec::Prepared;
use p2p_proto::time;
use p2p_proto::wire::ServerMsg;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::ReusableBoxFuture;

use super::acks::AckSlot;
use super::{Broadcast, BroadcastHub, Result};

/// What the live channel brought.
#[derive(Debug)]
pub enum Live {
    /// Send this broadcast's frame (shared by every recipient).
    Send(Prepared<ServerMsg>),
    /// Nothing to send (own, expired, or already sent).
    Skip,
    /// Live messages were lost; call [`Delivery::backlog`] until it is
    /// empty.
    Behind,
    /// The hub is gone.
    Closed,
}

type Receiver = broadcast::Receiver<Arc<Broadcast>>;
type Received = (Result<Arc<Broadcast>, RecvError>, Receiver);

/// Waits for the next live broadcast, handing the receiver back.
async fn receive(mut rx: Receiver) -> Received {
    let got = rx.recv().await;
    (got, rx)
}

/// One session's view of broadcasts.
pub struct Delivery {
    hub: Arc<BroadcastHub>,
    user: Arc<str>,
    /// [`super::user_key`] of `user`.
    user_key: u64,
    /// Where this session's acknowledgements go.
    acks: Arc<AckSlot>,
    /// Highest id this session has passed (sent or skipped).
    cursor: u64,
    /// The pending wait for the next live broadcast. Kept across the
    /// session's `select!` iterations, so the session stays registered with
    /// the channel instead of registering and leaving again on every
    /// wake-up (one of those per delivery and per acknowledgement).
    live: ReusableBoxFuture<'static, Received>,
}

impl Delivery {
    /// Subscribes, then reads where `user` left off.
    pub async fn start(hub: Arc<BroadcastHub>, user: &str) -> Result<Self> {
        let live = hub.subscribe();
        let cursor = hub.acked(user).await?;
        let user: Arc<str> = Arc::from(user);
        Ok(Delivery {
            acks: hub.ack_slot(user.clone()),
            hub,
            user_key: super::user_key(&user),
            user,
            cursor,
            live: ReusableBoxFuture::new(receive(live)),
        })
    }

    /// The next batch above the cursor (from memory or the store), as frames
    /// to send (possibly empty if all were skipped); `None` once caught up.
    pub(crate) async fn backlog(&mut self) -> Result<Option<Vec<Prepared<ServerMsg>>>> {
        let batch = self.hub.pending(&self.user, self.cursor).await?;
        if batch.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch.iter().filter_map(|b| self.pass(b)).collect()))
    }

    /// Waits for the next live broadcast. Cancel-safe (for `select!`).
    pub(crate) async fn live(&mut self) -> Live {
        let (got, rx) = (&mut self.live).await;
        self.live.set(receive(rx));
        match got {
            Ok(b) => self.pass(&b).map_or(Live::Skip, Live::Send),
            Err(RecvError::Lagged(_)) => Live::Behind,
            Err(RecvError::Closed) => Live::Closed,
        }
    }

    /// Moves the cursor past `b`; the frame to send if this session should.
    fn pass(&mut self, b: &Broadcast) -> Option<Prepared<ServerMsg>> {
        if b.id <= self.cursor {
            return None;
        }
        self.cursor = b.id;
        let own = b.from_key == self.user_key && *b.from == *self.user;
        if own || b.expires_ms <= time::now_ms() {
            return None;
        }
        Some(b.frame.clone())
    }

    /// Records the client's acknowledgement, never beyond what this session
    /// was sent.
    pub fn ack(&self, upto: u64) {
        self.hub.ack(&self.acks, upto.min(self.cursor));
    }
}

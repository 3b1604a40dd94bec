//! What other tasks tell one logged-in session: unsolicited messages to
//! write (invitations and their ends) and a reason to close (replaced,
//! removed, kicked). One small shared object per session instead of a
//! channel for each: an idle session's share of the server's memory is
//! what the whole design is measured by, and a tokio mpsc channel plus a
//! watch channel were about 800 bytes per session, this is about 100.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use p2p_proto::wire::{CloseReason, ServerMsg};

/// Unsolicited messages queued for one session. A session that lets this
/// many pile up is not reading; further pushes fail and the sender treats
/// the user as unreachable, so one slow client cannot grow server memory.
pub(crate) const OUTBOUND_QUEUE: usize = 64;

/// What a session's mailbox held.
#[derive(Debug, PartialEq)]
pub(crate) enum Mail {
    /// Close, for this reason. Comes before any message still queued.
    Close(CloseReason),
    /// Write this message.
    Push(Box<ServerMsg>),
}

#[derive(Debug, Default)]
struct Held {
    /// Boxed: a message inline is 160 bytes.
    queue: VecDeque<Box<ServerMsg>>,
    close: Option<CloseReason>,
    /// The session's task, woken by every put (kept, not taken: a task's
    /// waker stays the same, so the session registers it once).
    waker: Option<Waker>,
}

/// One session's mailbox: any task may put, only the session takes.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    held: Mutex<Held>,
    /// Whether `held` has anything: a session's wake-ups (two per broadcast
    /// delivered) look here, and only here, unless it is set.
    ready: AtomicBool,
}

/// The session's side of its mailbox: the waker it registered, so that it
/// registers again only if its task's waker changes (never, in practice).
#[derive(Debug, Default)]
pub(crate) struct Registered(Option<Waker>);

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg`; false if [`OUTBOUND_QUEUE`] messages are waiting
    /// already (the session is not reading).
    pub(crate) fn push(&self, msg: ServerMsg) -> bool {
        let mut held = self.lock();
        if held.queue.len() >= OUTBOUND_QUEUE {
            return false;
        }
        held.queue.push_back(Box::new(msg));
        self.ready.store(true, Ordering::Release);
        if let Some(w) = &held.waker {
            w.wake_by_ref();
        }
        true
    }

    /// Tells the session to close (the latest reason wins, as it is the
    /// one that is still true).
    pub(crate) fn close(&self, reason: CloseReason) {
        let mut held = self.lock();
        held.close = Some(reason);
        self.ready.store(true, Ordering::Release);
        if let Some(w) = &held.waker {
            w.wake_by_ref();
        }
    }

    /// Takes what is there, a close first.
    pub(crate) fn try_take(&self) -> Option<Mail> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        let mut held = self.lock();
        if let Some(reason) = held.close {
            return Some(Mail::Close(reason));
        }
        let msg = held.queue.pop_front();
        if held.queue.is_empty() {
            // Nothing kept for an idle session, not even the queue's slots.
            held.queue = VecDeque::new();
            self.ready.store(false, Ordering::Release);
        }
        msg.map(Mail::Push)
    }

    fn poll_take(&self, cx: &mut Context<'_>, registered: &mut Registered) -> Poll<Mail> {
        // Registered before looking (under the lock puts take), so a put in
        // between wakes us.
        if !registered
            .0
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.lock().waker = Some(cx.waker().clone());
            registered.0 = Some(cx.waker().clone());
        }
        match self.try_take() {
            Some(mail) => Poll::Ready(mail),
            None => Poll::Pending,
        }
    }

    /// Waits for the next mail. Cancel-safe: nothing is taken unless it is
    /// returned. For the session's task only (one waker is kept), with the
    /// same `registered` each time.
    pub(crate) async fn take(&self, registered: &mut Registered) -> Mail {
        poll_fn(|cx| self.poll_take(cx, registered)).await
    }

    /// The next pushed message, for tests that only push.
    #[cfg(test)]
    pub(crate) async fn recv(&self) -> Option<Box<ServerMsg>> {
        match self.take(&mut Registered::default()).await {
            Mail::Push(msg) => Some(msg),
            Mail::Close(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pong(nonce: u64) -> ServerMsg {
        ServerMsg::Pong { nonce }
    }

    #[test]
    fn messages_come_in_order_and_a_close_before_them() {
        let m = Mailbox::default();
        assert_eq!(m.try_take(), None);
        assert!(m.push(pong(1)));
        assert!(m.push(pong(2)));
        assert_eq!(m.try_take(), Some(Mail::Push(Box::new(pong(1)))));
        m.close(CloseReason::Replaced);
        assert_eq!(m.try_take(), Some(Mail::Close(CloseReason::Replaced)));
        // A close stays: the session ends on it, whatever else is queued.
        assert_eq!(m.try_take(), Some(Mail::Close(CloseReason::Replaced)));
    }

    #[test]
    fn a_full_mailbox_refuses_and_an_empty_one_holds_no_slots() {
        let m = Mailbox::default();
        for n in 0..OUTBOUND_QUEUE as u64 {
            assert!(m.push(pong(n)));
        }
        assert!(!m.push(pong(99)), "the session is not reading");
        for n in 0..OUTBOUND_QUEUE as u64 {
            assert_eq!(m.try_take(), Some(Mail::Push(Box::new(pong(n)))));
        }
        assert_eq!(m.try_take(), None);
        assert_eq!(m.lock().queue.capacity(), 0);
        assert!(m.push(pong(100)), "room again");
    }

    #[tokio::test]
    async fn a_waiting_session_is_woken_by_a_put_from_another_task() {
        let m = Arc::new(Mailbox::default());
        let waiting = tokio::spawn({
            let m = m.clone();
            async move {
                let mut registered = Registered::default();
                (m.take(&mut registered).await, m.take(&mut registered).await)
            }
        });
        tokio::task::yield_now().await;
        let other = m.clone();
        tokio::spawn(async move {
            assert!(other.push(pong(7)));
            other.close(CloseReason::AccountRemoved);
        })
        .await
        .unwrap();
        let (first, second) = waiting.await.unwrap();
        // The close may overtake the message if both land before the first
        // look; either way the close is seen.
        assert!(
            first == Mail::Push(Box::new(pong(7)))
                && second == Mail::Close(CloseReason::AccountRemoved)
                || first == Mail::Close(CloseReason::AccountRemoved)
        );
    }
}

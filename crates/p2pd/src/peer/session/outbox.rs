//! What this side sent and the peer has not acknowledged yet: the texts
//! (kept so a link switch can resend them on the new link) and the `send`
//! commands waiting for their acknowledgement.

use std::collections::VecDeque;

use p2p_proto::peer::PeerMsg;
use tokio::sync::oneshot;

use crate::peer::error::PeerError;

/// One message for the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutText {
    /// The text.
    pub text: String,
    /// When it was sent (queued), Unix ms.
    pub at_ms: i64,
    /// Its durable id from the sender's outbox (`PeerMsg::Message.mid`),
    /// the same however often it is resent, so the peer stores it once.
    pub mid: Option<u64>,
}

/// Where a `send` command's answer goes: its ids, or why not.
pub(crate) type Reply = oneshot::Sender<Result<Vec<u64>, PeerError>>;

struct Waiting {
    last: u64,
    ids: Vec<u64>,
    reply: Reply,
}

/// The unacknowledged messages, oldest first, and their waiting commands.
/// Bounded by the session's command limit: the task takes no new `send`
/// while [`Outbox::commands`] is at `SESSION_QUEUE`.
#[derive(Default)]
pub(crate) struct Outbox {
    next_id: u64,
    unacked: VecDeque<PeerMsg>,
    waiting: VecDeque<Waiting>,
}

impl Outbox {
    /// Gives `msgs` the next ids (they keep counting across link switches)
    /// and keeps them until acknowledged; returns the messages to send.
    pub(crate) fn push(&mut self, msgs: Vec<OutText>, reply: Reply) -> Vec<PeerMsg> {
        let mut ids = Vec::with_capacity(msgs.len());
        let msgs: Vec<PeerMsg> = msgs
            .into_iter()
            .map(|m| {
                self.next_id += 1;
                ids.push(self.next_id);
                PeerMsg::Message {
                    id: self.next_id,
                    text: m.text,
                    at_ms: m.at_ms,
                    mid: m.mid,
                }
            })
            .collect();
        self.unacked.extend(msgs.iter().cloned());
        self.waiting.push_back(Waiting {
            last: self.next_id,
            ids,
            reply,
        });
        msgs
    }

    /// The peer stored everything up to `upto` (an `Ack`, or the
    /// `received_upto` of a `Switch`): forget those texts and answer the
    /// commands they complete.
    pub(crate) fn ack(&mut self, upto: u64) {
        while matches!(self.unacked.front(), Some(PeerMsg::Message { id, .. }) if *id <= upto) {
            self.unacked.pop_front();
        }
        while self.waiting.front().is_some_and(|w| w.last <= upto) {
            let w = self.waiting.pop_front().expect("checked");
            let _ = w.reply.send(Ok(w.ids));
        }
    }

    /// The messages not acknowledged yet, oldest first (to resend on a new
    /// link after [`Outbox::ack`] with the peer's `received_upto`).
    pub(crate) fn unacked(&self) -> Vec<PeerMsg> {
        self.unacked.iter().cloned().collect()
    }

    /// `send` commands waiting for their acknowledgement.
    pub(crate) fn commands(&self) -> usize {
        self.waiting.len()
    }

    /// The session ended: every waiting command gets `err`.
    pub(crate) fn fail(&mut self, err: impl Fn() -> PeerError) {
        self.unacked.clear();
        for w in self.waiting.drain(..) {
            let _ = w.reply.send(Err(err()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(msgs: &[PeerMsg]) -> Vec<u64> {
        msgs.iter()
            .map(|m| match m {
                PeerMsg::Message { id, .. } => *id,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn texts(t: &[&str]) -> Vec<OutText> {
        t.iter()
            .map(|t| OutText {
                text: t.to_string(),
                at_ms: 0,
                mid: None,
            })
            .collect()
    }

    #[test]
    fn acks_release_texts_and_answer_whole_commands_only() {
        let mut o = Outbox::default();
        let (a, mut ra) = oneshot::channel();
        let (b, mut rb) = oneshot::channel();
        assert_eq!(ids(&o.push(texts(&["1", "2"]), a)), [1, 2]);
        assert_eq!(ids(&o.push(texts(&["3"]), b)), [3]);
        o.ack(1);
        assert_eq!(ids(&o.unacked()), [2, 3]);
        assert!(
            ra.try_recv().is_err(),
            "half of the first command is not done"
        );
        o.ack(2);
        assert_eq!(ra.try_recv().unwrap().unwrap(), [1, 2]);
        assert_eq!(o.commands(), 1);
        o.fail(|| PeerError::ShuttingDown);
        assert!(rb.try_recv().unwrap().is_err());
        assert!(o.unacked().is_empty());
    }
}

//! `send [--now] USER TEXT...` and `send USER -` (one message per stdin
//! line). Each message is delivered, or queued for a contact who is not
//! connected (SPEC §11); the output says which.
//!
//! With `-`, lines are read on a thread and sent in batches: whatever has
//! arrived while the previous batch was being acknowledged goes next, so a
//! fast producer gets large batches (one disk sync and one ack each on the
//! peer) and a slow one gets each line sent at once.

use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use p2p_proto::ctl::{BroadcastDone, Command, SendStatus, SentList, SentMessage};
use p2p_proto::limits::{MAX_CTL_REQUEST, MAX_MESSAGE_BYTES};

use crate::client::Client;
use crate::{safe, Failure};

/// Most lines in one `send` request. Each request costs a fixed number of
/// disk syncs on both daemons and a round trip (p2pctl waits for its answer
/// before the next), so short lines are sent many to a request: at 1 000,
/// `send -` of 100 000 short lines spent most of its time in those per-request
/// costs. [`MAX_BATCH_BYTES`] bounds the request for long lines; this bounds
/// the answer (one id and status per line, about 50 bytes each: well under
/// `MAX_CTL_RESPONSE`) and what is read ahead of the daemon.
pub(crate) const MAX_BATCH_LINES: usize = 16_384;
/// Most JSON-encoded text bytes in one request: half the control line
/// limit, so the envelope always fits. A single line (at most 64 KiB, at
/// most six times that escaped) always fits on its own.
pub(crate) const MAX_BATCH_BYTES: usize = MAX_CTL_REQUEST / 2;

/// A text's size inside the request line (escaping included).
fn encoded_len(text: &str) -> usize {
    serde_json::to_string(text).map_or(text.len() * 6, |s| s.len())
}

fn too_large(len: usize, what: &str) -> Failure {
    Failure::Ctl(p2p_proto::ctl::CtlError::new(
        p2p_proto::ctl::ErrorCode::TooLarge,
        format!("{what} is {len} bytes; the limit is {MAX_MESSAGE_BYTES}. Nothing of it was sent"),
    ))
}

/// Sends `texts` joined with spaces as one message, or stdin lines for `-`.
pub(crate) fn run(
    c: &mut Client,
    user: String,
    texts: Vec<String>,
    now: bool,
    json: bool,
) -> Result<(), Failure> {
    if texts == ["-"] {
        return stream(c, user, now, json);
    }
    let text = texts.join(" ");
    if text.trim().is_empty() {
        return Err(Failure::Usage(
            "the message is empty (or only blanks); nothing was sent".into(),
        ));
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(too_large(text.len(), "the message"));
    }
    let doc = c.call::<SentList>(Command::Send {
        now,
        user,
        texts: vec![text],
    })?;
    super::print(doc, json, |s: SentList| {
        if let Some(m) = s.sent.first() {
            println!("{} (message {})", outcome(&m.to, m.status, 1), m.id);
        }
    })
}

/// What happened to `n` messages to `to`, for people.
fn outcome(to: &str, status: SendStatus, n: usize) -> String {
    let to = safe::line(to);
    let what = if n == 1 {
        "it goes".to_string()
    } else {
        format!("{n} messages go")
    };
    match status {
        SendStatus::Delivered if n == 1 => format!("delivered to {to}"),
        SendStatus::Delivered => format!("delivered {n} messages to {to}"),
        SendStatus::Queued => {
            format!("queued for {to} (not connected): {what} out when a session opens")
        }
        SendStatus::Failed if n == 1 => format!("not delivered to {to}"),
        SendStatus::Failed => format!("{n} messages not delivered to {to}"),
    }
}

/// How far a `send USER -` got before an error, for [`Failure::Partial`].
#[derive(Debug)]
pub(crate) struct PartialSend {
    /// What stopped it.
    pub(crate) error: Failure,
    /// The acknowledged messages: lines 1 to `sent.len()`, in order.
    pub(crate) sent: Vec<SentMessage>,
    /// Lines read from stdin, the one that failed (too long, not UTF-8)
    /// included.
    pub(crate) read: usize,
    /// Lines after the acknowledged ones that went out in the request that
    /// failed: the peer may or may not have stored them.
    pub(crate) unconfirmed: usize,
}

impl PartialSend {
    /// The line for stderr, once any line was read: "12 of 20 lines
    /// delivered before the error; ...".
    pub(crate) fn summary(&self) -> Option<String> {
        if self.read == 0 {
            return None;
        }
        let done = self.sent.len();
        let mut s = format!("{done} of {} lines delivered before the error", self.read);
        if self.unconfirmed > 0 {
            s.push_str(&format!(
                "; lines {}-{} were sent but not acknowledged (they may have arrived)",
                done + 1,
                done + self.unconfirmed
            ));
        }
        match done + self.unconfirmed {
            0 => s.push_str("; nothing was sent"),
            last => s.push_str(&format!("; nothing after line {last} was sent")),
        }
        Some(s)
    }
}

fn stream(c: &mut Client, user: String, now: bool, json: bool) -> Result<(), Failure> {
    let (tx, rx) = mpsc::sync_channel::<Result<String, String>>(MAX_BATCH_LINES);
    // Empty and blank lines are not messages (the daemon refuses them):
    // skipped, counted, and reported at the end.
    let skipped = Arc::new(AtomicUsize::new(0));
    let skips = skipped.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.as_ref().is_ok_and(|l| l.trim().is_empty()) {
                skips.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let item = line.map_err(|e| format!("cannot read stdin: {e} (it must be UTF-8 text)"));
            let stop = item.is_err();
            if tx.send(item).is_err() || stop {
                return;
            }
        }
    });
    let mut progress = PartialSend {
        error: Failure::Other(String::new()),
        sent: Vec::new(),
        read: 0,
        unconfirmed: 0,
    };
    let result = send_lines(c, &user, now, &rx, &mut progress);
    match skipped.load(Ordering::Relaxed) {
        0 => {}
        1 => eprintln!("skipped 1 empty line"),
        n => eprintln!("skipped {n} empty lines"),
    }
    match result {
        Ok(()) if json => {
            super::print_json(&SentList {
                sent: progress.sent,
            });
            Ok(())
        }
        Ok(()) => {
            let count = |st| progress.sent.iter().filter(|m| m.status == st).count();
            let lines: Vec<String> = [
                SendStatus::Delivered,
                SendStatus::Queued,
                SendStatus::Failed,
            ]
            .into_iter()
            .map(|st| (st, count(st)))
            .filter(|&(st, n)| n > 0 || (st == SendStatus::Delivered && progress.sent.is_empty()))
            .map(|(st, n)| outcome(&user, st, n))
            .collect();
            println!("{}", lines.join("; "));
            Ok(())
        }
        Err(error) => Err(Failure::Partial(Box::new(PartialSend {
            error,
            ..progress
        }))),
    }
}

/// `send -` requests sent and not answered yet: one is stored by the
/// daemon while the one before is delivered, so the sender's commit and
/// the peer's overlap.
pub(crate) const IN_FLIGHT: usize = 2;

/// Sends the lines from `rx` in batches, recording in `p` what was read and
/// acknowledged. A line that cannot be sent (too long, not UTF-8) stops
/// it, but only after the lines before it went out: the outcome does not
/// depend on how the lines happened to be batched. Up to [`IN_FLIGHT`]
/// requests are out at a time; the daemon answers them in order.
fn send_lines(
    c: &mut Client,
    user: &str,
    now: bool,
    rx: &mpsc::Receiver<Result<String, String>>,
    p: &mut PartialSend,
) -> Result<(), Failure> {
    // A line that did not fit the previous batch starts the next one.
    let mut carry: Option<Result<String, String>> = None;
    // Requests out: their ids and how many lines each holds.
    let mut out: std::collections::VecDeque<(u64, usize)> = Default::default();
    let writer = c.pipeline()?;
    let mut stop = None;
    loop {
        // With a request out, only lines already read start a batch: a
        // slow stdin must not hold up reading the answers.
        let first = if stop.is_some() || out.len() >= IN_FLIGHT {
            None
        } else if out.is_empty() {
            carry.take().or_else(|| rx.recv().ok())
        } else {
            carry.take().or_else(|| rx.try_recv().ok())
        };
        let Some(first) = first else {
            // Nothing to send now: take the oldest answer, or finish.
            let Some((id, n)) = out.pop_front() else {
                break;
            };
            let got = c.answer::<SentList>(id)?;
            p.sent.extend(got.sent);
            p.unconfirmed -= n;
            continue;
        };
        let (texts, bad) = batch(first, rx, &mut carry, p.read);
        if !texts.is_empty() {
            p.read += texts.len();
            p.unconfirmed += texts.len();
            let n = texts.len();
            let (id, line) = c.encode(Command::Send {
                now,
                user: user.to_string(),
                texts,
            });
            if writer.send(line).is_err() {
                return Err(Failure::Other("writing to p2pd failed".into()));
            }
            out.push_back((id, n));
        }
        if bad.is_some() {
            p.read += 1;
            stop = bad;
        }
    }
    match stop {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One request's lines: `first` and those already read after it, up to
/// [`MAX_BATCH_LINES`] and [`MAX_BATCH_BYTES`] (a line that does not fit is
/// left in `carry`). Stops before a line that cannot be sent, returning why
/// (`read`: lines read before `first`, to name it).
fn batch(
    first: Result<String, String>,
    rx: &mpsc::Receiver<Result<String, String>>,
    carry: &mut Option<Result<String, String>>,
    read: usize,
) -> (Vec<String>, Option<Failure>) {
    let mut texts = Vec::new();
    let mut bytes = 0;
    let mut next = Some(first);
    while let Some(item) = next.take() {
        let line = match item {
            Ok(line) if line.len() > MAX_MESSAGE_BYTES => {
                let what = format!("line {}", read + texts.len() + 1);
                return (texts, Some(too_large(line.len(), &what)));
            }
            Ok(line) => line,
            Err(e) => return (texts, Some(Failure::Other(e))),
        };
        let len = encoded_len(&line);
        if !texts.is_empty() && (bytes + len > MAX_BATCH_BYTES || texts.len() >= MAX_BATCH_LINES) {
            *carry = Some(Ok(line));
            break;
        }
        bytes += len;
        texts.push(line);
        next = rx.try_recv().ok();
    }
    (texts, None)
}

/// `broadcast TEXT...`: returns once the server stored it.
pub(crate) fn broadcast(c: &mut Client, text: String, json: bool) -> Result<(), Failure> {
    let doc = c.call::<BroadcastDone>(Command::Broadcast { text })?;
    super::print(doc, json, |d: BroadcastDone| {
        println!(
            "broadcast {} stored; delivered to everyone who is online until {}",
            d.broadcast.id,
            crate::localtime::expires(&d.broadcast.expires_at)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(delivered: u64, read: usize, unconfirmed: usize) -> PartialSend {
        PartialSend {
            error: Failure::Other("x".into()),
            sent: (1..=delivered)
                .map(|id| SentMessage {
                    to: "bob".into(),
                    id,
                    status: SendStatus::Delivered,
                })
                .collect(),
            read,
            unconfirmed,
        }
    }

    #[test]
    fn the_outcome_says_what_happened() {
        assert_eq!(outcome("bob", SendStatus::Delivered, 1), "delivered to bob");
        assert_eq!(
            outcome("bob", SendStatus::Queued, 1),
            "queued for bob (not connected): it goes out when a session opens"
        );
        assert_eq!(
            outcome("bob", SendStatus::Queued, 3),
            "queued for bob (not connected): 3 messages go out when a session opens"
        );
        assert_eq!(
            outcome("bob", SendStatus::Delivered, 500),
            "delivered 500 messages to bob"
        );
    }

    #[test]
    fn the_summary_says_what_was_delivered_and_what_may_have_been() {
        assert_eq!(partial(0, 0, 0).summary(), None);
        assert_eq!(
            partial(0, 1, 0).summary().unwrap(),
            "0 of 1 lines delivered before the error; nothing was sent"
        );
        assert_eq!(
            partial(12, 20, 8).summary().unwrap(),
            "12 of 20 lines delivered before the error; lines 13-20 were sent but not \
             acknowledged (they may have arrived); nothing after line 20 was sent"
        );
        assert_eq!(
            partial(20, 21, 0).summary().unwrap(),
            "20 of 21 lines delivered before the error; nothing after line 20 was sent"
        );
    }
}

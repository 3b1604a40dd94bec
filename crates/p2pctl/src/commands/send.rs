//! `send USER TEXT...` and `send USER -` (one message per stdin line).
//!
//! With `-`, lines are read on a thread and sent in batches: whatever has
//! arrived while the previous batch was being acknowledged goes next, so a
//! fast producer gets large batches (one disk sync and one ack each on the
//! peer) and a slow one gets each line sent at once.

use std::io::BufRead;
use std::sync::mpsc;

use p2p_proto::ctl::{BroadcastDone, Command, SentList};
use p2p_proto::limits::{MAX_CTL_REQUEST, MAX_MESSAGE_BYTES};

use crate::client::{unexpected, Client};
use crate::Failure;

/// Most lines in one `send` request.
pub const MAX_BATCH_LINES: usize = 1000;
/// Most JSON-encoded text bytes in one request: half the control line
/// limit, so the envelope always fits. A single line (at most 64 KiB, at
/// most six times that escaped) always fits on its own.
pub const MAX_BATCH_BYTES: usize = MAX_CTL_REQUEST / 2;

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
pub fn run(c: &mut Client, user: String, texts: Vec<String>, json: bool) -> Result<(), Failure> {
    if texts == ["-"] {
        return stream(c, user, json);
    }
    let text = texts.join(" ");
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(too_large(text.len(), "the message"));
    }
    let doc = c.call(Command::Send {
        user,
        texts: vec![text],
    })?;
    super::print(doc, json, |s: SentList| {
        if let Some(m) = s.sent.first() {
            println!("delivered to {} (message {})", m.to, m.id);
        }
    })
}

fn stream(c: &mut Client, user: String, json: bool) -> Result<(), Failure> {
    let (tx, rx) = mpsc::sync_channel::<Result<String, String>>(MAX_BATCH_LINES);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let item = line.map_err(|e| format!("cannot read stdin: {e} (it must be UTF-8 text)"));
            let stop = item.is_err();
            if tx.send(item).is_err() || stop {
                return;
            }
        }
    });
    let mut sent = SentList { sent: Vec::new() };
    let mut number = 0usize;
    // A line that did not fit the previous batch starts the next one.
    let mut carry: Option<Result<String, String>> = None;
    while let Some(first) = carry.take().or_else(|| rx.recv().ok()) {
        let mut texts = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(line) = next.take() {
            let line = line.map_err(Failure::Other)?;
            if line.len() > MAX_MESSAGE_BYTES {
                let what = format!("line {} (earlier lines were delivered)", number + 1);
                return Err(too_large(line.len(), &what));
            }
            let len = encoded_len(&line);
            if !texts.is_empty()
                && (bytes + len > MAX_BATCH_BYTES || texts.len() >= MAX_BATCH_LINES)
            {
                carry = Some(Ok(line));
                break;
            }
            number += 1;
            bytes += len;
            texts.push(line);
            next = rx.try_recv().ok();
        }
        let doc = c.call(Command::Send {
            user: user.clone(),
            texts,
        })?;
        let got: SentList = serde_json::from_value(doc).map_err(unexpected)?;
        sent.sent.extend(got.sent);
    }
    if json {
        println!("{}", serde_json::to_value(&sent).expect("serialises"));
    } else {
        println!("delivered {} messages to {user}", sent.sent.len());
    }
    Ok(())
}

/// `broadcast TEXT...`: returns once the server stored it.
pub fn broadcast(c: &mut Client, text: String, json: bool) -> Result<(), Failure> {
    let doc = c.call(Command::Broadcast { text })?;
    super::print(doc, json, |d: BroadcastDone| {
        println!(
            "broadcast {} stored; delivered to everyone who is online until {}",
            d.broadcast.id, d.broadcast.expires_at
        )
    })
}

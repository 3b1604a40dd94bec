//! `inbox`, `watch` and `chat`: reading what arrives.

use std::io::{BufRead, Write};

use p2p_proto::ctl::{Command, InboxEntry, InboxKind, InboxList};

use crate::client::Client;
use crate::{safe, Failure};

/// `HH:MM:SS` of an RFC 3339 UTC time, for people.
fn clock(at: &str) -> &str {
    at.get(11..19).unwrap_or(at)
}

/// One entry for people; everything in it but our own words goes through
/// [`safe`] (SPEC §11, terminal safety).
fn line(e: &InboxEntry) -> String {
    let (day, at) = (
        safe::line(e.at.get(..10).unwrap_or("")),
        safe::line(clock(&e.at)),
    );
    let (from, text) = (safe::line(&e.from), safe::text(&e.text));
    match e.kind {
        InboxKind::Message => format!("{day} {at}  {from}: {text}"),
        InboxKind::Broadcast => format!("{day} {at}  [broadcast] {from}: {text}"),
    }
}

/// `inbox [--all] [--from USER] [--follow]`: every page, then (with
/// `--follow`) new entries as they arrive.
pub fn inbox(
    c: &mut Client,
    all: bool,
    from: Option<String>,
    follow: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut after: Option<u64> = None;
    let page = |c: &mut Client, after: Option<u64>, follow: bool| -> Result<InboxList, Failure> {
        let doc = c.call(Command::Inbox {
            all,
            from: from.clone(),
            follow,
            after,
        })?;
        serde_json::from_value(doc).map_err(crate::client::unexpected)
    };
    // Each request with `after` also tells the daemon we have everything up
    // to it, and only that makes those entries read; so we ask until a page
    // comes back empty (or, with `--follow`, until the last page, which the
    // follow request acknowledges). Dying halfway leaves them unread. Each
    // page is printed before the next is asked for, so memory stays at one
    // page however big the inbox, and only what was printed is acknowledged.
    let mut out = Listing::new(json, all);
    loop {
        let got = page(c, after, false)?;
        let Some(last) = got.messages.last().map(|e| e.seq) else {
            break;
        };
        // A page that does not move forward would be asked for forever.
        if after.is_some_and(|a| last <= a) {
            return Err(crate::client::unexpected(
                "the daemon sent an inbox page that does not move forward",
            ));
        }
        after = Some(last);
        let more = got.more;
        if follow {
            for e in &got.messages {
                print_entry(e, json);
            }
        } else {
            out.page(&got.messages)?;
        }
        if follow && !more {
            break;
        }
    }
    if !follow {
        return out.finish();
    }
    let mut entries = Vec::new();
    // Anything that arrived since the last page comes with the follow.
    entries.extend(page(c, after, true)?.messages);
    for e in &entries {
        print_entry(e, json);
    }
    loop {
        let ev = c.next_event()?;
        if let Ok(e) = serde_json::from_value::<InboxEntry>(ev.clone()) {
            print_entry(&e, json);
        }
    }
}

/// A one-shot listing, written page by page as it comes — for people one
/// line per entry, as JSON one `{"messages":[...]}` document opened with
/// the first page and closed after the last — and flushed before the next
/// page is asked for. Asking for the next page is what marks this one read,
/// so an entry becomes read only once it is out of p2pctl (a listing whose
/// output fails stops there, leaving the rest unread), and memory stays at
/// one page however big the inbox.
struct Listing {
    json: bool,
    all: bool,
    printed: usize,
    out: std::io::Stdout,
}

impl Listing {
    fn new(json: bool, all: bool) -> Self {
        Listing {
            json,
            all,
            printed: 0,
            out: std::io::stdout(),
        }
    }

    fn page(&mut self, entries: &[InboxEntry]) -> Result<(), Failure> {
        let mut out = self.out.lock();
        for e in entries {
            let r = if !self.json {
                writeln!(out, "{}", line(e))
            } else {
                let sep = if self.printed == 0 {
                    "{\"messages\":["
                } else {
                    ","
                };
                write!(out, "{sep}{}", serde_json::to_value(e).expect("serialises"))
            };
            r.map_err(write_failed)?;
            self.printed += 1;
        }
        out.flush().map_err(write_failed)
    }

    fn finish(self) -> Result<(), Failure> {
        let mut out = self.out.lock();
        match (self.json, self.printed) {
            (true, 0) => writeln!(out, "{{\"messages\":[]}}"),
            (true, _) => writeln!(out, "]}}"),
            (false, 0) => writeln!(out, "no {}messages", if self.all { "" } else { "new " }),
            (false, _) => Ok(()),
        }
        .and_then(|()| out.flush())
        .map_err(write_failed)
    }
}

fn write_failed(e: std::io::Error) -> Failure {
    Failure::Other(format!(
        "cannot write the listing ({e}); what was not written stays unread"
    ))
}

fn print_entry(e: &InboxEntry, json: bool) {
    if json {
        println!("{}", serde_json::to_value(e).expect("serialises"));
    } else {
        println!("{}", line(e));
    }
}

/// Describes an event for people; every field goes through [`safe`].
fn describe(ev: &serde_json::Value) -> String {
    let s = |k: &str| safe::line(ev[k].as_str().unwrap_or("")).to_string();
    let text = safe::text(ev["text"].as_str().unwrap_or(""));
    match ev["event"].as_str().unwrap_or("") {
        "server" => {
            let mut t = format!("server: {}", s("state"));
            if let Some(e) = ev["last_error"].as_str() {
                t.push_str(&format!(" ({})", safe::line(e)));
            }
            t
        }
        "request" => format!(
            "{} asks to talk (p2pctl accept {0} / reject {0}); expires {}",
            s("from"),
            s("expires_at")
        ),
        "connected" => format!("connected to {}", s("peer")),
        "rejected" => format!("no session with {}: {}", s("peer"), s("reason")),
        "message" => format!("{} {}: {text}", clock(&s("at")), s("from")),
        "broadcast" => format!("{} [broadcast] {}: {text}", clock(&s("at")), s("from")),
        "disconnected" => format!("{} disconnected: {}", s("peer"), s("reason")),
        "key_changed" => format!(
            "WARNING: {}'s key changed from {} to {}",
            s("peer"),
            s("old_key"),
            s("new_key")
        ),
        // serde_json escapes C0 controls but not C1 or bidi ones.
        other => format!("{}: {}", safe::line(other), safe::line(&ev.to_string())),
    }
}

/// `watch`: events until interrupted.
pub fn watch(c: &mut Client, json: bool) -> Result<(), Failure> {
    c.call(Command::Watch)?;
    loop {
        let ev = c.next_event()?;
        if json {
            println!("{ev}");
        } else {
            println!("{}", describe(&ev));
        }
    }
}

/// `chat USER`: connects if needed, sends stdin lines, prints `USER`'s
/// messages as they arrive; ends at end of input or when the session ends.
pub fn chat(socket: &std::path::Path, user: String, json: bool) -> Result<(), Failure> {
    let mut c = Client::connect(socket)?;
    let sessions = c.call(Command::Sessions)?;
    let open = sessions["sessions"]
        .as_array()
        .is_some_and(|v| v.iter().any(|s| s["peer"] == user.as_str()));
    if !open {
        eprintln!("asked {}; waiting for an answer...", safe::line(&user));
        c.call(Command::Connect {
            user: user.clone(),
            timeout_ms: None,
            no_wait: false,
        })?;
    }
    eprintln!(
        "chatting with {}; type lines, end with Ctrl-D",
        safe::line(&user)
    );
    let mut events = Client::connect(socket)?;
    events.call(Command::Watch)?;
    let peer = user.clone();
    std::thread::spawn(move || loop {
        let Ok(ev) = events.next_event() else {
            std::process::exit(1)
        };
        let mine = ev["from"] == peer.as_str() || ev["peer"] == peer.as_str();
        match ev["event"].as_str() {
            Some("message") if mine => {
                if json {
                    println!("{ev}");
                } else {
                    println!("{}", describe(&ev));
                }
            }
            Some("disconnected") if mine => {
                eprintln!("{}", describe(&ev));
                std::process::exit(6);
            }
            _ => {}
        }
    });
    for line in std::io::stdin().lock().lines() {
        let text = line.map_err(|e| Failure::Other(format!("cannot read stdin: {e}")))?;
        c.call(Command::Send {
            user: user.clone(),
            texts: vec![text],
        })?;
    }
    Ok(())
}

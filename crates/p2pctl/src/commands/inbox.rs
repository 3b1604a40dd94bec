//! `inbox`, `watch` and `chat`: reading what arrives.

use std::io::{BufRead, Write};

use p2p_proto::ctl::{Command, ConnectDone, Event, InboxEntry, InboxKind, InboxList, Watching};

use crate::client::{Client, EventLine};
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
pub(crate) fn inbox(
    c: &mut Client,
    all: bool,
    from: Option<String>,
    follow: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut after: Option<u64> = None;
    let page = |c: &mut Client, after: Option<u64>, follow: bool| -> Result<InboxList, Failure> {
        c.call(Command::Inbox {
            all,
            from: from.clone(),
            follow,
            after,
        })
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
        if let EventLine::Known(ev) = c.next_event()? {
            if let Some(e) = ev.inbox_entry() {
                print_entry(e, json);
            }
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
        super::print_json(e);
    } else {
        println!("{}", line(e));
    }
}

/// Describes an event for people; every field goes through [`safe`].
fn describe(ev: &EventLine) -> String {
    let ev = match ev {
        EventLine::Known(ev) => ev,
        // serde_json escapes C0 controls but not C1 or bidi ones.
        EventLine::Unknown(v) => {
            let kind = v.get("event").and_then(|k| k.as_str()).unwrap_or("");
            return format!("{}: {}", safe::line(kind), safe::line(&v.to_string()));
        }
    };
    // Times are cut to HH:MM:SS after escaping, as they always were.
    let at = |at: &str| clock(&safe::line(at).to_string()).to_string();
    match ev {
        Event::Server(s) => {
            let mut t = format!("server: {}", s.state.as_str());
            if let Some(e) = &s.last_error {
                t.push_str(&format!(" ({})", safe::line(e)));
            }
            t
        }
        Event::Request(r) => format!(
            "{} asks to talk (p2pctl accept {0} / reject {0}); expires {}",
            safe::line(&r.from),
            safe::line(&r.expires_at)
        ),
        Event::Connected(s) => format!("connected to {}", safe::line(&s.peer)),
        Event::Rejected { peer, reason } => {
            format!(
                "no session with {}: {}",
                safe::line(peer),
                safe::line(reason)
            )
        }
        Event::Message(e) => format!(
            "{} {}: {}",
            at(&e.at),
            safe::line(&e.from),
            safe::text(&e.text)
        ),
        Event::Broadcast(e) => format!(
            "{} [broadcast] {}: {}",
            at(&e.at),
            safe::line(&e.from),
            safe::text(&e.text)
        ),
        Event::Disconnected { peer, reason } => {
            format!("{} disconnected: {}", safe::line(peer), safe::line(reason))
        }
        Event::Chat { peer, open } => format!(
            "{} {} the chat",
            safe::line(peer),
            if *open { "opened" } else { "left" }
        ),
        Event::Queued { to, id } => format!("queued for {} (message {id})", safe::line(to)),
        Event::Delivered { to, id } => format!("delivered to {} (message {id})", safe::line(to)),
        Event::KeyChanged {
            peer,
            old_key,
            new_key,
        } => format!(
            "WARNING: {}'s key changed from {} to {}",
            safe::line(peer),
            safe::line(old_key),
            safe::line(new_key)
        ),
    }
}

/// Prints an event line as JSON: a known one as its document, an unknown
/// one as it came.
fn print_event_json(ev: &EventLine) {
    match ev {
        EventLine::Known(ev) => super::print_json(ev),
        EventLine::Unknown(v) => println!("{v}"),
    }
}

/// `watch`: events until interrupted.
pub(crate) fn watch(c: &mut Client, json: bool) -> Result<(), Failure> {
    c.call::<Watching>(Command::Watch)?;
    loop {
        let ev = c.next_event()?;
        if json {
            print_event_json(&ev);
        } else {
            println!("{}", describe(&ev));
        }
    }
}

/// `chat USER`: connects if needed, sends stdin lines, prints `USER`'s
/// messages as they arrive; ends at end of input or when the session ends.
pub(crate) fn chat(socket: &std::path::Path, user: String, json: bool) -> Result<(), Failure> {
    let mut c = Client::connect(socket)?;
    let open = super::peers::before_asking(&mut c, &user)?;
    if !open {
        eprintln!("asked {}; waiting for an answer...", safe::line(&user));
        c.call::<ConnectDone>(Command::Connect {
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
    events.call::<Watching>(Command::Watch)?;
    let peer = user.clone();
    std::thread::spawn(move || loop {
        let Ok(ev) = events.next_event() else {
            std::process::exit(1)
        };
        match &ev {
            EventLine::Known(Event::Message(e)) if e.from == peer => {
                if json {
                    print_event_json(&ev);
                } else {
                    println!("{}", describe(&ev));
                }
            }
            EventLine::Known(Event::Disconnected { peer: p, .. }) if *p == peer => {
                eprintln!("{}", describe(&ev));
                std::process::exit(6);
            }
            _ => {}
        }
    });
    for line in std::io::stdin().lock().lines() {
        let text = line.map_err(|e| Failure::Other(format!("cannot read stdin: {e}")))?;
        c.call::<p2p_proto::ctl::SentList>(Command::Send {
            now: false,
            user: user.clone(),
            texts: vec![text],
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(line: &str) -> String {
        describe(&EventLine::parse(line).unwrap())
    }

    #[test]
    fn events_are_described_for_people() {
        let cases = [
            (
                r#"{"event":"server","state":"connecting","address":null,"user":null,"attempt":2,"next_retry_ms":1000,"last_error":"refused"}"#,
                "server: connecting (refused)",
            ),
            (
                r#"{"event":"request","from":"alice","expires_at":"2026-11-30T14:06:09Z"}"#,
                "alice asks to talk (p2pctl accept alice / reject alice); expires 2026-11-30T14:06:09Z",
            ),
            (
                r#"{"event":"connected","peer":"bob","since":"2026-11-30T14:05:09Z","initiator":true}"#,
                "connected to bob",
            ),
            (
                r#"{"event":"rejected","peer":"bob","reason":"expired"}"#,
                "no session with bob: expired",
            ),
            (
                r#"{"event":"message","kind":"message","from":"bob","text":"hi\nthere","id":3,"at":"2026-11-30T14:05:09Z","seq":4}"#,
                "14:05:09 bob: hi\n    there",
            ),
            (
                r#"{"event":"broadcast","kind":"broadcast","from":"carol","text":"all","id":1,"at":"2026-11-30T14:05:09Z","seq":5}"#,
                "14:05:09 [broadcast] carol: all",
            ),
            (
                r#"{"event":"disconnected","peer":"bob","reason":"closed by peer"}"#,
                "bob disconnected: closed by peer",
            ),
            (
                r#"{"event":"key_changed","peer":"bob","old_key":"ab","new_key":"cd"}"#,
                "WARNING: bob's key changed from ab to cd",
            ),
            // A kind (or a field value) this p2pctl does not know: shown
            // whole, escaped, never dropped.
            (
                r#"{"event":"solar_flare","x":"\u009b"}"#,
                r#"solar_flare: {"event":"solar_flare","x":"\u{9b}"}"#,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(described(line), want, "{line}");
        }
        assert!(matches!(
            EventLine::parse(r#"{"event":"server","state":"dreaming","attempt":0}"#).unwrap(),
            EventLine::Unknown(_)
        ));
    }
}

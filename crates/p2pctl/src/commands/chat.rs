//! `chat USER`: their messages in, our lines out (SPEC §11, "chat for
//! people").
//!
//! Three control connections: one for commands (sessions, connect, send,
//! the chat notices), one following the inbox from USER (entries shown are
//! marked read by the daemon as it writes them, as for `inbox --follow`),
//! and one watching events (USER opened or left the chat, came or went).
//! On a terminal the lines are edited with a line editor that prints
//! incoming lines above the line being typed ([`super::chat_term`]); in a
//! pipe each stdin line is sent as it comes, and chat ends when the
//! session does (exit 6), as it always has.

use std::io::IsTerminal;

use p2p_proto::ctl::{
    ChatDone, Command, ConnectDone, ContactList, Event, InboxEntry, InboxList, Watching,
};

use super::inbox::describe;
use crate::client::{Client, Connector, EventLine};
use crate::{safe, Failure};

/// `chat USER`.
pub(crate) fn run(connector: &Connector, user: String, json: bool) -> Result<(), Failure> {
    let mut c = connector.connect()?;
    // The name, and that it is not ours, are checked before anyone is asked.
    let open = super::peers::before_asking(&mut c, &user)?;
    if !open && !offline_contact(&mut c, &user) {
        eprintln!("asked {}; waiting for an answer...", safe::line(&user));
        c.call::<ConnectDone>(Command::Connect {
            user: user.clone(),
            timeout_ms: None,
            no_wait: false,
        })?;
    }
    // Subscribed before the first line goes out, so nothing is missed.
    let mut events = connector.connect()?;
    events.call::<Watching>(Command::Watch)?;
    let mut follow = connector.connect()?;
    let backlog: InboxList = follow.call(Command::Inbox {
        all: false,
        from: Some(user.clone()),
        follow: true,
        after: None,
    })?;
    let tty = !json && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let chat = Chat {
        user: user.clone(),
        json,
        tty,
    };
    notice(&mut c, &user, true);
    if tty {
        super::chat_term::run(chat, c, events, follow, backlog.messages)
    } else {
        eprintln!(
            "chatting with {}; type lines, end with Ctrl-D",
            safe::line(&user)
        );
        pipe(chat, c, events, follow, backlog.messages)
    }
}

/// Whether `user` is a contact who is offline: then chat opens without
/// asking (there is nobody to ask), and what is typed is queued for them
/// (SPEC §11). A daemon without contacts answers with an error: no.
fn offline_contact(c: &mut Client, user: &str) -> bool {
    let Ok(list) = c.call::<ContactList>(Command::Contacts) else {
        return false;
    };
    let offline = list.contacts.iter().any(|k| k.user == user && !k.online);
    if offline {
        eprintln!(
            "{} is offline; what you send is queued until they are back",
            safe::line(user)
        );
    }
    offline
}

/// Tells the peer our chat opened or closed; a peer without a session (or
/// an older daemon) is simply not told.
pub(super) fn notice(c: &mut Client, user: &str, open: bool) {
    let _ = c.call::<ChatDone>(Command::Chat {
        user: user.to_string(),
        open,
    });
}

/// What the chat is about and how it shows things.
#[derive(Clone)]
pub(super) struct Chat {
    /// The peer.
    pub(super) user: String,
    /// `--json`: events as their documents.
    pub(super) json: bool,
    /// On a terminal: the peer going away is said, and chat stays open.
    pub(super) tty: bool,
}

/// What the watch connection means for the chat.
pub(super) enum Seen {
    /// A line to show.
    Show(String),
    /// The peer went away: the line to show; a pipe chat ends (exit 6).
    Gone(String),
    /// Nothing for this chat.
    Nothing,
}

impl Chat {
    /// An inbox entry (backlog or followed) as a line.
    pub(super) fn entry(&self, e: &InboxEntry) -> String {
        self.shown(&EventLine::Known(Event::for_entry(e.clone())))
    }

    /// An event line as JSON or for people (escaped).
    fn shown(&self, ev: &EventLine) -> String {
        if self.json {
            match ev {
                EventLine::Known(ev) => serde_json::to_value(ev).expect("serialises").to_string(),
                EventLine::Unknown(v) => v.to_string(),
            }
        } else {
            describe(ev)
        }
    }

    /// A followed event: only the peer's messages (the daemon sends no
    /// others, but a chat shows only what it is about).
    pub(super) fn followed(&self, ev: &EventLine) -> Option<String> {
        match ev {
            EventLine::Known(Event::Message(e)) if e.from == self.user => Some(self.shown(ev)),
            _ => None,
        }
    }

    /// A watched event.
    pub(super) fn watched(&self, ev: &EventLine) -> Seen {
        let EventLine::Known(known) = ev else {
            return Seen::Nothing;
        };
        let user = safe::line(&self.user);
        match known {
            Event::Chat { peer, .. } if *peer == self.user => Seen::Show(self.shown(ev)),
            Event::KeyChanged { peer, .. } if *peer == self.user => Seen::Show(self.shown(ev)),
            Event::Disconnected { peer, reason } if *peer == self.user => {
                if !self.tty {
                    return Seen::Gone(describe(ev));
                }
                Seen::Gone(format!(
                    "{user} went away ({}); lines you type now go to {user}'s outbox if {user} is a contact. Ctrl-D leaves",
                    safe::line(reason)
                ))
            }
            Event::Connected(s) if s.peer == self.user && self.tty => {
                Seen::Show(format!("{user} is back"))
            }
            _ => Seen::Nothing,
        }
    }
}

/// A pipe chat: stdin lines go out as they come; the peer's lines are
/// printed on stdout; the end of the session ends chat (exit 6).
fn pipe(
    chat: Chat,
    mut c: Client,
    mut events: Client,
    mut follow: Client,
    backlog: Vec<InboxEntry>,
) -> Result<(), Failure> {
    use std::io::BufRead;
    for e in &backlog {
        println!("{}", chat.entry(e));
    }
    let shows = chat.clone();
    std::thread::spawn(move || loop {
        let Ok(ev) = follow.next_event() else {
            std::process::exit(1)
        };
        if let Some(line) = shows.followed(&ev) {
            println!("{line}");
        }
    });
    let shows = chat.clone();
    std::thread::spawn(move || loop {
        let Ok(ev) = events.next_event() else {
            std::process::exit(1)
        };
        match shows.watched(&ev) {
            Seen::Show(line) => println!("{line}"),
            Seen::Gone(line) => {
                eprintln!("{line}");
                std::process::exit(6);
            }
            Seen::Nothing => {}
        }
    });
    for line in std::io::stdin().lock().lines() {
        let text = line.map_err(|e| Failure::Other(format!("cannot read stdin: {e}")))?;
        c.call::<p2p_proto::ctl::SentList>(Command::Send {
            now: false,
            user: chat.user.clone(),
            texts: vec![text],
        })?;
    }
    notice(&mut c, &chat.user, false);
    Ok(())
}

//! `chat USER` on a terminal: a line editor (rustyline) whose external
//! printer writes incoming lines above the line being typed, so half-typed
//! input stays intact (SPEC §11). Our own lines are shown once the daemon
//! took them (delivered or queued); the peer going away is said and chat
//! stays open until Ctrl-D.

use p2p_proto::ctl::{Command, InboxEntry, SendStatus, SentList};
use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use super::chat::{notice, Chat, Seen};
use crate::client::Client;
use crate::{localtime, safe, Failure};

/// What is typed after; short so the line has room.
const PROMPT: &str = "> ";

/// Lines for the terminal, printed above the prompt while a line is being
/// edited. One per thread, not one shared: rustyline's printer can block
/// (its queue holds one line) until the editor runs again, and a printer
/// shared under a lock would then block the thread that runs the editor.
struct Printer(Box<dyn ExternalPrinter + Send>);

impl Printer {
    /// A printer for `rl`'s lines.
    fn new(rl: &mut DefaultEditor) -> Result<Printer, Failure> {
        let p = rl.create_external_printer().map_err(editor_failed)?;
        Ok(Printer(Box::new(p)))
    }

    fn say(&mut self, line: String) {
        let _ = self.0.print(format!("{line}\n"));
    }
}

fn editor_failed(e: ReadlineError) -> Failure {
    Failure::Other(format!("cannot edit lines: {e}"))
}

/// Runs the chat until Ctrl-D (or Ctrl-C), then tells the peer we left.
pub(super) fn run(
    chat: Chat,
    mut c: Client,
    mut events: Client,
    mut follow: Client,
    backlog: Vec<InboxEntry>,
) -> Result<(), Failure> {
    let mut rl = DefaultEditor::new().map_err(editor_failed)?;
    let mut out = Printer::new(&mut rl)?;
    let user = safe::line(&chat.user).to_string();
    out.say(format!(
        "chatting with {user}; type lines and Enter, Ctrl-D leaves"
    ));
    for e in &backlog {
        out.say(chat.entry(e));
    }
    // Reader threads never exit the process: that would leave the
    // terminal in raw mode. They say what happened and stop.
    let followed = chat.clone();
    let mut to_screen = Printer::new(&mut rl)?;
    std::thread::spawn(move || {
        while let Ok(ev) = follow.next_event() {
            if let Some(line) = followed.followed(&ev) {
                to_screen.say(line);
            }
        }
    });
    let shows = chat.clone();
    let mut to_screen = Printer::new(&mut rl)?;
    std::thread::spawn(move || loop {
        match events.next_event() {
            Ok(ev) => match shows.watched(&ev) {
                Seen::Show(line) | Seen::Gone(line) => to_screen.say(line),
                Seen::Nothing => {}
            },
            Err(_) => {
                to_screen.say("p2pd closed the connection (did it stop?); Ctrl-D leaves".into());
                return;
            }
        }
    });
    loop {
        let text = match rl.readline(PROMPT) {
            Ok(text) => text,
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => break,
            Err(e) => return Err(editor_failed(e)),
        };
        if text.is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(text.as_str());
        let sent = c.call::<SentList>(Command::Send {
            now: false,
            user: chat.user.clone(),
            texts: vec![text.clone()],
        });
        match sent {
            Ok(list) => {
                let queued = list
                    .sent
                    .iter()
                    .any(|s| matches!(s.status, SendStatus::Queued));
                out.say(format!(
                    "{} you: {}{}",
                    localtime::now(),
                    safe::text(&text),
                    if queued { " (queued)" } else { "" }
                ));
            }
            // Said, and the chat stays open: the line may go out later.
            Err(f) => out.say(format!("not sent: {}", safe::line(&f.to_ctl().message))),
        }
    }
    notice(&mut c, &chat.user, false);
    Ok(())
}

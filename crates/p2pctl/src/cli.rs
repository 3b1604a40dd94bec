//! The `p2pctl` command line (SPEC §6, Appendix A).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use p2p_proto::ctl::Command;

use crate::client::{socket_path, Connector};
use crate::hints::{Hints, Keys};
use crate::{commands, Failure};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  anything else
  2  usage (bad arguments, bad user name)
  3  p2pd is not running or not reachable
  4  not logged in, or the server is unreachable (p2pd keeps trying)
  5  the peer refused or did not answer in time
  6  user not online, or no session with them";

/// Drive the p2p-broadcast daemon (p2pd).
#[derive(Debug, Parser)]
#[command(name = "p2pctl", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Control socket of p2pd (default: $XDG_RUNTIME_DIR/p2p/p2pd.sock).
    #[arg(long, global = true, value_name = "PATH", env = p2p_sys::paths::SOCKET_ENV)]
    pub(crate) socket: Option<PathBuf>,
    /// Print exactly one JSON document (errors too, on stdout).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show the server session, peer listener and counters.
    Status,
    /// Log in to a rendezvous server (password from the terminal or --password-stdin).
    Login(commands::login::LoginOpts),
    /// Create an account on a server with open registration, and log in.
    Register(commands::login::LoginOpts),
    /// Log out and forget the saved session.
    Logout,
    /// List online users.
    List,
    /// Ask USER for a session and wait for the answer (exit 5 if refused or unanswered).
    Connect {
        /// Whom to ask.
        user: String,
        /// How long to wait for the answer (default: until the invitation expires
        /// (the server's setting, 5 minutes by default)).
        #[arg(long, value_name = "DURATION", value_parser = p2p_proto::time::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Return once the invitation is sent.
        #[arg(long)]
        no_wait: bool,
    },
    /// List invitations waiting for your answer.
    Requests,
    /// Accept USER's invitation; waits until their daemon connects.
    Accept {
        /// The inviter.
        user: String,
    },
    /// Reject USER's invitation.
    Reject {
        /// The inviter.
        user: String,
    },
    /// List open peer sessions (with their path: direct or relayed).
    Sessions,
    /// Show what the server sees of this daemon: public address, whether the
    /// NAT mapping allows hole punching, whether the relay is there, round trip.
    Netcheck,
    /// Send a message (returns once the peer stored it, or once it is queued
    /// for a contact who is not connected); `-` sends each stdin line.
    Send {
        /// Never queue: fail (exit 6) unless delivered over a session now.
        #[arg(long)]
        now: bool,
        /// The peer.
        user: String,
        /// The message (words are joined with spaces), or `-`.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// List messages queued for contacts who are not connected.
    Outbox,
    /// Show the conversation with USER, both directions, oldest first.
    History {
        /// The other user.
        user: String,
        /// Show the newest N messages (default 50).
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Close the session with USER.
    Disconnect {
        /// The peer.
        user: String,
    },
    /// Show new messages (and mark them read).
    Inbox {
        /// Read ones too.
        #[arg(long)]
        all: bool,
        /// Only from this user.
        #[arg(long, value_name = "USER")]
        from: Option<String>,
        /// Keep printing new messages as they arrive.
        #[arg(long)]
        follow: bool,
    },
    /// Send a message to every registered user (delivered for 30 minutes to whoever logs in).
    Broadcast {
        /// The message (words are joined with spaces); at most 4 KiB.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Print events as they happen (requests, sessions, messages, server state).
    Watch,
    /// Talk with USER: stdin lines go out, their lines come in.
    Chat {
        /// The peer (asked for a session first if there is none).
        user: String,
    },
    /// List contacts (sessions between contacts open by themselves) and blocked users.
    Contacts,
    /// End the standing consent with USER (and the session).
    Forget {
        /// The contact.
        user: String,
    },
    /// Ignore USER's invitations without telling them (also forgets them).
    Block {
        /// The user.
        user: String,
    },
    /// Show USER's invitations again.
    Unblock {
        /// The user.
        user: String,
    },
    /// Show the safety number with USER (compare it with them); --confirm marks them verified.
    Verify {
        /// The contact.
        user: String,
        /// The numbers matched: mark USER verified.
        #[arg(long)]
        confirm: bool,
        /// Also show the number as a QR code (on a terminal only).
        #[arg(long)]
        qr: bool,
    },
    /// Accept USER's new key after it changed (then verify it again).
    Trust {
        /// The contact.
        user: String,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// Target shell.
        shell: clap_complete::Shell,
    },
    /// User names for completion scripts: online users, session peers and
    /// inviters, one per line; nothing (exit 0) when p2pd does not answer.
    #[command(name = "__users", hide = true)]
    Users,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let json = std::env::args().any(|a| a == "--json");
            if json && e.use_stderr() {
                // clap's own first line ("unexpected argument '--x'
                // found"), not just its kind: the detail is the useful part.
                // Its first paragraph, on one line (the usage and help
                // hints after it are for people at a terminal).
                let text = e.render().to_string();
                let first: Vec<&str> = text
                    .lines()
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect();
                let line = first.join(" ");
                let line = line.strip_prefix("error: ").unwrap_or(&line);
                return Failure::Usage(line.to_string()).report(true);
            }
            e.exit();
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(json),
    }
}

/// What each command is told from the daemon's greeting (SPEC §11): the
/// invitation hints everywhere but where invitations or events are the
/// point, and key-change warnings where the command touches that user.
fn hints(cmd: &Cmd) -> Hints {
    let about = |user: &str| Hints {
        pending: true,
        keys: Keys::User(user.to_string()),
    };
    match cmd {
        Cmd::Completions { .. } => Hints::NONE,
        Cmd::Requests | Cmd::Accept { .. } | Cmd::Reject { .. } | Cmd::Watch => Hints::NONE,
        Cmd::Chat { user } => Hints {
            pending: false,
            keys: Keys::User(user.clone()),
        },
        Cmd::Connect { user, .. } | Cmd::Send { user, .. } => about(user),
        Cmd::Sessions | Cmd::Status | Cmd::Contacts => Hints::EVERY_KEY,
        _ => Hints::PENDING,
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    let connector = Connector::new(socket_path(cli.socket.clone()), hints(&cli.command), json);
    let connect = || connector.connect();
    match cli.command {
        Cmd::Completions { shell } => {
            // A closed pipe (`| head`) is not worth a panic.
            let _ =
                std::io::Write::write_all(&mut std::io::stdout(), &crate::complete::script(shell));
            Ok(())
        }
        Cmd::Users => {
            if let Ok(mut c) = connect() {
                commands::peers::user_names(&mut c);
            }
            Ok(())
        }
        Cmd::Status => commands::status::run(&mut connect()?, json),
        Cmd::Login(opts) => commands::login::login(opts, connect, json),
        Cmd::Register(opts) => commands::login::register(opts, connect, json),
        Cmd::Logout => commands::logout::run(&mut connect()?, json),
        Cmd::List => commands::list::run(&mut connect()?, json),
        Cmd::Connect {
            user,
            timeout,
            no_wait,
        } => commands::peers::connect(&mut connect()?, user, timeout, no_wait, json),
        Cmd::Requests => commands::peers::requests(&mut connect()?, json),
        Cmd::Accept { user } => commands::peers::answer(&mut connect()?, user, true, json),
        Cmd::Reject { user } => commands::peers::answer(&mut connect()?, user, false, json),
        Cmd::Sessions => commands::peers::sessions(&mut connect()?, json),
        Cmd::Netcheck => commands::netcheck::run(&mut connect()?, json),
        Cmd::Send { user, text, now } => {
            commands::send::run(&mut connect()?, user, text, now, json)
        }
        Cmd::Outbox => commands::outbox::outbox(&mut connect()?, json),
        Cmd::History { user, limit } => {
            commands::outbox::history(&mut connect()?, user, limit, json)
        }
        Cmd::Disconnect { user } => commands::peers::disconnect(&mut connect()?, user, json),
        Cmd::Inbox { all, from, follow } => {
            commands::inbox::inbox(&mut connect()?, all, from, follow, json)
        }
        Cmd::Watch => commands::inbox::watch(&mut connect()?, json),
        Cmd::Broadcast { text } => commands::send::broadcast(&mut connect()?, text.join(" "), json),
        Cmd::Contacts => commands::contacts::list(&mut connect()?, json),
        Cmd::Forget { user } => {
            commands::contacts::change(&mut connect()?, Command::Forget { user }, json)
        }
        Cmd::Block { user } => {
            commands::contacts::change(&mut connect()?, Command::Block { user }, json)
        }
        Cmd::Unblock { user } => {
            commands::contacts::change(&mut connect()?, Command::Unblock { user }, json)
        }
        Cmd::Verify { user, confirm, qr } => {
            commands::contacts::verify(&mut connect()?, user, confirm, qr, json)
        }
        Cmd::Trust { user } => commands::contacts::trust(&mut connect()?, user, json),
        Cmd::Chat { user } => commands::chat::run(&connector, user, json),
    }
}

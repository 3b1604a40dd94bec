//! The `p2pctl` command line (SPEC §6, Appendix A).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::client::{socket_path, Client};
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
    #[arg(long, global = true, value_name = "PATH", env = p2p_proto::paths::SOCKET_ENV)]
    pub socket: Option<PathBuf>,
    /// Print exactly one JSON document (errors too, on stdout).
    #[arg(long, global = true)]
    pub json: bool,
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
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// Target shell.
        shell: clap_complete::Shell,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let json = std::env::args().any(|a| a == "--json");
            if json && e.use_stderr() {
                return Failure::Usage(e.kind().to_string()).report(true);
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

fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    let connect = || Client::connect(&socket_path(cli.socket.clone()));
    match cli.command {
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "p2pctl", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Status => commands::status::run(&mut connect()?, json),
        Cmd::Login(opts) => commands::login::login(opts, connect, json),
        Cmd::Register(opts) => commands::login::register(opts, connect, json),
        Cmd::Logout => commands::logout::run(&mut connect()?, json),
        Cmd::List => commands::list::run(&mut connect()?, json),
    }
}

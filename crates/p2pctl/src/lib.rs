//! `p2pctl`, the command-line client of p2pd (SPEC §6).
//!
//! Public surface: [`cli`] only ([`cli::main`] for the binary,
//! [`cli::Cli`] for xtask's man pages and completions); everything else is
//! `pub(crate)`.
//!
//! Each subcommand is a file in `commands/`: it sends one control request
//! (see [`p2p_proto::ctl`]) and prints the result, as aligned text for people
//! or, with `--json`, as exactly the daemon's JSON document.
//!
//! Exit codes (also in `--help` and the README): 0 success; 2 usage; 3 daemon
//! not reachable; 4 not logged in or server unreachable; 5 the peer refused
//! or did not answer in time; 6 user not online or no session; 1 anything else.

pub mod cli;
pub(crate) mod client;
pub(crate) mod commands;
pub mod complete;
pub(crate) mod hints;
pub(crate) mod localtime;
pub(crate) mod safe;

use std::path::PathBuf;
use std::process::ExitCode;

use p2p_proto::ctl::{CtlError, ErrorBody, ErrorCode, ErrorDocument};

use crate::commands::send::PartialSend;

/// Why a command failed, mapped to an exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad arguments (exit 2).
    Usage(String),
    /// No daemon at the socket (exit 3).
    NoDaemon(PathBuf, std::io::Error),
    /// The daemon answered with an error.
    Ctl(CtlError),
    /// Anything else (exit 1).
    Other(String),
    /// `send USER -` stopped at an error after reading some lines: the
    /// error, and which lines were delivered before it.
    Partial(Box<PartialSend>),
}

impl Failure {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::NoDaemon(..) => 3,
            Failure::Other(_) => 1,
            Failure::Partial(p) => p.error.exit_code(),
            Failure::Ctl(e) => match e.code {
                ErrorCode::BadRequest | ErrorCode::TooLarge => 2,
                ErrorCode::NotLoggedIn | ErrorCode::ServerUnreachable => 4,
                ErrorCode::Rejected | ErrorCode::Timeout => 5,
                ErrorCode::NotOnline | ErrorCode::NoSession => 6,
                _ => 1,
            },
        }
    }

    /// The error as `{code, message}`.
    pub fn to_ctl(&self) -> CtlError {
        match self {
            Failure::Usage(m) => CtlError::new(ErrorCode::BadRequest, m.clone()),
            Failure::NoDaemon(p, e) => CtlError::new(
                ErrorCode::Other,
                format!(
                    "p2pd is not running ({}: {e}); start it with `systemctl --user start p2pd` or `p2pd &`",
                    p.display()
                ),
            ),
            Failure::Ctl(e) => e.clone(),
            Failure::Other(m) => CtlError::new(ErrorCode::Other, m.clone()),
            Failure::Partial(p) => p.error.to_ctl(),
        }
    }

    /// The machine-readable code for `--json` (`daemon_unreachable` for 3).
    fn code_name(&self) -> String {
        match self {
            Failure::NoDaemon(..) => "daemon_unreachable".into(),
            Failure::Other(_) => "error".into(),
            Failure::Partial(p) => p.error.code_name(),
            _ => serde_json::to_value(self.to_ctl().code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "error".into()),
        }
    }

    /// Prints the error (one line on stderr; with `--json` also the error
    /// document on stdout) and returns the exit code. After a partly
    /// delivered `send USER -`, a second stderr line says how many lines
    /// were delivered, and the document lists them (`sent`, as `send`'s
    /// result would).
    pub fn report(&self, json: bool) -> ExitCode {
        let e = self.to_ctl();
        let partial = match self {
            Failure::Partial(p) => Some(p),
            _ => None,
        };
        if json {
            commands::print_json(&ErrorDocument {
                error: ErrorBody {
                    code: self.code_name(),
                    message: e.message.clone(),
                },
                sent: partial.map(|p| p.sent.clone()),
            });
        }
        // The message may quote the server or a peer: never raw to a terminal.
        eprintln!("p2pctl: {}", safe::line(&e.message));
        if let Some(summary) = partial.and_then(|p| p.summary()) {
            eprintln!("p2pctl: {summary}");
        }
        ExitCode::from(self.exit_code())
    }
}

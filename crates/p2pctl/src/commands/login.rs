//! `p2pctl login` and `p2pctl register`.

use clap::Args;
use p2p_proto::address::parse_host_port;
use p2p_proto::ctl::{Command, LoginArgs, LoginDone};
use p2p_proto::names::validate_username;
use p2p_sys::password::read_password;

use crate::client::Client;
use crate::{safe, Failure};

/// Options of `login` and `register`.
#[derive(Debug, Args)]
pub(crate) struct LoginOpts {
    /// Rendezvous server, HOST or HOST:PORT (default port 4400).
    #[arg(long, value_name = "HOST[:PORT]")]
    server: String,
    /// Account name.
    #[arg(long, value_name = "NAME")]
    user: String,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Pin this certificate fingerprint (SHA256:HEX, from `p2p-server fingerprint`)
    /// instead of trusting the first one seen.
    #[arg(long, value_name = "SHA256:HEX")]
    fingerprint: Option<String>,
}

fn go(
    o: LoginOpts,
    register: bool,
    connect: impl FnOnce() -> Result<Client, Failure>,
    json: bool,
) -> Result<(), Failure> {
    let LoginOpts {
        server,
        user,
        password_stdin,
        fingerprint,
    } = o;
    validate_username(&user).map_err(|e| Failure::Usage(e.to_string()))?;
    // A typo in the address is named before the password is asked for.
    let server = parse_host_port(&server).map_err(|e| Failure::Usage(format!("--server: {e}")))?;
    // Reach the daemon before asking for a password it could not use.
    let mut client = connect()?;
    let password = read_password(password_stdin, register).map_err(Failure::Usage)?;
    let args = LoginArgs {
        server,
        user,
        password,
        fingerprint,
    };
    let cmd = if register {
        Command::Register(args)
    } else {
        Command::Login(args)
    };
    let doc = client.call::<LoginDone>(cmd)?;
    super::print(doc, json, |d: LoginDone| {
        println!(
            "logged in to {} as {} (server certificate {})",
            safe::line(&d.server),
            safe::line(&d.user),
            safe::line(&d.fingerprint)
        )
    })
}

/// `login`: 0 once online; 4 if the server is busy or unreachable (p2pd
/// keeps trying); non-zero at once for a wrong password.
pub(crate) fn login(
    o: LoginOpts,
    connect: impl FnOnce() -> Result<Client, Failure>,
    json: bool,
) -> Result<(), Failure> {
    go(o, false, connect, json)
}

/// `register`: creates the account (open registration) and logs in.
pub(crate) fn register(
    o: LoginOpts,
    connect: impl FnOnce() -> Result<Client, Failure>,
    json: bool,
) -> Result<(), Failure> {
    go(o, true, connect, json)
}

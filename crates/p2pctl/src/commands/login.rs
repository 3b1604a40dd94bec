//! `p2pctl login` and `p2pctl register`.

use clap::Args;
use p2p_proto::address::parse_server_list;
use std::io::{BufRead, IsTerminal, Write};

use p2p_proto::ctl::{Command, LoginArgs, LoginDone, ProbeReport, StatusReport};
use p2p_proto::names::validate_username;
use p2p_proto::Fingerprint;
use p2p_sys::password::read_password;

use crate::client::Client;
use crate::{safe, Failure};

/// Options of `login` and `register`.
#[derive(Debug, Args)]
pub(crate) struct LoginOpts {
    /// Rendezvous server, HOST or HOST:PORT (default port 4400), or the
    /// instances of one cluster separated by commas (tried in turn, one
    /// pin for all); default: the daemon's last one.
    #[arg(long, value_name = "HOST[:PORT][,HOST[:PORT]...]")]
    server: Option<String>,
    /// Account name; default: the daemon's last one.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Pin this certificate fingerprint (SHA256:HEX, from `p2p-server fingerprint`)
    /// instead of being asked about the one the server presents.
    #[arg(long, value_name = "SHA256:HEX")]
    fingerprint: Option<String>,
    /// Without a terminal, at the first login to a server: pin whatever
    /// certificate it presents (instead of --fingerprint).
    #[arg(long, conflicts_with = "fingerprint")]
    trust_on_first_use: bool,
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
        trust_on_first_use,
    } = o;
    if let Some(user) = &user {
        validate_username(user).map_err(|e| Failure::Usage(e.to_string()))?;
    }
    // A typo in the address is named before the password is asked for.
    let server = server
        .map(|s| parse_server_list(&s).map_err(|e| Failure::Usage(format!("--server: {e}"))))
        .transpose()?;
    if let Some(fp) = &fingerprint {
        if Fingerprint::parse(fp).is_none() {
            return Err(Failure::Usage(format!(
                "--fingerprint {}: must look like SHA256:<64 hex digits> (from `p2p-server fingerprint`)",
                safe::line(fp)
            )));
        }
    }
    // Reach the daemon before asking for a password it could not use.
    let mut client = connect()?;
    let (server, user) = last_login(&mut client, server, user)?;
    let fingerprint = match (fingerprint, trust_on_first_use) {
        (Some(fp), _) => Some(fp),
        (None, true) => None,
        (None, false) => first_use(&mut client, &server, password_stdin)?,
    };
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

/// `--server` and `--user`, each defaulting to the daemon's last login
/// (its saved session, or what its status still names), saying so on
/// stderr; a usage error when there is none.
fn last_login(
    client: &mut Client,
    server: Option<String>,
    user: Option<String>,
) -> Result<(String, String), Failure> {
    if let (Some(server), Some(user)) = (&server, &user) {
        return Ok((server.clone(), user.clone()));
    }
    let last = client.call::<StatusReport>(Command::Status)?.server;
    let (Some(server), Some(user)) = (server.or(last.address), user.or(last.user)) else {
        return Err(Failure::Usage(
            "no earlier login to reuse: give --server HOST[:PORT] and --user NAME".into(),
        ));
    };
    eprintln!(
        "logging in to {} as {} (the last login)",
        safe::line(&server),
        safe::line(&user)
    );
    Ok((server, user))
}

/// Before the password of a first login to `server` goes anywhere: the
/// certificate it presents, shown and confirmed on a terminal (and then
/// required, as if given with --fingerprint); without a terminal, a usage
/// error naming both ways to decide. `None`: the server is pinned already.
fn first_use(
    client: &mut Client,
    server: &str,
    password_stdin: bool,
) -> Result<Option<String>, Failure> {
    let probe = client.call::<ProbeReport>(Command::Probe {
        server: server.to_string(),
    })?;
    if probe.pinned.is_some() {
        return Ok(None);
    }
    let fingerprint = probe.fingerprint.unwrap_or_default();
    let (seen, server) = (safe::line(&fingerprint), safe::line(server));
    let terminal = !password_stdin && std::io::stdin().is_terminal();
    if !terminal {
        return Err(Failure::Usage(format!(
            "first login to {server}: no certificate is pinned for it yet and there is no terminal \
             to ask. Give --fingerprint SHA256:... (from `p2p-server fingerprint` on the server), \
             or --trust-on-first-use to pin whatever it presents"
        )));
    }
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "{server} presents the certificate\n  {seen}\n\
         Compare it with what `p2p-server fingerprint` prints on the server.\n\
         Pin it and send your password? [y/N] "
    );
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Other(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(Some(fingerprint))
    } else {
        Err(Failure::Other(
            "not pinned; nothing was sent to the server".into(),
        ))
    }
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

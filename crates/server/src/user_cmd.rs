//! The `p2p-server user ...` commands (SPEC §3, §9): on `users.csv`, or on
//! the shared PostgreSQL accounts with `--database` (crate::admin_pg), with
//! the same prompts, checks, messages and exit codes either way.

use std::path::PathBuf;

use clap::Subcommand;
use p2p_sys::password::read_password;

use crate::error::{Result, ServerError};
use crate::users::UserFile;

// `p2p-server user ...` (a plain comment: clap would take a doc comment as
// help text).
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create an account (asks for the password twice).
    Add {
        /// 1-32 characters of a-z 0-9 _ . - starting with a letter or digit.
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account; its online session is closed.
    Remove {
        /// Account name.
        name: String,
    },
    /// Set a new password; saved sessions of the user stop working.
    Passwd {
        /// Account name.
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Copy the accounts of an embedded install's users.csv into the
    /// --database, hashes as they are, all or none.
    Import {
        /// The users.csv to read.
        file: PathBuf,
        /// One JSON document: {"imported": N}.
        #[arg(long)]
        json: bool,
    },
}

/// The `user` commands on users.csv.
pub(crate) fn on_file(
    file: &UserFile,
    ensure_dir: impl FnOnce() -> Result<()>,
    cmd: UserCommand,
) -> Result<()> {
    match cmd {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            p2p_proto::names::validate_username(&name)?;
            let pw = read_password(password_stdin, true).map_err(ServerError::Usage)?;
            ensure_dir()?;
            file.add(&name, pw.expose())?;
            println!("added user {name}");
        }
        UserCommand::Remove { name } => {
            file.remove(&name)?;
            println!("removed user {name}");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let pw = read_password(password_stdin, true).map_err(ServerError::Usage)?;
            file.passwd(&name, pw.expose())?;
            println!("password changed for {name}; its saved sessions must log in again");
        }
        UserCommand::List { json } => print_users(&file.load()?, json),
        UserCommand::Import { .. } => {
            return Err(ServerError::Usage(
                "user import writes to PostgreSQL: give --database URL (or database = in --config)"
                    .into(),
            ))
        }
    }
    Ok(())
}

/// The `user` commands on the PostgreSQL accounts: the same checks, prompts
/// and output as [`on_file`]. Names are checked and passwords read before
/// connecting, so a typo costs no round trip.
pub(crate) fn on_database(url: &str, ca: Option<&std::path::Path>, cmd: UserCommand) -> Result<()> {
    use crate::admin_pg::PgAdmin;
    match cmd {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            p2p_proto::names::validate_username(&name)?;
            let pw = read_password(password_stdin, true).map_err(ServerError::Usage)?;
            PgAdmin::connect(url, ca)?.add(&name, pw.expose())?;
            println!("added user {name}");
        }
        UserCommand::Remove { name } => {
            PgAdmin::connect(url, ca)?.remove(&name)?;
            println!("removed user {name}");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let pw = read_password(password_stdin, true).map_err(ServerError::Usage)?;
            PgAdmin::connect(url, ca)?.passwd(&name, pw.expose())?;
            println!("password changed for {name}; its saved sessions must log in again");
        }
        UserCommand::List { json } => print_users(&PgAdmin::connect(url, ca)?.list()?, json),
        UserCommand::Import { file, json } => {
            // The file is checked whole before the database is touched.
            let records = crate::admin_pg::read_users_csv(&file)?;
            PgAdmin::connect(url, ca)?.import(&records)?;
            let n = records.len();
            if json {
                println!("{}", serde_json::json!({ "imported": n }));
            } else {
                println!("imported {n} accounts from {}", file.display());
            }
        }
    }
    Ok(())
}

/// `user list`'s output: a table, or `{"users":[{"user","created_at"}]}`.
fn print_users(users: &[crate::users::UserRecord], json: bool) {
    if json {
        let list: Vec<_> = users
            .iter()
            .map(|u| serde_json::json!({"user": u.username, "created_at": u.created_at}))
            .collect();
        println!("{}", serde_json::json!({ "users": list }));
    } else {
        let w = users
            .iter()
            .map(|u| u.username.len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!("{:w$}  CREATED", "USER");
        for u in users {
            println!(
                "{:w$}  {}",
                u.username,
                p2p_sys::localtime::human(&u.created_at)
            );
        }
    }
}

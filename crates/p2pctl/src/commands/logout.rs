//! `p2pctl logout`.

use p2p_proto::ctl::{Command, LogoutDone};

use crate::client::Client;
use crate::{safe, Failure};

/// Logs out.
pub(crate) fn run(client: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = client.call::<LogoutDone>(Command::Logout)?;
    super::print(doc, json, |d: LogoutDone| match d.user {
        Some(u) => println!("logged out {}", safe::line(&u)),
        None => println!("was not logged in"),
    })
}

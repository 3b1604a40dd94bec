//! `p2pctl list`.

use p2p_proto::ctl::{Command, UserList};

use crate::client::Client;
use crate::Failure;

/// Lists online users.
pub fn run(client: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = client.call(Command::List)?;
    super::print(doc, json, |l: UserList| {
        let rows: Vec<Vec<String>> = l.users.into_iter().map(|u| vec![u.user, u.since]).collect();
        super::table(&["USER", "ONLINE SINCE"], &rows);
    })
}

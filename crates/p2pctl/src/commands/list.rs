//! `p2pctl list`.

use p2p_proto::ctl::{Command, UserList};

use crate::client::Client;
use crate::{safe, Failure};

/// Lists online users.
pub(crate) fn run(client: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = client.call::<UserList>(Command::List)?;
    super::print(doc, json, |l: UserList| {
        let rows: Vec<Vec<String>> = l
            .users
            .iter()
            .map(|u| {
                vec![
                    safe::line(&u.user).to_string(),
                    crate::localtime::when(&u.since),
                ]
            })
            .collect();
        super::table(&["USER", "ONLINE SINCE"], &rows);
    })
}

//! `p2pctl list`.

use p2p_proto::ctl::{Command, UserList};

use crate::client::Client;
use crate::Failure;

/// Lists online users.
pub fn run(client: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = client.call(Command::List)?;
    super::print(doc, json, |l: UserList| {
        let w = l
            .users
            .iter()
            .map(|u| u.user.len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!("{:w$}  ONLINE SINCE", "USER");
        for u in &l.users {
            println!("{:w$}  {}", u.user, u.since);
        }
    })
}

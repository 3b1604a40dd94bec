//! `connect`, `requests`, `accept`, `reject`, `sessions`, `disconnect`:
//! invitations and the sessions they open.

use std::time::Duration;

use p2p_proto::ctl::{Answered, Command, ConnectDone, Disconnected, RequestList, SessionList};

use crate::client::Client;
use crate::Failure;

/// `connect USER`: waits for the answer unless `no_wait`.
pub fn connect(
    c: &mut Client,
    user: String,
    timeout: Option<Duration>,
    no_wait: bool,
    json: bool,
) -> Result<(), Failure> {
    if !json && !no_wait {
        eprintln!("asked {user}; waiting for an answer...");
    }
    let timeout_ms = timeout.map(|t| t.as_millis() as u64);
    let doc = c.call(Command::Connect {
        user: user.clone(),
        timeout_ms,
        no_wait,
    })?;
    super::print(doc, json, |d: ConnectDone| match (d.connected, d.invited) {
        (Some(s), _) => println!("connected to {} (end-to-end encrypted)", s.peer),
        (None, Some(i)) => println!("invited {user}; the invitation expires at {}", i.expires_at),
        (None, None) => println!("invited {user}"),
    })
}

/// `requests`.
pub fn requests(c: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = c.call(Command::Requests)?;
    super::print(doc, json, |l: RequestList| {
        let rows: Vec<Vec<String>> = l
            .requests
            .into_iter()
            .map(|r| vec![r.from, r.expires_at])
            .collect();
        super::table(&["FROM", "EXPIRES"], &rows);
    })
}

/// `accept USER` / `reject USER`.
pub fn answer(c: &mut Client, user: String, accept: bool, json: bool) -> Result<(), Failure> {
    let cmd = if accept {
        Command::Accept { user }
    } else {
        Command::Reject { user }
    };
    let doc = c.call(cmd)?;
    super::print(doc, json, |a: Answered| match (a.accepted, a.session) {
        (true, Some(_)) => println!("accepted {}; session open (end-to-end encrypted)", a.peer),
        (true, None) => println!("accepted {}", a.peer),
        (false, _) => println!("rejected {}", a.peer),
    })
}

/// `sessions`.
pub fn sessions(c: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = c.call(Command::Sessions)?;
    super::print(doc, json, |l: SessionList| {
        let rows: Vec<Vec<String>> = l
            .sessions
            .into_iter()
            .map(|s| {
                let by = if s.initiator {
                    "you".to_string()
                } else {
                    s.peer.clone()
                };
                vec![s.peer, s.since, by]
            })
            .collect();
        super::table(&["PEER", "SINCE", "INVITED BY"], &rows);
    })
}

/// `disconnect USER`.
pub fn disconnect(c: &mut Client, user: String, json: bool) -> Result<(), Failure> {
    let doc = c.call(Command::Disconnect { user })?;
    super::print(doc, json, |d: Disconnected| {
        println!("disconnected from {}", d.disconnected)
    })
}

//! `connect`, `requests`, `accept`, `reject`, `sessions`, `disconnect`:
//! invitations and the sessions they open.

use std::time::Duration;

use p2p_proto::ctl::{
    Answered, Command, ConnectDone, Disconnected, RequestList, SessionList, SessionPath,
};

use crate::client::Client;
use crate::{safe, Failure};

/// `connect USER`: waits for the answer unless `no_wait`.
pub(crate) fn connect(
    c: &mut Client,
    user: String,
    timeout: Option<Duration>,
    no_wait: bool,
    json: bool,
) -> Result<(), Failure> {
    if !json && !no_wait {
        eprintln!("asked {}; waiting for an answer...", safe::line(&user));
    }
    let timeout_ms = timeout.map(|t| t.as_millis() as u64);
    let doc = c.call::<ConnectDone>(Command::Connect {
        user: user.clone(),
        timeout_ms,
        no_wait,
    })?;
    let user = safe::line(&user);
    super::print(doc, json, |d: ConnectDone| match (d.connected, d.invited) {
        (Some(s), _) => println!(
            "connected to {} (end-to-end encrypted)",
            safe::line(&s.peer)
        ),
        (None, Some(i)) => println!(
            "invited {user}; the invitation expires at {}",
            crate::localtime::expires(&i.expires_at)
        ),
        (None, None) => println!("invited {user}"),
    })
}

/// `requests`.
pub(crate) fn requests(c: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = c.call::<RequestList>(Command::Requests)?;
    super::print(doc, json, |l: RequestList| {
        let rows: Vec<Vec<String>> = l
            .requests
            .iter()
            .map(|r| {
                vec![
                    safe::line(&r.from).to_string(),
                    crate::localtime::expires(&r.expires_at),
                ]
            })
            .collect();
        super::table(&["FROM", "EXPIRES"], &rows);
    })
}

/// `accept USER` / `reject USER`.
pub(crate) fn answer(
    c: &mut Client,
    user: String,
    accept: bool,
    json: bool,
) -> Result<(), Failure> {
    let cmd = if accept {
        Command::Accept { user }
    } else {
        Command::Reject { user }
    };
    let doc = c.call::<Answered>(cmd)?;
    super::print(doc, json, |a: Answered| {
        let peer = safe::line(&a.peer);
        match (a.accepted, a.session) {
            (true, Some(_)) => println!("accepted {peer}; session open (end-to-end encrypted)"),
            (true, None) => println!("accepted {peer}"),
            (false, _) => println!("rejected {peer}"),
        }
    })
}

/// `sessions`.
pub(crate) fn sessions(c: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = c.call::<SessionList>(Command::Sessions)?;
    super::print(doc, json, |l: SessionList| {
        let rows: Vec<Vec<String>> = l
            .sessions
            .iter()
            .map(|s| {
                let peer = safe::line(&s.peer).to_string();
                let by = if s.initiator {
                    "you".to_string()
                } else {
                    peer.clone()
                };
                let path = match s.path {
                    SessionPath::Direct => "direct",
                    SessionPath::Relayed => "relayed",
                };
                vec![peer, path.to_string(), crate::localtime::when(&s.since), by]
            })
            .collect();
        super::table(&["PEER", "PATH", "SINCE", "INVITED BY"], &rows);
    })
}

/// `disconnect USER`.
pub(crate) fn disconnect(c: &mut Client, user: String, json: bool) -> Result<(), Failure> {
    let doc = c.call::<Disconnected>(Command::Disconnect { user })?;
    super::print(doc, json, |d: Disconnected| {
        println!("disconnected from {}", safe::line(&d.disconnected))
    })
}

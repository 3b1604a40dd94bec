//! `connect`, `requests`, `accept`, `reject`, `sessions`, `disconnect`:
//! invitations and the sessions they open.

use std::time::Duration;

use p2p_proto::ctl::{
    Answered, Command, ConnectDone, Disconnected, RequestList, SessionList, SessionPath,
    StatusReport, UserList,
};
use p2p_proto::names::validate_username;

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
    let already = before_asking(c, &user)?;
    if already && !json {
        println!("already connected to {}", safe::line(&user));
        return Ok(());
    }
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

/// What `connect` and `chat` check before saying anyone was asked: the
/// name is one an account can have (else exit 2), it is not our own (exit
/// 2). `true` when a session with `user` is already up.
pub(crate) fn before_asking(c: &mut Client, user: &str) -> Result<bool, Failure> {
    validate_username(user).map_err(|e| Failure::Usage(format!("{}: {e}", safe::line(user))))?;
    let status = c.call::<StatusReport>(Command::Status)?;
    if status.server.user.as_deref() == Some(user) {
        return Err(Failure::Usage(format!(
            "{} is you; connect to someone else (see p2pctl list)",
            safe::line(user)
        )));
    }
    let sessions = c.call::<SessionList>(Command::Sessions)?;
    Ok(sessions.sessions.iter().any(|s| s.peer == user))
}

/// `requests`.
pub(crate) fn requests(c: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = c.call::<RequestList>(Command::Requests)?;
    super::print(doc, json, |l: RequestList| {
        if l.requests.is_empty() {
            println!("no invitations waiting");
            return;
        }
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
    validate_username(&user).map_err(|e| Failure::Usage(format!("{}: {e}", safe::line(&user))))?;
    if accept && !json {
        // Progress only for an invitation that is there: otherwise the
        // daemon's refusal is the only line.
        let waiting = c.call::<RequestList>(Command::Requests)?;
        if waiting.requests.iter().any(|r| r.from == user) {
            let u = safe::line(&user);
            eprintln!("accepting {u}'s invitation; waiting for {u}'s daemon to connect...");
        }
    }
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
        if l.sessions.is_empty() {
            println!("no sessions");
            return;
        }
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

/// `__users`: the names a completion script offers (online users, session
/// peers, inviters), sorted, one per line. Only valid user names are
/// printed, so nothing a shell would act on gets into its completions.
pub(crate) fn user_names(c: &mut Client) {
    let mut names = std::collections::BTreeSet::new();
    if let Ok(l) = c.call::<UserList>(Command::List) {
        names.extend(l.users.into_iter().map(|u| u.user));
    }
    if let Ok(l) = c.call::<SessionList>(Command::Sessions) {
        names.extend(l.sessions.into_iter().map(|s| s.peer));
    }
    if let Ok(l) = c.call::<RequestList>(Command::Requests) {
        names.extend(l.requests.into_iter().map(|r| r.from));
    }
    if let Ok(s) = c.call::<StatusReport>(Command::Status) {
        if let Some(me) = s.server.user {
            names.remove(&me);
        }
    }
    for n in names.iter().filter(|n| validate_username(n).is_ok()) {
        println!("{n}");
    }
}

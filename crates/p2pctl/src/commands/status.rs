//! `p2pctl status`.

use p2p_proto::ctl::{Command, ServerState, StatusReport};

use crate::client::Client;
use crate::{safe, Failure};

/// Shows the daemon's state.
pub(crate) fn run(client: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = client.call::<StatusReport>(Command::Status)?;
    super::print(doc, json, |s: StatusReport| {
        let srv = &s.server;
        // With several servers, the one in use, then the list.
        let at = match (&srv.current, &srv.address) {
            (Some(one), Some(all)) if one != all => {
                format!("{} (of {})", safe::line(one), safe::line(all))
            }
            (_, all) => safe::line(all.as_deref().unwrap_or("-")).to_string(),
        };
        let user = safe::line(srv.user.as_deref().unwrap_or("-"));
        let line = match srv.state {
            ServerState::Online => format!(
                "online as {user} at {at} since {}",
                crate::localtime::when(srv.since.as_deref().unwrap_or("?"))
            ),
            ServerState::Connecting => format!(
                "connecting to {at} as {user} (attempt {}, next try in {})",
                srv.attempt,
                p2p_proto::time::wait_text(std::time::Duration::from_millis(
                    srv.next_retry_ms.unwrap_or(0)
                ))
            ),
            ServerState::LoggedOut => "logged out".to_string(),
            ServerState::Replaced => format!("replaced: {user} logged in from elsewhere"),
        };
        println!("server    {line}");
        if let Some(err) = &srv.last_error {
            println!("          last error: {}", safe::line(err));
        }
        println!("peer      {}", safe::line(&s.peer_listen));
        println!(
            "sessions  {} ({} direct, {} relayed)",
            s.sessions, s.direct, s.relayed
        );
        println!("pending   {}", s.pending);
        println!("unread    {}", s.unread);
    })
}

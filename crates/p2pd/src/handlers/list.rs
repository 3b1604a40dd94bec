//! `list`: who is online, from the server.

use p2p_proto::ctl::{CtlError, UserEntry, UserList};
use p2p_proto::time::rfc3339;
use p2p_proto::wire::{Reply, Request};

use crate::Daemon;

/// Asks the server; fails with `not_logged_in` / `server_unreachable` offline.
pub(crate) async fn run(daemon: &Daemon) -> Result<UserList, CtlError> {
    match daemon.link.request(Request::List).await? {
        Reply::Users { users } => Ok(UserList {
            users: users
                .into_iter()
                .map(|u| UserEntry {
                    user: u.user,
                    since: rfc3339(u.since_ms),
                })
                .collect(),
        }),
        other => Err(super::reply_error(other).into()),
    }
}

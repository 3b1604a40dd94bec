//! One handler per control command. Each takes the daemon and its arguments
//! and returns the command's result document (SPEC Appendix A).

mod answer;
mod broadcast;
mod connect;
mod disconnect;
mod inbox;
mod list;
mod login;
mod logout;
mod requests;
mod send;
mod sessions;
mod status;

use p2p_proto::ctl::{Command, CtlError, ErrorCode};
use serde::Serialize;

use crate::Daemon;

/// Runs one command (all but `watch`, which the control connection owns).
pub async fn handle(daemon: &Daemon, cmd: Command) -> Result<serde_json::Value, CtlError> {
    match cmd {
        Command::Status => to_json(status::run(daemon).await),
        Command::Login(args) => to_json(login::run(daemon, args, false).await?),
        Command::Register(args) => to_json(login::run(daemon, args, true).await?),
        Command::Logout => to_json(logout::run(daemon).await?),
        Command::List => to_json(list::run(daemon).await?),
        Command::Connect {
            user,
            timeout_ms,
            no_wait,
        } => to_json(connect::run(daemon, user, timeout_ms, no_wait).await?),
        Command::Requests => to_json(requests::run(daemon)),
        Command::Broadcast { text } => to_json(broadcast::run(daemon, text).await?),
        Command::Accept { user } => to_json(answer::run(daemon, user, true).await?),
        Command::Reject { user } => to_json(answer::run(daemon, user, false).await?),
        Command::Sessions => to_json(sessions::run(daemon)),
        Command::Send { user, texts } => to_json(send::run(daemon, user, texts).await?),
        Command::Disconnect { user } => to_json(disconnect::run(daemon, user).await?),
        Command::Inbox {
            all, from, after, ..
        } => to_json(inbox::run(daemon, all, from, after).await?),
        Command::Watch => Err(CtlError::new(
            ErrorCode::BadRequest,
            "watch is handled by the connection",
        )),
    }
}

pub use crate::link::reply_error;

/// Checks a user name from a control request before it is used or echoed
/// back in an answer: a name no account can have is a bad request.
fn check_user(user: &str) -> Result<(), CtlError> {
    p2p_proto::names::validate_username(user)
        .map_err(|e| CtlError::new(ErrorCode::BadRequest, e.to_string()))
}

fn to_json<T: Serialize>(v: T) -> Result<serde_json::Value, CtlError> {
    serde_json::to_value(v).map_err(|e| CtlError::new(ErrorCode::Internal, e.to_string()))
}

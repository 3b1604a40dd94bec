//! One handler per control command. Each takes the daemon and its arguments
//! and returns the command's result document (SPEC Appendix A).

mod list;
mod login;
mod logout;
mod status;

use p2p_proto::ctl::{Command, CtlError, ErrorCode};
use serde::Serialize;

use crate::Daemon;

/// Runs one command (all but `watch`, which the control connection owns).
pub async fn handle(daemon: &Daemon, cmd: Command) -> Result<serde_json::Value, CtlError> {
    match cmd {
        Command::Status => to_json(status::run(daemon)),
        Command::Login(args) => to_json(login::run(daemon, args, false).await?),
        Command::Register(args) => to_json(login::run(daemon, args, true).await?),
        Command::Logout => to_json(logout::run(daemon).await?),
        Command::List => to_json(list::run(daemon).await?),
        Command::Watch => Err(CtlError::new(
            ErrorCode::BadRequest,
            "watch is handled by the connection",
        )),
    }
}

fn to_json<T: Serialize>(v: T) -> Result<serde_json::Value, CtlError> {
    serde_json::to_value(v).map_err(|e| CtlError::new(ErrorCode::Internal, e.to_string()))
}

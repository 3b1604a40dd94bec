//! One handler per control command. Each takes the daemon and its arguments
//! and returns the command's typed result (SPEC Appendix A), one type per
//! command ([`p2p_proto::ctl::reply`]).

mod answer;
mod broadcast;
mod chat;
mod connect;
mod contacts;
mod disconnect;
mod error;
mod history;
mod inbox;
mod list;
mod login;
mod logout;
mod netcheck;
mod outbox;
mod probe;
mod requests;
mod send;
mod sessions;
mod status;
mod verify;

use p2p_proto::ctl::{Command, CtlError, ErrorCode, Reply};

use crate::Daemon;

/// Runs one command (all but `watch`, which the control connection owns)
/// and returns its result, serialized by the control connection.
pub async fn handle(daemon: &Daemon, cmd: Command) -> Result<Reply, CtlError> {
    Ok(match cmd {
        Command::Status => status::run(daemon).await.into(),
        Command::Login(args) => login::run(daemon, args, false).await?.into(),
        Command::Register(args) => login::run(daemon, args, true).await?.into(),
        Command::Logout => logout::run(daemon).await?.into(),
        Command::List => list::run(daemon).await?.into(),
        Command::Connect {
            user,
            timeout_ms,
            no_wait,
        } => connect::run(daemon, user, timeout_ms, no_wait)
            .await?
            .into(),
        Command::Requests => requests::run(daemon).into(),
        Command::Broadcast { text } => broadcast::run(daemon, text).await?.into(),
        Command::Accept { user } => answer::run(daemon, user, true).await?.into(),
        Command::Reject { user } => answer::run(daemon, user, false).await?.into(),
        Command::Sessions => sessions::run(daemon).into(),
        Command::Netcheck => netcheck::run(daemon).await?.into(),
        Command::Probe { server } => probe::run(daemon, server).await?.into(),
        Command::Send { user, texts, now } => send::run(daemon, user, texts, now).await?.into(),
        Command::Disconnect { user } => disconnect::run(daemon, user).await?.into(),
        Command::Inbox {
            all, from, after, ..
        } => inbox::run(daemon, all, from, after).await?.into(),
        Command::Contacts => contacts::run(daemon).await?.into(),
        Command::Forget { user } => contacts::forget(daemon, user).await?.into(),
        Command::Block { user } => contacts::block(daemon, user).await?.into(),
        Command::Unblock { user } => contacts::unblock(daemon, user).await?.into(),
        Command::Verify { user, confirm } => verify::run(daemon, user, confirm).await?.into(),
        Command::Trust { user } => verify::trust(daemon, user).await?.into(),
        Command::Outbox => outbox::run(daemon).await?.into(),
        Command::History { user, limit } => history::run(daemon, user, limit).await?.into(),
        Command::Chat { user, open } => chat::run(daemon, user, open).await?.into(),
        Command::Watch => {
            return Err(CtlError::new(
                ErrorCode::BadRequest,
                "watch is handled by the connection",
            ))
        }
    })
}

pub use crate::link::reply_error;

/// Runs a `send` up to storing its messages in the outbox (durable, and
/// ordered after every earlier `send`, when this returns) and gives what is
/// left: waiting for the delivery, and the answer (an error that stopped it
/// before storing comes the same way).
pub(crate) async fn start_send(
    daemon: &Daemon,
    user: String,
    texts: Vec<String>,
    now: bool,
) -> futures::future::BoxFuture<'static, Result<Reply, CtlError>> {
    use futures::FutureExt;
    match send::start(daemon, user, texts, now).await {
        Ok(delivery) => delivery.map(|r| r.map(Reply::from)).boxed(),
        Err(e) => std::future::ready(Err(e)).boxed(),
    }
}

/// Checks a user name from a control request before it is used or echoed
/// back in an answer: a name no account can have is a bad request.
fn check_user(user: &str) -> Result<(), CtlError> {
    p2p_proto::names::validate_username(user)
        .map_err(|e| CtlError::new(ErrorCode::BadRequest, e.to_string()))
}

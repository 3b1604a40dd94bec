//! The server link's errors, as handlers and the peer side see them. They
//! become control errors (with their exit-code class) in one place,
//! `handlers/error.rs`.

use p2p_proto::wire::{RefusalCode, Reply};

/// Why a request through the server link got no useful answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The link task is gone: the daemon is stopping.
    #[error("daemon is shutting down")]
    ShuttingDown,
    /// The request was taken but the connection ended before the reply.
    #[error("server connection closed; try again")]
    Closed,
    /// The connection was lost while the request waited for its reply.
    #[error("server connection lost; try again")]
    Lost,
    /// Not online yet; the link keeps retrying.
    #[error(
        "not connected to the server yet (attempt {attempt}, next try in {next_try_s}s); p2pd keeps trying"
    )]
    Connecting {
        /// Failed attempts so far.
        attempt: u32,
        /// Seconds until the next attempt (rounded up).
        next_try_s: u64,
    },
    /// Another login of this user took the session over.
    #[error(
        "this session was replaced by a login from elsewhere; run p2pctl login to take it back"
    )]
    Replaced,
    /// No credentials: nobody logged in.
    #[error("not logged in; run p2pctl login --server HOST --user NAME")]
    NotLoggedIn,
    /// The server refused the request (its message is shown as sent).
    #[error("{message}")]
    Refused {
        /// The server's code.
        code: RefusalCode,
        /// The server's explanation.
        message: String,
    },
    /// The server answered with a reply of another request.
    #[error("unexpected server reply {0:?}")]
    Unexpected(Box<Reply>),
}

/// A server reply that is not the one the request expects: the server's
/// refusal, or an unexpected reply.
pub fn reply_error(reply: Reply) -> LinkError {
    match reply {
        Reply::Error { code, message } => LinkError::Refused { code, message },
        other => LinkError::Unexpected(Box::new(other)),
    }
}

//! The server link's errors, as handlers and the peer side see them: a
//! request that got no useful answer ([`LinkError`]) and a login or logout
//! that did not go through ([`LoginError`]). They become control errors
//! (with their exit-code class) in one place, `handlers/error.rs`.

use std::path::PathBuf;

use p2p_proto::wire::{self, RefusalCode, Reply};

use crate::error::DaemonError;
use crate::handshake::HandshakeError;

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
        "not connected to the server yet (attempt {attempt}, next try in {}); p2pd keeps trying",
        p2p_proto::time::wait_text(std::time::Duration::from_secs(*.next_try_s))
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

/// Why a `login` (or `register`, or the link's own attempt with a saved
/// session) or a `logout` did not go through. The messages are what
/// `p2pctl` shows.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// `--fingerprint` is not a fingerprint.
    #[error("--fingerprint must look like SHA256:<64 hex digits>")]
    BadFingerprint,
    /// The daemon stopped before the attempt was made.
    #[error("daemon is shutting down")]
    ShuttingDown,
    /// The attempt failed in a way a retry may fix (unreachable, busy,
    /// dropped); the reason as the link reports it.
    #[error("{0}")]
    Unreachable(String),
    /// Like [`LoginError::Unreachable`], for the `login` command itself:
    /// the link keeps trying in the background.
    #[error(
        "{why}; p2pd keeps trying in the background (next try in {}; see p2pctl status)",
        p2p_proto::time::wait_text(std::time::Duration::from_secs(*.next_try_s))
    )]
    UnreachableRetrying {
        /// Why the attempt failed.
        why: String,
        /// Seconds until the next attempt (rounded up).
        next_try_s: u64,
    },
    /// The first login of a server found nothing that answers as a
    /// p2p-server there (no such host, refused, no preamble, TLS failed):
    /// most likely a wrong address, so it is not retried.
    #[error(
        "cannot reach {server}: {cause}; is this a p2p-server? Check the address \
         (not retrying: no login to {server} has succeeded yet)"
    )]
    FirstContact {
        /// `host:port`.
        server: String,
        /// What went wrong.
        cause: String,
    },
    /// What answered is not a p2p-broadcast server.
    #[error(transparent)]
    NotOurServer(HandshakeError),
    /// The server presented another certificate than the pinned one.
    #[error(
        "server {server} presented certificate {seen}, but {pinned} is pinned: this may be an impostor. \
         If its operator confirms the change, log in again with --fingerprint {seen}"
    )]
    CertificateChanged {
        /// `host:port`.
        server: String,
        /// The fingerprint presented.
        seen: String,
        /// The pinned fingerprint.
        pinned: String,
    },
    /// The server presented another certificate than the `--fingerprint`
    /// given with this login (not pinned yet): nothing was sent.
    #[error(
        "server {server} presented certificate {seen}, not the --fingerprint given ({given}); \
         nothing was sent and nothing pinned. Check the fingerprint with the server's operator \
         (`p2p-server fingerprint`) and the address"
    )]
    FingerprintMismatch {
        /// `host:port`.
        server: String,
        /// The fingerprint presented.
        seen: String,
        /// The fingerprint given.
        given: String,
    },
    /// The server refused the login (its message is shown as sent).
    #[error("{message}")]
    Refused {
        /// The server's reason.
        code: wire::LoginError,
        /// The server's explanation.
        message: String,
    },
    /// `known_servers.json` cannot be read: no connection without it.
    #[error(
        "cannot read the pinned server certificates ({0}); refusing to connect without them. \
         Repair that file, or move it away and log in again with --fingerprint \
         (ask the server's operator for `p2p-server fingerprint`)"
    )]
    PinFileDamaged(DaemonError),
    /// A saved session for a server that has no pin (lost or removed).
    #[error(
        "no pinned certificate for {server} in {}, although a session with it is saved: \
         refusing to send that session to a server that cannot be checked. \
         Log in again with --fingerprint (ask the server's operator for \
         `p2p-server fingerprint`)",
        .pin_file.display()
    )]
    NoPin {
        /// `host:port`.
        server: String,
        /// The pin file.
        pin_file: PathBuf,
    },
    /// Logged in, but the pin could not be saved (so not staying online).
    #[error("logged in, but cannot pin the server's certificate ({0})")]
    PinNotSaved(DaemonError),
    /// The `login` command's first attempt failed; the link keeps trying.
    #[error("{0}; p2pd keeps trying in the background (see p2pctl status)")]
    Retrying(Box<LoginError>),
    /// A new login failed; the session that was up is kept.
    #[error("{0} (still logged in as before)")]
    KeptPrevious(Box<LoginError>),
    /// Logged out, but the saved session is still on disk.
    #[error("logged out, but the saved session could not be removed ({0}); delete it by hand")]
    SessionNotRemoved(DaemonError),
}

//! The peer layer's errors: what a command waiting on an invitation or a
//! session is told ([`PeerError`]), opening a session (dial and handshake)
//! and running one. They say which peer and which address; the control
//! error a user sees is made from them in one place (`handlers/error.rs`).

use super::noise::NoiseError;
use crate::link::LinkError;

/// Why `connect`, `accept`, `reject` or `send` did not get what it asked.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The invitee rejected our invitation.
    #[error("{to} declined the invitation")]
    Declined {
        /// The invitee.
        to: String,
    },
    /// Our invitation expired unanswered (the server says so).
    #[error("{to} did not answer in time")]
    Expired {
        /// The invitee.
        to: String,
    },
    /// The invitee went offline before answering.
    #[error("{to} went offline")]
    WentOffline {
        /// The invitee.
        to: String,
    },
    /// Our invitation ended for a reason this build does not know.
    #[error("the invitation to {to} ended")]
    Ended {
        /// The invitee.
        to: String,
    },
    /// `connect` waited its whole timeout without an answer.
    #[error("{to} did not answer within {waited_s}s")]
    NoAnswer {
        /// The invitee.
        to: String,
        /// How long `connect` waited.
        waited_s: u64,
    },
    /// `accept`/`reject` of someone whose invitation we do not hold.
    #[error("{from} has not invited you (see p2pctl requests)")]
    NoRequest {
        /// Who was named.
        from: String,
    },
    /// The invitation was accepted, but no session came of it.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The server's acceptance names someone we did not invite.
    #[error("the server answered for someone else")]
    WrongAnswer,
    /// The server request (invite, answer) failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The session failed while sending.
    #[error("session with {peer} failed: {source}")]
    SessionFailed {
        /// The peer.
        peer: String,
        /// Why.
        source: SessionError,
    },
    /// The session ended with messages not acknowledged yet.
    #[error("session with {peer} ended ({reason}) before the messages were acknowledged")]
    SessionEnded {
        /// The peer.
        peer: String,
        /// Why it ended.
        reason: String,
    },
    /// A verified contact's key changed: no session until `trust`.
    #[error(
        "{user}'s key changed since you verified it: compare the safety number with \
         p2pctl verify {user}, then p2pctl trust {user}"
    )]
    KeyChanged {
        /// The contact.
        user: String,
    },
    /// The user is not a contact.
    #[error("{user} is not a contact")]
    NotContact {
        /// The user.
        user: String,
    },
    /// The daemon is stopping.
    #[error("daemon is shutting down")]
    ShuttingDown,
}

/// Why a running peer session ended on its own (not by a close).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The Noise link failed (read, write, decrypt, a bad frame).
    #[error(transparent)]
    Link(#[from] NoiseError),
    /// A write did not complete within `WRITE_TIMEOUT`.
    #[error("peer stopped reading (write timed out)")]
    WriteTimedOut,
    /// The peer sent a message text over `MAX_MESSAGE_BYTES`.
    #[error("{peer} sent a message over {limit} bytes")]
    TooLarge {
        /// The peer.
        peer: String,
        /// The limit it broke.
        limit: usize,
    },
    /// The peer sent a message stamped at a time nobody can send at.
    #[error("{peer} sent a message with an impossible time ({at_ms} ms)")]
    ImpossibleTime {
        /// The peer.
        peer: String,
        /// The time it claimed.
        at_ms: i64,
    },
    /// The inbox's blocking task died.
    #[error("inbox task failed: {0}")]
    InboxTask(tokio::task::JoinError),
    /// The inbox could not store what arrived (nothing was acknowledged).
    #[error("cannot store messages: {0}")]
    Store(crate::error::DaemonError),
    /// The new (direct) link failed while the session moved to it.
    #[error("the direct link to {peer} failed while switching to it: {why}")]
    SwitchFailed {
        /// The peer.
        peer: String,
        /// What happened to the link.
        why: String,
    },
}

/// Why an accepted invitation led to no session (both sides, `connect` and
/// `accept`).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The server's contact carried a key that is not hex.
    #[error("the server gave a malformed key for {user}")]
    MalformedKey {
        /// The peer.
        user: String,
    },
    /// The setup deadline passed with no session; `why` says what was
    /// tried and how it failed.
    #[error("could not reach {user} within {secs}s: {why}")]
    NoSession {
        /// The peer.
        user: String,
        /// The setup deadline, seconds.
        secs: u64,
        /// What was tried, in words.
        why: String,
    },
}

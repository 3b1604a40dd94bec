//! Control protocol: p2pctl (or `socat`, or any script) ↔ p2pd over the Unix
//! socket.
//!
//! # Message flow
//!
//! Newline-delimited JSON, one object per line, UTF-8.
//!
//! ```text
//! client                                         p2pd
//!   | <-- {"hello":{"protocol":1,"daemon":"0.1.0"}}  |  always first; check `protocol`
//!   | --> {"id":1,"cmd":"status"}                    |
//!   | <-- {"id":1,"result":{...}}                    |  or {"id":1,"error":{"code","message"}}
//!   | --> {"id":2,"cmd":"watch"}                     |
//!   | <-- {"id":2,"result":{"watching":true}}        |
//!   | <-- {"event":"server","state":"online",...}    |  one line per event from now on
//! ```
//!
//! Requests may be pipelined; responses carry the request's `id`. A line that
//! is not a valid request gets an error with `id` 0 (or the id, if it could
//! be read) and the connection stays usable. Lines longer than
//! [`MAX_CTL_REQUEST`](crate::limits::MAX_CTL_REQUEST) are refused the same
//! way. After `watch` the daemon only writes events on that connection.
//!
//! # Types
//!
//! Each command has one result type ([`reply`]: `status` → [`StatusReport`],
//! `send` → [`SentList`], ...). The daemon wraps it in a [`Reply`] and
//! serializes it once, at the socket; a client decodes the `result` of its
//! request as the type of the command it sent. Events are [`Event`]s.

use serde::{Deserialize, Serialize};

use crate::Secret;

mod event;
pub mod reply;

pub use event::Event;
pub use reply::*;

/// The daemon's first line on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Greeting {
    /// Who is speaking.
    pub hello: DaemonHello,
}

/// Contents of the greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DaemonHello {
    /// [`CTL_VERSION`](crate::limits::CTL_VERSION) of the daemon.
    pub protocol: u32,
    /// The daemon's package version, for humans.
    pub daemon: String,
    /// Users whose invitations wait for an answer, oldest first (p2pctl
    /// prints a one-line hint for them in human mode, SPEC §11).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Contacts whose key changed and was not yet confirmed (`verify
    /// --confirm`) or accepted (`trust`): commands that touch them warn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_changed: Vec<String>,
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Request {
    /// Chosen by the client, echoed in the response.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub cmd: Command,
}

/// Commands, one per p2pctl subcommand that needs the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Daemon and server-session state → [`StatusReport`].
    Status,
    /// Log in with a password → [`LoginDone`].
    Login(LoginArgs),
    /// Create an account (open registration) and log in → [`LoginDone`].
    Register(LoginArgs),
    /// Log out and forget the saved session → [`LogoutDone`].
    Logout,
    /// Online users → [`UserList`].
    List,
    /// Turn this connection into an [`Event`] stream → [`Watching`].
    Watch,
    /// Invite a user to a peer session → [`ConnectDone`].
    Connect {
        /// Whom to invite.
        user: String,
        /// How long to wait for the answer (default: the invitation's life).
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// Return once the invitation is sent, without waiting.
        #[serde(default)]
        no_wait: bool,
    },
    /// Invitations waiting for our answer → [`RequestList`].
    Requests,
    /// Accept a user's invitation → [`Answered`].
    Accept {
        /// The inviter.
        user: String,
    },
    /// Reject a user's invitation → [`Answered`].
    Reject {
        /// The inviter.
        user: String,
    },
    /// Open peer sessions → [`SessionList`].
    Sessions,
    /// What the server sees of this daemon → [`NetcheckReport`].
    Netcheck,
    /// The certificate a server presents, before a first login, so a
    /// person can check it before sending the password → [`ProbeReport`].
    /// Only a TLS handshake: nothing is sent, nothing is pinned.
    Probe {
        /// `HOST[:PORT]`.
        server: String,
    },
    /// Send messages, in order → [`SentList`]: once the peer stored and
    /// acknowledged every one, or (to a contact without a session, unless
    /// `now`) once they are durably queued in the outbox (SPEC §11).
    Send {
        /// The peer.
        user: String,
        /// One or more messages (UTF-8, each at most 64 KiB).
        texts: Vec<String>,
        /// Never queue: fail (`no_session`) unless delivered now.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        now: bool,
    },
    /// Close a peer session → [`Disconnected`].
    Disconnect {
        /// The peer.
        user: String,
    },
    /// Send a broadcast to every registered user → [`BroadcastDone`].
    Broadcast {
        /// UTF-8, at most 4 KiB.
        text: String,
    },
    /// Stored messages → [`InboxList`]; unread ones become read.
    Inbox {
        /// Read ones too.
        #[serde(default)]
        all: bool,
        /// Only from this user.
        #[serde(default)]
        from: Option<String>,
        /// After the list, stream new entries as `message` events (and mark
        /// them read) on this connection.
        #[serde(default)]
        follow: bool,
        /// Only entries with `seq` above this (to fetch the next page).
        #[serde(default)]
        after: Option<u64>,
    },
    /// Contacts (standing consent, SPEC §11) → [`ContactList`].
    Contacts,
    /// End the consent with a contact (and the session) → [`ContactDone`].
    Forget {
        /// The contact.
        user: String,
    },
    /// Forget USER and silently ignore their invitations → [`ContactDone`].
    Block {
        /// The user.
        user: String,
    },
    /// Stop ignoring USER's invitations → [`ContactDone`].
    Unblock {
        /// The user.
        user: String,
    },
    /// Messages queued for contacts without a session → [`OutboxList`].
    Outbox,
    /// Both directions of the conversation with USER → [`HistoryList`].
    History {
        /// The other user.
        user: String,
        /// At most this many, the newest (still printed oldest first).
        #[serde(default)]
        limit: Option<u64>,
    },
    /// The safety number with USER; `confirm` marks them verified →
    /// [`VerifyDone`].
    Verify {
        /// The contact.
        user: String,
        /// Mark the contact verified (after comparing the number).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        confirm: bool,
    },
    /// Tell USER's daemon that our chat with them opened or closed →
    /// [`ChatDone`] (their chat shows it).
    Chat {
        /// The peer.
        user: String,
        /// Opened (true) or left.
        open: bool,
    },
    /// Accept a contact's new key → [`TrustDone`].
    Trust {
        /// The contact.
        user: String,
    },
}

/// Arguments of `login` and `register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LoginArgs {
    /// `HOST` or `HOST:PORT` of the rendezvous server.
    pub server: String,
    /// Account name.
    pub user: String,
    /// The password; never logged.
    pub password: Secret,
    /// `SHA256:HEX` to pin instead of trusting on first use.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// One response line. The daemon writes `Response<Reply>`; a client reads
/// the result as the document type of the command it sent (or as a
/// `serde_json::Value` until it knows the line answers its request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub struct Response<R = Reply> {
    /// The request's id (0 when the request could not be read).
    pub id: u64,
    /// The command's result document, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
    /// What went wrong, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CtlError>,
}

/// An error answer: the `{code, message}` of SPEC §6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[error("{message}")]
pub struct CtlError {
    /// Machine-readable; scripts branch on it.
    pub code: ErrorCode,
    /// One line for people, saying what to do.
    pub message: String,
}

impl CtlError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CtlError {
            code,
            message: message.into(),
        }
    }
}

/// Error codes of the control protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request was malformed or its arguments invalid.
    BadRequest,
    /// The daemon has no server session and none is being attempted.
    NotLoggedIn,
    /// The server could not be reached or is at capacity; the daemon retries.
    ServerUnreachable,
    /// Wrong user name or password; the daemon stopped trying.
    AuthFailed,
    /// Too many failed logins; try again later.
    Throttled,
    /// The server presented a certificate other than the pinned one.
    CertificateChanged,
    /// The server does not allow self-registration.
    RegistrationClosed,
    /// Registration for a name that is taken.
    UserExists,
    /// The user is not online.
    NotOnline,
    /// There is no session with that peer.
    NoSession,
    /// The peer refused.
    Rejected,
    /// No answer in time.
    Timeout,
    /// Daemon and server or client speak different protocol versions.
    VersionMismatch,
    /// Too many requests of this kind; try again later.
    RateLimited,
    /// `accept`/`reject` for a user who has not invited us.
    NoRequest,
    /// A message or broadcast over its size limit.
    TooLarge,
    /// The caller is not the daemon's user (or root).
    PermissionDenied,
    /// The daemon failed internally.
    Internal,
    /// A verified contact's key changed: nothing is sent until `trust`.
    KeyChanged,
    /// The user is not a contact.
    NotContact,
    /// A code this client does not know yet.
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip<T>(v: &T) -> T
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
    }

    proptest! {
        #[test]
        fn requests_round_trip(r in any::<Request>()) {
            prop_assert_eq!(round_trip(&r), r);
        }

        #[test]
        fn events_round_trip(e in any::<Event>()) {
            prop_assert_eq!(round_trip(&e), e);
        }

        #[test]
        fn results_round_trip(
            s in any::<StatusReport>(),
            l in any::<UserList>(),
            d in any::<LoginDone>(),
            o in any::<LogoutDone>(),
            g in any::<Greeting>(),
        ) {
            prop_assert_eq!(round_trip(&s), s);
            prop_assert_eq!(round_trip(&l), l);
            prop_assert_eq!(round_trip(&d), d);
            prop_assert_eq!(round_trip(&o), o);
            prop_assert_eq!(round_trip(&g), g);
        }

        #[test]
        fn error_responses_round_trip(id: u64, e in any::<CtlError>()) {
            let r = Response::<StatusReport> { id, result: None, error: Some(e) };
            prop_assert_eq!(round_trip(&r), r);
        }
    }
}

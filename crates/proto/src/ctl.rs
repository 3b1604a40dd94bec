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

use serde::{Deserialize, Serialize};

use crate::Secret;

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
    /// Send messages over a session, in order → [`SentList`] once the peer
    /// stored and acknowledged every one.
    Send {
        /// The peer.
        user: String,
        /// One or more messages (UTF-8, each at most 64 KiB).
        texts: Vec<String>,
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

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id (0 when the request could not be read).
    pub id: u64,
    /// The command's result document, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
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
    /// A code this client does not know yet.
    #[serde(other)]
    Other,
}

/// Result of `status` (SPEC Appendix A).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StatusReport {
    /// The server session.
    pub server: ServerStatus,
    /// Address the peer listener is bound to.
    pub peer_listen: String,
    /// Open peer sessions.
    pub sessions: u64,
    /// Invitations waiting for an answer.
    pub pending: u64,
    /// Unread inbox entries.
    pub unread: u64,
    /// This daemon's X25519 public key, hex.
    pub public_key: String,
}

/// State of the server session: the `server` object of `status`, and the
/// body of `server` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ServerStatus {
    /// Where the session stands.
    pub state: ServerState,
    /// `host:port` of the server, when one is configured.
    pub address: Option<String>,
    /// Account name, when one is configured.
    pub user: Option<String>,
    /// Connection attempts since the session was last online.
    pub attempt: u32,
    /// Milliseconds until the next attempt, while `connecting`.
    pub next_retry_ms: Option<u64>,
    /// When the session came online (RFC 3339), while `online`.
    #[serde(default)]
    pub since: Option<String>,
    /// Why the last attempt failed or the session ended.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// States of the server session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Logged in.
    Online,
    /// Trying to (re)connect, with backoff.
    Connecting,
    /// No credentials, or they were refused; waits for `login`.
    LoggedOut,
    /// Another login of the same user took over; waits for `login`.
    Replaced,
}

/// Result of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UserList {
    /// Online users, sorted by name.
    pub users: Vec<UserEntry>,
}

/// One online user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UserEntry {
    /// Account name.
    pub user: String,
    /// Online since (RFC 3339).
    pub since: String,
}

/// Result of `login` and `register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LoginDone {
    /// Account name.
    pub user: String,
    /// `host:port` of the server.
    pub server: String,
    /// The pinned server certificate fingerprint.
    pub fingerprint: String,
}

/// Result of `logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LogoutDone {
    /// The account that was logged out, if any.
    pub user: Option<String>,
}

/// Result of `watch`: events follow on this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Watching {
    /// Always true.
    pub watching: bool,
}

/// One peer session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SessionInfo {
    /// The other user.
    pub peer: String,
    /// When it was established (RFC 3339).
    pub since: String,
    /// Whether we invited.
    pub initiator: bool,
}

/// Result of `connect`: the session, or (with `no_wait`) the invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ConnectDone {
    /// The session, once established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<SessionInfo>,
    /// The invitation, when not waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited: Option<PendingRequest>,
}

/// An invitation (ours to answer in `requests`; theirs with `--no-wait`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PendingRequest {
    /// The inviter (in `requests`) or the invitee (after `connect`).
    #[serde(alias = "peer")]
    pub from: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

/// Result of `requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RequestList {
    /// Oldest first.
    pub requests: Vec<PendingRequest>,
}

/// Result of `accept` / `reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Answered {
    /// The inviter.
    pub peer: String,
    /// Whether we accepted.
    pub accepted: bool,
    /// The session, when accepting and the inviter dialled in.
    #[serde(default)]
    pub session: Option<SessionInfo>,
}

/// Result of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SessionList {
    /// By peer name.
    pub sessions: Vec<SessionInfo>,
}

/// One acknowledged message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SentMessage {
    /// The peer.
    pub to: String,
    /// Its id within the session.
    pub id: u64,
}

/// Result of `send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SentList {
    /// In sending order.
    pub sent: Vec<SentMessage>,
}

/// Result of `broadcast`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BroadcastDone {
    /// The stored broadcast.
    pub broadcast: BroadcastInfo,
}

/// A stored broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BroadcastInfo {
    /// Its id.
    pub id: u64,
    /// When delivery stops (RFC 3339).
    pub expires_at: String,
}

/// Result of `disconnect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Disconnected {
    /// The peer.
    pub disconnected: String,
}

/// Kinds of inbox entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum InboxKind {
    /// From a peer session.
    Message,
    /// From the server's broadcast.
    Broadcast,
}

/// One inbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct InboxEntry {
    /// Message or broadcast.
    pub kind: InboxKind,
    /// The sender.
    pub from: String,
    /// The text, exactly as sent.
    pub text: String,
    /// The sender's id for it.
    pub id: u64,
    /// When it was sent (RFC 3339).
    pub at: String,
    /// Its position in this inbox (increasing).
    pub seq: u64,
}

/// Result of `inbox`: one page, at most
/// [`MAX_INBOX_PAGE_BYTES`](crate::limits::MAX_INBOX_PAGE_BYTES) of text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct InboxList {
    /// Oldest first.
    pub messages: Vec<InboxEntry>,
    /// More entries follow: ask again with `after` = the last `seq`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

/// Events written to `watch` connections, one per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The server session changed state.
    Server(ServerStatus),
    /// Someone invites us; answer with `accept` or `reject`.
    Request(PendingRequest),
    /// A peer session is up.
    Connected(SessionInfo),
    /// Our invitation was refused, expired, or the invitee left.
    Rejected {
        /// The invitee.
        peer: String,
        /// `rejected`, `expired` or `offline`.
        reason: String,
    },
    /// A message arrived (already stored in the inbox).
    Message(InboxEntry),
    /// A broadcast arrived (already stored in the inbox).
    Broadcast(InboxEntry),
    /// A peer session ended.
    Disconnected {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The server gave a different key for a user than we saw before.
    KeyChanged {
        /// The user.
        peer: String,
        /// The key we knew.
        old_key: String,
        /// The key we were given.
        new_key: String,
    },
}

impl Event {
    /// The inbox entry a `message` or `broadcast` event carries.
    pub fn inbox_entry(&self) -> Option<&InboxEntry> {
        match self {
            Event::Message(e) | Event::Broadcast(e) => Some(e),
            _ => None,
        }
    }

    /// The event that announces a stored inbox entry.
    pub fn for_entry(e: InboxEntry) -> Event {
        match e.kind {
            InboxKind::Message => Event::Message(e),
            InboxKind::Broadcast => Event::Broadcast(e),
        }
    }
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
            let r = Response { id, result: None, error: Some(e) };
            prop_assert_eq!(round_trip(&r), r);
        }
    }
}

//! Result documents of the control commands (SPEC Appendix A), one type
//! per command, and [`Reply`], which the daemon serializes at the socket.

use serde::{Deserialize, Serialize};

mod contacts;
pub use contacts::*;

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
    /// Of those, the ones on a direct link.
    #[serde(default)]
    pub direct: u64,
    /// Of those, the ones through the server's relay.
    #[serde(default)]
    pub relayed: u64,
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
    /// `host:port` of the server, when one is configured; for a cluster,
    /// the list as given at login (`a:4400,b:4400`).
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
    /// `host:port` of the server in use (online) or being tried
    /// (connecting): with several servers in `address` (SPEC §9), which one
    /// of them. Absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
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

impl ServerState {
    /// The state's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Online => "online",
            ServerState::Connecting => "connecting",
            ServerState::LoggedOut => "logged_out",
            ServerState::Replaced => "replaced",
        }
    }
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
    /// How the session's link runs now.
    #[serde(default)]
    pub path: SessionPath,
}

/// How a peer session's link runs (SPEC §10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum SessionPath {
    /// A TCP connection between the two daemons (dialled or punched).
    #[default]
    Direct,
    /// Through the server's relay (still end-to-end encrypted).
    Relayed,
}

/// Result of `probe`: the pin on file for a server, or (when there is
/// none) the certificate it presents now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProbeReport {
    /// The server, `host:port`.
    pub server: String,
    /// The pinned fingerprint (a login to it got through before).
    pub pinned: Option<String>,
    /// The fingerprint it presented now; `None` when pinned (not asked).
    pub fingerprint: Option<String>,
}

/// Result of `netcheck`: what the server sees of this daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct NetcheckReport {
    /// The server, `host:port`.
    pub server: String,
    /// The address the server sees this daemon's link come from.
    pub public_addr: Option<String>,
    /// The peer listener's address.
    pub peer_listen: String,
    /// The LAN addresses offered to peers.
    pub lan: Vec<String>,
    /// Whether two probes from one local port showed one public mapping
    /// (hole punching can work); `None` when it could not be told.
    pub endpoint_independent: Option<bool>,
    /// Whether the server's relay answered.
    pub relay: bool,
    /// Round trip through the server's relay (or, without one, of an
    /// address probe), milliseconds.
    pub rtt_ms: Option<u64>,
    /// What went wrong, when something did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
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

/// One sent message: acknowledged by the peer, or queued in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SentMessage {
    /// The peer.
    pub to: String,
    /// Its id (in this daemon's history of sent messages).
    pub id: u64,
    /// Delivered (stored by the peer) or queued.
    #[serde(default)]
    pub status: SendStatus,
}

/// Where a sent message stands (SPEC §11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    /// The peer stored and acknowledged it.
    #[default]
    Delivered,
    /// In the outbox: it goes out, in order and once, when a session opens.
    Queued,
    /// Not delivered and not queued (`send --now` whose session ended, or
    /// dropped by `forget`/`block`).
    Failed,
}

impl SendStatus {
    /// The status's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Delivered => "delivered",
            SendStatus::Queued => "queued",
            SendStatus::Failed => "failed",
        }
    }
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

/// A command's result, as the daemon writes it in a
/// [`Response`](super::Response): one variant per result type, serialized
/// as that type alone (untagged), so the document is exactly the type's
/// own. Serialize only: documents of different commands can look alike, so
/// a client decodes a result as the type of the command it sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// `status`.
    Status(StatusReport),
    /// `login`, `register`.
    Login(LoginDone),
    /// `logout`.
    Logout(LogoutDone),
    /// `list`.
    Users(UserList),
    /// `watch`.
    Watching(Watching),
    /// `connect`.
    Connect(ConnectDone),
    /// `requests`.
    Requests(RequestList),
    /// `accept`, `reject`.
    Answered(Answered),
    /// `sessions`.
    Sessions(SessionList),
    /// `send`.
    Sent(SentList),
    /// `disconnect`.
    Disconnected(Disconnected),
    /// `broadcast`.
    Broadcast(BroadcastDone),
    /// `inbox`.
    Inbox(InboxList),
    /// `netcheck`.
    Netcheck(NetcheckReport),
    /// `probe`.
    Probe(ProbeReport),
    /// `contacts`.
    Contacts(ContactList),
    /// `forget`, `block`, `unblock`.
    ContactDone(ContactDone),
    /// `outbox`.
    Outbox(OutboxList),
    /// `history`.
    History(HistoryList),
    /// `verify`.
    Verify(VerifyDone),
    /// `trust`.
    Trust(TrustDone),
    /// `chat` (the notice).
    Chat(ChatDone),
}

macro_rules! reply_from {
    ($($variant:ident($t:ty)),* $(,)?) => {$(
        impl From<$t> for Reply {
            fn from(v: $t) -> Reply {
                Reply::$variant(v)
            }
        }
    )*};
}

reply_from!(
    Status(StatusReport),
    Login(LoginDone),
    Logout(LogoutDone),
    Users(UserList),
    Watching(Watching),
    Connect(ConnectDone),
    Requests(RequestList),
    Answered(Answered),
    Sessions(SessionList),
    Sent(SentList),
    Disconnected(Disconnected),
    Broadcast(BroadcastDone),
    Inbox(InboxList),
    Netcheck(NetcheckReport),
    Probe(ProbeReport),
    Contacts(ContactList),
    ContactDone(ContactDone),
    Outbox(OutboxList),
    History(HistoryList),
    Verify(VerifyDone),
    Trust(TrustDone),
    Chat(ChatDone),
);

/// The document `p2pctl --json` prints on stdout when a command fails
/// (SPEC Appendix A, "any error").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDocument {
    /// What went wrong.
    pub error: ErrorBody,
    /// After a partly delivered `send USER -`: the acknowledged messages,
    /// as `send`'s result would list them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<Vec<SentMessage>>,
}

/// The `error` object of an [`ErrorDocument`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// An [`ErrorCode`](super::ErrorCode) name, or one of p2pctl's own:
    /// `daemon_unreachable` (exit 3) and `error` (exit 1).
    pub code: String,
    /// One line for people.
    pub message: String,
}

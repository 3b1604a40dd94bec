//! Daemon ↔ rendezvous-server protocol.
//!
//! # Message flow
//!
//! ```text
//! daemon                                   server
//!   | ---------------- TCP connect ------------> |
//!   | <------- 8-byte Preamble (plaintext) ----- |  Ready, or Busy{retry_after} and close
//!   | <=============== TLS 1.3 =================> |  server certificate pinned by the daemon
//!   | -- Login{version, user, auth, peer} -----> |  auth: password | resume token | register
//!   | <-- LoginOk{token, observed_addr} -------- |  or LoginFailed{code, retry_after_ms}, close
//!   | -- Request{id, List} --------------------> |
//!   | <-- Reply{id, Users{..}} ----------------- |
//!   | -- Ping{nonce} --------------------------> |  every KEEPALIVE_INTERVAL
//!   | <-- Pong{nonce} -------------------------- |
//!   | <-- Closing{reason} ---------------------- |  replaced, account removed, shutdown, ...
//! ```
//!
//! Invitations (SPEC §3): the server hands out a user's address only to
//! someone that user accepted, for that one session.
//!
//! ```text
//! alice                        server                         bob
//!   | -- Request{Invite{bob}} --> |                              |
//!   | <-- Reply{Invited{id}} ---- | -- Event{Invitation{id}} --> |  expires after INVITATION_TTL
//!   |                             | <-- Request{Answer{id,yes}} -|
//!   |                             | -- Reply{Answered{alice}} -> |  bob now expects alice's key
//!   | <-- Event{Accepted{bob}} -- |                              |
//!   | ============ direct TCP + Noise XX (crate::peer) =========> |
//! ```
//!
//! A "no", an expiry or either side leaving ends it with `Declined` (to
//! alice) and `InvitationClosed` (to bob); alice learns nothing about bob.
//!
//! Broadcasts (SPEC §4): `Request{Broadcast{text}}` is answered with
//! `BroadcastStored{id, expires_ms}` only after the broadcast is on disk.
//! Every other user gets `Event{Broadcast{..}}` — at once if online, else at
//! their next login while unexpired — in id order, and answers with
//! `BroadcastAck{upto}` after storing it. The server keeps one high-water
//! mark per user and resends everything above it after a reconnect.
//!
//! The preamble comes before TLS so an over-capacity server can turn a client
//! away for the price of one 8-byte write, with no handshake.
//!
//! Inside TLS every message is one JSON object in a frame with a 4-byte
//! big-endian length ([`crate::codec`]). Frames larger than
//! [`MAX_CLIENT_FRAME`](crate::limits::MAX_CLIENT_FRAME) (client → server) or
//! [`MAX_SERVER_FRAME`](crate::limits::MAX_SERVER_FRAME) (server → client)
//! close the connection before any allocation. A client must log in within
//! [`LOGIN_TIMEOUT`](crate::limits::LOGIN_TIMEOUT); anything but `Login`
//! before that, or a second `Login` after it, is a protocol error.

use serde::{Deserialize, Serialize};

use crate::Secret;

#[path = "wire_code.rs"]
mod code;
pub use code::RefusalCode;

#[path = "wire_preamble.rs"]
mod preamble;
pub use preamble::{Preamble, PREAMBLE_LEN, PREAMBLE_MAGIC, PREAMBLE_VERSION};

#[path = "wire_reach.rs"]
mod reach;
pub use reach::{RelayRefusal, MAX_LAN_PATHS, MAX_PATHS};

/// How a client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Auth {
    /// First login: checked against the argon2id hash.
    Password {
        /// The account password.
        password: Secret,
    },
    /// Reconnect: the token a previous `LoginOk` gave; no argon2 needed.
    Token {
        /// The resume token.
        token: Secret,
    },
    /// Create the account, then log in (only with `--open-registration`).
    Register {
        /// The new account's password.
        password: Secret,
    },
}

/// Where and how peers reach this daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerInfo {
    /// TCP port of the daemon's peer listener.
    pub port: u16,
    /// Explicit `host:port` to give peers instead of the address the server
    /// sees (behind NAT, or with several interfaces).
    pub advertise: Option<String>,
    /// The daemon's long-term X25519 public key, hex.
    pub public_key: String,
    /// The listener's LAN addresses (`ip:port`), for peers behind the same
    /// router; at most [`MAX_LAN_PATHS`], the rest ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lan: Vec<String>,
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// The first message; nothing else is accepted before it succeeds.
    Login {
        /// [`WIRE_VERSION`](crate::limits::WIRE_VERSION) of the client.
        version: u32,
        /// Account name.
        user: String,
        /// Proof of identity.
        auth: Auth,
        /// Peer listener details registered for presence.
        peer: PeerInfo,
    },
    /// Instead of `Login`: join the relay with a token from an accepted
    /// invitation → [`ServerMsg::RelayReady`] or [`ServerMsg::RelayRefused`].
    Relay {
        /// [`WIRE_VERSION`](crate::limits::WIRE_VERSION) of the client.
        version: u32,
        /// This side's relay token.
        token: Secret,
    },
    /// Instead of `Login`: ask which address the server sees →
    /// [`ServerMsg::Observed`], then the server closes.
    Observe {
        /// [`WIRE_VERSION`](crate::limits::WIRE_VERSION) of the client.
        version: u32,
    },
    /// A request that expects a [`ServerMsg::Reply`] with the same id.
    Request {
        /// Chosen by the client; echoed in the reply.
        id: u64,
        /// What is asked.
        req: Request,
    },
    /// Keepalive; answered with `Pong`.
    Ping {
        /// Echoed in the `Pong`.
        nonce: u64,
    },
    /// Answer to a server `Ping`.
    Pong {
        /// The nonce of the `Ping`.
        nonce: u64,
    },
    /// Every broadcast up to and including `upto` is stored in our inbox.
    BroadcastAck {
        /// Highest stored broadcast id.
        upto: u64,
    },
    /// End the session and revoke its resume token.
    Logout,
}

/// Requests a logged-in client can make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Who is online.
    List,
    /// Ask `to` for a peer session → [`Reply::Invited`]. The invitee learns
    /// nothing about the inviter but the name until it accepts.
    Invite {
        /// The invitee.
        to: String,
    },
    /// Store a broadcast for every other user → [`Reply::BroadcastStored`],
    /// sent only once it is on disk.
    Broadcast {
        /// UTF-8, at most [`MAX_BROADCAST_BYTES`](crate::limits::MAX_BROADCAST_BYTES).
        text: String,
    },
    /// Answer an invitation addressed to us → [`Reply::Answered`].
    Answer {
        /// The invitation's id.
        invite: u64,
        /// Yes or no.
        accept: bool,
    },
}

/// How to reach a peer and whom to expect there: handed to both sides of an
/// accepted invitation, and to nobody else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Contact {
    /// The peer's account name.
    pub user: String,
    /// `ip:port` of the peer's listener (the first of `paths`; kept for
    /// daemons that predate `paths`).
    pub addr: String,
    /// The peer's X25519 public key, hex.
    pub public_key: String,
    /// Every address to try for the peer, best first (see `wire_reach.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The address the server sees the receiving side's own link come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub your_addr: Option<String>,
    /// The receiving side's one-time relay token for this session; absent
    /// when the server runs no relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<Secret>,
}

/// Why an invitation ended without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum InviteEnd {
    /// The invitee said no.
    Rejected,
    /// Nobody answered in time.
    Expired,
    /// The other side went offline.
    Offline,
    /// A reason this client does not know.
    #[serde(other)]
    Other,
}

/// Things the server tells a logged-in client without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerEvent {
    /// Someone asks you for a session; answer with `Request::Answer`.
    Invitation {
        /// Its id.
        invite: u64,
        /// Who asks.
        from: String,
        /// When it expires unanswered, Unix ms.
        expires_ms: i64,
    },
    /// An invitation you received can no longer be answered.
    InvitationClosed {
        /// Its id.
        invite: u64,
        /// Why.
        reason: InviteEnd,
    },
    /// Your invitation was accepted: dial `contact`.
    Accepted {
        /// Its id.
        invite: u64,
        /// The invitee's address and key.
        contact: Contact,
    },
    /// A broadcast for you: store it, then send `BroadcastAck`. Delivered
    /// in id order, at least once; dedupe by id.
    Broadcast {
        /// Its id.
        id: u64,
        /// Who sent it.
        from: String,
        /// The text.
        text: String,
        /// When it was sent, Unix ms.
        sent_ms: i64,
        /// When it expires, Unix ms.
        expires_ms: i64,
    },
    /// Your invitation ended without a session.
    Declined {
        /// Its id.
        invite: u64,
        /// The invitee.
        to: String,
        /// Why.
        reason: InviteEnd,
    },
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum LoginError {
    /// Unknown user or wrong password (deliberately not told apart).
    BadCredentials,
    /// Resume token unknown, expired, or the password changed since.
    BadToken,
    /// Too many failures for this user or address; wait `retry_after_ms`.
    Throttled,
    /// The user name breaks the naming rules.
    BadUsername,
    /// The password is too short or too long.
    BadPassword,
    /// `Register` on a server without `--open-registration`.
    RegistrationClosed,
    /// `Register` for a name that is taken.
    UserExists,
    /// Client and server speak different protocol versions.
    VersionMismatch,
    /// Too many logins are being checked at once; retry after `retry_after_ms`.
    Busy,
    /// Anything else (server-side failure).
    #[serde(other)]
    Internal,
}

/// Why the server is closing a logged-in session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Another login of the same user took over; do not reconnect.
    Replaced,
    /// The account was removed by the operator; do not reconnect.
    AccountRemoved,
    /// The server is shutting down; reconnect with backoff.
    Shutdown,
    /// The client broke the protocol.
    ProtocolError,
    /// Nothing heard for too long.
    Idle,
    /// The client logged out.
    LoggedOut,
    /// A reason this client does not know.
    #[serde(other)]
    Other,
}

/// One online user as `list` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OnlineUser {
    /// Account name.
    pub user: String,
    /// When this session logged in, Unix ms.
    pub since_ms: i64,
}

/// Body of a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `List`, sorted by name.
    Users {
        /// The online users, the asker included.
        users: Vec<OnlineUser>,
    },
    /// Answer to `Invite`: forwarded to the invitee.
    Invited {
        /// The invitation's id.
        invite: u64,
        /// When it expires unanswered, Unix ms.
        expires_ms: i64,
    },
    /// Answer to `Broadcast`: durably stored.
    BroadcastStored {
        /// Its id (ids grow in the order broadcasts are stored).
        id: u64,
        /// When it stops being delivered, Unix ms.
        expires_ms: i64,
    },
    /// Answer to `Answer`; with the inviter's contact when accepted.
    Answered {
        /// The invitation's id.
        invite: u64,
        /// The inviter's address and key (accepted only).
        contact: Option<Contact>,
    },
    /// The request failed; the session goes on.
    Error {
        /// Machine-readable code (unknown codes are kept, not refused).
        code: RefusalCode,
        /// What went wrong, for people.
        message: String,
    },
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Logged in.
    LoginOk {
        /// The account name.
        user: String,
        /// Resume token for reconnects; keep it secret, keep it 0600.
        token: Secret,
        /// The address the server saw this client come from.
        observed_addr: String,
        /// Server time, Unix ms (for clock-skew hints).
        server_time_ms: i64,
    },
    /// Login refused; the connection closes next.
    LoginFailed {
        /// Why.
        code: LoginError,
        /// For people.
        message: String,
        /// When trying again makes sense, if it does.
        retry_after_ms: Option<u64>,
    },
    /// Answer to a `Request`.
    Reply {
        /// The request's id.
        id: u64,
        /// The answer.
        reply: Reply,
    },
    /// Something the client did not ask for (invitations and their fate).
    Event {
        /// What happened.
        event: ServerEvent,
    },
    /// Keepalive; answer with `Pong`.
    Ping {
        /// Echo it back.
        nonce: u64,
    },
    /// Answer to a client `Ping`.
    Pong {
        /// The nonce of the `Ping`.
        nonce: u64,
    },
    /// Both sides joined the relay: from the next byte on the stream is a
    /// pipe to `peer`.
    RelayReady {
        /// The user at the other end.
        peer: String,
    },
    /// The relay turned this connection away; it closes next.
    RelayRefused {
        /// Why.
        code: RelayRefusal,
        /// For people.
        message: String,
    },
    /// Answer to `Observe`: the address the connection came from.
    Observed {
        /// `ip:port` as the server saw it.
        addr: String,
    },
    /// The server is closing this session; the connection closes next.
    Closing {
        /// Why.
        reason: CloseReason,
        /// For people.
        message: String,
    },
}

/// `HOST` or `HOST:PORT` as people type it, as `host:port` with the default
/// port filled in (bare IPv6 addresses get brackets).
pub fn server_address(s: &str) -> String {
    let s = s.trim();
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return s.to_string();
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return format!("[{s}]:{}", crate::limits::DEFAULT_SERVER_PORT);
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => s.to_string(),
        _ => format!("{s}:{}", crate::limits::DEFAULT_SERVER_PORT),
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;

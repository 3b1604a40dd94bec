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

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ProtoError, Secret};

#[path = "wire_code.rs"]
mod code;
pub use code::RefusalCode;

/// Magic bytes that open the server's preamble.
pub const PREAMBLE_MAGIC: [u8; 4] = *b"P2PB";

/// Preamble format version (not the protocol version, which is in `Login`).
pub const PREAMBLE_VERSION: u8 = 1;

/// Length of the preamble on the wire.
pub const PREAMBLE_LEN: usize = 8;

/// The server's first, plaintext, 8 bytes: `P2PB`, format version, status,
/// retry-after seconds (u16 big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    /// TLS follows.
    Ready,
    /// The server is at its connection cap; the connection is closed next.
    Busy {
        /// How long the client should wait before trying again.
        retry_after: Duration,
    },
}

impl Preamble {
    /// The 8 bytes on the wire.
    pub fn encode(self) -> [u8; PREAMBLE_LEN] {
        let (status, secs) = match self {
            Preamble::Ready => (0u8, 0u16),
            Preamble::Busy { retry_after } => (
                1u8,
                u16::try_from(retry_after.as_secs()).unwrap_or(u16::MAX),
            ),
        };
        let s = secs.to_be_bytes();
        let m = PREAMBLE_MAGIC;
        [m[0], m[1], m[2], m[3], PREAMBLE_VERSION, status, s[0], s[1]]
    }

    /// Parses the 8 bytes; anything else means we did not reach our server.
    pub fn decode(b: &[u8; PREAMBLE_LEN]) -> Result<Self, ProtoError> {
        if b[..4] != PREAMBLE_MAGIC || b[4] != PREAMBLE_VERSION {
            return Err(ProtoError::BadPreamble);
        }
        let secs = u16::from_be_bytes([b[6], b[7]]);
        match b[5] {
            0 => Ok(Preamble::Ready),
            1 => Ok(Preamble::Busy {
                retry_after: Duration::from_secs(secs.into()),
            }),
            _ => Err(ProtoError::BadPreamble),
        }
    }
}

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
    /// `ip:port` of the peer's listener.
    pub addr: String,
    /// The peer's X25519 public key, hex.
    pub public_key: String,
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

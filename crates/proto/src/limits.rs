//! Every limit and timeout that both ends of a connection must agree on.
//! Each has a reason; change one only with its reason in mind.

use std::time::Duration;

/// Version of the daemon ↔ server protocol, sent in `Login`. Bump on any
/// incompatible change to [`crate::wire`].
pub const WIRE_VERSION: u32 = 1;

/// Version of the p2pctl ↔ daemon protocol, sent in the daemon's greeting.
pub const CTL_VERSION: u32 = 1;

/// Default TCP port of the rendezvous server.
pub const DEFAULT_SERVER_PORT: u16 = 4400;

/// Largest frame a client may send to the server. The biggest legitimate one
/// is a 4 KiB broadcast whose text is all escaped control characters (×6);
/// anything larger is an attack or a bug, and is refused before allocation.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// Largest frame the server may send to a client: a `list` of tens of
/// thousands of online users fits, with room to spare.
pub const MAX_SERVER_FRAME: usize = 8 * 1024 * 1024;

/// Largest control request line (p2pctl → daemon): a 64 KiB message escaped
/// to six bytes per character, plus the envelope.
pub const MAX_CTL_REQUEST: usize = 512 * 1024;

/// Largest control line the daemon writes (responses and events): a full
/// inbox or user list.
pub const MAX_CTL_RESPONSE: usize = 16 * 1024 * 1024;

/// Usernames are 1..=32 characters (SPEC §3).
pub const MAX_USERNAME_LEN: usize = 32;

/// Passwords shorter than this are refused (SPEC §3).
pub const MIN_PASSWORD_LEN: usize = 8;

/// Passwords longer than this are refused: hashing cost grows with length,
/// and nobody types a kilobyte.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Largest peer message text (SPEC §5).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest broadcast text (SPEC §4).
pub const MAX_BROADCAST_BYTES: usize = 4 * 1024;

/// A connection that has not logged in by then is closed (SPEC §3), so idle
/// sockets cannot hold connection slots.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a logged-in daemon pings the server. Three missed intervals make
/// [`IDLE_TIMEOUT`], so a dead peer is noticed in under a minute.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Either side drops a connection it has heard nothing on for this long
/// (SPEC §3: "a dead client is noticed within about a minute").
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// A write that cannot complete in this time means the other side stopped
/// reading; the connection is dropped rather than left to pile up.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What an over-capacity server tells clients to wait before retrying.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// An unanswered invitation expires after this unless the server says
/// otherwise (`p2p-server --invitation-ttl`; SPEC §3, §11): long enough to
/// notice a notification or a hint and answer. Daemons never assume it: they
/// go by the expiry the server sends with each invitation.
pub const INVITATION_TTL: Duration = Duration::from_secs(5 * 60);

/// Shortest `--invitation-ttl`: a person needs time to see the notification
/// or the hint and type `accept`; shorter only loses invitations.
pub const MIN_INVITATION_TTL: Duration = Duration::from_secs(10);

/// Longest `--invitation-ttl`: an invitation nobody answered within an hour
/// is stale, and each open one holds a little server memory. Daemons wait
/// no longer than this for an answer, whatever expiry a server claims.
pub const MAX_INVITATION_TTL: Duration = Duration::from_secs(60 * 60);

/// Invitations one user may send per [`INVITE_WINDOW`]: enough for a busy
/// person, too few to flood anyone with requests.
pub const INVITES_PER_WINDOW: u32 = 10;

/// The window of [`INVITES_PER_WINDOW`].
pub const INVITE_WINDOW: Duration = Duration::from_secs(60);

/// Largest plaintext in one Noise transport message (65535 minus the
/// 16-byte tag); longer peer frames are split across several.
pub const MAX_NOISE_PLAINTEXT: usize = 65535 - 16;

/// Largest peer frame (one JSON message between daemons): a 64 KiB message,
/// escaped, plus its envelope.
pub const MAX_PEER_FRAME: usize = 512 * 1024;

/// A peer's Noise handshake must finish within this.
pub const PEER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default life of a broadcast (SPEC §4: "the 30-minute promise").
pub const DEFAULT_BROADCAST_TTL: Duration = Duration::from_secs(30 * 60);

/// Default broadcasts one user may send per [`DEFAULT_BROADCAST_WINDOW`].
pub const DEFAULT_BROADCAST_LIMIT: u32 = 10;

/// Default window of the broadcast rate limit.
pub const DEFAULT_BROADCAST_WINDOW: Duration = Duration::from_secs(3600);

/// Bytes per `inbox` page as sent: every entry is counted at its JSON size
/// (escaping and envelope included, so empty messages are not free), which
/// keeps a page far under [`MAX_CTL_RESPONSE`] and the daemon's memory for
/// one answer small; p2pctl fetches pages until none is left.
pub const MAX_INBOX_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// Peer handshakes in progress at once; more incoming links are closed at
/// once, so a flood of half-open links cannot pile up tasks.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

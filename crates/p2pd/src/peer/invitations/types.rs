//! The invitation machine's vocabulary: its clock, its inputs and the
//! actions it asks for (see the parent module).

use std::net::SocketAddr;

use p2p_proto::ctl::Event;
use p2p_proto::wire::{Contact, ServerEvent};
use tokio::time::Instant;

use crate::link::LinkError;
use crate::peer::error::PeerError;

/// The current time, on both clocks the machine needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// For local deadlines.
    pub(crate) at: Instant,
    /// Unix ms on our clock (invitation expiries are server times).
    pub(crate) unix_ms: i64,
}

/// A peer as the daemon stores it: its name, key, and the paths to try, in
/// order (the wire's `Contact` carries one address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerContact {
    /// Account name.
    pub(crate) user: String,
    /// X25519 public key, hex (as the server gave it).
    pub(crate) public_key: String,
    /// Candidate addresses of the peer's listener, best first.
    pub(crate) paths: Vec<SocketAddr>,
}

impl From<&Contact> for PeerContact {
    fn from(c: &Contact) -> Self {
        PeerContact {
            user: c.user.clone(),
            public_key: c.public_key.clone(),
            paths: c.addr.parse().into_iter().collect(),
        }
    }
}

/// What happens to the machine.
#[derive(Debug)]
pub(crate) enum Input<W, L> {
    /// The server session came online as `me`.
    LoggedIn {
        /// Server clock minus ours.
        clock_skew_ms: i64,
    },
    /// An invitation event from the server.
    Server(ServerEvent),
    /// The server took our invitation `invite` to `to` (`connect`).
    Invited {
        /// Its id.
        invite: u64,
        /// The invitee.
        to: String,
        /// The waiting `connect`, unless `--no-wait`.
        waiter: Option<W>,
    },
    /// `connect` stopped waiting for `invite`.
    ConnectGaveUp {
        /// Its id.
        invite: u64,
    },
    /// `accept`/`reject` of `from`'s invitation (`waiter` is `None` for an
    /// automatic accept).
    Answer {
        /// The inviter.
        from: String,
        /// Accept or reject.
        accept: bool,
        /// Gets the outcome.
        waiter: Option<W>,
    },
    /// The server answered our `answer` (see [`Action::SendAnswer`]).
    Answered {
        /// The inviter.
        from: String,
        /// The invitation.
        invite: u64,
        /// Whether we accepted.
        accept: bool,
        /// The inviter's contact (with an acceptance), or the failure.
        result: Result<Option<Contact>, LinkError>,
    },
    /// A link finished its handshake claiming `invite` as `user` with `key`.
    DialedIn {
        /// Who it says it is.
        user: String,
        /// Its proven static key.
        key: Vec<u8>,
        /// The invitation it claims.
        invite: u64,
        /// The link, waiting for the verdict.
        link: L,
    },
    /// Time passed: apply expiries.
    Tick,
    /// The daemon stops: answer everyone waiting.
    Shutdown,
}

/// What the daemon must do.
#[derive(Debug)]
pub(crate) enum Action<W, L> {
    /// Send `answer` to the server, then feed back [`Input::Answered`].
    SendAnswer {
        /// The inviter.
        from: String,
        /// The invitation.
        invite: u64,
        /// Accept or reject.
        accept: bool,
    },
    /// Record the key the server gave for this peer (loud if it changed).
    CheckKey(Contact),
    /// Dial the invitee who accepted, open the session, answer `waiter`.
    Dial {
        /// Who we invited.
        to: String,
        /// Who to dial, where.
        contact: PeerContact,
        /// The invitation (told to the peer).
        invite: u64,
        /// The waiting `connect`.
        waiter: Option<W>,
    },
    /// Publish a control event.
    Emit(Event),
    /// Answer a waiting command: `Ok` means answered without a session (a
    /// rejection); a session is reported by whoever sets it up.
    Reply {
        /// Who waits.
        waiter: W,
        /// The outcome.
        result: Result<(), PeerError>,
    },
    /// Let this link through as the session of the peer it authenticated
    /// as; `waiter` (the `accept`) gets the session.
    Admit {
        /// The link.
        link: L,
        /// The waiting `accept`.
        waiter: Option<W>,
    },
    /// Close this link: it matches nothing we accepted.
    Refuse {
        /// The link.
        link: L,
    },
    /// `expected` or `accepting` changed (the listener's admission reads them).
    ExpectationsChanged,
}

//! The invitation machine's vocabulary: its clock, its inputs and the
//! actions it asks for (see the parent module).

use std::net::SocketAddr;

use p2p_proto::ctl::Event;
use p2p_proto::wire::{Contact, ServerEvent, MAX_PATHS};
use p2p_proto::Secret;
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
/// order (the contact's `paths`; its one `addr` from an older server).
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
            paths: paths_of(c),
        }
    }
}

/// The contact's paths that parse, at most [`MAX_PATHS`], without
/// repeats; its `addr` when it lists none (an older server). Addresses
/// that no one can dial (unspecified, multicast, port 0) are skipped.
fn paths_of(c: &Contact) -> Vec<SocketAddr> {
    let listed = if c.paths.is_empty() {
        std::slice::from_ref(&c.addr)
    } else {
        &c.paths[..]
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in listed.iter().take(MAX_PATHS) {
        let Ok(a) = a.parse::<SocketAddr>() else {
            continue;
        };
        if a.ip().is_unspecified() || a.ip().is_multicast() || a.port() == 0 || out.contains(&a) {
            continue;
        }
        out.push(a);
    }
    out
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
    /// The contact keeper's invitation `invite` to `to` was taken by the
    /// server (no one waits; failures are only logged).
    AutoInvited {
        /// Its id.
        invite: u64,
        /// The contact.
        to: String,
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
    /// A link, dialled by either side (or relayed), finished its Noise
    /// handshake for `invite` with `user`, who proved `key`.
    Verified {
        /// Who it is (its hello, or the contact we dialled).
        user: String,
        /// Its proven static key.
        key: Vec<u8>,
        /// The invitation it is for.
        invite: u64,
        /// The link, waiting for the verdict.
        link: L,
    },
    /// A held link (we follow) carried the leader's `Switch`: the leader
    /// chose it for the session of `invite` with `user`.
    Switched {
        /// The peer.
        user: String,
        /// The invitation.
        invite: u64,
        /// The link, waiting for the verdict.
        link: L,
    },
    /// How reaching `user` for `invite` has gone so far, in words (what the
    /// failure at the setup deadline will say).
    Tried {
        /// The peer.
        user: String,
        /// The invitation.
        invite: u64,
        /// E.g. "no direct path worked (tried ...) and the server offers no relay".
        why: String,
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
    /// An invitation was accepted (ours or theirs): reach the peer on
    /// every path (and the relay) until `until`, feeding back
    /// [`Input::Verified`] and [`Input::Tried`].
    Establish {
        /// Who to reach, where.
        contact: PeerContact,
        /// The invitation (told to the peer).
        invite: u64,
        /// Our own relay token for it, if the server runs a relay.
        relay: Option<Secret>,
        /// The setup deadline.
        until: Instant,
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
    /// Open the session on this link; `waiter` (the `connect` or
    /// `accept`) gets it. The leader sends `Switch` first on it, the
    /// follower answers the leader's with its own.
    Admit {
        /// The link.
        link: L,
        /// The waiting command.
        waiter: Option<W>,
        /// Whether we lead (lower static key) and so chose this link.
        lead: bool,
        /// Whether we invited (the session's `initiator`).
        inviter: bool,
    },
    /// We follow: keep this link until the leader's `Switch` arrives on it
    /// (then [`Input::Switched`]) or `until` passes (then drop it).
    Hold {
        /// The link.
        link: L,
        /// The setup deadline.
        until: Instant,
    },
    /// The session this link is for is up already: hand the link to it.
    Live {
        /// The link.
        link: L,
    },
    /// Close this link: it matches nothing we accepted.
    Refuse {
        /// The link.
        link: L,
    },
    /// `expected` or `accepting` changed (the listener's admission reads them).
    ExpectationsChanged,
}

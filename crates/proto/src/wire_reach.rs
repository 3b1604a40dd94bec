//! Reaching a peer (SPEC §10): the paths the server hands out with an
//! accepted invitation, the relay, and the address probe.
//!
//! # Paths
//! Each daemon's server link leaves from its peer listener's port, so the
//! address the server sees for the link is also the public mapping of the
//! listener (the same socket address when there is no NAT). With an accepted
//! invitation each side gets, in [`Contact`](super::Contact):
//! - `paths`: the other side's addresses to try, best first: advertised,
//!   the listener port at the observed host, the observed link mapping, then
//!   its LAN addresses (at most [`MAX_PATHS`]);
//! - `your_addr`: its own link as the server sees it;
//! - `relay`: its own one-time relay token (absent with `--no-relay`).
//!
//! Both daemons dial every path at once from their listener's port (so two
//! NATs with endpoint-independent mapping let a simultaneous open through)
//! while their listeners accept; see [`crate::peer`] for how the two ends of
//! a link agree on roles.
//!
//! # Relay
//! ```text
//! daemon                                   server
//!   | ---- TCP, preamble, pinned TLS --------> |  as for a login
//!   | -- Relay{version, token} --------------> |  instead of Login
//!   | <-- RelayReady{peer} ------------------- |  once the other side joined
//!   | <======= bytes, spliced to the peer ===> |  only Noise ciphertext
//!   | <-- RelayRefused{code, message} -------- |  instead, then close
//! ```
//! A token is issued to one user for one accepted invitation, pairs at most
//! once, and dies when its pair ends or after the server's token lifetime.
//!
//! # Address probe
//! `Observe{version}` instead of `Login` is answered with `Observed{addr}`
//! (the source address the server saw) and the server closes first, so the
//! probing side keeps no TIME_WAIT on its port.

use serde::{Deserialize, Serialize};

/// Most LAN addresses a daemon registers at login; more are ignored.
pub const MAX_LAN_PATHS: usize = 8;

/// Most paths the server hands out for one contact (LAN + advertised +
/// observed); more are ignored by the daemon.
pub const MAX_PATHS: usize = 12;

/// Why the relay turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum RelayRefusal {
    /// The server runs without a relay (`--no-relay`).
    Disabled,
    /// The token was never issued, was used already, or has expired.
    UnknownToken,
    /// This user has as many relayed sessions as the server allows.
    OverCap,
    /// The other side did not come to the relay in time.
    PeerAbsent,
    /// A reason this client does not know.
    #[serde(other)]
    Other,
}

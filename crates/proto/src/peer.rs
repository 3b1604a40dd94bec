//! Daemon ↔ daemon protocol: a direct TCP link, end-to-end encrypted with
//! Noise, opened only between two users the server introduced after the
//! callee accepted.
//!
//! # Message flow
//!
//! ```text
//! alice (initiator)                                      bob (responder)
//!   | ---- TCP connect to the address the server gave -----> |
//!   | -> e                                                   |  Noise_XX_25519_ChaChaPoly_BLAKE2s,
//!   | <- e, ee, s, es                                        |  prologue NOISE_PROLOGUE
//!   |    alice checks s == bob's key from the server         |
//!   | -> s, se + payload PeerHello{user, invite}             |
//!   |                 bob checks (s, user, invite) against an invitation he accepted
//!   | <======== PeerMsg frames, both ways, encrypted =======> |
//! ```
//!
//! Handshake and transport messages each travel as a 2-byte big-endian
//! length then the Noise message (at most 65535 bytes). Inside the
//! transport, the plaintext is a byte stream of peer frames — a 4-byte
//! big-endian length then one JSON [`PeerMsg`] — cut into Noise messages of
//! at most [`MAX_NOISE_PLAINTEXT`](crate::limits::MAX_NOISE_PLAINTEXT)
//! bytes, so a 64 KiB message spans two. Frames over
//! [`MAX_PEER_FRAME`](crate::limits::MAX_PEER_FRAME) end the session.
//!
//! `Message` ids count up from 1 per session; the receiver stores messages
//! durably and answers with a cumulative `Ack{upto}` after each batch, so a
//! stream of lines costs one disk sync and one ack per batch, not per line.

use serde::{Deserialize, Serialize};

/// The Noise protocol both daemons run.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// Mixed into the handshake so a transcript of another protocol (or version)
/// can never be replayed into this one.
pub const NOISE_PROLOGUE: &[u8] = b"p2p-broadcast peer v1";

/// The initiator's identity claim, in the third handshake message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerHello {
    /// The initiator's account name.
    pub user: String,
    /// The invitation the responder accepted.
    pub invite: u64,
}

/// Messages inside an established session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerMsg {
    /// A chat message.
    Message {
        /// 1, 2, 3, ... per session and direction.
        id: u64,
        /// UTF-8, at most 64 KiB.
        text: String,
        /// When the sender sent it, Unix ms.
        at_ms: i64,
    },
    /// Every message up to and including `upto` is stored.
    Ack {
        /// Highest stored id.
        upto: u64,
    },
    /// Keepalive.
    Ping,
    /// Answer to `Ping`.
    Pong,
    /// The sender is closing the session.
    Bye,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn peer_messages_round_trip(m in any::<PeerMsg>(), h in any::<PeerHello>()) {
            let j = serde_json::to_vec(&m).unwrap();
            prop_assert_eq!(serde_json::from_slice::<PeerMsg>(&j).unwrap(), m);
            let j = serde_json::to_vec(&h).unwrap();
            prop_assert_eq!(serde_json::from_slice::<PeerHello>(&j).unwrap(), h);
        }
    }
}

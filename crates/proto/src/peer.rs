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
//!
//! # Roles: the link preamble
//! A link may be dialled by either side, by both at once (a TCP simultaneous
//! open through two NATs), or spliced by the server's relay. Before Noise,
//! each end writes an 8-byte [`LinkPreamble`] at once: `P2PL`, version,
//! [`LinkRole`], two zero bytes. The Noise initiator is the end that
//! dialled a listener (`Dial` against `Accept`); when both ends dialled
//! (`Dial`/`Dial`, or `Relay`/`Relay`) it is the end with the lower static
//! public key ([`initiator_by_key`]).
//!
//! # Sessions over changing links
//! A session (one per accepted invitation, named by its invite id in
//! [`PeerHello`]) can move to a new link: when several links come up, or a
//! relayed session finds a direct path. The end with the lower public key
//! (the *leader*) chooses: it sends [`PeerMsg::Switch`] as the first
//! message on the chosen link, the other end answers with its own
//! `Switch`, and each then resends, on the new link, every message above the
//! other's `received_upto`. Ids keep counting across the switch and the
//! receiver drops ids it already stored, so nothing is lost, duplicated or
//! reordered. While relayed, the ends exchange [`PeerMsg::TryDirect`] with
//! their current addresses and dial each other again.

use serde::{Deserialize, Serialize};

/// The Noise protocol both daemons run.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// Mixed into the handshake so a transcript of another protocol (or version)
/// can never be replayed into this one.
pub const NOISE_PROLOGUE: &[u8] = b"p2p-broadcast peer v1";

/// Magic bytes that open a [`LinkPreamble`].
pub const LINK_MAGIC: [u8; 4] = *b"P2PL";

/// Link preamble format version.
pub const LINK_PREAMBLE_VERSION: u8 = 1;

/// Length of the link preamble on the wire.
pub const LINK_PREAMBLE_LEN: usize = 8;

/// How this end came to hold the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRole {
    /// It called `connect` (possibly meeting the other's `connect`).
    Dial,
    /// Its listener accepted the link.
    Accept,
    /// The server's relay spliced it.
    Relay,
}

/// The 8 plaintext bytes each end writes first on a peer link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPreamble(pub LinkRole);

impl LinkPreamble {
    /// The bytes on the wire.
    pub fn encode(self) -> [u8; LINK_PREAMBLE_LEN] {
        let r = match self.0 {
            LinkRole::Dial => b'D',
            LinkRole::Accept => b'A',
            LinkRole::Relay => b'R',
        };
        let m = LINK_MAGIC;
        [m[0], m[1], m[2], m[3], LINK_PREAMBLE_VERSION, r, 0, 0]
    }

    /// Parses the bytes; `None` when they are not a peer link's.
    pub fn decode(b: &[u8; LINK_PREAMBLE_LEN]) -> Option<Self> {
        if b[..4] != LINK_MAGIC || b[4] != LINK_PREAMBLE_VERSION || b[6..] != [0, 0] {
            return None;
        }
        match b[5] {
            b'D' => Some(LinkPreamble(LinkRole::Dial)),
            b'A' => Some(LinkPreamble(LinkRole::Accept)),
            b'R' => Some(LinkPreamble(LinkRole::Relay)),
            _ => None,
        }
    }
}

/// Whether this end runs the Noise initiator, given both preambles and both
/// static public keys; `None` for a combination no honest pair produces
/// (`Accept`/`Accept`, `Relay` against a direct role, or equal keys).
pub fn initiator_by_key(
    mine: LinkRole,
    theirs: LinkRole,
    my_key: &[u8],
    their_key: &[u8],
) -> Option<bool> {
    match (mine, theirs) {
        (LinkRole::Dial, LinkRole::Accept) => Some(true),
        (LinkRole::Accept, LinkRole::Dial) => Some(false),
        (LinkRole::Dial, LinkRole::Dial) | (LinkRole::Relay, LinkRole::Relay)
            if my_key != their_key =>
        {
            Some(my_key < their_key)
        }
        _ => None,
    }
}

/// Whether this end leads the session (chooses its link): the end with the
/// lower static public key.
pub fn leads(my_key: &[u8], their_key: &[u8]) -> bool {
    my_key < their_key
}

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
        /// The sender's durable id for the message (random, fixed when it
        /// entered the outbox), the same on every resend in any session: the
        /// receiver stores a `(sender, mid)` once and acknowledges repeats
        /// without storing them, so an outbox resent after a crash is
        /// delivered exactly once (SPEC §11).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mid: Option<u64>,
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
    /// The leader chose this link for the session (first message on it),
    /// or the other end agrees (its answer). Resend above `received_upto`.
    Switch {
        /// Highest message id the sender has stored from the other end.
        received_upto: u64,
    },
    /// The sender opened (`open`) or left a `chat` with the receiver: the
    /// receiver's chat says so (SPEC §11, "leaving tells the peer").
    Chat {
        /// Opened or left.
        open: bool,
    },
    /// While relayed: the sender's current addresses; dial them.
    TryDirect {
        /// `ip:port`, best first, at most [`MAX_PATHS`](crate::wire::MAX_PATHS).
        paths: Vec<String>,
    },
}

impl PeerMsg {
    /// Decodes one frame: the same result as
    /// `serde_json::from_slice::<PeerMsg>`, but a `message` frame (nearly
    /// every frame of a busy session) is read straight into its fields. The
    /// derived decoder of an internally tagged enum first buffers the whole
    /// object (every key and value) to find `type`, then reads it again: 9 %
    /// of the receiving daemon's CPU in `send -`. Anything the direct read
    /// does not take (another type, a duplicate key, a bad value) goes
    /// through the derived decoder, so errors and other frames are unchanged.
    pub fn from_json(frame: &[u8]) -> Result<PeerMsg, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Tag {
            Message,
        }
        #[derive(Deserialize)]
        struct Message {
            #[serde(rename = "type")]
            _tag: Tag,
            id: u64,
            text: String,
            at_ms: i64,
            #[serde(default)]
            mid: Option<u64>,
        }
        match serde_json::from_slice::<Message>(frame) {
            Ok(m) => Ok(PeerMsg::Message {
                id: m.id,
                text: m.text,
                at_ms: m.at_ms,
                mid: m.mid,
            }),
            Err(_) => serde_json::from_slice(frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn link_preambles_round_trip_and_roles_agree() {
        for role in [LinkRole::Dial, LinkRole::Accept, LinkRole::Relay] {
            let b = LinkPreamble(role).encode();
            assert_eq!(LinkPreamble::decode(&b), Some(LinkPreamble(role)));
        }
        assert_eq!(LinkPreamble::decode(b"P2PB\x01\x00\x00\x00"), None);
        let (lo, hi) = ([1u8; 32], [2u8; 32]);
        for (a, b) in [
            (LinkRole::Dial, LinkRole::Accept),
            (LinkRole::Dial, LinkRole::Dial),
            (LinkRole::Relay, LinkRole::Relay),
        ] {
            let x = initiator_by_key(a, b, &lo, &hi).unwrap();
            let y = initiator_by_key(b, a, &hi, &lo).unwrap();
            assert_ne!(x, y, "exactly one initiator for {a:?}/{b:?}");
        }
        assert_eq!(
            initiator_by_key(LinkRole::Accept, LinkRole::Accept, &lo, &hi),
            None
        );
        assert_eq!(
            initiator_by_key(LinkRole::Dial, LinkRole::Relay, &lo, &hi),
            None
        );
        assert_eq!(
            initiator_by_key(LinkRole::Dial, LinkRole::Dial, &lo, &lo),
            None
        );
        assert!(leads(&lo, &hi) && !leads(&hi, &lo));
    }

    proptest! {
        #[test]
        fn peer_messages_round_trip(m in any::<PeerMsg>(), h in any::<PeerHello>()) {
            let j = serde_json::to_vec(&m).unwrap();
            prop_assert_eq!(PeerMsg::from_json(&j).unwrap(), m.clone());
            prop_assert_eq!(serde_json::from_slice::<PeerMsg>(&j).unwrap(), m);
            let j = serde_json::to_vec(&h).unwrap();
            prop_assert_eq!(serde_json::from_slice::<PeerHello>(&j).unwrap(), h);
        }
    }

    /// The direct read of `message` frames agrees with the derived decoder
    /// on what a peer may send: keys in any order, unknown keys, `mid`
    /// missing or null, and on what it refuses (or reads as another type).
    #[test]
    fn from_json_agrees_with_the_derived_decoder() {
        let frames: &[&str] = &[
            r#"{"type":"message","id":1,"text":"hi","at_ms":5,"mid":7}"#,
            r#"{"id":1,"at_ms":-5,"text":"h\u00e9\n","type":"message"}"#,
            r#"{"type":"message","id":1,"text":"x","at_ms":5,"mid":null,"later":[1,{"a":2}]}"#,
            r#"{"type":"message","id":1,"text":"x","at_ms":5,"id":2}"#,
            r#"{"type":"message","type":"ack","id":1,"text":"x","at_ms":5}"#,
            r#"{"type":"message","id":-1,"text":"x","at_ms":5}"#,
            r#"{"type":"message","id":1.5,"text":"x","at_ms":5}"#,
            r#"{"type":"message","id":1,"text":7,"at_ms":5}"#,
            r#"{"type":"message","id":1,"at_ms":5}"#,
            r#"{"type":"Message","id":1,"text":"x","at_ms":5}"#,
            r#"{"type":"ack","upto":3}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"switch","received_upto":2,"text":"x"}"#,
            r#"{"type":"message","id":1,"text":"x","at_ms":5} trailing"#,
            r#"["message",1,"x",5]"#,
            "not json",
        ];
        for f in frames {
            let derived = serde_json::from_slice::<PeerMsg>(f.as_bytes());
            let direct = PeerMsg::from_json(f.as_bytes());
            match (&derived, &direct) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{f}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{f}: derived {derived:?}, direct {direct:?}"),
            }
        }
    }
}

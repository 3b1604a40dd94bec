//! The server's plaintext 8-byte preamble, sent before TLS (see the
//! module documentation of [`crate::wire`]).

use std::time::Duration;

use crate::ProtoError;

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

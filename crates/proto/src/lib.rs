//! Shared types for p2p-broadcast: the wire protocol (daemon ↔ server,
//! [`wire`]), the control protocol (p2pctl ↔ daemon, [`ctl`]), their framing
//! ([`codec`]), the limits both sides enforce ([`limits`]) and the few rules
//! every program must agree on (user names, timestamps, fingerprints).
//!
//! This crate holds no I/O policy: no sockets, no TLS, no tasks, no files;
//! the system helpers (paths, durable writes, logging, signals, password
//! input) live in `p2p-sys`.

pub mod address;
pub mod codec;
pub mod ctl;
pub mod fingerprint;
pub mod limits;
pub mod names;
pub mod peer;
pub mod safety;
pub mod secret;
pub mod time;
pub mod wire;

pub use fingerprint::Fingerprint;
pub use secret::Secret;

/// Errors from decoding frames or validating shared rules.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The underlying socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame or line was larger than the limit for its direction.
    #[error("frame too large (limit {limit} bytes)")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A frame was not valid JSON for the expected message type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The 8-byte server greeting was not ours.
    #[error("not a p2p-broadcast server (bad greeting)")]
    BadPreamble,
}

//! Why a connection ended abnormally: one typed reason per way, logged once
//! by [`super::serve`]. Normal ends (client closed, logged out, shutdown)
//! are plain `&'static str` reasons, logged at debug.

use std::time::Duration;

use p2p_proto::ProtoError;

use crate::error::ServerError;

/// An abnormal end of one connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Dropped {
    /// The login deadline passed; `during` says at which step.
    #[error("no login within {limit:?} ({during})")]
    LoginTimeout {
        /// The configured login timeout.
        limit: Duration,
        /// The step that was waiting.
        during: &'static str,
    },
    /// Nothing after the preamble within the first-byte timeout.
    #[error("no TLS ClientHello within {0:?}")]
    Silent(Duration),
    /// The preamble could not be written.
    #[error("preamble write failed: {0}")]
    Preamble(std::io::Error),
    /// Reading the first byte failed.
    #[error("read failed before TLS: {0}")]
    BeforeTls(std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// An undecodable frame before login.
    #[error("bad frame before login: {0}")]
    FrameBeforeLogin(ProtoError),
    /// Something other than `Login` first.
    #[error("message before login")]
    NotLoginFirst,
    /// The client speaks another protocol version.
    #[error("protocol version {0}")]
    Version(u32),
    /// The peer information in `Login` is unusable.
    #[error(transparent)]
    BadPeer(#[from] BadPeer),
    /// A write to the client failed.
    #[error("write failed: {0}")]
    Write(ProtoError),
    /// A write to the client did not finish in time.
    #[error("write timed out (client not reading)")]
    WriteTimeout,
    /// Broadcast state could not be read.
    #[error("cannot read broadcast {what}: {source}")]
    Store {
        /// State or backlog.
        what: &'static str,
        /// The store's error.
        source: ServerError,
    },
    /// The client sent nothing for the idle timeout.
    #[error("idle (keepalive missed)")]
    Idle,
    /// The broadcast hub is gone (server stopping).
    #[error("broadcast hub stopped")]
    HubStopped,
    /// An undecodable frame after login.
    #[error("bad frame: {0}")]
    Frame(ProtoError),
    /// `Login` on a logged-in connection.
    #[error("second login on one connection")]
    SecondLogin,
}

/// Whether a read error is only the client going away (EOF without TLS
/// `close_notify`, reset, aborted): an ordinary disconnect, not a bad
/// frame (rustls words the first with a docs.rs link that alarms readers).
pub(crate) fn is_disconnect(e: &ProtoError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(e, ProtoError::Io(io)
        if matches!(io.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe))
}

/// What is wrong with a `Login`'s peer information.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadPeer {
    /// Not 64 hex digits.
    #[error("public key must be 32 bytes of hex")]
    Key,
    /// `advertise` is not `IP:PORT`.
    #[error("advertise address {0:?} is not IP:PORT")]
    Advertise(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_client_going_away_is_not_a_bad_frame() {
        for kind in [
            ErrorKind::UnexpectedEof,
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::BrokenPipe,
        ] {
            assert!(
                is_disconnect(&ProtoError::Io(Error::new(kind, "x"))),
                "{kind:?}"
            );
        }
        assert!(!is_disconnect(&ProtoError::Io(Error::new(
            ErrorKind::InvalidData,
            "x"
        ))));
    }
}

//! The one place where the lower layers' errors become control errors: the
//! error code (and so p2pctl's exit code) is chosen here, the message is
//! the lower error's own (which names the peer, the address or the server
//! state).

use p2p_proto::ctl::{CtlError, ErrorCode};
use p2p_proto::wire::{self, RefusalCode};

use crate::link::{LinkError, LoginError};
use crate::peer::{PeerError, SetupError};

impl LinkError {
    /// The control error code (and so the exit-code class) of this error.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            LinkError::ShuttingDown | LinkError::Unexpected(_) => ErrorCode::Internal,
            LinkError::Closed | LinkError::Lost | LinkError::Connecting { .. } => {
                ErrorCode::ServerUnreachable
            }
            LinkError::Replaced | LinkError::NotLoggedIn => ErrorCode::NotLoggedIn,
            LinkError::Refused { code, .. } => match code {
                RefusalCode::NotOnline => ErrorCode::NotOnline,
                RefusalCode::NoInvitation | RefusalCode::BadRequest => ErrorCode::BadRequest,
                RefusalCode::RateLimited => ErrorCode::RateLimited,
                RefusalCode::TooLarge => ErrorCode::TooLarge,
                RefusalCode::Internal | RefusalCode::Unknown(_) => ErrorCode::Other,
            },
        }
    }
}

impl From<LinkError> for CtlError {
    fn from(e: LinkError) -> Self {
        CtlError::new(e.code(), e.to_string())
    }
}

impl LoginError {
    /// The control error code of this error: a refusal's code says what the
    /// user must change (credentials, name, version), an unreachable
    /// server that the daemon keeps trying.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            LoginError::BadFingerprint => ErrorCode::BadRequest,
            LoginError::ShuttingDown
            | LoginError::PinFileDamaged(_)
            | LoginError::PinNotSaved(_)
            | LoginError::SessionNotRemoved(_) => ErrorCode::Internal,
            LoginError::Unreachable(_)
            | LoginError::UnreachableRetrying { .. }
            | LoginError::NotOurServer(_)
            | LoginError::FirstContact { .. } => ErrorCode::ServerUnreachable,
            LoginError::CertificateChanged { .. } | LoginError::FingerprintMismatch { .. } => {
                ErrorCode::CertificateChanged
            }
            LoginError::NoPin { .. } => ErrorCode::NotLoggedIn,
            LoginError::Refused { code, .. } => match code {
                wire::LoginError::BadCredentials => ErrorCode::AuthFailed,
                wire::LoginError::BadToken => ErrorCode::NotLoggedIn,
                wire::LoginError::Throttled => ErrorCode::Throttled,
                wire::LoginError::BadUsername | wire::LoginError::BadPassword => {
                    ErrorCode::BadRequest
                }
                wire::LoginError::RegistrationClosed => ErrorCode::RegistrationClosed,
                wire::LoginError::UserExists => ErrorCode::UserExists,
                wire::LoginError::VersionMismatch => ErrorCode::VersionMismatch,
                // The link retries these rather than refusing (connect.rs).
                wire::LoginError::Busy | wire::LoginError::Internal => ErrorCode::ServerUnreachable,
            },
            LoginError::Retrying(e) | LoginError::KeptPrevious(e) => e.code(),
        }
    }
}

impl From<LoginError> for CtlError {
    fn from(e: LoginError) -> Self {
        CtlError::new(e.code(), e.to_string())
    }
}

impl PeerError {
    /// The control error code of this error.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            PeerError::Declined { .. } | PeerError::Ended { .. } => ErrorCode::Rejected,
            PeerError::Expired { .. } | PeerError::NoAnswer { .. } => ErrorCode::Timeout,
            PeerError::Setup(e) => e.code(),
            PeerError::WentOffline { .. } => ErrorCode::NotOnline,
            PeerError::NoRequest { .. } => ErrorCode::NoRequest,
            PeerError::KeyChanged { .. } => ErrorCode::KeyChanged,
            PeerError::NotContact { .. } => ErrorCode::NotContact,
            PeerError::WrongAnswer | PeerError::ShuttingDown => ErrorCode::Internal,
            PeerError::Link(e) => e.code(),
            PeerError::SessionFailed { .. } | PeerError::SessionEnded { .. } => {
                ErrorCode::NoSession
            }
        }
    }
}

impl SetupError {
    /// The control error code: the peer did not come within the deadline
    /// is exit 5, as a `connect` or `accept` that timed out always was.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            SetupError::MalformedKey { .. } => ErrorCode::Internal,
            SetupError::NoSession { .. } => ErrorCode::Timeout,
        }
    }
}

impl From<SetupError> for CtlError {
    fn from(e: SetupError) -> Self {
        CtlError::new(e.code(), e.to_string())
    }
}

impl From<PeerError> for CtlError {
    fn from(e: PeerError) -> Self {
        CtlError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::wire::Reply;

    use crate::link::reply_error;

    /// A refusal keeps the server's words and maps its code; a code this
    /// build does not know is still an error with the server's message.
    #[test]
    fn server_refusals_map_to_control_codes() {
        let refused = |code| Reply::Error {
            code,
            message: "slow down".into(),
        };
        let e = CtlError::from(reply_error(refused(RefusalCode::RateLimited)));
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::RateLimited, "slow down")
        );
        let e = CtlError::from(reply_error(refused(RefusalCode::Unknown("x_new".into()))));
        assert_eq!(e.code, ErrorCode::Other);
        let e = CtlError::from(reply_error(Reply::Users { users: vec![] }));
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(
            e.message.starts_with("unexpected server reply"),
            "{}",
            e.message
        );
    }

    /// Offline states keep the hints users act on.
    #[test]
    fn offline_states_keep_their_hints() {
        let e = CtlError::from(LinkError::Connecting {
            attempt: 3,
            next_try_s: 4,
        });
        assert_eq!(e.code, ErrorCode::ServerUnreachable);
        assert!(
            e.message.contains("attempt 3, next try in 4s"),
            "{}",
            e.message
        );
        let e = CtlError::from(LinkError::NotLoggedIn);
        assert_eq!(e.code, ErrorCode::NotLoggedIn);
        assert!(e.message.contains("p2pctl login"), "{}", e.message);
    }

    fn seen(e: impl Into<CtlError>) -> (ErrorCode, String) {
        let e = e.into();
        (e.code, e.message)
    }

    /// What `connect`, `accept`, `reject` and `send` users see: the codes
    /// (exit codes) and words they saw when the peer layer still built
    /// control errors itself.
    #[test]
    fn peer_errors_keep_their_codes_and_words() {
        let bob = || "bob".to_string();
        let cases = [
            (
                PeerError::Declined { to: bob() },
                ErrorCode::Rejected,
                "bob declined the invitation",
            ),
            (
                PeerError::Expired { to: bob() },
                ErrorCode::Timeout,
                "bob did not answer in time",
            ),
            (
                PeerError::WentOffline { to: bob() },
                ErrorCode::NotOnline,
                "bob went offline",
            ),
            (
                PeerError::Ended { to: bob() },
                ErrorCode::Rejected,
                "the invitation to bob ended",
            ),
            (
                PeerError::NoAnswer {
                    to: bob(),
                    waited_s: 65,
                },
                ErrorCode::Timeout,
                "bob did not answer within 65s",
            ),
            (
                PeerError::NoRequest { from: bob() },
                ErrorCode::NoRequest,
                "bob has not invited you (see p2pctl requests)",
            ),
            (
                PeerError::Setup(SetupError::NoSession {
                    user: bob(),
                    secs: 5,
                    why: "no direct path worked".into(),
                }),
                ErrorCode::Timeout,
                "could not reach bob within 5s: no direct path worked",
            ),
            (
                PeerError::Setup(SetupError::MalformedKey { user: bob() }),
                ErrorCode::Internal,
                "the server gave a malformed key for bob",
            ),
            (
                PeerError::WrongAnswer,
                ErrorCode::Internal,
                "the server answered for someone else",
            ),
            (
                PeerError::ShuttingDown,
                ErrorCode::Internal,
                "daemon is shutting down",
            ),
            (
                PeerError::Link(LinkError::Lost),
                ErrorCode::ServerUnreachable,
                "server connection lost; try again",
            ),
            (
                PeerError::SessionFailed {
                    peer: bob(),
                    source: crate::peer::SessionError::WriteTimedOut,
                },
                ErrorCode::NoSession,
                "session with bob failed: peer stopped reading (write timed out)",
            ),
            (
                PeerError::SessionEnded {
                    peer: bob(),
                    reason: "bob closed the link".into(),
                },
                ErrorCode::NoSession,
                "session with bob ended (bob closed the link) before the messages were acknowledged",
            ),
        ];
        for (e, code, message) in cases {
            assert_eq!(seen(e), (code, message.to_string()));
        }
    }

    /// What `login`, `register` and `logout` users see, as before the link
    /// had its own error type.
    #[test]
    fn login_errors_keep_their_codes_and_words() {
        let refused = |code| LoginError::Refused {
            code,
            message: "no".into(),
        };
        for (code, expected) in [
            (wire::LoginError::BadCredentials, ErrorCode::AuthFailed),
            (wire::LoginError::BadToken, ErrorCode::NotLoggedIn),
            (wire::LoginError::Throttled, ErrorCode::Throttled),
            (wire::LoginError::BadUsername, ErrorCode::BadRequest),
            (wire::LoginError::BadPassword, ErrorCode::BadRequest),
            (
                wire::LoginError::RegistrationClosed,
                ErrorCode::RegistrationClosed,
            ),
            (wire::LoginError::UserExists, ErrorCode::UserExists),
            (
                wire::LoginError::VersionMismatch,
                ErrorCode::VersionMismatch,
            ),
        ] {
            assert_eq!(seen(refused(code)), (expected, "no".to_string()));
        }
        let disk = || crate::error::DaemonError::Config("disk full".into());
        let cases = [
            (
                LoginError::BadFingerprint,
                ErrorCode::BadRequest,
                "--fingerprint must look like SHA256:<64 hex digits>".to_string(),
            ),
            (
                LoginError::ShuttingDown,
                ErrorCode::Internal,
                "daemon is shutting down".into(),
            ),
            (
                LoginError::UnreachableRetrying {
                    why: "no answer from h:1 (timed out)".into(),
                    next_try_s: 2,
                },
                ErrorCode::ServerUnreachable,
                "no answer from h:1 (timed out); p2pd keeps trying in the background \
                 (next try in 2s; see p2pctl status)"
                    .into(),
            ),
            (
                LoginError::KeptPrevious(Box::new(LoginError::Unreachable("busy".into()))),
                ErrorCode::ServerUnreachable,
                "busy (still logged in as before)".into(),
            ),
            (
                LoginError::KeptPrevious(Box::new(refused(wire::LoginError::BadCredentials))),
                ErrorCode::AuthFailed,
                "no (still logged in as before)".into(),
            ),
            (
                LoginError::Retrying(Box::new(LoginError::PinNotSaved(disk()))),
                ErrorCode::Internal,
                "logged in, but cannot pin the server's certificate (disk full); \
                 p2pd keeps trying in the background (see p2pctl status)"
                    .into(),
            ),
            (
                LoginError::CertificateChanged {
                    server: "h:1".into(),
                    seen: "SHA256:bb".into(),
                    pinned: "SHA256:aa".into(),
                },
                ErrorCode::CertificateChanged,
                "server h:1 presented certificate SHA256:bb, but SHA256:aa is pinned: \
                 this may be an impostor. If its operator confirms the change, \
                 log in again with --fingerprint SHA256:bb"
                    .into(),
            ),
            (
                LoginError::NoPin {
                    server: "h:1".into(),
                    pin_file: "/s/known_servers.json".into(),
                },
                ErrorCode::NotLoggedIn,
                "no pinned certificate for h:1 in /s/known_servers.json, although a session \
                 with it is saved: refusing to send that session to a server that cannot be \
                 checked. Log in again with --fingerprint (ask the server's operator for \
                 `p2p-server fingerprint`)"
                    .into(),
            ),
            (
                LoginError::PinFileDamaged(disk()),
                ErrorCode::Internal,
                "cannot read the pinned server certificates (disk full); refusing to connect \
                 without them. Repair that file, or move it away and log in again with \
                 --fingerprint (ask the server's operator for `p2p-server fingerprint`)"
                    .into(),
            ),
            (
                LoginError::SessionNotRemoved(disk()),
                ErrorCode::Internal,
                "logged out, but the saved session could not be removed (disk full); \
                 delete it by hand"
                    .into(),
            ),
        ];
        for (e, code, message) in cases {
            assert_eq!(seen(e), (code, message));
        }
    }
}

//! The one place where the lower layers' errors become control errors: the
//! error code (and so p2pctl's exit code) is chosen here, the message is
//! the lower error's own (which names the peer, the address or the server
//! state).

use p2p_proto::ctl::{CtlError, ErrorCode};
use p2p_proto::wire::RefusalCode;

use crate::link::LinkError;
use crate::peer::{DialError, SetupError};

impl From<LinkError> for CtlError {
    fn from(e: LinkError) -> Self {
        let code = match &e {
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
        };
        CtlError::new(code, e.to_string())
    }
}

impl From<DialError> for CtlError {
    fn from(e: DialError) -> Self {
        CtlError::new(ErrorCode::Other, e.to_string())
    }
}

impl From<SetupError> for CtlError {
    fn from(e: SetupError) -> Self {
        // The peer did not come within the deadline: exit 5, as a `connect`
        // or `accept` that timed out always did.
        let code = match &e {
            SetupError::MalformedKey { .. } => ErrorCode::Internal,
            SetupError::NoSession { .. } => ErrorCode::Timeout,
        };
        CtlError::new(code, e.to_string())
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
}

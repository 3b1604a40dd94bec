//! Why the server refused a logged-in request: one typed error, turned into
//! the wire's `Reply::Error` in one place ([`From<Refused> for Reply`]).
//! The texts are what clients have always been shown.

use std::time::Duration;

use p2p_proto::wire::{RefusalCode, Reply};

/// A refused request; the session goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `invite` naming oneself.
    #[error("you cannot invite yourself")]
    InviteSelf,
    /// The invitee has no session (or no account: the same answer).
    #[error("{0} is not online")]
    NotOnline(String),
    /// The inviter left before the answer.
    #[error("{0} is no longer online")]
    NoLongerOnline(String),
    /// No open invitation with this id for this session.
    #[error("no open invitation {0} for you")]
    NoInvitation(u64),
    /// An invitation limit; `what` says which.
    #[error("{what}; try again in {}", p2p_proto::time::wait_text(*.wait))]
    InviteRate {
        /// Which limit, for people.
        what: String,
        /// Until one more fits.
        wait: Duration,
    },
    /// The broadcast text is over the size limit.
    #[error("broadcast is {size} bytes; the limit is {limit}. Nothing was stored")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The per-user broadcast limit.
    #[error(
        "at most {limit} broadcasts per {}; try again in {}. Nothing was stored",
        p2p_proto::time::human_duration(*.window),
        p2p_proto::time::wait_text(*.wait)
    )]
    BroadcastRate {
        /// Broadcasts per window.
        limit: u32,
        /// The window.
        window: Duration,
        /// Until one more fits.
        wait: Duration,
    },
    /// The store failed; the cause is logged, not sent.
    #[error("the server could not store the broadcast; try again")]
    StoreFailed,
    /// The shared database could not be reached for an invitation or an
    /// answer; the cause is logged, not sent.
    #[error("the server could not reach its database; try again")]
    Database,
}

impl Refused {
    /// The machine-readable code.
    pub fn code(&self) -> RefusalCode {
        match self {
            Refused::InviteSelf => RefusalCode::BadRequest,
            Refused::NotOnline(_) | Refused::NoLongerOnline(_) => RefusalCode::NotOnline,
            Refused::NoInvitation(_) => RefusalCode::NoInvitation,
            Refused::InviteRate { .. } | Refused::BroadcastRate { .. } => RefusalCode::RateLimited,
            Refused::TooLarge { .. } => RefusalCode::TooLarge,
            Refused::StoreFailed | Refused::Database => RefusalCode::Internal,
        }
    }
}

impl From<Refused> for Reply {
    fn from(r: Refused) -> Reply {
        Reply::Error {
            code: r.code(),
            message: r.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_codes_and_texts() {
        let cases = [
            (
                Refused::InviteSelf,
                "bad_request",
                "you cannot invite yourself",
            ),
            (
                Refused::NotOnline("bob".into()),
                "not_online",
                "bob is not online",
            ),
            (
                Refused::NoInvitation(7),
                "no_invitation",
                "no open invitation 7 for you",
            ),
            (
                Refused::InviteRate {
                    what: "too many invitations".into(),
                    wait: Duration::from_millis(29_001),
                },
                "rate_limited",
                "too many invitations; try again in 30s",
            ),
            (
                Refused::BroadcastRate {
                    limit: 10,
                    window: Duration::from_secs(3600),
                    wait: Duration::from_millis(1_234_900),
                },
                "rate_limited",
                "at most 10 broadcasts per 1h; try again in 20m 35s. Nothing was stored",
            ),
            (
                Refused::TooLarge {
                    size: 4097,
                    limit: 4096,
                },
                "too_large",
                "broadcast is 4097 bytes; the limit is 4096. Nothing was stored",
            ),
            (
                Refused::StoreFailed,
                "internal",
                "the server could not store the broadcast; try again",
            ),
        ];
        for (r, code, text) in cases {
            let Reply::Error { code: c, message } = Reply::from(r) else {
                unreachable!()
            };
            assert_eq!((c.as_str(), message.as_str()), (code, text));
        }
    }
}

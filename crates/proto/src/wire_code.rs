//! The machine-readable code of a refused request (`Reply::Error`).
//!
//! Serialized as the same snake_case strings the wire always carried. A code
//! this build does not know decodes to [`RefusalCode::Unknown`] (and encodes
//! back to the same string), so a newer server's new code never breaks an
//! older daemon's session, and the reverse.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why the server refused a request; the session goes on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum RefusalCode {
    /// The invitee (or the inviter, at answer time) is not online.
    NotOnline,
    /// No open invitation with that id for this session.
    NoInvitation,
    /// Over a rate limit; the message says when to try again.
    RateLimited,
    /// The request makes no sense (inviting yourself, ...).
    BadRequest,
    /// The broadcast is over the size limit.
    TooLarge,
    /// The server failed (e.g. could not store a broadcast).
    Internal,
    /// A code this build does not know, kept as sent.
    Unknown(
        // Never one of the known strings, or it would not round-trip.
        #[cfg_attr(test, proptest(strategy = "\"x_[a-z_]{0,12}\""))] String,
    ),
}

impl RefusalCode {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            RefusalCode::NotOnline => "not_online",
            RefusalCode::NoInvitation => "no_invitation",
            RefusalCode::RateLimited => "rate_limited",
            RefusalCode::BadRequest => "bad_request",
            RefusalCode::TooLarge => "too_large",
            RefusalCode::Internal => "internal",
            RefusalCode::Unknown(s) => s,
        }
    }

    /// The code for a wire string; unknown strings are kept.
    pub fn parse(s: &str) -> Self {
        match s {
            "not_online" => RefusalCode::NotOnline,
            "no_invitation" => RefusalCode::NoInvitation,
            "rate_limited" => RefusalCode::RateLimited,
            "bad_request" => RefusalCode::BadRequest,
            "too_large" => RefusalCode::TooLarge,
            "internal" => RefusalCode::Internal,
            other => RefusalCode::Unknown(other.to_string()),
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RefusalCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RefusalCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(RefusalCode::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [(RefusalCode, &str); 6] = [
        (RefusalCode::NotOnline, "not_online"),
        (RefusalCode::NoInvitation, "no_invitation"),
        (RefusalCode::RateLimited, "rate_limited"),
        (RefusalCode::BadRequest, "bad_request"),
        (RefusalCode::TooLarge, "too_large"),
        (RefusalCode::Internal, "internal"),
    ];

    #[test]
    fn known_codes_keep_their_wire_strings() {
        for (code, s) in KNOWN {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<RefusalCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn an_unknown_code_decodes_and_survives() {
        let reply: super::super::Reply =
            serde_json::from_str(r#"{"kind":"error","code":"quota_exceeded","message":"m"}"#)
                .unwrap();
        let super::super::Reply::Error { code, .. } = &reply else {
            panic!("{reply:?}")
        };
        assert_eq!(*code, RefusalCode::Unknown("quota_exceeded".into()));
        let back = serde_json::to_string(&reply).unwrap();
        assert!(back.contains(r#""code":"quota_exceeded""#), "{back}");
    }
}

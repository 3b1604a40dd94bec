//! Range checks on what the server sends, where it enters the daemon
//! (SPEC §8): a name, a key, an address or a time that no honest server
//! sends is refused here, so nothing below has to trust it.

use std::net::SocketAddr;

use p2p_proto::names::validate_username;
use p2p_proto::time;
use p2p_proto::wire::{Contact, ServerEvent};

/// Length of an X25519 public key in hex.
const PUBLIC_KEY_HEX_LEN: usize = 64;

/// Why an event from the server was refused at the entry check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEvent {
    /// A user name no account can have.
    #[error("{what} is not a valid user name: {reason}")]
    Name {
        /// Whose name ("inviter", "invitee", "contact").
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A contact address that is not `ip:port`.
    #[error("contact address is not ip:port")]
    Address,
    /// A contact key that is not an X25519 public key in hex.
    #[error("contact key is not 32 bytes of hex")]
    Key,
    /// An invitation expiry no clock can reach.
    #[error("invitation expiry out of range")]
    Expiry,
}

fn name(what: &'static str, n: &str) -> Result<(), BadEvent> {
    validate_username(n).map_err(|e| BadEvent::Name {
        what,
        reason: e.to_string(),
    })
}

fn contact(c: &Contact) -> Result<(), BadEvent> {
    name("contact", &c.user)?;
    c.addr
        .parse::<SocketAddr>()
        .map_err(|_| BadEvent::Address)?;
    if c.public_key.len() != PUBLIC_KEY_HEX_LEN || hex::decode(&c.public_key).is_err() {
        return Err(BadEvent::Key);
    }
    Ok(())
}

/// Whether an event from the server is one an honest server could send.
/// Broadcasts are checked by the inbox (`inbox::refuse_broadcast`), which
/// must still acknowledge a refused one.
pub(super) fn server_event(event: &ServerEvent) -> Result<(), BadEvent> {
    match event {
        ServerEvent::Invitation {
            from, expires_ms, ..
        } => {
            name("inviter", from)?;
            if !time::in_range(*expires_ms) {
                return Err(BadEvent::Expiry);
            }
            Ok(())
        }
        ServerEvent::Accepted { contact: c, .. } => contact(c),
        ServerEvent::Declined { to, .. } => name("invitee", to),
        ServerEvent::InvitationClosed { .. } | ServerEvent::Broadcast { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::wire::InviteEnd;

    fn good_contact() -> Contact {
        Contact {
            user: "bob".into(),
            addr: "127.0.0.1:4000".into(),
            public_key: "ab".repeat(32),
            paths: Vec::new(),
            your_addr: None,
            relay: None,
        }
    }

    #[test]
    fn honest_events_pass() {
        let inv = ServerEvent::Invitation {
            invite: 1,
            from: "alice".into(),
            expires_ms: time::now_ms(),
        };
        assert_eq!(server_event(&inv), Ok(()));
        let acc = ServerEvent::Accepted {
            invite: 1,
            contact: good_contact(),
        };
        assert_eq!(server_event(&acc), Ok(()));
    }

    #[test]
    fn impossible_values_are_refused() {
        let bad_name = ServerEvent::Invitation {
            invite: 1,
            from: "\u{1b}]52;c;evil\u{7}".into(),
            expires_ms: 0,
        };
        assert!(server_event(&bad_name).is_err());
        let bad_time = ServerEvent::Invitation {
            invite: 1,
            from: "alice".into(),
            expires_ms: i64::MIN,
        };
        assert!(server_event(&bad_time).is_err());
        let declined = ServerEvent::Declined {
            invite: 1,
            to: String::new(),
            reason: InviteEnd::Rejected,
        };
        assert!(server_event(&declined).is_err());
        let mut nowhere = good_contact();
        nowhere.addr = "nowhere".into();
        let ev = ServerEvent::Accepted {
            invite: 1,
            contact: nowhere,
        };
        assert!(server_event(&ev).is_err());
        let mut short_key = good_contact();
        short_key.public_key = "ab".into();
        let ev = ServerEvent::Accepted {
            invite: 1,
            contact: short_key,
        };
        assert!(server_event(&ev).is_err());
    }
}

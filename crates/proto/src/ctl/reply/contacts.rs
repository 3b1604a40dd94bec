//! Result documents of the §11 commands (SPEC Appendix A, "# §11"):
//! contacts, the outbox, history, verification and the chat notice.

use serde::{Deserialize, Serialize};

use super::SendStatus;

/// One contact (SPEC §11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ContactInfo {
    /// Account name.
    pub user: String,
    /// Contact since (RFC 3339).
    pub since: String,
    /// Whether they have a session with us now.
    pub online: bool,
    /// Whether the safety number was confirmed (`verify --confirm`) for
    /// their current key.
    pub verified: bool,
    /// Their X25519 public key, hex (the one we trust).
    pub key: String,
    /// The server handed out a different key than `key` and it was not
    /// confirmed or trusted yet.
    #[serde(default)]
    pub key_changed: bool,
    /// Sending is stopped until `trust`: the key changed after it was
    /// verified.
    #[serde(default)]
    pub held: bool,
}

/// Result of `contacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ContactList {
    /// By name.
    pub contacts: Vec<ContactInfo>,
    /// Blocked users, by name.
    #[serde(default)]
    pub blocked: Vec<String>,
}

/// Result of `forget`, `block` and `unblock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ContactDone {
    /// The user.
    pub user: String,
    /// Whether they were a contact (and are no longer).
    pub forgotten: bool,
    /// Whether their invitations are ignored from now on.
    pub blocked: bool,
    /// Queued messages to them that were dropped.
    #[serde(default)]
    pub dropped: u64,
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OutboxEntry {
    /// The contact.
    pub to: String,
    /// Its id (as `send` reported it).
    pub id: u64,
    /// The text.
    pub text: String,
    /// When it was queued (RFC 3339).
    pub at: String,
}

/// Result of `outbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OutboxList {
    /// Oldest first.
    pub outbox: Vec<OutboxEntry>,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Received.
    In,
    /// Sent.
    Out,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct HistoryEntry {
    /// In or out.
    pub dir: Direction,
    /// The text.
    pub text: String,
    /// When it was sent (RFC 3339).
    pub at: String,
    /// For `out`: where it stands; for `in`: `delivered`.
    pub status: SendStatus,
    /// The sender's id for it.
    pub id: u64,
}

/// Result of `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct HistoryList {
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
}

/// The `verify` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct VerifyInfo {
    /// The contact.
    pub user: String,
    /// 60 digits in 12 groups of 5, the same on both sides
    /// ([`crate::safety::safety_number`]).
    pub safety_number: String,
    /// Whether the contact is verified (now, after `--confirm`).
    pub verified: bool,
    /// The contact's key changed after it was verified: the number is the
    /// one of the NEW key, and `trust` must accept it before anything is
    /// sent (or it can be confirmed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// Result of `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct VerifyDone {
    /// The safety number and state.
    pub verify: VerifyInfo,
}

/// Result of the `chat` notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ChatDone {
    /// The peer.
    pub peer: String,
    /// Whether a session carried the notice to them.
    pub told: bool,
}

/// Result of `trust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TrustDone {
    /// The contact.
    pub trusted: String,
    /// The key now trusted, hex.
    pub key: String,
}

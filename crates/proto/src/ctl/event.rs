//! Events written to `watch` (and `inbox --follow`) connections.

use serde::{Deserialize, Serialize};

use super::{InboxEntry, InboxKind, PendingRequest, ServerStatus, SessionInfo};

/// Events written to `watch` connections, one per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The server session changed state.
    Server(ServerStatus),
    /// Someone invites us; answer with `accept` or `reject`.
    Request(PendingRequest),
    /// A peer session is up.
    Connected(SessionInfo),
    /// Our invitation was refused, expired, or the invitee left.
    Rejected {
        /// The invitee.
        peer: String,
        /// `rejected`, `expired` or `offline`.
        reason: String,
    },
    /// A message arrived (already stored in the inbox).
    Message(InboxEntry),
    /// A broadcast arrived (already stored in the inbox).
    Broadcast(InboxEntry),
    /// A peer session ended.
    Disconnected {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A message to a contact without a session went into the outbox.
    Queued {
        /// The contact.
        to: String,
        /// Its id (as `send` reported it).
        id: u64,
    },
    /// A queued message was stored by the peer.
    Delivered {
        /// The contact.
        to: String,
        /// Its id (as `send` reported it).
        id: u64,
    },
    /// A peer opened or left a chat with us.
    Chat {
        /// The peer.
        peer: String,
        /// Opened (true) or left.
        open: bool,
    },
    /// The server gave a different key for a user than we saw before.
    KeyChanged {
        /// The user.
        peer: String,
        /// The key we knew.
        old_key: String,
        /// The key we were given.
        new_key: String,
    },
}

impl Event {
    /// The inbox entry a `message` or `broadcast` event carries.
    pub fn inbox_entry(&self) -> Option<&InboxEntry> {
        match self {
            Event::Message(e) | Event::Broadcast(e) => Some(e),
            _ => None,
        }
    }

    /// The event that announces a stored inbox entry.
    pub fn for_entry(e: InboxEntry) -> Event {
        match e.kind {
            InboxKind::Message => Event::Message(e),
            InboxKind::Broadcast => Event::Broadcast(e),
        }
    }
}

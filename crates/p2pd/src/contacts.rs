//! Contacts (SPEC §11): standing consent between two users, made by an
//! accepted invitation, kept in `inbox.db` (tables `contacts` and
//! `blocked`) so it survives restarts.
//!
//! A contact carries the key we trust for them. When the server hands out
//! another key (at an invitation), [`Contacts::seen`] decides:
//!
//! - an unverified contact takes the new key and is marked `key_changed`
//!   (commands that touch them warn until `verify --confirm` or `trust`);
//! - a verified contact keeps the old key, remembers the new one and is
//!   *held*: no longer verified, and nothing is sent to them until `trust`
//!   accepts the new key (SPEC §11, code `key_changed`).
//!
//! Calls block (SQLite with `synchronous=FULL`): run them on the blocking
//! pool from async code.

use rusqlite::{params, OptionalExtension, Row};

use crate::error::Result;
use crate::inbox::Inbox;

/// One contact as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Account name.
    pub user: String,
    /// The X25519 public key we trust for them, hex.
    pub key: String,
    /// Contact since, Unix ms.
    pub since_ms: i64,
    /// The safety number of `key` was confirmed.
    pub verified: bool,
    /// Their key changed and the change was not confirmed or trusted yet.
    pub key_changed: bool,
    /// Nothing is sent until `trust`: the key changed after verification.
    pub held: bool,
    /// The new key the server gave for a held contact, hex.
    pub new_key: Option<String>,
}

/// What [`Contacts::seen`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not a contact before; now one, with this key.
    New,
    /// The key we trust.
    Same,
    /// Another key than the one we trusted. `held`: the contact was
    /// verified, so the new key is only remembered and sending stops.
    Changed {
        /// The key we trusted, hex.
        old: String,
        /// Whether the contact is now held.
        held: bool,
    },
    /// A held contact, seen again with a key that is not trusted.
    Held,
}

/// The contact tables. Cheap to clone.
#[derive(Clone)]
pub struct Contacts {
    db: Inbox,
}

const COLUMNS: &str = "user, key, since_ms, verified, key_changed, held, new_key";

fn contact(r: &Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        user: r.get(0)?,
        key: r.get(1)?,
        since_ms: r.get(2)?,
        verified: r.get(3)?,
        key_changed: r.get(4)?,
        held: r.get(5)?,
        new_key: r.get(6)?,
    })
}

/// One contact's row, if any.
fn fetch(c: &rusqlite::Connection, user: &str) -> rusqlite::Result<Option<Contact>> {
    // Cached: the outbox's flusher asks before every batch it reads.
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM contacts WHERE user = ?1"))?
        .query_row([user], contact)
        .optional()
}

impl Contacts {
    /// The contact tables in `db`'s file, created if missing.
    pub fn open(db: &Inbox) -> Result<Self> {
        db.with_conn(|c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS contacts (
                     user TEXT PRIMARY KEY,
                     key TEXT NOT NULL,
                     since_ms INTEGER NOT NULL,
                     verified INTEGER NOT NULL DEFAULT 0,
                     key_changed INTEGER NOT NULL DEFAULT 0,
                     held INTEGER NOT NULL DEFAULT 0,
                     new_key TEXT
                 );
                 CREATE TABLE IF NOT EXISTS blocked (
                     user TEXT PRIMARY KEY,
                     since_ms INTEGER NOT NULL
                 );",
            )
        })?;
        Ok(Contacts { db: db.clone() })
    }

    /// One contact.
    pub fn get(&self, user: &str) -> Result<Option<Contact>> {
        self.db.with_conn(|c| fetch(c, user))
    }

    /// Every contact, by name.
    pub fn list(&self) -> Result<Vec<Contact>> {
        self.db.with_conn(|c| {
            let mut q =
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM contacts ORDER BY user"))?;
            let rows = q.query_map([], contact)?;
            rows.collect()
        })
    }

    /// Blocked users, by name.
    pub fn blocked(&self) -> Result<Vec<String>> {
        self.db.with_conn(|c| {
            let mut q = c.prepare_cached("SELECT user FROM blocked ORDER BY user")?;
            let rows = q.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Whether `user` is blocked.
    pub fn is_blocked(&self, user: &str) -> Result<bool> {
        self.db.with_conn(|c| {
            c.query_row("SELECT 1 FROM blocked WHERE user = ?1", [user], |_| Ok(()))
                .optional()
                .map(|o| o.is_some())
        })
    }

    /// The server gave `key` for `user` at an accepted invitation: makes
    /// them a contact if they were not, and says how the key compares.
    pub fn seen(&self, user: &str, key: &str, now_ms: i64) -> Result<Seen> {
        self.db.with_conn(|c| {
            let tx = c.transaction()?;
            let old = fetch(&tx, user)?;
            let seen = match old {
                None => {
                    tx.execute(
                        "INSERT INTO contacts (user, key, since_ms) VALUES (?1, ?2, ?3)",
                        params![user, key, now_ms],
                    )?;
                    Seen::New
                }
                Some(old) if old.key == key => Seen::Same,
                Some(old) if old.held => {
                    tx.execute(
                        "UPDATE contacts SET new_key = ?2 WHERE user = ?1",
                        params![user, key],
                    )?;
                    Seen::Held
                }
                Some(old) if old.verified => {
                    tx.execute(
                        "UPDATE contacts SET verified = 0, held = 1, key_changed = 1, new_key = ?2
                         WHERE user = ?1",
                        params![user, key],
                    )?;
                    Seen::Changed {
                        old: old.key,
                        held: true,
                    }
                }
                Some(old) => {
                    tx.execute(
                        "UPDATE contacts SET key = ?2, key_changed = 1 WHERE user = ?1",
                        params![user, key],
                    )?;
                    Seen::Changed {
                        old: old.key,
                        held: false,
                    }
                }
            };
            tx.commit()?;
            Ok(seen)
        })
    }

    /// Ends the consent with `user`; whether they were a contact.
    pub fn forget(&self, user: &str) -> Result<bool> {
        self.db.with_conn(|c| {
            c.execute("DELETE FROM contacts WHERE user = ?1", [user])
                .map(|n| n > 0)
        })
    }

    /// Forgets `user` and blocks them; whether they were a contact.
    pub fn block(&self, user: &str, now_ms: i64) -> Result<bool> {
        self.db.with_conn(|c| {
            let tx = c.transaction()?;
            let was = tx.execute("DELETE FROM contacts WHERE user = ?1", [user])? > 0;
            tx.execute(
                "INSERT OR IGNORE INTO blocked (user, since_ms) VALUES (?1, ?2)",
                params![user, now_ms],
            )?;
            tx.commit()?;
            Ok(was)
        })
    }

    /// Unblocks `user`; whether they were blocked.
    pub fn unblock(&self, user: &str) -> Result<bool> {
        self.db.with_conn(|c| {
            c.execute("DELETE FROM blocked WHERE user = ?1", [user])
                .map(|n| n > 0)
        })
    }

    /// Marks `user` verified (their safety number was compared), clearing
    /// an unconfirmed key change. A held contact is not: its new key must
    /// be trusted first. Returns the contact as it is now.
    pub fn confirm(&self, user: &str) -> Result<Option<Contact>> {
        self.db.with_conn(|c| {
            c.execute(
                "UPDATE contacts SET verified = 1, key_changed = 0 WHERE user = ?1 AND held = 0",
                [user],
            )?;
            fetch(c, user)
        })
    }

    /// Accepts `user`'s new key (a held contact's remembered one, or the
    /// changed one): no longer held or changed, and not verified until the
    /// new safety number is confirmed. Returns the contact as it is now.
    pub fn trust(&self, user: &str) -> Result<Option<Contact>> {
        self.db.with_conn(|c| {
            c.execute(
                "UPDATE contacts SET key = COALESCE(new_key, key), new_key = NULL, held = 0,
                     key_changed = 0, verified = verified AND new_key IS NULL
                 WHERE user = ?1",
                [user],
            )?;
            fetch(c, user)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Contacts) {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap();
        let c = Contacts::open(&inbox).unwrap();
        (dir, c)
    }

    #[test]
    fn a_contact_is_made_once_and_survives_reopening() {
        let (dir, c) = open();
        assert_eq!(c.seen("bob", "k1", 5).unwrap(), Seen::New);
        assert_eq!(c.seen("bob", "k1", 9).unwrap(), Seen::Same);
        drop(c);
        let c = Contacts::open(&Inbox::open(dir.path()).unwrap()).unwrap();
        let bob = c.get("bob").unwrap().unwrap();
        assert_eq!(
            (bob.key.as_str(), bob.since_ms, bob.verified),
            ("k1", 5, false)
        );
        assert_eq!(c.list().unwrap().len(), 1);
    }

    #[test]
    fn an_unverified_contact_takes_a_new_key_and_warns_until_confirmed() {
        let (_dir, c) = open();
        c.seen("bob", "k1", 0).unwrap();
        let changed = c.seen("bob", "k2", 1).unwrap();
        assert_eq!(
            changed,
            Seen::Changed {
                old: "k1".into(),
                held: false
            }
        );
        let bob = c.get("bob").unwrap().unwrap();
        assert!(bob.key_changed && !bob.held && bob.key == "k2");
        let bob = c.confirm("bob").unwrap().unwrap();
        assert!(bob.verified && !bob.key_changed);
    }

    #[test]
    fn a_verified_contact_is_held_on_a_new_key_until_trusted() {
        let (_dir, c) = open();
        c.seen("bob", "k1", 0).unwrap();
        c.confirm("bob").unwrap();
        let changed = c.seen("bob", "k2", 1).unwrap();
        assert_eq!(
            changed,
            Seen::Changed {
                old: "k1".into(),
                held: true
            }
        );
        let bob = c.get("bob").unwrap().unwrap();
        assert!(bob.held && !bob.verified && bob.key == "k1");
        assert_eq!(bob.new_key.as_deref(), Some("k2"));
        assert_eq!(c.seen("bob", "k3", 2).unwrap(), Seen::Held);
        // Confirming does not release a held contact: trust does.
        assert!(c.confirm("bob").unwrap().unwrap().held);
        let bob = c.trust("bob").unwrap().unwrap();
        assert!(!bob.held && !bob.verified && !bob.key_changed);
        assert_eq!((bob.key.as_str(), bob.new_key), ("k3", None));
        assert_eq!(c.seen("bob", "k3", 3).unwrap(), Seen::Same);
    }

    #[test]
    fn block_forgets_and_unblock_does_not_restore() {
        let (_dir, c) = open();
        c.seen("bob", "k1", 0).unwrap();
        assert!(c.block("bob", 1).unwrap());
        assert!(c.is_blocked("bob").unwrap());
        assert_eq!(c.get("bob").unwrap(), None);
        assert_eq!(c.blocked().unwrap(), ["bob"]);
        assert!(c.unblock("bob").unwrap());
        assert!(!c.unblock("bob").unwrap());
        assert_eq!(c.get("bob").unwrap(), None);
        assert!(!c.forget("bob").unwrap());
    }
}

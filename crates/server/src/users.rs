//! Accounts in `users.csv` (SPEC §3): header row, then
//! `username,hash,created_at` with an argon2id PHC hash and an RFC 3339 time.
//!
//! Writers (the admin commands and open registration) take an exclusive
//! `flock` on `users.csv.lock`, re-read the file, and replace it atomically,
//! so a running server and an admin command never lose each other's update.
//! Readers need no lock: they only ever see a whole old or whole new file.
//! The running server notices a changed file by its inode, size and mtime.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use argon2::{Argon2, PasswordHasher};
use nix::fcntl::{Flock, FlockArg};
use p2p_proto::names::{validate_password, validate_username};
use p2p_proto::time;
use p2p_sys::fsutil;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ServerError};

/// File name of the account list inside the data directory.
pub const USERS_FILE: &str = "users.csv";

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Account name.
    pub(crate) username: String,
    /// argon2id PHC string.
    pub(crate) hash: String,
    /// RFC 3339.
    pub(crate) created_at: String,
}

/// Hashes a password with argon2id and a fresh salt (slow: call off the
/// async threads).
pub(crate) fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ServerError::Hash(e.to_string()))
}

/// Checks a password against a PHC hash (the tests check what add/passwd
/// wrote; the server checks logins through `hasher.rs`).
#[cfg(test)]
pub(crate) fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// The account file and its lock.
#[derive(Debug, Clone)]
pub struct UserFile {
    path: PathBuf,
    lock_path: PathBuf,
}

impl UserFile {
    /// The account file in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        UserFile {
            path: data_dir.join(USERS_FILE),
            lock_path: data_dir.join(format!("{USERS_FILE}.lock")),
        }
    }

    /// Path of `users.csv`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All accounts; a missing file means none.
    pub fn load(&self) -> Result<Vec<UserRecord>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ServerError::file(&self.path)(e)),
        };
        let mut out = Vec::new();
        for (i, row) in csv::Reader::from_reader(file).deserialize().enumerate() {
            let rec: UserRecord = row.map_err(|e| ServerError::UserFile {
                path: self.path.clone(),
                message: format!("record {}: {e}", i + 1),
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    fn lock(&self) -> Result<Flock<File>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(ServerError::file(&self.lock_path))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| ServerError::file(&self.lock_path)(e.into()))
    }

    fn store(&self, users: &[UserRecord]) -> Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        for u in users {
            w.serialize(u).map_err(|e| ServerError::UserFile {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        }
        let bytes = w.into_inner().map_err(|e| ServerError::UserFile {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        // Hashes are not secrets the way passwords are, but nobody else
        // needs to read them.
        fsutil::write_atomic(&self.path, &bytes, 0o600).map_err(ServerError::file(&self.path))
    }

    /// Under the lock: re-read, apply `change`, write back.
    fn update(&self, change: impl FnOnce(&mut Vec<UserRecord>) -> Result<()>) -> Result<()> {
        let _lock = self.lock()?;
        let mut users = self.load()?;
        change(&mut users)?;
        self.store(&users)
    }

    /// Adds an account with an already-computed hash.
    pub fn add_hashed(&self, name: &str, phc: String) -> Result<()> {
        validate_username(name)?;
        self.update(|users| {
            if users.iter().any(|u| u.username == name) {
                return Err(ServerError::UserExists(name.to_string()));
            }
            users.push(UserRecord {
                username: name.to_string(),
                hash: phc,
                created_at: time::rfc3339(time::now_ms()),
            });
            Ok(())
        })
    }

    /// Adds an account (validates, hashes, then writes).
    pub fn add(&self, name: &str, password: &str) -> Result<()> {
        validate_username(name)?;
        validate_password(password)?;
        if self.load()?.iter().any(|u| u.username == name) {
            // Early, friendly refusal; `add_hashed` checks again under the lock.
            return Err(ServerError::UserExists(name.to_string()));
        }
        self.add_hashed(name, hash_password(password)?)
    }

    /// Removes an account.
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        self.update(|users| {
            let before = users.len();
            users.retain(|u| u.username != name);
            if users.len() == before {
                return Err(ServerError::NoSuchUser(name.to_string()));
            }
            Ok(())
        })
    }

    /// Sets a new password (which also invalidates the user's resume tokens,
    /// since they are bound to the hash).
    pub(crate) fn passwd(&self, name: &str, password: &str) -> Result<()> {
        validate_password(password)?;
        if !self.load()?.iter().any(|u| u.username == name) {
            return Err(ServerError::NoSuchUser(name.to_string()));
        }
        let phc = hash_password(password)?;
        self.update(
            |users| match users.iter_mut().find(|u| u.username == name) {
                Some(u) => {
                    u.hash = phc;
                    Ok(())
                }
                None => Err(ServerError::NoSuchUser(name.to_string())),
            },
        )
    }
}

/// Identity of a version of the file: changes whenever it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    /// Seconds and nanoseconds apart: as one i64 of nanoseconds a time
    /// past 2262 would overflow.
    mtime: (i64, i64),
}

#[derive(Debug, Default)]
struct Cache {
    stamp: Option<Stamp>,
    hashes: HashMap<String, String>,
    /// A version of the file that could not be read: not retried (nor
    /// logged again) until the file changes.
    unreadable: Option<Stamp>,
}

/// The running server's view of the accounts, reloaded when the file changes.
#[derive(Debug)]
pub struct UserDb {
    file: UserFile,
    cache: Mutex<Cache>,
}

impl UserDb {
    /// Loads the accounts in `data_dir`; refuses a file it cannot read.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let file = UserFile::in_dir(data_dir);
        let cache = Cache {
            // Stamp first: a change during the read is seen next time.
            stamp: Self::stamp_of(&file)?,
            hashes: Self::hashes(&file)?,
            unreadable: None,
        };
        Ok(UserDb {
            file,
            cache: Mutex::new(cache),
        })
    }

    fn hashes(file: &UserFile) -> Result<HashMap<String, String>> {
        Ok(file
            .load()?
            .into_iter()
            .map(|u| (u.username, u.hash))
            .collect())
    }

    /// The file behind it (open registration writes through it).
    pub(crate) fn file(&self) -> &UserFile {
        &self.file
    }

    fn stamp_of(file: &UserFile) -> Result<Option<Stamp>> {
        match std::fs::metadata(file.path()) {
            Ok(m) => Ok(Some(Stamp {
                ino: m.ino(),
                len: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ServerError::file(file.path())(e)),
        }
    }

    /// Re-reads the file if it changed; returns whether the accounts did.
    ///
    /// A changed file that cannot be read (garbage written over it, a
    /// half-edited copy) does not take every account away: the last good
    /// copy keeps serving, and the problem is logged once per version.
    pub(crate) fn refresh(&self) -> Result<bool> {
        let stamp = Self::stamp_of(&self.file)?;
        {
            let cache = self.cache.lock().expect("user cache poisoned");
            if stamp.is_some() && (cache.stamp == stamp || cache.unreadable == stamp) {
                return Ok(false);
            }
        }
        let loaded = Self::hashes(&self.file);
        let mut cache = self.cache.lock().expect("user cache poisoned");
        match loaded {
            Ok(hashes) => {
                if cache.unreadable.take().is_some() {
                    tracing::warn!(file = %self.file.path().display(), accounts = hashes.len(), "account file readable again; serving it");
                }
                *cache = Cache {
                    stamp,
                    hashes,
                    unreadable: None,
                };
                Ok(true)
            }
            Err(e) => {
                tracing::error!(cause = %e, accounts = cache.hashes.len(), "ACCOUNT FILE UNREADABLE: still serving the accounts of the last good copy; fix or restore it");
                cache.unreadable = stamp;
                Ok(false)
            }
        }
    }

    /// The PHC hash of `name`, from a fresh view of the file.
    pub fn hash_of(&self, name: &str) -> Result<Option<String>> {
        self.refresh()?;
        Ok(self
            .cache
            .lock()
            .expect("user cache poisoned")
            .hashes
            .get(name)
            .cloned())
    }

    /// Whether `name` exists in the last loaded view.
    pub fn exists(&self, name: &str) -> bool {
        self.cache
            .lock()
            .expect("user cache poisoned")
            .hashes
            .contains_key(name)
    }

    /// Number of accounts in the last loaded view.
    pub fn count(&self) -> usize {
        self.cache.lock().expect("user cache poisoned").hashes.len()
    }
}

/// [`UserDb::refresh`] on the blocking pool: it stats and may parse the
/// file, which must not stall the runtime threads.
pub(crate) async fn refresh(db: &Arc<UserDb>) -> Result<bool> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.refresh())
        .await
        .map_err(|e| ServerError::Io(std::io::Error::other(e)))?
}

/// [`UserDb::hash_of`] on the blocking pool (see [`refresh`]).
pub(crate) async fn hash_of(db: &Arc<UserDb>, name: &str) -> Result<Option<String>> {
    let (db, name) = (db.clone(), name.to_string());
    tokio::task::spawn_blocking(move || db.hash_of(&name))
        .await
        .map_err(|e| ServerError::Io(std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_passwd_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let f = UserFile::in_dir(dir.path());
        f.add("alice", "correct horse").unwrap();
        assert!(matches!(
            f.add("alice", "whatever1"),
            Err(ServerError::UserExists(_))
        ));
        assert!(matches!(
            f.add("Bob", "whatever1"),
            Err(ServerError::Name(_))
        ));
        assert!(matches!(f.add("bob", "short"), Err(ServerError::Name(_))));
        let users = f.load().unwrap();
        assert_eq!(users.len(), 1);
        assert!(users[0].hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &users[0].hash));
        assert!(!verify_password("wrong horse", &users[0].hash));

        f.passwd("alice", "battery staple").unwrap();
        assert!(verify_password(
            "battery staple",
            &f.load().unwrap()[0].hash
        ));
        assert!(matches!(
            f.passwd("carol", "whatever1"),
            Err(ServerError::NoSuchUser(_))
        ));
        f.remove("alice").unwrap();
        assert!(matches!(f.remove("alice"), Err(ServerError::NoSuchUser(_))));
        assert!(f.load().unwrap().is_empty());
    }

    #[test]
    fn running_view_sees_changes_without_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::open(dir.path()).unwrap();
        assert_eq!(db.hash_of("alice").unwrap(), None);
        let f = UserFile::in_dir(dir.path());
        f.add_hashed("alice", "$argon2id$x".into()).unwrap();
        assert!(db.hash_of("alice").unwrap().is_some());
        f.remove("alice").unwrap();
        assert_eq!(db.hash_of("alice").unwrap(), None);
    }

    #[test]
    fn garbage_over_the_file_keeps_the_last_good_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let f = UserFile::in_dir(dir.path());
        f.add_hashed("alice", "$argon2id$a".into()).unwrap();
        let db = UserDb::open(dir.path()).unwrap();
        fsutil::write_atomic(f.path(), b"username,hash\n\xff\xfe,\"\n", 0o600).unwrap();
        assert_eq!(db.hash_of("alice").unwrap().as_deref(), Some("$argon2id$a"));
        assert!(!db.refresh().unwrap(), "nothing changed for the server");
        assert!(db.exists("alice"));
        // Fixed: the new content is served.
        std::fs::remove_file(f.path()).unwrap();
        f.add_hashed("bob", "$argon2id$b".into()).unwrap();
        assert_eq!(db.hash_of("alice").unwrap(), None);
        assert!(db.hash_of("bob").unwrap().is_some());
        // At start, garbage is refused rather than served as "no accounts".
        fsutil::write_atomic(f.path(), b"not,a\nusers,file,at,all\n", 0o600).unwrap();
        assert!(matches!(
            UserDb::open(dir.path()),
            Err(ServerError::UserFile { .. })
        ));
    }

    /// A file time past 2262 (a clock set wrong, `touch -d`) does not fit
    /// in i64 nanoseconds: noticing the file must not overflow (debug
    /// builds panic, and the server polls the file in its accept loop).
    #[test]
    fn a_far_future_file_time_is_noticed_without_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let f = UserFile::in_dir(dir.path());
        f.add_hashed("alice", "$argon2id$a".into()).unwrap();
        let far = std::time::UNIX_EPOCH + std::time::Duration::from_secs(10_000_000_000);
        let set = |t| {
            std::fs::File::options()
                .write(true)
                .open(f.path())
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        set(far);
        let db = UserDb::open(dir.path()).unwrap();
        assert!(db.exists("alice"));
        f.add_hashed("bob", "$argon2id$b".into()).unwrap();
        set(far);
        assert!(db.refresh().unwrap());
        assert!(db.exists("bob"));
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let f = UserFile::in_dir(dir.path());
                std::thread::spawn(move || f.add_hashed(&format!("user{i}"), "$h".into()).unwrap())
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(UserFile::in_dir(dir.path()).load().unwrap().len(), 8);
    }
}

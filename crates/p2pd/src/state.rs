//! The daemon's durable state (SPEC §5), all in the state directory (0700),
//! every file 0600 and written atomically:
//!
//! - `identity.json`: the long-term X25519 key pair, made on first start.
//! - `session.json`: server, user and resume token of the saved login.
//! - `known_servers.json`: pinned certificate fingerprint per server.
//! - `known_peers.json`: the last public key seen per peer user.
//! - `inbox.db`: the inbox (see [`crate::inbox`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use p2p_proto::{fsutil, Secret};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{DaemonError, Result};

/// Noise pattern whose DH function (X25519) the identity key is for.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// The long-term key pair.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    /// Private key, hex.
    pub private: Secret,
    /// Public key, hex: what the server and peers see.
    pub public: String,
}

/// A saved login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSession {
    /// `host:port`.
    pub server: String,
    /// Account name.
    pub user: String,
    /// Resume token; `None` after the session was replaced or revoked, so a
    /// restarted daemon does not take the session back by itself.
    pub token: Option<Secret>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DaemonError::Format {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DaemonError::file(path)(e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("state serialises");
    fsutil::write_atomic(path, &bytes, 0o600).map_err(DaemonError::file(path))
}

impl StateDir {
    /// Opens (creating, 0700) the state directory.
    pub fn open(dir: &Path) -> Result<Self> {
        fsutil::ensure_private_dir(dir).map_err(DaemonError::file(dir))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The identity key pair, generated on first use.
    pub fn identity(&self) -> Result<Identity> {
        let path = self.path("identity.json");
        if let Some(id) = read_json::<Identity>(&path)? {
            return Ok(id);
        }
        let params = NOISE_PARAMS.parse().expect("valid noise params");
        let kp = snow::Builder::new(params)
            .generate_keypair()
            .map_err(|e| DaemonError::Config(format!("cannot generate identity key: {e}")))?;
        let id = Identity {
            private: Secret::new(hex::encode(kp.private)),
            public: hex::encode(kp.public),
        };
        write_json(&path, &id)?;
        tracing::info!(public_key = %id.public, "generated identity key");
        Ok(id)
    }

    /// The saved login, if any.
    pub fn session(&self) -> Result<Option<SavedSession>> {
        read_json(&self.path("session.json"))
    }

    /// Saves (or with `None` forgets) the login.
    pub fn save_session(&self, s: Option<&SavedSession>) -> Result<()> {
        let path = self.path("session.json");
        match s {
            Some(s) => write_json(&path, s),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(DaemonError::file(path)(e))
                }
                _ => Ok(()),
            },
        }
    }

    /// One entry of a small name → value JSON file (pins, peer keys).
    fn map_get(&self, file: &str, name: &str) -> Result<Option<String>> {
        let map: BTreeMap<String, String> = read_json(&self.path(file))?.unwrap_or_default();
        Ok(map.get(name).cloned())
    }

    /// Sets one entry of a small name → value JSON file.
    fn map_set(&self, file: &str, name: &str, value: &str) -> Result<()> {
        let path = self.path(file);
        let mut map: BTreeMap<String, String> = read_json(&path)?.unwrap_or_default();
        map.insert(name.to_string(), value.to_string());
        write_json(&path, &map)
    }

    /// The pinned fingerprint of `server`.
    pub fn pin(&self, server: &str) -> Result<Option<String>> {
        self.map_get("known_servers.json", server)
    }

    /// Pins `fingerprint` for `server`.
    pub fn set_pin(&self, server: &str, fingerprint: &str) -> Result<()> {
        self.map_set("known_servers.json", server, fingerprint)
    }

    /// The public key we last saw for `user` (from the server, at an
    /// accepted invitation).
    pub fn known_key(&self, user: &str) -> Result<Option<String>> {
        self.map_get("known_peers.json", user)
    }

    /// Remembers `key` for `user`.
    pub fn set_known_key(&self, user: &str, key: &str) -> Result<()> {
        self.map_set("known_peers.json", user, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn identity_is_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(&dir.path().join("st")).unwrap();
        let a = s.identity().unwrap();
        assert_eq!(a.public.len(), 64);
        assert_eq!(s.identity().unwrap().public, a.public);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("st")), 0o700);
        assert_eq!(mode(&dir.path().join("st/identity.json")), 0o600);
    }

    #[test]
    fn session_and_pins_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        assert_eq!(s.session().unwrap(), None);
        let saved = SavedSession {
            server: "h:1".into(),
            user: "alice".into(),
            token: Some(Secret::new("t")),
        };
        s.save_session(Some(&saved)).unwrap();
        assert_eq!(s.session().unwrap(), Some(saved));
        s.save_session(None).unwrap();
        assert_eq!(s.session().unwrap(), None);
        s.set_pin("h:1", "SHA256:aa").unwrap();
        assert_eq!(s.pin("h:1").unwrap().as_deref(), Some("SHA256:aa"));
        assert_eq!(s.pin("h:2").unwrap(), None);
    }
}

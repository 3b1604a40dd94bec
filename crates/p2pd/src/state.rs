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

use p2p_proto::{Fingerprint, Secret};
use p2p_sys::fsutil;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use crate::error::{DaemonError, Result};

/// Pinned server certificates, one fingerprint per `host:port`.
pub(crate) const KNOWN_SERVERS: &str = "known_servers.json";
/// The identity key pair.
pub(crate) const IDENTITY: &str = "identity.json";
/// Bytes of an X25519 key, private or public.
const KEY_LEN: usize = 32;

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
    /// Runs `f` on this directory on the blocking pool. Every write here
    /// fsyncs (and reads can stall on a slow disk): on one of the daemon's
    /// two runtime threads that would hold up every task queued behind it.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StateDir) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let dir = self.clone();
        tokio::task::spawn_blocking(move || f(&dir)).await?
    }

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

    /// The identity key pair, generated on first use. A damaged one is an
    /// error naming the file: a short or mismatched key would make every
    /// login and peer handshake fail (and the login be retried forever).
    pub fn identity(&self) -> Result<Identity> {
        let path = self.path(IDENTITY);
        if let Some(id) = read_json::<Identity>(&path)? {
            return check_identity(&id)
                .map(|()| id)
                .map_err(|problem| DaemonError::Format {
                    path,
                    message: format!(
                        "{problem}: the identity key is damaged; restore this file from a backup, \
                     or move it away to make a new key (peers will see your key change)"
                    ),
                });
        }
        // The identity key is for the DH function (X25519) of the peer protocol.
        let params = p2p_proto::peer::NOISE_PARAMS
            .parse()
            .expect("valid noise params");
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

    /// Where the pins are (for messages that ask to repair it).
    pub(crate) fn pin_file(&self) -> PathBuf {
        self.path(KNOWN_SERVERS)
    }

    /// The pinned fingerprint of `server`. A file that cannot be read or
    /// parsed, or a pin that is not a fingerprint, is an error: never "no
    /// pin", which would trust whatever answers.
    pub fn pin(&self, server: &str) -> Result<Option<String>> {
        let Some(pin) = self.map_get(KNOWN_SERVERS, server)? else {
            return Ok(None);
        };
        match Fingerprint::parse_canonical(&pin) {
            Some(fp) => Ok(Some(fp.into())),
            None => Err(DaemonError::Format {
                path: self.pin_file(),
                message: format!("the pin for {server} is not SHA256:<64 lowercase hex digits>"),
            }),
        }
    }

    /// Pins `fingerprint` for `server`. Fails, leaving the file as it was,
    /// if the file cannot be read: the other pins in it must not be lost.
    pub fn set_pin(&self, server: &str, fingerprint: &str) -> Result<()> {
        self.map_set(KNOWN_SERVERS, server, fingerprint)
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

/// What is wrong with a stored identity.
#[derive(Debug, thiserror::Error)]
enum BadIdentity {
    /// A key that is not 32 bytes of hex.
    #[error("the {0} key is not {KEY_LEN} bytes of hex")]
    NotHex(&'static str),
    /// The Noise library offers no X25519 (a build problem).
    #[error("no X25519 implementation")]
    NoX25519,
    /// The two keys are not a pair.
    #[error("the public key does not belong to the private key")]
    Mismatch,
}

/// Both keys are 32 bytes of hex and the public key is the private key's.
fn check_identity(id: &Identity) -> std::result::Result<(), BadIdentity> {
    let key = |name: &'static str, hexed: &str| match hex::decode(hexed) {
        Ok(k) if k.len() == KEY_LEN => Ok(k),
        _ => Err(BadIdentity::NotHex(name)),
    };
    let private = key("private", id.private.expose())?;
    let public = key("public", &id.public)?;
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .ok_or(BadIdentity::NoX25519)?;
    dh.set(&private);
    if dh.pubkey() != public.as_slice() {
        return Err(BadIdentity::Mismatch);
    }
    Ok(())
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
        let fp = format!("SHA256:{}", "aa".repeat(32));
        s.set_pin("h:1", &fp).unwrap();
        assert_eq!(s.pin("h:1").unwrap(), Some(fp));
        assert_eq!(s.pin("h:2").unwrap(), None);
    }

    #[test]
    fn a_damaged_identity_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        let good = s.identity().unwrap();
        let path = dir.path().join(IDENTITY);
        let other = {
            let other_dir = tempfile::tempdir().unwrap();
            StateDir::open(other_dir.path())
                .unwrap()
                .identity()
                .unwrap()
        };
        for (private, public) in [
            (&good.private.expose()[..62], good.public.as_str()),
            (good.private.expose(), &good.public[..10]),
            ("zz", good.public.as_str()),
            (good.private.expose(), other.public.as_str()),
        ] {
            let bad = Identity {
                private: Secret::new(private),
                public: public.to_string(),
            };
            write_json(&path, &bad).unwrap();
            let e = s.identity().err().expect("refused").to_string();
            assert!(e.contains("identity.json") && e.contains("damaged"), "{e}");
            // Refused, not replaced: the file is there to be restored.
            assert_eq!(
                read_json::<Identity>(&path).unwrap().unwrap().public,
                public
            );
        }
    }

    #[test]
    fn a_damaged_pin_file_is_an_error_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        let fp = format!("SHA256:{}", "ab".repeat(32));
        for garbage in [&b"{\"h:1\": \"SHA"[..], b"", b"[]", b"{\"h:1\": 5}"] {
            std::fs::write(s.pin_file(), garbage).unwrap();
            let e = s.pin("h:1").expect_err("no pin is not assumed");
            assert!(e.to_string().contains("known_servers.json"), "{e}");
            assert!(s.set_pin("h:2", &fp).is_err());
            assert_eq!(std::fs::read(s.pin_file()).unwrap(), garbage);
        }
        // A value that is not a fingerprint is not a pin either.
        std::fs::write(s.pin_file(), b"{\"h:1\": \"SHA256:ABC\"}").unwrap();
        assert!(s.pin("h:1").is_err());
        assert_eq!(s.pin("h:2").unwrap(), None, "other servers unaffected");
    }
}

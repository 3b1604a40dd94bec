//! Which certificate a connection attempt must see (SPEC §3, and §8 "Trust
//! holds under attack"). Decided afresh from `known_servers.json` before
//! *every* attempt — password or token, first try or retry, before or after
//! a restart — so no path connects without the pin.
//!
//! Trust on first use is allowed only where it is the user's own decision:
//! a password login (or registration) to a server with no pin yet. A saved
//! session always pinned its server when it first logged in, so a token
//! with no pin means the pin was lost or removed: it is refused, not
//! re-pinned to whatever answers. A pin file that cannot be read refuses
//! every connection: treating it as "no pin" would turn pinning off.

use std::path::Path;

use p2p_proto::wire::Auth;

use super::error::LoginError;
use crate::error::DaemonError;

/// What one connection attempt requires of the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trust {
    /// No pin for this server yet: accept its certificate and pin it once
    /// the login succeeds.
    FirstUse,
    /// Require this fingerprint.
    Pinned {
        /// `SHA256:...`.
        fingerprint: String,
        /// It is not the saved pin yet (an explicit `--fingerprint`): save
        /// it once the login succeeds.
        save: bool,
    },
}

impl Trust {
    /// The fingerprint the handshake must match (`None`: first use).
    pub(crate) fn pin(&self) -> Option<&str> {
        match self {
            Trust::FirstUse => None,
            Trust::Pinned { fingerprint, .. } => Some(fingerprint),
        }
    }

    /// Whether a successful login must write what the server presented to
    /// `known_servers.json`.
    pub(crate) fn saves_pin(&self) -> bool {
        matches!(self, Trust::FirstUse | Trust::Pinned { save: true, .. })
    }
}

/// Decides the trust for an attempt to log in to `server` with `auth`.
/// `saved` is what `known_servers.json` holds for it (read just now),
/// `explicit` the `--fingerprint` of the login being attempted, and
/// `pin_file` the file named in errors.
pub(crate) fn decide(
    server: &str,
    auth: &Auth,
    saved: Result<Option<String>, DaemonError>,
    explicit: Option<&str>,
    pin_file: &Path,
) -> Result<Trust, LoginError> {
    let saved = saved.map_err(LoginError::PinFileDamaged)?;
    match (explicit, saved, auth) {
        (Some(fp), saved, _) => Ok(Trust::Pinned {
            save: saved.as_deref() != Some(fp),
            fingerprint: fp.to_string(),
        }),
        (None, Some(fp), _) => Ok(Trust::Pinned {
            fingerprint: fp,
            save: false,
        }),
        (None, None, Auth::Token { .. }) => Err(LoginError::NoPin {
            server: server.to_string(),
            pin_file: pin_file.to_path_buf(),
        }),
        (None, None, Auth::Password { .. } | Auth::Register { .. }) => Ok(Trust::FirstUse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::Secret;
    use std::path::PathBuf;

    const SERVER: &str = "h:1";

    fn file() -> PathBuf {
        PathBuf::from("/state/known_servers.json")
    }

    fn fp(c: char) -> String {
        format!("SHA256:{}", c.to_string().repeat(64))
    }

    fn password() -> Auth {
        Auth::Password {
            password: Secret::new("pw"),
        }
    }

    fn token() -> Auth {
        Auth::Token {
            token: Secret::new("t"),
        }
    }

    fn damaged() -> Result<Option<String>, DaemonError> {
        Err(DaemonError::Format {
            path: file(),
            message: "EOF while parsing".into(),
        })
    }

    #[test]
    fn first_use_only_for_a_password_login_to_an_unpinned_server() {
        for auth in [
            password(),
            Auth::Register {
                password: Secret::new("pw"),
            },
        ] {
            let t = decide(SERVER, &auth, Ok(None), None, &file()).unwrap();
            assert_eq!(t, Trust::FirstUse);
            assert!(t.saves_pin() && t.pin().is_none());
        }
        let e = decide(SERVER, &token(), Ok(None), None, &file())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("known_servers.json") && e.contains("--fingerprint"),
            "{e}"
        );
    }

    #[test]
    fn the_saved_pin_is_required_and_kept() {
        for auth in [password(), token()] {
            let t = decide(SERVER, &auth, Ok(Some(fp('a'))), None, &file()).unwrap();
            assert_eq!(t.pin(), Some(fp('a').as_str()));
            assert!(!t.saves_pin(), "the pin changes only explicitly");
        }
    }

    #[test]
    fn an_explicit_fingerprint_wins_and_is_saved_when_new() {
        let t = decide(
            SERVER,
            &password(),
            Ok(Some(fp('a'))),
            Some(&fp('b')),
            &file(),
        )
        .unwrap();
        assert_eq!((t.pin(), t.saves_pin()), (Some(fp('b').as_str()), true));
        let t = decide(
            SERVER,
            &password(),
            Ok(Some(fp('b'))),
            Some(&fp('b')),
            &file(),
        )
        .unwrap();
        assert!(!t.saves_pin());
        let t = decide(SERVER, &password(), Ok(None), Some(&fp('b')), &file()).unwrap();
        assert!(t.saves_pin());
    }

    #[test]
    fn a_damaged_pin_file_refuses_every_connection() {
        for (auth, explicit) in [
            (password(), None),
            (token(), None),
            (password(), Some(fp('b'))),
        ] {
            let e = decide(SERVER, &auth, damaged(), explicit.as_deref(), &file())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("known_servers.json") && e.contains("Repair"),
                "{e}"
            );
        }
    }
}

//! The server's TLS identity: operator-supplied files, or a self-signed
//! certificate generated on first start and kept in the data directory, so
//! its fingerprint (what clients pin) stays the same across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use p2p_proto::Fingerprint;
use p2p_sys::fsutil;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Result, ServerError};

/// Generated certificate inside the data directory.
pub(crate) const CERT_FILE: &str = "tls-cert.pem";
/// Generated private key inside the data directory (0600).
pub(crate) const KEY_FILE: &str = "tls-key.pem";

/// Session tickets sent after each handshake: a client reconnects one
/// connection at a time and a resumed handshake brings a fresh ticket, so
/// one is enough (rustls' default of 2 costs a second encryption each).
const TICKETS_PER_HANDSHAKE: usize = 1;

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// Generated on first start in the data directory.
    SelfSigned,
    /// `--tls-cert` / `--tls-key`.
    Files {
        /// PEM certificate chain, leaf first.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
}

/// A loaded identity.
pub(crate) struct TlsIdentity {
    /// For the accept loop: what [`crate::conn`]'s TLS stream accepts
    /// connections with.
    pub(crate) acceptor: Arc<rustls::ServerConfig>,
    /// `SHA256:...` of the leaf certificate.
    pub(crate) fingerprint: String,
    /// Whether this start generated it.
    pub(crate) generated: bool,
    /// End of the leaf certificate's validity (Unix seconds), for the
    /// expiry metric; `None` if it cannot be parsed (rustls still may).
    pub(crate) not_after: Option<i64>,
}

/// The leaf certificate's not-after time in Unix seconds.
fn not_after(leaf: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn paths(source: &TlsSource, data_dir: &Path) -> (PathBuf, PathBuf) {
    match source {
        TlsSource::SelfSigned => (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE)),
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
    }
}

fn generate(cert_path: &Path, key_path: &Path) -> Result<()> {
    let names = vec!["p2p-server".to_string(), "localhost".to_string()];
    let ck =
        rcgen::generate_simple_self_signed(names).map_err(|e| ServerError::Tls(e.to_string()))?;
    // Key first: a crash in between leaves a key without a cert, which the
    // next start refuses (see `load`), never a cert whose key is lost.
    fsutil::write_atomic(key_path, ck.signing_key.serialize_pem().as_bytes(), 0o600)
        .map_err(ServerError::file(key_path))?;
    fsutil::write_atomic(cert_path, ck.cert.pem().as_bytes(), 0o644)
        .map_err(ServerError::file(cert_path))
}

/// Puts the cluster's identity (stored in the shared database) in the data
/// directory as this instance's generated identity, so that loading and
/// reloading work as on a single server. A different identity already there
/// is refused, never overwritten: it may be what daemons pinned.
pub(crate) fn install_shared(data_dir: &Path, cert_pem: &str, key_pem: &str) -> Result<()> {
    let (cert_path, key_path) = paths(&TlsSource::SelfSigned, data_dir);
    if needs_generating(&cert_path, &key_path)? {
        fsutil::ensure_private_dir(data_dir).map_err(ServerError::file(data_dir))?;
        fsutil::write_atomic(&key_path, key_pem.as_bytes(), 0o600)
            .map_err(ServerError::file(&key_path))?;
        return fsutil::write_atomic(&cert_path, cert_pem.as_bytes(), 0o644)
            .map_err(ServerError::file(&cert_path));
    }
    let here = std::fs::read_to_string(&cert_path).map_err(ServerError::file(&cert_path))?;
    if here.trim() != cert_pem.trim() {
        return Err(ServerError::Tls(format!(
            "{} is not the cluster's certificate (stored in the database): move the data \
             directory's tls-cert.pem and tls-key.pem away to use the cluster's, or give every \
             instance the same --tls-cert and --tls-key",
            cert_path.display()
        )));
    }
    Ok(())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The fingerprint of the certificate the server will present. Before the
/// first start there is none: that is said in words (not made here: the
/// files would belong to whoever asked, not to the server's user).
pub(crate) fn fingerprint(source: &TlsSource, data_dir: &Path) -> Result<String> {
    let (cert, key) = paths(source, data_dir);
    if matches!(source, TlsSource::SelfSigned) && needs_generating(&cert, &key)? {
        return Err(ServerError::Config(format!(
            "no TLS identity in {} yet: start the server once (it makes one and \
             prints its fingerprint), then run `p2p-server fingerprint` again",
            data_dir.display()
        )));
    }
    Ok(Fingerprint::of_cert(&read_certs(&cert)?[0]).to_string())
}

fn exists(path: &Path) -> Result<bool> {
    path.try_exists().map_err(ServerError::file(path))
}

/// Whether the self-signed identity must be generated: only when both files
/// are missing. With one of them gone, a new key would silently replace the
/// identity every client has pinned; the operator must decide.
fn needs_generating(cert_path: &Path, key_path: &Path) -> Result<bool> {
    let missing = |present: &Path, gone: &Path| ServerError::Damaged {
        path: gone.to_path_buf(),
        problem: format!(
            "missing, but {} is there: restore the missing file from a backup \
             (clients have pinned this server's certificate), or remove {} too to \
             make a new identity (every user must then accept its new fingerprint)",
            present.display(),
            present.display()
        ),
    };
    match (exists(cert_path)?, exists(key_path)?) {
        (false, false) => Ok(true),
        (true, true) => Ok(false),
        (true, false) => Err(missing(cert_path, key_path)),
        (false, true) => Err(missing(key_path, cert_path)),
    }
}

/// Loads (or on first start generates) the identity.
pub(crate) fn load(source: &TlsSource, data_dir: &Path) -> Result<TlsIdentity> {
    let (cert_path, key_path) = paths(source, data_dir);
    let mut generated = false;
    if matches!(source, TlsSource::SelfSigned) && needs_generating(&cert_path, &key_path)? {
        fsutil::ensure_private_dir(data_dir).map_err(ServerError::file(data_dir))?;
        generate(&cert_path, &key_path)?;
        generated = true;
    }
    let certs = read_certs(&cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key_path.display())))?;
    let fingerprint = Fingerprint::of_cert(&certs[0]).to_string();
    let not_after = not_after(&certs[0]);
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM with SHA-256 first: SHA-384's key schedule has no
    // hardware help here and was 5 % of a mass reconnect's CPU; 128-bit
    // AES is the TLS 1.3 baseline. The server's order decides.
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 1,
        _ => 2,
    });
    let provider = Arc::new(provider);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    // Reconnects resume (a PSK handshake: no signature, no certificate
    // sent). Stateless tickets cost no server memory per session; a new
    // ticketer per load means a replaced identity never resumes a session
    // that a client's pin check passed against the old one.
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| ServerError::Tls(e.to_string()))?;
    config.send_tls13_tickets = TICKETS_PER_HANDSHAKE;
    config.ignore_client_order = true;
    Ok(TlsIdentity {
        acceptor: Arc::new(config),
        fingerprint,
        generated,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before the first start: words, not "os error 2".
    #[test]
    fn no_fingerprint_before_the_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let err = fingerprint(&TlsSource::SelfSigned, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("start the server once"), "{err}");
        assert!(!err.contains("os error"), "{err}");
        assert!(!dir.path().join(KEY_FILE).exists(), "nothing is made");
    }

    #[test]
    fn generated_once_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = load(&TlsSource::SelfSigned, dir.path()).unwrap();
        assert!(a.generated);
        let b = load(&TlsSource::SelfSigned, dir.path()).unwrap();
        assert!(!b.generated);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(b.not_after.unwrap() > now, "{:?}", b.not_after);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(
            fingerprint(&TlsSource::SelfSigned, dir.path()).unwrap(),
            a.fingerprint
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_lost_half_of_the_identity_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(&TlsSource::SelfSigned, dir.path()).unwrap();
        let (cert, key) = (dir.path().join(CERT_FILE), dir.path().join(KEY_FILE));
        let key_bytes = std::fs::read(&key).unwrap();

        std::fs::remove_file(&cert).unwrap();
        let err = load(&TlsSource::SelfSigned, dir.path()).err().unwrap();
        assert!(matches!(&err, ServerError::Damaged { path, .. } if *path == cert));
        assert!(
            err.to_string().contains("restore the missing file"),
            "{err}"
        );
        assert_eq!(std::fs::read(&key).unwrap(), key_bytes, "key untouched");
        assert!(!cert.exists(), "no new certificate made");

        std::fs::remove_file(&key).unwrap();
        let second = load(&TlsSource::SelfSigned, dir.path()).unwrap();
        assert!(second.generated, "both gone: a new identity");
        assert_ne!(second.fingerprint, first.fingerprint);

        std::fs::remove_file(&key).unwrap();
        let err = load(&TlsSource::SelfSigned, dir.path()).err().unwrap();
        assert!(matches!(&err, ServerError::Damaged { path, .. } if *path == key));
    }
}

//! TLS to PostgreSQL. With `--database-ca FILE` every connection to the
//! database (the pool and the LISTEN connection) is TLS, and the
//! database's certificate must chain to that CA and name the URL's host;
//! there is no encrypted-but-unverified mode. Without it connections are
//! plain, which suits a database on the same host or a trusted network, and
//! a URL asking for `sslmode=require` is refused rather than silently
//! downgraded.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgError;

/// How connections to the database are made.
#[derive(Clone)]
pub enum DbTls {
    /// Plain TCP (or a Unix socket).
    Plain,
    /// TLS, verified against the operator's CA.
    Verified(MakeRustlsConnect),
}

impl std::fmt::Debug for DbTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbTls::Plain => "Plain",
            DbTls::Verified(_) => "Verified",
        })
    }
}

/// The TLS setting for `config` given the CA file, if any; with a CA the
/// config is set to require TLS.
pub(crate) fn db_tls(
    config: &mut tokio_postgres::Config,
    ca: Option<&Path>,
) -> Result<DbTls, PgError> {
    let Some(ca) = ca else {
        if config.get_ssl_mode() == SslMode::Require {
            return Err(PgError::Tls(
                "the URL asks for sslmode=require: give --database-ca FILE, the CA that signed \
                 the database's certificate"
                    .into(),
            ));
        }
        config.ssl_mode(SslMode::Disable);
        return Ok(DbTls::Plain);
    };
    let shown = ca.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| PgError::Tls(format!("--database-ca {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(PgError::Tls(format!(
            "--database-ca {shown}: no certificate in it"
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| PgError::Tls(format!("--database-ca {shown}: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.ssl_mode(SslMode::Require);
    Ok(DbTls::Verified(MakeRustlsConnect::new(client)))
}

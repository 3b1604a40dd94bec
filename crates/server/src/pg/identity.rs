//! The cluster's one TLS identity (SPEC §9): so that one pin covers every
//! instance, the first instance to start stores a generated certificate and
//! key in the database and every instance (itself included) serves the
//! stored pair. An operator who gives `--tls-cert/--tls-key` files to all
//! instances does not need this row.

use p2p_proto::Secret;

use super::{PgError, PgPool};
use crate::error::{Result, ServerError};

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct PemIdentity {
    /// The self-signed certificate.
    pub cert_pem: String,
    /// Its private key (never logged).
    pub key_pem: Secret,
}

/// The identity stored in the database, storing a freshly generated one
/// first if there is none. Instances racing at first start all get the
/// pair of whichever insert won.
pub async fn shared_identity(pool: &PgPool) -> Result<PemIdentity> {
    if let Some(found) = stored(pool).await? {
        return Ok(found);
    }
    let fresh = generate()?;
    let c = pool.get().await?;
    c.execute(
        "INSERT INTO tls_identity (cert_pem, key_pem) VALUES ($1, $2)
         ON CONFLICT (singleton) DO NOTHING",
        &[&fresh.cert_pem, &fresh.key_pem.expose()],
    )
    .await
    .map_err(PgError::from)?;
    stored(pool)
        .await?
        .ok_or_else(|| ServerError::Tls("the stored TLS identity vanished".into()))
}

async fn stored(pool: &PgPool) -> Result<Option<PemIdentity>> {
    let c = pool.get().await?;
    let row = c
        .query_opt("SELECT cert_pem, key_pem FROM tls_identity", &[])
        .await
        .map_err(PgError::from)?;
    Ok(row.map(|r| PemIdentity {
        cert_pem: r.get(0),
        key_pem: Secret::new(r.get::<_, String>(1)),
    }))
}

/// A self-signed pair with the names the embedded server uses.
fn generate() -> Result<PemIdentity> {
    let names = vec!["p2p-server".to_string(), "localhost".to_string()];
    let ck =
        rcgen::generate_simple_self_signed(names).map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok(PemIdentity {
        cert_pem: ck.cert.pem(),
        key_pem: Secret::new(ck.signing_key.serialize_pem()),
    })
}

//! TLS to the rendezvous server with the certificate pinned by fingerprint
//! (SPEC §3): trust on first use, or an explicit `--fingerprint`; a changed
//! certificate is refused before a single byte of the login is sent.
//!
//! The chain is not checked against any CA: the pin *is* the trust anchor.
//! Handshake signatures are still verified, so only the holder of the pinned
//! certificate's key can complete the handshake.
//!
//! Reconnects resume: a [`ClientTls`] (one per pin) keeps the session
//! tickets the server sent, so the next handshake is a TLS 1.3 PSK
//! handshake with no certificate signature to make or check. A ticket is
//! only ever issued after a full handshake that passed this pin, and rustls
//! offers it only with the very verifier that checked it (the config is
//! per pin), so a changed pin never resumes an old session.

use std::sync::{Arc, Mutex};

use p2p_proto::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Session tickets kept per [`ClientTls`]: a daemon holds one link plus a
/// few auxiliary connections to one server, and the server sends one
/// ticket per handshake; rustls keeps at most 8 per server name anyway.
const TICKETS_KEPT: usize = 8;

/// The certificate check inside a client config: compares with the pin and
/// remembers what it saw last (for the per-attempt [`PinVerifier`]).
#[derive(Debug)]
struct PinCheck {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

/// A TLS client configuration for one pin, kept across reconnects so that
/// they resume the TLS session instead of a full handshake.
#[derive(Debug)]
pub struct ClientTls {
    check: Arc<PinCheck>,
    config: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// A fresh configuration (its own ticket store) for `expected`. Without
    /// a pin (trust on first use, probes) nothing is resumed: every such
    /// handshake must show the certificate.
    pub fn new(expected: Option<String>) -> std::io::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resumable = expected.is_some();
        let check = Arc::new(PinCheck {
            expected,
            seen: Mutex::new(None),
            provider: provider.clone(),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(std::io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(check.clone())
            .with_no_client_auth();
        config.resumption = if resumable {
            rustls::client::Resumption::in_memory_sessions(TICKETS_KEPT)
        } else {
            rustls::client::Resumption::disabled()
        };
        Ok(Arc::new(ClientTls {
            check,
            config: Arc::new(config),
        }))
    }

    /// The process-wide configuration for `expected` (a daemon has one user
    /// and one server): the same one as long as the pin stays the same, a
    /// new one (no tickets) when it changes.
    fn shared(expected: Option<String>) -> std::io::Result<Arc<Self>> {
        static SHARED: Mutex<Option<Arc<ClientTls>>> = Mutex::new(None);
        if expected.is_none() {
            return Self::new(None);
        }
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(c) if c.check.expected == expected => Ok(c.clone()),
            _ => {
                let fresh = Self::new(expected)?;
                *slot = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }
}

/// One connection attempt's view of the pin: what it requires and the
/// fingerprint the server presented (or, resumed, had presented).
#[derive(Debug)]
pub struct PinVerifier {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    /// A caller's own configuration (see [`PinVerifier::with_client`]);
    /// `None`: the process-wide one for the pin.
    client: Option<Arc<ClientTls>>,
}

impl PinVerifier {
    /// A verifier for `expected` (`None`: trust on first use), resuming
    /// through the process-wide configuration for that pin.
    pub fn new(expected: Option<String>) -> Arc<Self> {
        Arc::new(PinVerifier {
            expected,
            seen: Mutex::new(None),
            client: None,
        })
    }

    /// A verifier using `client`'s configuration and tickets (e.g. one per
    /// simulated user in the load generator).
    pub fn with_client(client: Arc<ClientTls>) -> Arc<Self> {
        Arc::new(PinVerifier {
            expected: client.check.expected.clone(),
            seen: Mutex::new(None),
            client: Some(client),
        })
    }

    /// The fingerprint the server presented, once the handshake got there.
    pub(crate) fn seen(&self) -> Option<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the server presented a certificate other than the pinned one.
    pub(crate) fn mismatch(&self) -> bool {
        matches!((&self.expected, self.seen()), (Some(e), Some(s)) if *e != s)
    }

    fn client(&self) -> std::io::Result<Arc<ClientTls>> {
        match &self.client {
            Some(c) => Ok(c.clone()),
            None => ClientTls::shared(self.expected.clone()),
        }
    }

    fn record(&self, fp: Option<String>) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = fp;
    }
}

impl ServerCertVerifier for PinCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = Fingerprint::of_cert(end_entity).to_string();
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp.clone());
        match &self.expected {
            Some(e) if *e != fp => Err(rustls::Error::General(format!(
                "server certificate {fp} does not match the pinned {e}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Runs the TLS handshake over `tcp` with `verifier` (resuming when its
/// configuration holds a ticket for this pin).
pub async fn handshake(
    tcp: TcpStream,
    verifier: Arc<PinVerifier>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let client = verifier.client()?;
    // What an earlier attempt saw is not this attempt's finding.
    *client.check.seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
    // The name is not checked (the pin is); it only fills in SNI and keys
    // the ticket store.
    let name = ServerName::try_from("p2p-server").expect("static name is valid");
    match TlsConnector::from(client.config.clone())
        .connect(name, tcp)
        .await
    {
        Ok(tls) => {
            // Full or resumed, the session's certificate is the one a full
            // handshake checked against this pin.
            let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            verifier.record(leaf.map(|c| Fingerprint::of_cert(c).to_string()));
            Ok(tls)
        }
        Err(e) => {
            // Shared configurations are rarely used concurrently, and then
            // towards the same server: its last check is this attempt's.
            verifier.record(
                client
                    .check
                    .seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            );
            Err(e)
        }
    }
}

//! TLS to the rendezvous server with the certificate pinned by fingerprint
//! (SPEC §3): trust on first use, or an explicit `--fingerprint`; a changed
//! certificate is refused before a single byte of the login is sent.
//!
//! The chain is not checked against any CA: the pin *is* the trust anchor.
//! Handshake signatures are still verified, so only the holder of the pinned
//! certificate's key can complete the handshake.

use std::sync::{Arc, Mutex};

use p2p_proto::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Compares the server's certificate with a pin and remembers what it saw.
#[derive(Debug)]
pub struct PinVerifier {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    /// A verifier for `expected` (`None`: trust on first use).
    pub fn new(expected: Option<String>) -> Arc<Self> {
        Arc::new(PinVerifier {
            expected,
            seen: Mutex::new(None),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// The fingerprint the server presented, once the handshake got there.
    pub(crate) fn seen(&self) -> Option<String> {
        self.seen.lock().expect("pin verifier poisoned").clone()
    }

    /// Whether the server presented a certificate other than the pinned one.
    pub(crate) fn mismatch(&self) -> bool {
        matches!((&self.expected, self.seen()), (Some(e), Some(s)) if *e != s)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = Fingerprint::of_cert(end_entity).to_string();
        *self.seen.lock().expect("pin verifier poisoned") = Some(fp.clone());
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

/// Runs the TLS handshake over `tcp` with `verifier`.
pub async fn handshake(
    tcp: TcpStream,
    verifier: Arc<PinVerifier>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // The name is not checked (the pin is); it only fills in SNI.
    let name = ServerName::try_from("p2p-server").expect("static name is valid");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

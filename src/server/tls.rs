//! The server's TLS setup: its own certificate from the org's issuing CA, and client
//! certificates checked against the org root CA.
//!
//! Client certificates are optional at the TLS layer (enrollment, SCEP and the admin
//! API come without one) and required by the device endpoints, which look the
//! presented certificate up in the store: a certificate we issued to a device that
//! still exists.
//!
//! A presented certificate never fails the handshake: the handshake proves only that
//! the client holds the certificate's key, and [`ClientCheck`] then checks the chain
//! to our root; a certificate that does not verify counts as no certificate. Why: a
//! SCEP client renewing presents whatever identity it has (macOS sends its old leaf
//! without the chain, possibly expired), and a strict handshake would drop the very
//! connection that renews it. The issuing CA is supplied as the intermediate when the
//! client sends only its leaf.

use crate::pki::{IssuingCa, PkiError};
use rustls::DistinguishedName;
use rustls::RootCertStore;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// Lifetime of the server certificate made at start.
const SERVER_CERT_LIFETIME: Duration = Duration::days(90);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the server certificate: {0}")]
    Certificate(#[from] PkiError),
    #[error("cannot make the server key: {0}")]
    Key(#[from] rcgen::Error),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the org root CA certificate cannot be used as a client trust root: {0}")]
    ClientRoots(String),
}

/// The crypto provider used everywhere (ring: already needed by rcgen).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration with a fresh certificate for `names` (DNS names or
/// IP addresses) signed by the issuing CA, accepting optional client certificates that
/// chain to the root.
pub fn server_config(
    ca: &IssuingCa,
    names: &[String],
    org: &str,
    now: OffsetDateTime,
) -> Result<rustls::ServerConfig, TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let leaf = ca.issue_server(&key, names, org, SERVER_CERT_LIFETIME, now)?;
    let chain = vec![
        CertificateDer::from(leaf.der),
        CertificateDer::from(ca.cert_der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

    let verifier = Arc::new(LenientClientVerifier {
        inner: webpki_verifier(ca)?,
    });

    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The org root as the only trust root for client certificates.
fn webpki_verifier(ca: &IssuingCa) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.root_cert_der().to_vec()))
        .map_err(|e| TlsError::ClientRoots(e.to_string()))?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::ClientRoots(e.to_string()))
}

/// Asks for a client certificate and checks the handshake's proof of its key, but
/// leaves the chain to [`ClientCheck`] (see the module comment).
#[derive(Debug)]
struct LenientClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for LenientClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Checks a presented client chain after the handshake: it must lead to the org root
/// and be valid now (the checks the handshake used to make).
#[derive(Debug)]
pub struct ClientCheck {
    inner: Arc<dyn ClientCertVerifier>,
    issuing: CertificateDer<'static>,
}

impl ClientCheck {
    pub fn new(ca: &IssuingCa) -> Result<Self, TlsError> {
        Ok(Self {
            inner: webpki_verifier(ca)?,
            issuing: CertificateDer::from(ca.cert_der().to_vec()),
        })
    }

    /// Whether `chain` (leaf first, as the client sent it) verifies to the root.
    pub fn verifies(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, sent)) = chain.split_first() else {
            return false;
        };
        let mut intermediates = sent.to_vec();
        intermediates.push(self.issuing.clone());
        self.inner
            .verify_client_cert(leaf, &intermediates, UnixTime::now())
            .is_ok()
    }
}

/// The TLS acceptor with the client chain check that goes with it.
#[derive(Clone)]
pub struct Acceptor {
    pub tls: tokio_rustls::TlsAcceptor,
    pub client_check: Arc<ClientCheck>,
}

//! The server's TLS setup: its own certificate from the org's issuing CA, and client
//! certificates checked against the org root CA.
//!
//! Client certificates are optional at the TLS layer (enrollment and the admin API
//! come without one) and required by the device endpoints, which look the presented
//! certificate up in the store: a certificate we issued to a device that still exists.
//! The handshake has already proved that the client holds the certificate's key and
//! that the chain leads to our root.

use crate::pki::{IssuingCa, PkiError};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
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

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.root_cert_der().to_vec()))
        .map_err(|e| TlsError::ClientRoots(e.to_string()))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::ClientRoots(e.to_string()))?;

    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

//! The org's installer signing identity (an RSA key and its certificate chain,
//! such as a Developer ID Installer certificate), read from one PEM file holding a
//! PKCS#8 `PRIVATE KEY` and the `CERTIFICATE`s (leaf first), or from a PKCS#12
//! (`.p12`, as Keychain Access exports it) whose password is in
//! `FLEETKIT_INSTALLER_IDENTITY_PASSWORD`. It signs the xar TOC
//! checksum of a package the way `productsign` does — an RSA signature and a CMS
//! SignedData of the checksum — and can CMS-sign a configuration profile with the
//! content embedded. Signing times come from the build time, so signed output is
//! as reproducible as unsigned output.
//!
//! The same loading serves the Developer ID Application identity that code-signs the
//! darwin agent (`--codesign-identity`, password in
//! `FLEETKIT_CODESIGN_IDENTITY_PASSWORD`; see `pki::codesign`).

use crate::formats::xar::XarSigner;
use cryptographic_message_syntax::{SignedDataBuilder, SignerBuilder};
use std::path::Path;
use x509_certificate::{
    CapturedX509Certificate, InMemorySigningKeyPair, KeyAlgorithm, Sign, Signer,
};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum InstallerIdentityError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A loaded identity.
pub struct InstallerIdentity {
    key: InMemorySigningKeyPair,
    chain: Vec<CapturedX509Certificate>,
    signing_time: chrono::DateTime<chrono::Utc>,
    rsa_len: usize,
    cms_len: usize,
}

impl std::fmt::Debug for InstallerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallerIdentity")
            .field("subject", &self.subject())
            .finish_non_exhaustive()
    }
}

impl InstallerIdentity {
    /// Reads `path`: PEM (PKCS#8 RSA private key + certificate chain, leaf first) or
    /// PKCS#12 opened with `password`.
    pub fn load(
        path: &Path,
        password: &str,
        signing_time: time::OffsetDateTime,
    ) -> Result<Self, InstallerIdentityError> {
        let shown = path.display().to_string();
        let read_err = |reason: String| InstallerIdentityError::Read {
            path: shown.clone(),
            reason,
        };
        let bytes = Zeroizing::new(
            crate::fsutil::read_capped(path, 1024 * 1024).map_err(|e| read_err(e.to_string()))?,
        );
        // PKCS#12 is DER (a SEQUENCE); PEM is text.
        let (key, chain) = if bytes.first() == Some(&0x30) {
            from_pkcs12(&bytes, password).map_err(read_err)?
        } else {
            from_pem(&bytes).map_err(read_err)?
        };
        if key.key_algorithm() != Some(KeyAlgorithm::Rsa) {
            return Err(read_err(
                "the installer key must be RSA (as Apple's installer certificates are)".into(),
            ));
        }
        // A signature dated before the certificate's validity would not verify:
        // sign at the build time, or at the certificate's start if that is later.
        let not_before = chain[0].validity_not_before().timestamp();
        let signing_time =
            chrono::DateTime::from_timestamp(signing_time.unix_timestamp().max(not_before), 0)
                .unwrap_or_default();
        let mut identity = Self {
            key,
            chain,
            signing_time,
            rsa_len: 0,
            cms_len: 0,
        };
        // The key must belong to the leaf certificate.
        let probe = identity.rsa(&[0u8; 20])?;
        identity.chain[0]
            .verify_signed_data([0u8; 20], &probe)
            .map_err(|_| read_err("the private key does not match the first certificate".into()))?;
        identity.rsa_len = probe.len();
        identity.cms_len = identity.cms_detached(&[0u8; 20])?.len();
        Ok(identity)
    }

    /// The leaf certificate's subject, for messages.
    pub fn subject(&self) -> String {
        self.chain[0]
            .subject_common_name()
            .unwrap_or_else(|| "(no common name)".into())
    }

    /// The private key (RSA), for the code signature (`pki::codesign`).
    pub fn key(&self) -> &InMemorySigningKeyPair {
        &self.key
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CapturedX509Certificate] {
        &self.chain
    }

    /// The time every signature made with this identity carries: the build time, or
    /// the certificate's start if that is later.
    pub fn signing_time(&self) -> chrono::DateTime<chrono::Utc> {
        self.signing_time
    }

    fn rsa(&self, data: &[u8]) -> Result<Vec<u8>, InstallerIdentityError> {
        let sig = self
            .key
            .try_sign(data)
            .map_err(|e| InstallerIdentityError::Sign(e.to_string()))?;
        Ok(sig.as_ref().to_vec())
    }

    fn builder(&self) -> SignedDataBuilder<'_> {
        SignedDataBuilder::default()
            .signer(SignerBuilder::new(&self.key, self.chain[0].clone()))
            .certificates(self.chain.iter().cloned())
            .signing_time(self.signing_time.into())
    }

    /// CMS SignedData over `data`, detached.
    pub fn cms_detached(&self, data: &[u8]) -> Result<Vec<u8>, InstallerIdentityError> {
        self.builder()
            .content_external(data.to_vec())
            .build_der()
            .map_err(|e| InstallerIdentityError::Sign(e.to_string()))
    }

    /// CMS SignedData with `data` embedded (a signed configuration profile).
    pub fn cms_embedded(&self, data: &[u8]) -> Result<Vec<u8>, InstallerIdentityError> {
        self.builder()
            .content_inline(data.to_vec())
            .build_der()
            .map_err(|e| InstallerIdentityError::Sign(e.to_string()))
    }
}

impl XarSigner for InstallerIdentity {
    fn rsa_signature_len(&self) -> usize {
        self.rsa_len
    }
    fn cms_signature_len(&self) -> usize {
        self.cms_len
    }
    fn sign_rsa(&self, toc_checksum: &[u8]) -> Result<Vec<u8>, String> {
        self.rsa(toc_checksum).map_err(|e| e.to_string())
    }
    fn sign_cms(&self, toc_checksum: &[u8]) -> Result<Vec<u8>, String> {
        self.cms_detached(toc_checksum).map_err(|e| e.to_string())
    }
    fn certificates_der(&self) -> Vec<Vec<u8>> {
        self.chain
            .iter()
            .map(|c| c.constructed_data().to_vec())
            .collect()
    }
}

type KeyAndChain = (InMemorySigningKeyPair, Vec<CapturedX509Certificate>);

fn from_pem(bytes: &[u8]) -> Result<KeyAndChain, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "neither PEM text nor PKCS#12".to_string())?;
    let key_pem = pem_block(text, "PRIVATE KEY").ok_or_else(|| {
        "no `PRIVATE KEY` (PKCS#8) block; convert with `openssl pkcs8 -topk8 -nocrypt`".to_string()
    })?;
    let key = InMemorySigningKeyPair::from_pkcs8_pem(key_pem.as_bytes())
        .map_err(|e| format!("the private key cannot be used: {e}"))?;
    let chain = CapturedX509Certificate::from_pem_multiple(text.as_bytes())
        .map_err(|e| format!("bad certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block: append the certificate chain, leaf first".into());
    }
    Ok((key, chain))
}

fn from_pkcs12(bytes: &[u8], password: &str) -> Result<KeyAndChain, String> {
    let store = p12_keystore::KeyStore::from_pkcs12(bytes, password, Default::default())
        .map_err(|e| format!("cannot open the PKCS#12 ({e}); is its password right?"))?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| "the PKCS#12 holds no private key with its certificate".to_string())?;
    let key = InMemorySigningKeyPair::from_pkcs8_der(chain.key().as_der())
        .map_err(|e| format!("the private key cannot be used: {e}"))?;
    let certs = chain
        .certs()
        .iter()
        .map(|c| CapturedX509Certificate::from_der(c.as_der().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate: {e}"))?;
    if certs.is_empty() {
        return Err("the PKCS#12 holds no certificate".into());
    }
    Ok((key, certs))
}

/// The first PEM block labelled `label`, with its armour.
fn pem_block(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(text[start..stop].to_string())
}

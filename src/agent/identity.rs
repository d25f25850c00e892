//! The device's identity: its own key (made here, never sent anywhere, 0600), the
//! CSR the server turns into a certificate, and the check of the certificate chain
//! the server sends back.
//!
//! The chain is believed only after x509-parser has shown that the leaf is signed by
//! the issuing CA, the issuing CA by a root CA of the *installed* trust anchors
//! (never one the server offers), both CAs are CA:true and the leaf CA:false with
//! clientAuth, every certificate is valid now, the leaf names this machine and
//! carries this device's public key. Key and chain are then kept in one file so that
//! a renewal swaps both at once.

use crate::fsutil::{self, SECRET_MODE};
use crate::pki::fingerprint_der;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use std::path::Path;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

/// Largest identity file read (a key and a two-certificate chain are ~2 KB).
const MAX_IDENTITY_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot make the device key: {0}")]
    KeyGen(String),
    #[error("cannot make the certificate request: {0}")]
    Csr(String),
    #[error("the server's certificate chain is not trustworthy: {0}")]
    BadChain(String),
    #[error(
        "{path}: the device identity is unreadable ({reason}); run `fleetkit agent register --force`"
    )]
    Unreadable { path: String, reason: String },
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
}

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// A fresh device key (ECDSA P-256: sound, small, supported by every TLS stack).
pub fn new_key() -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| IdentityError::KeyGen(e.to_string()))
}

/// A PKCS#10 request for `machine_id` signed with `key`. The server builds the
/// certificate from its own template; the subject here is only a courtesy.
pub fn csr_pem(key: &KeyPair, machine_id: &str) -> Result<String> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| IdentityError::Csr(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, machine_id);
    params.distinguished_name = dn;
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| IdentityError::Csr(e.to_string()))
}

/// What a verified chain says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedChain {
    /// Leaf first, then the issuing CA, as PEM.
    pub chain_pem: String,
    pub fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Verifies the chain the server returned (see the module comment).
pub fn check_chain(
    chain_pem: &str,
    roots_pem: &[String],
    machine_id: &str,
    key: &KeyPair,
    now: OffsetDateTime,
) -> Result<CheckedChain> {
    let (checked, leaf_key) = check_issued(chain_pem, roots_pem, machine_id, now)?;
    if leaf_key != key.public_key_raw() {
        return Err(IdentityError::BadChain(
            "the machine certificate does not carry this device's public key".into(),
        ));
    }
    Ok(checked)
}

/// Verifies that `chain_pem` is a machine certificate for `machine_id`, issued under
/// one of `roots_pem` and valid at `at`; returns it with the leaf's public key (the
/// raw subject public key bits), for whoever checks a signature made with it.
pub fn check_issued(
    chain_pem: &str,
    roots_pem: &[String],
    machine_id: &str,
    now: OffsetDateTime,
) -> Result<(CheckedChain, Vec<u8>)> {
    let bad = |m: String| IdentityError::BadChain(m);
    let ders = pem_certificates(chain_pem).map_err(bad)?;
    if ders.len() != 2 {
        return Err(bad(format!(
            "expected the machine certificate and the issuing CA, got {} certificate(s)",
            ders.len()
        )));
    }
    let leaf = parse(&ders[0]).map_err(bad)?;
    let issuing = parse(&ders[1]).map_err(bad)?;
    let mut root_ders = Vec::new();
    for pem in roots_pem {
        root_ders.extend(pem_certificates(pem).map_err(bad)?);
    }
    let roots: Vec<X509Certificate<'_>> = root_ders
        .iter()
        .map(|d| parse(d))
        .collect::<std::result::Result<_, _>>()
        .map_err(bad)?;

    // The issuing CA must be signed by one of the installed roots.
    let root = roots
        .iter()
        .find(|r| issuing.verify_signature(Some(r.public_key())).is_ok())
        .ok_or_else(|| {
            bad(
                "the issuing CA is not signed by the org root CA in the installed trust anchors"
                    .into(),
            )
        })?;
    if leaf.verify_signature(Some(issuing.public_key())).is_err() {
        return Err(bad(
            "the machine certificate is not signed by the issuing CA".into(),
        ));
    }
    for (what, cert) in [("root CA", root), ("issuing CA", &issuing)] {
        if !is_ca(cert) {
            return Err(bad(format!("the {what} certificate is not a CA")));
        }
    }
    if is_ca(&leaf) {
        return Err(bad("the machine certificate claims to be a CA".into()));
    }
    let client_auth = leaf
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.client_auth);
    if !client_auth {
        return Err(bad(
            "the machine certificate lacks the clientAuth usage".into()
        ));
    }
    let ts = now.unix_timestamp();
    for (what, cert) in [
        ("machine certificate", &leaf),
        ("issuing CA", &issuing),
        ("root CA", root),
    ] {
        let v = cert.validity();
        if ts < v.not_before.timestamp() || ts >= v.not_after.timestamp() {
            return Err(bad(format!(
                "the {what} is not valid now ({} to {})",
                v.not_before, v.not_after
            )));
        }
    }
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default();
    if cn != machine_id {
        return Err(bad(format!(
            "the machine certificate names `{cn}`, this machine is `{machine_id}`"
        )));
    }
    let leaf_key = leaf.public_key().subject_public_key.data.to_vec();
    let v = leaf.validity();
    let not_before = OffsetDateTime::from_unix_timestamp(v.not_before.timestamp())
        .map_err(|e| bad(e.to_string()))?;
    let not_after = OffsetDateTime::from_unix_timestamp(v.not_after.timestamp())
        .map_err(|e| bad(e.to_string()))?;
    Ok((
        CheckedChain {
            chain_pem: ders.iter().map(|d| to_pem(d)).collect(),
            fingerprint: fingerprint_der(&ders[0]),
            not_before,
            not_after,
        },
        leaf_key,
    ))
}

fn parse(der: &[u8]) -> std::result::Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    cert.basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca)
}

/// The DER of every CERTIFICATE block in `pem`.
pub fn pem_certificates(pem: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("bad PEM: {e}"))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    Ok(out)
}

fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// The device key with its certificate chain.
pub struct Identity {
    pub key: KeyPair,
    pub chain_pem: String,
}

impl Identity {
    /// Writes key and chain into one 0600 file, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_pair(&self.key, &self.chain_pem, path)
    }

    /// Reads the identity file.
    pub fn load(path: &Path) -> Result<Self> {
        let unreadable = |reason: String| IdentityError::Unreadable {
            path: path.display().to_string(),
            reason,
        };
        let bytes = Zeroizing::new(
            fsutil::read_capped(path, MAX_IDENTITY_BYTES).map_err(|e| unreadable(e.to_string()))?,
        );
        let text = std::str::from_utf8(&bytes).map_err(|_| unreadable("not text".into()))?;
        let key = KeyPair::from_pem(text).map_err(|e| unreadable(e.to_string()))?;
        let chain = pem_certificates(text).map_err(unreadable)?;
        if chain.is_empty() {
            return Err(unreadable("no certificate".into()));
        }
        Ok(Self {
            key,
            chain_pem: chain.iter().map(|d| to_pem(d)).collect(),
        })
    }
}

/// Writes `key` and `chain_pem` into one 0600 file, atomically: the old pair or the
/// new pair, never one of each.
pub fn save_pair(key: &KeyPair, chain_pem: &str, path: &Path) -> Result<()> {
    let mut text = Zeroizing::new(key.serialize_pem());
    text.push_str(chain_pem);
    fsutil::write_atomic(path, text.as_bytes(), SECRET_MODE)?;
    Ok(())
}

/// Saves a key that waits for enrollment (0600).
pub fn save_pending_key(key: &KeyPair, path: &Path) -> Result<()> {
    let pem = Zeroizing::new(key.serialize_pem());
    fsutil::write_atomic(path, pem.as_bytes(), SECRET_MODE)?;
    Ok(())
}

/// The key waiting for enrollment, if one was kept and is readable.
pub fn load_pending_key(path: &Path) -> Option<KeyPair> {
    let bytes = Zeroizing::new(fsutil::read_capped(path, MAX_IDENTITY_BYTES).ok()?);
    KeyPair::from_pem(std::str::from_utf8(&bytes).ok()?).ok()
}

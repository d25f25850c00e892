//! The org's key material: Ed25519 policy-signing keys and the X.509 CA.
//!
//! - **Policy keys** ([`PolicyKey`]) sign policy bundles and anchors rotations. A key is
//!   named by its key id, the lowercase hex SHA-256 of the raw 32-byte public key, so
//!   anyone holding the public key can recompute the name. On disk the private key is
//!   PKCS#8 PEM (RFC 8410, the form `openssl genpkey -algorithm ed25519` writes),
//!   mode 0600; the public key is also available as SPKI PEM.
//! - **The CA** ([`OrgCa`]): an ECDSA P-256 root (`<org> Root CA`, pathlen 1, 10
//!   years, meant to be kept offline) and an issuing CA signed by it (`<org> Issuing
//!   CA`, pathlen 0, 5 years) that the server uses to sign machine certificates
//!   ([`IssuingCa`]). Files in the keys directory: `root-ca.pem`, `root-ca.key`,
//!   `issuing-ca.pem`, `issuing-ca.key`; keys are PKCS#8 PEM, 0600.
//!
//! Private key material never appears in `Debug`, `Display` or an error message.

mod ca;
#[cfg(feature = "admin")]
pub mod codesign;
#[cfg(feature = "admin")]
pub mod installer;
mod key;
mod machine;
#[cfg(feature = "admin")]
pub mod package_key;
#[cfg(feature = "admin")]
pub mod scep_ra;

pub(crate) use ca::parse_ca_cert_pem;
pub use ca::{
    ISSUING_CA_CERT, ISSUING_CA_KEY, IssuingCa, OrgCa, ROOT_CA_CERT, ROOT_CA_KEY, fingerprint_der,
    fingerprint_pem,
};
pub use key::{PolicyKey, keyid_of};
pub use machine::{
    CheckedCsr, CsrError, IssuedCertificate, MAX_CSR_BYTES, MachineTemplate, ScepTemplate,
    check_csr_der, check_csr_pem,
};

use crate::fsutil::{FsError, ReadError};
use std::path::PathBuf;

/// Largest key or certificate file we read (they are a few hundred bytes).
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Why a key or CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// Deliberately carries no detail from the parser: the input is secret.
    #[error("{source_name} is not an Ed25519 private key in PKCS#8 PEM form")]
    BadPolicyKey { source_name: String },
    #[error("cannot encode the private key as PKCS#8")]
    KeyEncode,
    #[error("cannot encode the public key as SPKI PEM")]
    PublicKeyEncode,
    #[error("the org name must not be empty")]
    EmptyOrg,
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{} is not a valid CA private key (PKCS#8 PEM)", path.display())]
    BadCaKey { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{} does not belong to the certificate {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{} is not signed by the root CA {}", issuing.display(), root.display())]
    ChainMismatch { issuing: PathBuf, root: PathBuf },
    #[error(
        "refusing to overwrite existing key material: {}; pass force to replace it (every artefact built with the old keys stops verifying)",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Exists(Vec<PathBuf>),
    #[error(transparent)]
    Io(#[from] FsError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// `Result` with [`PkiError`].
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

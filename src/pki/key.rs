//! Ed25519 policy-signing keys.

use super::{MAX_KEY_FILE_BYTES, PkiError, Result};
use crate::fsutil::{self, SECRET_MODE};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// The key id of a raw Ed25519 public key: lowercase hex SHA-256 of its 32 bytes.
pub fn keyid_of(public_key: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// An Ed25519 policy-signing key (private). Its `Debug` shows the key id only.
pub struct PolicyKey {
    signing: SigningKey,
}

impl PolicyKey {
    /// A new key from 32 bytes of the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|e| PkiError::Random(e.to_string()))?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The key whose RFC 8032 secret is `seed`. The seed *is* the private key: this is
    /// for fixed test and fuzzing fixtures; real keys come from [`PolicyKey::generate`].
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// Parses a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        Self::parse_pem(pem, "the input")
    }

    fn parse_pem(pem: &str, source_name: &str) -> Result<Self> {
        // The parser's own error is dropped on purpose: nothing derived from secret
        // input goes into an error message.
        SigningKey::from_pkcs8_pem(pem)
            .map(|signing| Self { signing })
            .map_err(|_| PkiError::BadPolicyKey {
                source_name: source_name.to_string(),
            })
    }

    /// The private key as PKCS#8 v1 PEM (RFC 8410), the form OpenSSL writes and
    /// reads. The string is wiped from memory when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        // v1 (no embedded public key) rather than v2: every OpenSSL 1.1.1+/3.x and
        // every PKCS#8 reader accepts it.
        let bytes = KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| PkiError::KeyEncode)
    }

    /// The raw 32-byte public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key, for verification.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), e.g. for
    /// `openssl pkeyutl -verify -pubin`.
    pub fn public_key_pem(&self) -> Result<String> {
        self.signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| PkiError::PublicKeyEncode)
    }

    /// The key id: lowercase hex SHA-256 of the raw public key.
    pub fn keyid(&self) -> String {
        keyid_of(&self.public_key_bytes())
    }

    /// Signs `message` (pure Ed25519, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Reads a PKCS#8 PEM private key file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = Zeroizing::new(fsutil::read_capped(path, MAX_KEY_FILE_BYTES)?);
        let text = std::str::from_utf8(&bytes).map_err(|_| PkiError::BadPolicyKey {
            source_name: path.display().to_string(),
        })?;
        Self::parse_pem(text, &path.display().to_string())
    }

    /// Writes the private key as PKCS#8 PEM, atomically, mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        let pem = self.to_pkcs8_pem()?;
        fsutil::write_atomic(path, pem.as_bytes(), SECRET_MODE)?;
        Ok(())
    }
}

impl fmt::Debug for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyKey")
            .field("keyid", &self.keyid())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let k = PolicyKey::generate().unwrap();
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = PolicyKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.keyid(), k.keyid());
        assert_eq!(back.sign(b"x"), k.sign(b"x"));
    }

    #[test]
    fn keyid_is_sha256_of_raw_public_key() {
        let k = PolicyKey::generate().unwrap();
        let id = k.keyid();
        assert_eq!(id.len(), 64);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(id, hex::encode(Sha256::digest(k.public_key_bytes())));
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let k = PolicyKey::generate().unwrap();
        let pem = k.to_pkcs8_pem().unwrap();
        let debug = format!("{k:?}");
        assert!(debug.contains(&k.keyid()));
        assert!(!debug.contains("PRIVATE"));
        // A damaged key: the error names the source, never the content.
        let damaged = pem.replace('A', "B");
        let err = PolicyKey::from_pkcs8_pem(&damaged)
            .err()
            .map(|e| e.to_string());
        if let Some(msg) = err {
            assert!(!msg.contains("BEGIN"));
            assert!(msg.len() < 100);
        }
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // The vector lives with the test fixtures: no key material in the sources.
        let vector = include_str!("../../tests/fixtures/ed25519/rfc8032-test-1.txt");
        let lines: Vec<&str> = vector.lines().filter(|l| !l.starts_with('#')).collect();
        let seed: [u8; 32] = hex::decode(lines[0]).unwrap().try_into().unwrap();
        let k = PolicyKey::from_seed(&seed);
        assert_eq!(hex::encode(k.public_key_bytes()), lines[1]);
        assert_eq!(hex::encode(k.sign(b"")), lines[2]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            PolicyKey::from_pkcs8_pem("not a key"),
            Err(PkiError::BadPolicyKey { .. })
        ));
    }
}

//! Server-side secrets: enrollment tokens and the admin credential.
//!
//! A secret is 32 random bytes, shown once as `fkt_<base64url>` (enrollment token) or
//! `fka_<base64url>` (admin credential). The server stores and compares only the
//! SHA-256 of the whole string: a leaked database does not give working tokens.
//! Public ids (`tok_<hex>`, `dev_<hex>`) name rows without revealing anything.

use base64::Engine;
use sha2::{Digest, Sha256};

/// Prefix of enrollment tokens.
pub const TOKEN_PREFIX: &str = "fkt_";
/// Prefix of admin credentials.
pub const ADMIN_PREFIX: &str = "fka_";

/// Why random bytes could not be had.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(String);

fn random<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}

/// A new secret with the given prefix.
pub fn new_secret(prefix: &str) -> Result<String, RandomError> {
    let bytes = random::<32>()?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A new public id: `<prefix>_<16 hex>`.
pub fn new_id(prefix: &str) -> Result<String, RandomError> {
    Ok(format!("{prefix}_{}", hex::encode(random::<8>()?)))
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two digests without an early exit, so response time says nothing about
/// how much of a guessed credential was right.
pub fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when `s` looks like a secret of this kind (prefix, 43 base64url characters):
/// checked before hashing so garbage is refused early and clearly.
pub fn is_well_formed(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_well_formed_and_hashed() {
        let a = new_secret(TOKEN_PREFIX).unwrap();
        let b = new_secret(TOKEN_PREFIX).unwrap();
        assert_ne!(a, b);
        assert!(is_well_formed(&a, TOKEN_PREFIX));
        assert!(!is_well_formed(&a, ADMIN_PREFIX));
        assert!(!is_well_formed("fkt_short", TOKEN_PREFIX));
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert!(digests_equal(b"abc", b"abc"));
        assert!(!digests_equal(b"abc", b"abd"));
        assert!(!digests_equal(b"abc", b"ab"));
        assert!(new_id("tok").unwrap().starts_with("tok_"));
    }
}

//! The digests and content-encryption ciphers SCEP clients use, by OID, and the
//! block cipher operations. What Apple's client sends: DES-EDE3-CBC (its default)
//! or AES-128-CBC when the server advertises "AES", with SHA-1 or SHA-256. Single DES
//! is RFC 8894's "MUST NOT"; it is read only when the server was started with
//! `--scep-allow-des` (micromdm's scepclient knows nothing else).

use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use der::asn1::ObjectIdentifier;
use sha2::Digest;

/// A digest for signatures and messageDigest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlg {
    Sha1,
    Sha256,
    Sha512,
}

impl DigestAlg {
    const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
    const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
    const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

    /// The digest named by a digestAlgorithm OID, or by a signature algorithm OID
    /// (sha1WithRSAEncryption…), as SCEP clients use either in places.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Some(match oid.to_string().as_str() {
            "1.3.14.3.2.26" | "1.2.840.113549.1.1.5" => Self::Sha1,
            "2.16.840.1.101.3.4.2.1" | "1.2.840.113549.1.1.11" => Self::Sha256,
            "2.16.840.1.101.3.4.2.3" | "1.2.840.113549.1.1.13" => Self::Sha512,
            _ => return None,
        })
    }

    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => Self::SHA1,
            Self::Sha256 => Self::SHA256,
            Self::Sha512 => Self::SHA512,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA-1",
            Self::Sha256 => "SHA-256",
            Self::Sha512 => "SHA-512",
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// Verifies a PKCS#1 v1.5 signature over `hash`, made with this digest.
    pub fn verify(self, key: &rsa::PublicKey, hash: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Sha1 => key.pkcs1v15_verify_prehash::<sha1::Sha1>(hash, signature),
            Self::Sha256 => key.pkcs1v15_verify_prehash::<sha2::Sha256>(hash, signature),
            Self::Sha512 => key.pkcs1v15_verify_prehash::<sha2::Sha512>(hash, signature),
        }
        .is_ok()
    }

    /// A PKCS#1 v1.5 signature over `hash`.
    pub fn sign(self, key: &rsa::PrivateKey, hash: &[u8]) -> Result<Vec<u8>, rsa::Error> {
        match self {
            Self::Sha1 => key.pkcs1v15_sign_prehash::<sha1::Sha1>(hash),
            Self::Sha256 => key.pkcs1v15_sign_prehash::<sha2::Sha256>(hash),
            Self::Sha512 => key.pkcs1v15_sign_prehash::<sha2::Sha512>(hash),
        }
    }
}

/// A content-encryption algorithm of an EnvelopedData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCipher {
    DesEde3Cbc,
    Aes128Cbc,
    Aes192Cbc,
    Aes256Cbc,
    /// Single DES: only with `--scep-allow-des`.
    DesCbc,
}

impl ContentCipher {
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Some(match oid.to_string().as_str() {
            "1.2.840.113549.3.7" => Self::DesEde3Cbc,
            "2.16.840.1.101.3.4.1.2" => Self::Aes128Cbc,
            "2.16.840.1.101.3.4.1.22" => Self::Aes192Cbc,
            "2.16.840.1.101.3.4.1.42" => Self::Aes256Cbc,
            "1.3.14.3.2.7" => Self::DesCbc,
            _ => return None,
        })
    }

    pub fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            Self::DesEde3Cbc => "1.2.840.113549.3.7",
            Self::Aes128Cbc => "2.16.840.1.101.3.4.1.2",
            Self::Aes192Cbc => "2.16.840.1.101.3.4.1.22",
            Self::Aes256Cbc => "2.16.840.1.101.3.4.1.42",
            Self::DesCbc => "1.3.14.3.2.7",
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::DesEde3Cbc => "DES-EDE3-CBC",
            Self::Aes128Cbc => "AES-128-CBC",
            Self::Aes192Cbc => "AES-192-CBC",
            Self::Aes256Cbc => "AES-256-CBC",
            Self::DesCbc => "DES-CBC",
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            Self::DesEde3Cbc => 24,
            Self::Aes128Cbc => 16,
            Self::Aes192Cbc => 24,
            Self::Aes256Cbc => 32,
            Self::DesCbc => 8,
        }
    }

    pub fn iv_len(self) -> usize {
        match self {
            Self::DesEde3Cbc | Self::DesCbc => 8,
            _ => 16,
        }
    }

    /// Decrypts CBC with PKCS#7 padding; `None` when the key, IV or padding is wrong.
    pub fn decrypt(self, key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        if key.len() != self.key_len() || iv.len() != self.iv_len() {
            return None;
        }
        fn run<C>(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>>
        where
            cbc::Decryptor<C>: KeyIvInit + BlockModeDecrypt,
            C: cbc::cipher::BlockCipherDecrypt,
        {
            cbc::Decryptor::<C>::new_from_slices(key, iv)
                .ok()?
                .decrypt_padded_vec::<Pkcs7>(data)
                .ok()
        }
        match self {
            Self::DesEde3Cbc => run::<des::TdesEde3>(key, iv, data),
            Self::DesCbc => run::<des::Des>(key, iv, data),
            Self::Aes128Cbc => run::<aes::Aes128>(key, iv, data),
            Self::Aes192Cbc => run::<aes::Aes192>(key, iv, data),
            Self::Aes256Cbc => run::<aes::Aes256>(key, iv, data),
        }
    }

    /// Encrypts CBC with PKCS#7 padding under a fresh random key and IV.
    pub fn encrypt(self, data: &[u8]) -> Result<Sealed, getrandom::Error> {
        let mut key = vec![0u8; self.key_len()];
        let mut iv = vec![0u8; self.iv_len()];
        getrandom::fill(&mut key)?;
        getrandom::fill(&mut iv)?;
        fn run<C>(key: &[u8], iv: &[u8], data: &[u8]) -> Vec<u8>
        where
            cbc::Encryptor<C>: KeyIvInit + BlockModeEncrypt,
            C: cbc::cipher::BlockCipherEncrypt,
        {
            match cbc::Encryptor::<C>::new_from_slices(key, iv) {
                Ok(c) => c.encrypt_padded_vec::<Pkcs7>(data),
                // Unreachable: the lengths come from the same table.
                Err(_) => Vec::new(),
            }
        }
        let out = match self {
            Self::DesEde3Cbc => run::<des::TdesEde3>(&key, &iv, data),
            Self::DesCbc => run::<des::Des>(&key, &iv, data),
            Self::Aes128Cbc => run::<aes::Aes128>(&key, &iv, data),
            Self::Aes192Cbc => run::<aes::Aes192>(&key, &iv, data),
            Self::Aes256Cbc => run::<aes::Aes256>(&key, &iv, data),
        };
        Ok(Sealed {
            key: zeroize::Zeroizing::new(key),
            iv,
            ciphertext: out,
        })
    }
}

/// Content encrypted under a fresh key: the key (for the recipient's key transport),
/// the IV and the ciphertext.
pub struct Sealed {
    pub key: zeroize::Zeroizing<Vec<u8>>,
    pub iv: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cipher_round_trips_and_a_wrong_key_fails() {
        for c in [
            ContentCipher::DesEde3Cbc,
            ContentCipher::Aes128Cbc,
            ContentCipher::Aes192Cbc,
            ContentCipher::Aes256Cbc,
            ContentCipher::DesCbc,
        ] {
            let sealed = c.encrypt(b"a certificate request").unwrap();
            let (key, iv, ct) = (&sealed.key, &sealed.iv, &sealed.ciphertext);
            assert_eq!(
                c.decrypt(key, iv, ct).as_deref(),
                Some(&b"a certificate request"[..])
            );
            assert_eq!(ContentCipher::from_oid(&c.oid()), Some(c));
            assert!(c.decrypt(&key[1..], iv, ct).is_none());
        }
    }
}

//! The org's OpenPGP package-signing key (`fleetkit build --package-signing-key`): it
//! signs the .rpm (header and payload, checked by `rpm -K` once the public key is
//! imported) and the apt repository's `InRelease`/`Release.gpg`.
//!
//! The key is the admin's, made with `gpg --quick-gen-key` (or any OpenPGP tool) and
//! exported with `gpg --armor --export-secret-keys`: an ASCII-armored transferable
//! secret key, passphrase-protected or not. It is checked before anything is built,
//! so a wrong passphrase or a key the package managers cannot use is one clear error:
//!
//! - a v4 key (rpm 4.18 and apt's gpgv do not read v6 keys);
//! - RSA of at least 2048 bits, or Ed25519 (EdDSA); DSA, ECDSA and the rest are
//!   refused (rpm before 4.19 verifies no ECDSA, and DSA is dead);
//! - a key whose self-signatures verify, not revoked, and not expired at the build
//!   time nor now (apt and rpm check a signing key's expiry when they verify);
//! - the signing key is the newest subkey that may sign (not revoked, not expired),
//!   else the primary key, as gpg picks; the rpm and the apt signatures both use it.
//!
//! Signatures are v4, SHA-256, and dated at the build time (`SOURCE_DATE_EPOCH`) —
//! or at the signing key's creation when the build time is earlier (a signature older
//! than its key is refused by gpgv and sqv) — so a rebuild is byte-identical (RSA
//! PKCS#1 v1.5 and Ed25519 signatures are deterministic). The secret never appears
//! in `Debug`, `Display` or an error; rpm's signer holds its own copy of the
//! passphrase for the length of a build.

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, KeyVersion, Password, Timestamp};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Why a package-signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PackageKeyError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Unusable {
        path: PathBuf,
        reason: String,
        help: &'static str,
    },
    #[error("signing with the package key failed: {0}")]
    Sign(String),
}

impl PackageKeyError {
    pub fn help(&self) -> String {
        match self {
            Self::Read { .. } => "give an ASCII-armored OpenPGP secret key: `gpg --armor --export-secret-keys KEYID > package-signing.asc`".into(),
            Self::Unusable { help, .. } => (*help).into(),
            Self::Sign(_) => "check the key with `gpg --list-packets`; this may be a fleetkit bug".into(),
        }
    }
}

/// Runs `$body` with `$k` bound to the signing key: the primary key and a subkey are
/// different types behind the same traits.
macro_rules! signing_key {
    ($this:expr, |$k:ident| $body:expr) => {
        match $this.signing {
            Signing::Primary => {
                let $k = &$this.key.primary_key;
                $body
            }
            Signing::Subkey(i) => {
                let $k = &$this.key.secret_subkeys[i].key;
                $body
            }
        }
    };
}

type Result<T, E = PackageKeyError> = std::result::Result<T, E>;

/// Which key of the certificate signs.
#[derive(Clone)]
enum Signing {
    Primary,
    Subkey(usize),
}

/// A checked, unlocked-on-use package-signing key.
#[derive(Clone)]
pub struct PackageSigningKey {
    /// The armored text as given: rpm's signer reads it itself.
    armored: Zeroizing<String>,
    key: SignedSecretKey,
    signing: Signing,
    passphrase: Zeroizing<String>,
}

impl std::fmt::Debug for PackageSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageSigningKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl PackageSigningKey {
    /// Reads and checks the key at `path`, unlocking it with `passphrase` (empty for
    /// an unprotected key) to prove the passphrase, at `now` (the build time).
    pub fn load(path: &Path, passphrase: Zeroizing<String>, now: u32) -> Result<Self> {
        let read = |reason: String| PackageKeyError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| read(e.to_string()))?;
        let armored = Zeroizing::new(String::from_utf8(bytes).map_err(|_| {
            read("not an ASCII-armored key (binary or not UTF-8); export it with --armor".into())
        })?);
        let unusable = |reason: String, help: &'static str| PackageKeyError::Unusable {
            path: path.to_path_buf(),
            reason,
            help,
        };
        if !armored.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
            return Err(
                if armored.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
                    unusable(
                        "this is a public key; signing needs the secret key".into(),
                        "export the secret key: `gpg --armor --export-secret-keys KEYID`",
                    )
                } else {
                    read("no `-----BEGIN PGP PRIVATE KEY BLOCK-----` in it".into())
                },
            );
        }
        // The parser's messages name packets, never key material.
        let (key, _) = SignedSecretKey::from_string(&armored)
            .map_err(|e| read(format!("not a readable OpenPGP secret key: {e}")))?;
        key.verify_bindings().map_err(|e| {
            unusable(
                format!("its self-signatures do not verify: {e}"),
                "export the key again from the keyring that made it",
            )
        })?;
        if !key.details.revocation_signatures.is_empty() {
            return Err(unusable(
                "the key is revoked; apt and rpm would refuse what it signs".into(),
                "make a new package-signing key and publish its public key to the devices",
            ));
        }
        let signing = match signing_subkey(&key, now, wall_clock()) {
            Some(i) => Signing::Subkey(i),
            None if primary_may_sign(&key) => Signing::Primary,
            None => {
                return Err(unusable(
                    "no key in it may sign: the primary key is for certification only and no signing subkey is valid (revoked or expired)".into(),
                    "add a signing subkey (`gpg --quick-add-key FINGERPRINT rsa3072 sign 2y`) and export the key again",
                ));
            }
        };
        let this = Self {
            armored,
            key,
            signing,
            passphrase,
        };
        let (version, algorithm, params) = signing_key!(this, |k| {
            (
                k.version(),
                k.algorithm(),
                k.public_params().to_bytes().unwrap_or_default(),
            )
        });
        if version != KeyVersion::V4 {
            return Err(unusable(
                format!("a {version:?} key; rpm and apt verify only v4 keys"),
                "make a v4 key: `gpg --quick-gen-key 'Acme packages <it@acme.example>' rsa3072 sign 2y` (gpg 2.4 makes v4 keys)",
            ));
        }
        match algorithm {
            PublicKeyAlgorithm::RSA => {
                // The public parameters start with the modulus as an OpenPGP MPI:
                // its bit count in two bytes.
                let bits = params
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .unwrap_or(0);
                if bits < 2048 {
                    return Err(unusable(
                        format!("an RSA key of {bits} bits; at least 2048 are needed"),
                        "make a new key: `gpg --quick-gen-key 'Acme packages <it@acme.example>' rsa3072 sign 2y`",
                    ));
                }
            }
            // The v4 EdDSA form gpg makes; the RFC 9580 Ed25519 algorithm (27) is
            // not verified by gpgv 2.2/2.4 nor rpm's own OpenPGP parser.
            PublicKeyAlgorithm::EdDSALegacy => {}
            other => {
                return Err(unusable(
                    format!("a {other:?} key; rpm and apt verify RSA and Ed25519 signatures"),
                    "make an RSA or Ed25519 key: `gpg --quick-gen-key 'Acme packages <it@acme.example>' ed25519 sign 2y`",
                ));
            }
        }
        for (which, expires) in [
            ("the key", primary_expiry(&this.key)),
            (
                "its signing subkey",
                match this.signing {
                    Signing::Primary => None,
                    Signing::Subkey(i) => subkey_validity(&this.key.secret_subkeys[i]).1,
                },
            ),
        ] {
            if let Some(expires) = expires
                && (expires <= now || expires <= wall_clock())
            {
                return Err(unusable(
                    format!(
                        "{which} expires at {} (Unix time), before this build or today; apt and rpm refuse signatures of an expired key",
                        expires
                    ),
                    "extend it (`gpg --quick-set-expire FINGERPRINT 2y`, and for a subkey `gpg --quick-set-expire FINGERPRINT 2y '*'`) and export it again",
                ));
            }
        }
        // A signature proves the passphrase now rather than in the middle of a build.
        this.signature(SignatureType::Binary, now, b"fleetkit".as_slice())
            .map_err(|_| {
                unusable(
                    "the key cannot sign with the passphrase given (wrong passphrase?)".into(),
                    "put the key's passphrase in FLEETKIT_PACKAGE_SIGNING_KEY_PASSPHRASE, or none for a key without one",
                )
            })?;
        Ok(this)
    }

    /// The signing key's fingerprint, upper-case hex (as `gpg --fingerprint` and
    /// `rpm -K` spell it).
    pub fn fingerprint(&self) -> String {
        signing_key!(self, |k| k.fingerprint().to_string().to_uppercase())
    }

    /// The certificate's public key, ASCII-armored: what `rpm --import` and apt's
    /// `signed-by` keyring read.
    pub fn public_key_armored(&self) -> Result<String> {
        self.key
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| PackageKeyError::Sign(e.to_string()))
    }

    /// The certificate's public key as binary OpenPGP packets (`gpg --export`): the
    /// keyring apt's `signed-by` names.
    pub fn public_key_binary(&self) -> Result<Vec<u8>> {
        self.key
            .to_public_key()
            .to_bytes()
            .map_err(|e| PackageKeyError::Sign(e.to_string()))
    }

    /// rpm's signer with the same key and passphrase.
    pub fn rpm_signer(&self) -> Result<rpm::signature::pgp::Signer> {
        let fingerprint = signing_key!(self, |k| k.fingerprint().as_bytes().to_vec());
        rpm::signature::pgp::Signer::from_asc(&self.armored)
            .and_then(|s| s.with_signing_key(&fingerprint))
            .map(|s| s.with_key_passphrase(self.passphrase.to_string()))
            .map_err(|e| PackageKeyError::Sign(e.to_string()))
    }

    /// `text` as an OpenPGP cleartext-signed message (apt's `InRelease`), signed
    /// at `time`.
    pub fn clearsign(&self, text: &str, time: u32) -> Result<String> {
        let config = self.config(SignatureType::Text, time)?;
        let message = signing_key!(self, |k| {
            CleartextSignedMessage::new(text, config, k, &self.password())
        });
        message
            .and_then(|m| m.to_armored_string(ArmorOptions::default()))
            .map_err(|e| PackageKeyError::Sign(e.to_string()))
    }

    /// An armored detached signature of `data` (apt's `Release.gpg`), made at `time`.
    pub fn detached(&self, data: &[u8], time: u32) -> Result<String> {
        let signature = self.signature(SignatureType::Binary, time, data)?;
        DetachedSignature::new(signature)
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| PackageKeyError::Sign(e.to_string()))
    }

    fn signature(
        &self,
        typ: SignatureType,
        time: u32,
        data: &[u8],
    ) -> Result<pgp::packet::Signature> {
        let config = self.config(typ, time)?;
        signing_key!(self, |k| config.sign(k, &self.password(), data))
            .map_err(|e| PackageKeyError::Sign(e.to_string()))
    }

    /// When a signature asked for at `time` is dated: never before the signing
    /// key was made (gpgv and sqv refuse a signature older than its key).
    pub fn signature_time(&self, time: u32) -> u32 {
        time.max(signing_key!(self, |k| k.created_at().as_secs()))
    }

    /// A v4 SHA-256 signature dated at [`Self::signature_time`], naming its issuer
    /// as gpg does (the fingerprint hashed, the key id not).
    fn config(&self, typ: SignatureType, time: u32) -> Result<SignatureConfig> {
        let time = self.signature_time(time);
        let (algorithm, fingerprint, key_id) = signing_key!(self, |k| (
            k.algorithm(),
            k.fingerprint(),
            k.legacy_key_id()
        ));
        let mut config = SignatureConfig::v4(typ, algorithm, HashAlgorithm::Sha256);
        let sign = |e: pgp::errors::Error| PackageKeyError::Sign(e.to_string());
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
                time,
            )))
            .map_err(sign)?,
            Subpacket::regular(SubpacketData::IssuerFingerprint(fingerprint)).map_err(sign)?,
        ];
        config.unhashed_subpackets =
            vec![Subpacket::regular(SubpacketData::IssuerKeyId(key_id)).map_err(sign)?];
        Ok(config)
    }

    fn password(&self) -> Password {
        Password::from(self.passphrase.as_str())
    }
}

/// Now, Unix time (expiry is checked against the real clock as well as the build
/// time: a device verifies today).
fn wall_clock() -> u32 {
    u32::try_from(crate::clock::now().unix_timestamp().max(0)).unwrap_or(u32::MAX)
}

/// `created + lifetime`, or `None` for a key that never expires.
fn expiry(created: u32, signature: &pgp::packet::Signature) -> Option<u32> {
    let lifetime = signature.key_expiration_time()?.as_secs();
    (lifetime != 0).then(|| created.saturating_add(lifetime))
}

/// The primary key's newest self-certification (a user ID's revocation is not
/// one): it carries the key's current expiry and flags.
fn newest_self_certification(key: &SignedSecretKey) -> Option<&pgp::packet::Signature> {
    key.details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(key.details.direct_signatures.iter())
        .filter(|s| s.typ() != Some(SignatureType::CertRevocation))
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
}

/// The primary key's expiry.
fn primary_expiry(key: &SignedSecretKey) -> Option<u32> {
    expiry(
        key.primary_key.created_at().as_secs(),
        newest_self_certification(key)?,
    )
}

/// Whether the primary key's newest self-certification lets it sign (no key flags
/// at all: an old key, which may).
fn primary_may_sign(key: &SignedSecretKey) -> bool {
    newest_self_certification(key).is_none_or(|s| {
        let flags = s.key_flags();
        flags.sign() || !(flags.certify() || flags.encrypt_comms() || flags.encrypt_storage())
    })
}

/// A subkey's (may it sign, its expiry, is it revoked), from its newest binding.
fn subkey_validity(sk: &pgp::composed::SignedSecretSubKey) -> (bool, Option<u32>, bool) {
    let revoked = sk
        .signatures
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
    let binding = sk
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0));
    match binding {
        Some(b) => (
            b.key_flags().sign(),
            expiry(sk.key.created_at().as_secs(), b),
            revoked,
        ),
        None => (false, None, revoked),
    }
}

/// The newest subkey that may sign and is neither revoked nor expired at `now` or
/// `wall`: the one gpg signs with. `None`: the primary key signs.
fn signing_subkey(key: &SignedSecretKey, now: u32, wall: u32) -> Option<usize> {
    key.secret_subkeys
        .iter()
        .enumerate()
        .filter(|(_, sk)| {
            let (sign, expires, revoked) = subkey_validity(sk);
            sign && !revoked && expires.is_none_or(|e| e > now && e > wall)
        })
        .max_by_key(|(_, sk)| sk.key.created_at().as_secs())
        .map(|(i, _)| i)
}

/// Reads `FLEETKIT_PACKAGE_SIGNING_KEY_PASSPHRASE` (empty when unset).
pub fn passphrase_from_env() -> Zeroizing<String> {
    Zeroizing::new(std::env::var("FLEETKIT_PACKAGE_SIGNING_KEY_PASSPHRASE").unwrap_or_default())
}

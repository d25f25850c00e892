//! The SCEP registration authority (RA): an RSA-2048 key and a certificate for it,
//! issued by the org's issuing CA, that SCEP clients encrypt their requests to and
//! that signs the server's replies.
//!
//! Why an RA and not the issuing CA itself: the issuing CA is ECDSA P-256, and Apple's
//! SCEP client encrypts only to RSA recipients; a CA key should also never be used for
//! key transport (decrypting whatever a stranger sends). So the RA holds its own RSA
//! key, with keyUsage digitalSignature + keyEncipherment, CA:FALSE. The profile pins the
//! issuing CA (`CAFingerprint`); GetCACert returns [RA, issuing CA], and a client checks
//! that the RA is signed by the CA it pinned.
//!
//! Files in the keys directory: `scep-ra.pem` (public) and `scep-ra.key` (PKCS#8 PEM,
//! 0600). `fleetkit serve` makes them at start when missing, and makes a new pair when
//! the certificate has less than [`RENEW_BEFORE`] left; the key never leaves the
//! server.
//!
//! Rotation keeps the old pair as `scep-ra.previous.pem`/`.key` until its certificate
//! expires: a device that fetched GetCACert before the restart encrypts to the old RA,
//! and its request must still open (and its answer be signed by the RA it knows).
//! GetCACert hands out only the current RA; an expired previous pair is deleted at
//! start, so a dead decryption key does not linger on disk.

use super::machine::random_serial;
use super::{IssuingCa, PkiError, Result, fingerprint_der};
use crate::fsutil::{self, FsError, PUBLIC_MODE, SECRET_MODE};
use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

pub const SCEP_RA_CERT: &str = "scep-ra.pem";
pub const SCEP_RA_KEY: &str = "scep-ra.key";
pub const SCEP_RA_PREVIOUS_CERT: &str = "scep-ra.previous.pem";
pub const SCEP_RA_PREVIOUS_KEY: &str = "scep-ra.previous.key";

/// How long a new RA certificate lives (never beyond the issuing CA).
const RA_VALIDITY: Duration = Duration::days(730);
/// A certificate with less than this left is replaced at start.
pub const RENEW_BEFORE: Duration = Duration::days(30);
const BACKDATE: Duration = Duration::hours(1);
const RA_KEY_BITS: usize = 2048;

/// The RA key and certificate.
pub struct ScepRa {
    key: rsa::PrivateKey,
    /// The same key for ring (faster signatures; see `scep::reply::Signer`).
    ring: Option<ring::signature::RsaKeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl std::fmt::Debug for ScepRa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScepRa")
            .field("cert", &fingerprint_der(&self.cert_der))
            .finish_non_exhaustive()
    }
}

/// The RA in use, and the one it replaced while that one's certificate lives.
#[derive(Debug)]
pub struct ScepRas {
    pub current: ScepRa,
    pub previous: Option<ScepRa>,
}

/// What [`ScepRa::load_or_create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaOrigin {
    Loaded,
    Created,
    /// The previous certificate expired or was about to.
    Renewed,
}

impl ScepRa {
    /// A new RA key and certificate issued by `ca` (not written anywhere).
    pub fn generate(ca: &IssuingCa, org: &str, now: OffsetDateTime) -> Result<Self> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, RA_KEY_BITS)
            .map_err(|e| PkiError::Random(e.to_string()))?;
        let spki = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|_| PkiError::PublicKeyEncode)?;
        let public = rcgen::SubjectPublicKeyInfo::from_der(spki.as_bytes())?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{org} SCEP RA"));
        dn.push(DnType::OrganizationName, org.to_string());
        params.distinguished_name = dn;
        params.not_before = now - BACKDATE;
        let ca_not_after = ca_not_after(ca.cert_der()).unwrap_or(now + RA_VALIDITY);
        params.not_after = (now + RA_VALIDITY).min(ca_not_after);
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&public, &ca.issuer()?)?;
        Ok(Self {
            ring: ring_key(&key),
            key,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
        })
    }

    /// Loads the RA from `dir`, or makes it (and writes it) when it is missing or
    /// its certificate has less than [`RENEW_BEFORE`] left or is not the issuing
    /// CA's. A replaced pair whose certificate still lives is kept as the previous
    /// one; a previous pair that expired is deleted.
    pub fn load_or_create(
        dir: &Path,
        ca: &IssuingCa,
        org: &str,
        now: OffsetDateTime,
    ) -> Result<(ScepRas, RaOrigin)> {
        let cert_path = dir.join(SCEP_RA_CERT);
        let key_path = dir.join(SCEP_RA_KEY);
        let previous_cert = dir.join(SCEP_RA_PREVIOUS_CERT);
        let previous_key = dir.join(SCEP_RA_PREVIOUS_KEY);
        let mut replaced = None;
        // With one of the two missing (a crash between the writes of a first
        // creation), a new pair is made.
        let origin = if cert_path.exists() && key_path.exists() {
            match Self::load(&cert_path, &key_path) {
                Ok(ra) if ra.usable(ca, now) => {
                    let previous = Self::load_previous(&previous_cert, &previous_key, now)?;
                    return Ok((
                        ScepRas {
                            current: ra,
                            previous,
                        },
                        RaOrigin::Loaded,
                    ));
                }
                Ok(ra) => {
                    replaced = Some(ra);
                    RaOrigin::Renewed
                }
                // A crash between writing the new key and its certificate leaves a
                // pair that does not match; the RA holds nothing worth keeping
                // (clients fetch it with GetCACert), so a new pair replaces it.
                Err(PkiError::KeyMismatch { .. }) => RaOrigin::Renewed,
                Err(e) => return Err(e),
            }
        } else {
            RaOrigin::Created
        };
        // The replaced pair becomes the previous one before the new pair is written:
        // a crash in between leaves the old pair current, and the next start renews
        // again. Without a live replaced pair, an older previous one stays.
        let previous = match replaced.filter(|ra| ra.alive(now)) {
            Some(old) => {
                old.write(&previous_cert, &previous_key)?;
                Some(old)
            }
            None => Self::load_previous(&previous_cert, &previous_key, now)?,
        };
        let ra = Self::generate(ca, org, now)?;
        ra.write(&cert_path, &key_path)?;
        Ok((
            ScepRas {
                current: ra,
                previous,
            },
            origin,
        ))
    }

    /// The previous pair when it is there and its certificate has not expired; an
    /// expired, unreadable or mismatched previous pair is deleted (it can only
    /// decrypt requests no client should still send).
    fn load_previous(
        cert_path: &Path,
        key_path: &Path,
        now: OffsetDateTime,
    ) -> Result<Option<Self>> {
        if !cert_path.exists() && !key_path.exists() {
            return Ok(None);
        }
        match Self::load(cert_path, key_path) {
            Ok(ra) if ra.alive(now) => Ok(Some(ra)),
            _ => {
                for path in [key_path, cert_path] {
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(FsError::new("remove", path, e).into()),
                    }
                }
                Ok(None)
            }
        }
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let bad = |path: &PathBuf, reason: &str| PkiError::BadCertificate {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let cert_pem = fsutil::read_capped(cert_path, super::MAX_KEY_FILE_BYTES)?;
        let (rest, block) = x509_parser::pem::parse_x509_pem(&cert_pem)
            .map_err(|_| bad(&cert_path.to_path_buf(), "not a PEM certificate"))?;
        if block.label != "CERTIFICATE" || !rest.iter().all(u8::is_ascii_whitespace) {
            return Err(bad(&cert_path.to_path_buf(), "not one PEM certificate"));
        }
        let key_pem =
            zeroize::Zeroizing::new(fsutil::read_capped(key_path, super::MAX_KEY_FILE_BYTES)?);
        let key = std::str::from_utf8(&key_pem)
            .ok()
            .and_then(|pem| rsa::PrivateKey::from_pkcs8_pem(pem).ok())
            .ok_or_else(|| PkiError::BadCaKey {
                path: key_path.to_path_buf(),
            })?;
        let ra = Self {
            ring: ring_key(&key),
            key,
            cert_der: block.contents,
            cert_pem: String::from_utf8_lossy(&cert_pem).into_owned(),
        };
        // The key must be the certificate's.
        let spki = ra
            .key
            .to_public_key()
            .to_public_key_der()
            .map_err(|_| PkiError::PublicKeyEncode)?;
        let matches = x509_parser::parse_x509_certificate(&ra.cert_der)
            .is_ok_and(|(_, c)| c.public_key().raw == spki.as_bytes());
        if !matches {
            return Err(PkiError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            });
        }
        Ok(ra)
    }

    fn write(&self, cert_path: &Path, key_path: &Path) -> Result<()> {
        let key_pem = self
            .key
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|_| PkiError::KeyEncode)?;
        fsutil::write_atomic(key_path, key_pem.as_bytes(), SECRET_MODE)?;
        fsutil::write_atomic(cert_path, self.cert_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(())
    }

    /// Signed by `ca` and valid for at least [`RENEW_BEFORE`] from `now`.
    fn usable(&self, ca: &IssuingCa, now: OffsetDateTime) -> bool {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&self.cert_der) else {
            return false;
        };
        let Ok((_, issuer)) = x509_parser::parse_x509_certificate(ca.cert_der()) else {
            return false;
        };
        let not_after = cert.validity().not_after.timestamp();
        cert.verify_signature(Some(issuer.public_key())).is_ok()
            && not_after > (now + RENEW_BEFORE).unix_timestamp()
    }

    /// The certificate has not expired at `now`.
    fn alive(&self, now: OffsetDateTime) -> bool {
        x509_parser::parse_x509_certificate(&self.cert_der)
            .is_ok_and(|(_, c)| c.validity().not_after.timestamp() > now.unix_timestamp())
    }

    pub fn key(&self) -> &rsa::PrivateKey {
        &self.key
    }

    /// The key for ring, when ring takes it (it does any RSA-2048 key `rsa` makes).
    pub fn ring_key(&self) -> Option<&ring::signature::RsaKeyPair> {
        self.ring.as_ref()
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
}

/// `key` as a ring key pair (through PKCS#8 DER, zeroized after).
pub(crate) fn ring_key(key: &rsa::PrivateKey) -> Option<ring::signature::RsaKeyPair> {
    let der = key.to_pkcs8_der().ok()?;
    ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).ok()
}

fn ca_not_after(der: &[u8]) -> Option<OffsetDateTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::OrgCa;
    use std::os::unix::fs::PermissionsExt;

    fn fp(ra: &ScepRa) -> String {
        fingerprint_der(ra.cert_der())
    }

    /// A device's whole RA lifetime as the server sees it across restarts: made,
    /// reloaded, rotated with the old pair kept, reloaded with both, the old pair
    /// expired and deleted.
    #[test]
    fn a_rotation_keeps_the_old_ra_for_decryption_until_it_expires() {
        let t0 = crate::clock::now();
        let ca = OrgCa::generate("acme-corp", t0).unwrap().into_issuing();
        let dir = tempfile::tempdir().unwrap();
        let at = |days: i64| t0 + Duration::days(days);

        let (made, origin) = ScepRa::load_or_create(dir.path(), &ca, "acme-corp", t0).unwrap();
        assert_eq!(origin, RaOrigin::Created);
        assert!(made.previous.is_none());
        let first = fp(&made.current);

        let (again, origin) = ScepRa::load_or_create(dir.path(), &ca, "acme-corp", at(1)).unwrap();
        assert_eq!(
            (origin, fp(&again.current)),
            (RaOrigin::Loaded, first.clone())
        );
        assert!(again.previous.is_none());

        // 29 days left: a new pair, and the old one kept.
        let (rotated, origin) =
            ScepRa::load_or_create(dir.path(), &ca, "acme-corp", at(701)).unwrap();
        assert_eq!(origin, RaOrigin::Renewed);
        let second = fp(&rotated.current);
        assert_ne!(second, first);
        assert_eq!(rotated.previous.as_ref().map(fp), Some(first.clone()));
        let mode = std::fs::metadata(dir.path().join(SCEP_RA_PREVIOUS_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the previous RA key is a secret");

        // A restart while the old certificate lives loads both.
        let (both, origin) = ScepRa::load_or_create(dir.path(), &ca, "acme-corp", at(702)).unwrap();
        assert_eq!(
            (origin, fp(&both.current)),
            (RaOrigin::Loaded, second.clone())
        );
        assert_eq!(both.previous.as_ref().map(fp), Some(first));

        // Once it expired, the old pair is gone from memory and from disk.
        let (after, origin) =
            ScepRa::load_or_create(dir.path(), &ca, "acme-corp", at(731)).unwrap();
        assert_eq!((origin, fp(&after.current)), (RaOrigin::Loaded, second));
        assert!(after.previous.is_none());
        assert!(!dir.path().join(SCEP_RA_PREVIOUS_KEY).exists());
        assert!(!dir.path().join(SCEP_RA_PREVIOUS_CERT).exists());
    }

    /// A pair whose key is not its certificate's (a crash between the two writes)
    /// is replaced, and is not kept: it cannot open anything a client sent.
    #[test]
    fn a_half_written_pair_is_replaced_and_not_kept_as_the_previous_one() {
        let now = crate::clock::now();
        let ca = OrgCa::generate("acme-corp", now).unwrap().into_issuing();
        let dir = tempfile::tempdir().unwrap();
        ScepRa::load_or_create(dir.path(), &ca, "acme-corp", now).unwrap();
        let other = ScepRa::generate(&ca, "acme-corp", now).unwrap();
        let key_pem = other.key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        std::fs::write(dir.path().join(SCEP_RA_KEY), key_pem.as_bytes()).unwrap();

        let (ras, origin) = ScepRa::load_or_create(dir.path(), &ca, "acme-corp", now).unwrap();
        assert_eq!(origin, RaOrigin::Renewed);
        assert!(ras.previous.is_none());
        assert!(!dir.path().join(SCEP_RA_PREVIOUS_KEY).exists());
    }
}

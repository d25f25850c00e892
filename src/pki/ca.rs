//! The org CA: a root (offline) and an issuing CA (used by the server).

use super::{MAX_KEY_FILE_BYTES, PkiError, Result};
use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// File names in the keys directory.
pub const ROOT_CA_CERT: &str = "root-ca.pem";
pub const ROOT_CA_KEY: &str = "root-ca.key";
pub const ISSUING_CA_CERT: &str = "issuing-ca.pem";
pub const ISSUING_CA_KEY: &str = "issuing-ca.key";

const ROOT_VALIDITY: Duration = Duration::days(3652);
const ISSUING_VALIDITY: Duration = Duration::days(1826);
/// notBefore lies a little in the past so that devices whose clock runs slightly
/// behind the admin's still accept certificates issued right after `init`.
const BACKDATE: Duration = Duration::hours(1);

/// `sha256:<hex>` of a DER certificate, the form shown to users and in manifests.
pub fn fingerprint_der(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// `sha256:<hex>` of the DER inside a PEM certificate; `None` if it is not one.
pub fn fingerprint_pem(pem: &str) -> Option<String> {
    cert_der_from_pem(pem).ok().map(|der| fingerprint_der(&der))
}

/// The DER of the single `CERTIFICATE` block in `pem`.
fn cert_der_from_pem(pem: &str) -> std::result::Result<Vec<u8>, String> {
    let (rest, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "PEM block is `{}`, expected `CERTIFICATE`",
            block.label
        ));
    }
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err("more than one PEM block (give one certificate per entry)".into());
    }
    Ok(block.contents)
}

/// Checks that `pem` is one X.509 CA certificate (basicConstraints CA:TRUE); returns
/// its DER. Used for the root CA certificates listed in the trust anchors.
pub(crate) fn parse_ca_cert_pem(pem: &str) -> std::result::Result<Vec<u8>, String> {
    let der = cert_der_from_pem(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => Ok(der),
        Ok(_) => Err(format!(
            "`{}` is not a CA certificate (no basicConstraints CA:TRUE)",
            cert.subject()
        )),
        Err(e) => Err(format!("bad basicConstraints extension ({e})")),
    }
}

/// A CA certificate with its private key.
struct CaPart {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
}

impl CaPart {
    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Ok(Issuer::from_ca_cert_der(
            &self.cert_der.as_slice().into(),
            &self.key,
        )?)
    }

    /// Reads `<dir>/<cert>` and `<dir>/<key>` and checks that they belong together.
    fn load(dir: &Path, cert_name: &str, key_name: &str) -> Result<Self> {
        let cert_path = dir.join(cert_name);
        let key_path = dir.join(key_name);
        let (cert_pem, cert_der) = load_ca_cert(&cert_path)?;
        let key_bytes = Zeroizing::new(fsutil::read_capped(&key_path, MAX_KEY_FILE_BYTES)?);
        let key = std::str::from_utf8(&key_bytes)
            .ok()
            .and_then(|text| KeyPair::from_pem(text).ok())
            .ok_or_else(|| PkiError::BadCaKey {
                path: key_path.clone(),
            })?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| {
            PkiError::BadCertificate {
                path: cert_path.clone(),
                reason: e.to_string(),
            }
        })?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }
        Ok(Self {
            cert_pem,
            cert_der,
            key,
        })
    }
}

fn load_ca_cert(path: &Path) -> Result<(String, Vec<u8>)> {
    let bytes = fsutil::read_capped(path, MAX_KEY_FILE_BYTES)?;
    let bad = |reason: String| PkiError::BadCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    let der = parse_ca_cert_pem(&text).map_err(bad)?;
    Ok((text, der))
}

/// Checks that the issuing certificate was signed by the root certificate's key.
fn check_chain(root_der: &[u8], issuing_der: &[u8], dir: &Path) -> Result<()> {
    let mismatch = || PkiError::ChainMismatch {
        issuing: dir.join(ISSUING_CA_CERT),
        root: dir.join(ROOT_CA_CERT),
    };
    let (_, root_cert) = x509_parser::parse_x509_certificate(root_der).map_err(|_| mismatch())?;
    let (_, issuing_cert) =
        x509_parser::parse_x509_certificate(issuing_der).map_err(|_| mismatch())?;
    issuing_cert
        .verify_signature(Some(root_cert.public_key()))
        .map_err(|_| mismatch())
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| PkiError::Random(e.to_string()))?;
    // Positive (top bit clear) and without a leading zero byte, so the DER INTEGER
    // is exactly 16 bytes (RFC 5280: at most 20 octets, positive).
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params(
    org: &str,
    common_name: String,
    path_len: u8,
    not_before: OffsetDateTime,
    validity: Duration,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, org.to_string());
    params.distinguished_name = dn;
    params.not_before = not_before - BACKDATE;
    params.not_after = not_before + validity;
    params.serial_number = Some(random_serial()?);
    // rcgen writes basicConstraints and keyUsage as critical, and a subject key
    // identifier for CA certificates.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// The org root CA and issuing CA, with their private keys.
pub struct OrgCa {
    root: CaPart,
    issuing: CaPart,
}

impl OrgCa {
    /// Generates a new root CA (ECDSA P-256, pathlen 1, 10 years) and an issuing CA
    /// signed by it (pathlen 0, 5 years). P-256 rather than Ed25519 because every OS
    /// trust store and TLS stack accepts it.
    pub fn generate(org: &str, now: OffsetDateTime) -> Result<Self> {
        let org = org.trim();
        if org.is_empty() {
            return Err(PkiError::EmptyOrg);
        }
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let root_params = ca_params(org, format!("{org} Root CA"), 1, now, ROOT_VALIDITY)?;
        let root_cert = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, &root_key);

        let issuing_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issuing_params = ca_params(org, format!("{org} Issuing CA"), 0, now, ISSUING_VALIDITY)?;
        let issuing_cert = issuing_params.signed_by(&issuing_key, &root_issuer)?;
        drop(root_issuer);

        Ok(Self {
            root: CaPart {
                cert_pem: root_cert.pem(),
                cert_der: root_cert.der().to_vec(),
                key: root_key,
            },
            issuing: CaPart {
                cert_pem: issuing_cert.pem(),
                cert_der: issuing_cert.der().to_vec(),
                key: issuing_key,
            },
        })
    }

    /// Writes `root-ca.pem`, `root-ca.key`, `issuing-ca.pem`, `issuing-ca.key` into
    /// `dir` (keys 0600, certificates 0644), each atomically. Refuses, before writing
    /// anything, if any of them exists and `force` is false. Returns the paths written.
    pub fn write(&self, dir: &Path, force: bool) -> Result<Vec<PathBuf>> {
        let names = [ROOT_CA_CERT, ROOT_CA_KEY, ISSUING_CA_CERT, ISSUING_CA_KEY];
        let existing: Vec<PathBuf> = names
            .iter()
            .map(|n| dir.join(n))
            .filter(|p| p.exists())
            .collect();
        if !existing.is_empty() && !force {
            return Err(PkiError::Exists(existing));
        }
        let root_key = Zeroizing::new(self.root.key.serialize_pem());
        let issuing_key = Zeroizing::new(self.issuing.key.serialize_pem());
        // Keys before certificates: a crash in between leaves a certificate that
        // does not match its key, which `load` detects, rather than a silent mix.
        let files: [(&str, &[u8], u32); 4] = [
            (ROOT_CA_KEY, root_key.as_bytes(), SECRET_MODE),
            (ISSUING_CA_KEY, issuing_key.as_bytes(), SECRET_MODE),
            (ROOT_CA_CERT, self.root.cert_pem.as_bytes(), PUBLIC_MODE),
            (
                ISSUING_CA_CERT,
                self.issuing.cert_pem.as_bytes(),
                PUBLIC_MODE,
            ),
        ];
        let mut written = Vec::with_capacity(files.len());
        for (name, bytes, mode) in files {
            let path = dir.join(name);
            fsutil::write_atomic(&path, bytes, mode)?;
            written.push(path);
        }
        Ok(written)
    }

    /// Loads the four files written by [`OrgCa::write`], checking that each key
    /// matches its certificate and that the root signed the issuing CA.
    pub fn load(dir: &Path) -> Result<Self> {
        let root = CaPart::load(dir, ROOT_CA_CERT, ROOT_CA_KEY)?;
        let issuing = CaPart::load(dir, ISSUING_CA_CERT, ISSUING_CA_KEY)?;
        check_chain(&root.cert_der, &issuing.cert_der, dir)?;
        Ok(Self { root, issuing })
    }

    pub fn root_cert_pem(&self) -> String {
        self.root.cert_pem.clone()
    }

    pub fn root_cert_der(&self) -> &[u8] {
        &self.root.cert_der
    }

    pub fn issuing_cert_pem(&self) -> String {
        self.issuing.cert_pem.clone()
    }

    pub fn issuing_cert_der(&self) -> &[u8] {
        &self.issuing.cert_der
    }

    /// `sha256:<hex>` of the root certificate's DER.
    pub fn root_fingerprint(&self) -> String {
        fingerprint_der(&self.root.cert_der)
    }

    /// `sha256:<hex>` of the issuing certificate's DER.
    pub fn issuing_fingerprint(&self) -> String {
        fingerprint_der(&self.issuing.cert_der)
    }

    /// The issuing CA as an rcgen issuer, to sign machine certificates.
    pub fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        self.issuing.issuer()
    }

    /// The root CA as an rcgen issuer (e.g. to re-issue the issuing CA).
    pub fn root_issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        self.root.issuer()
    }

    /// Drops the root key, keeping what the server needs.
    pub fn into_issuing(self) -> IssuingCa {
        IssuingCa {
            issuing: self.issuing,
            root_cert_pem: self.root.cert_pem,
            root_cert_der: self.root.cert_der,
        }
    }
}

impl fmt::Debug for OrgCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgCa")
            .field("root", &self.root_fingerprint())
            .field("issuing", &self.issuing_fingerprint())
            .finish_non_exhaustive()
    }
}

/// What the server holds: the issuing CA with its key, and the root certificate
/// (not its key, which stays offline).
pub struct IssuingCa {
    issuing: CaPart,
    root_cert_pem: String,
    root_cert_der: Vec<u8>,
}

impl IssuingCa {
    /// Loads `issuing-ca.pem`, `issuing-ca.key` and `root-ca.pem` from `dir`;
    /// `root-ca.key` need not be there.
    pub fn load(dir: &Path) -> Result<Self> {
        let issuing = CaPart::load(dir, ISSUING_CA_CERT, ISSUING_CA_KEY)?;
        let (root_cert_pem, root_cert_der) = load_ca_cert(&dir.join(ROOT_CA_CERT))?;
        // Only the root certificate is needed to check the chain.
        check_chain(&root_cert_der, &issuing.cert_der, dir)?;
        Ok(Self {
            issuing,
            root_cert_pem,
            root_cert_der,
        })
    }

    /// The issuing CA as an rcgen issuer, to sign machine certificates.
    pub fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        self.issuing.issuer()
    }

    pub fn cert_pem(&self) -> &str {
        &self.issuing.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.issuing.cert_der
    }

    pub fn root_cert_pem(&self) -> &str {
        &self.root_cert_pem
    }

    pub fn root_cert_der(&self) -> &[u8] {
        &self.root_cert_der
    }

    /// Issuing then root certificate, PEM, the chain a machine certificate needs.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.issuing.cert_pem, self.root_cert_pem)
    }

    /// `sha256:<hex>` of the issuing certificate's DER.
    pub fn fingerprint(&self) -> String {
        fingerprint_der(&self.issuing.cert_der)
    }
}

impl fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuingCa")
            .field("issuing", &self.fingerprint())
            .field("root", &fingerprint_der(&self.root_cert_der))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2025-12-01 00:00 UTC)
    }

    #[test]
    fn generated_chain_has_the_right_shape() {
        let ca = OrgCa::generate("acme-corp", now()).unwrap();
        for (der, cn, path_len, years) in [
            (ca.root_cert_der(), "acme-corp Root CA", 1, 10),
            (ca.issuing_cert_der(), "acme-corp Issuing CA", 0, 5),
        ] {
            let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
            let bc = cert.basic_constraints().unwrap().unwrap();
            assert!(bc.critical && bc.value.ca);
            assert_eq!(bc.value.path_len_constraint, Some(path_len));
            let ku = cert.key_usage().unwrap().unwrap();
            assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
            assert!(!ku.value.digital_signature());
            assert!(cert.subject().to_string().contains(cn));
            assert!(cert.subject().to_string().contains("O=acme-corp"));
            let not_after = cert.validity().not_after.to_datetime();
            assert_eq!(not_after.year() - now().year(), years);
            assert!(cert.validity().not_before.to_datetime() < now());
        }
    }

    #[test]
    fn write_load_round_trip_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let ca = OrgCa::generate("acme-corp", now()).unwrap();
        let written = ca.write(dir.path(), false).unwrap();
        assert_eq!(written.len(), 4);
        let back = OrgCa::load(dir.path()).unwrap();
        assert_eq!(back.root_fingerprint(), ca.root_fingerprint());
        assert_eq!(back.issuing_fingerprint(), ca.issuing_fingerprint());
        back.issuer().unwrap();

        let other = OrgCa::generate("acme-corp", now()).unwrap();
        assert!(matches!(
            other.write(dir.path(), false),
            Err(PkiError::Exists(p)) if p.len() == 4
        ));
        // Unchanged after the refusal.
        assert_eq!(
            OrgCa::load(dir.path()).unwrap().root_fingerprint(),
            ca.root_fingerprint()
        );
        other.write(dir.path(), true).unwrap();
        assert_eq!(
            OrgCa::load(dir.path()).unwrap().root_fingerprint(),
            other.root_fingerprint()
        );
    }

    #[test]
    fn server_loads_without_the_root_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = OrgCa::generate("acme-corp", now()).unwrap();
        ca.write(dir.path(), false).unwrap();
        std::fs::remove_file(dir.path().join(ROOT_CA_KEY)).unwrap();
        assert!(OrgCa::load(dir.path()).is_err());
        let issuing = IssuingCa::load(dir.path()).unwrap();
        assert_eq!(issuing.fingerprint(), ca.issuing_fingerprint());
        assert!(issuing.chain_pem().ends_with(&ca.root_cert_pem()));
    }

    #[test]
    fn load_detects_mismatched_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = OrgCa::generate("acme-corp", now()).unwrap();
        let b = OrgCa::generate("acme-corp", now()).unwrap();
        a.write(dir.path(), false).unwrap();
        // A key that is not the certificate's.
        std::fs::copy(
            dir.path().join(ISSUING_CA_KEY),
            dir.path().join(ROOT_CA_KEY),
        )
        .unwrap();
        assert!(matches!(
            OrgCa::load(dir.path()),
            Err(PkiError::KeyMismatch { .. })
        ));
        // An issuing CA from another root.
        a.write(dir.path(), true).unwrap();
        let other = tempfile::tempdir().unwrap();
        b.write(other.path(), false).unwrap();
        for name in [ISSUING_CA_CERT, ISSUING_CA_KEY] {
            std::fs::copy(other.path().join(name), dir.path().join(name)).unwrap();
        }
        assert!(matches!(
            OrgCa::load(dir.path()),
            Err(PkiError::ChainMismatch { .. })
        ));
    }

    #[test]
    fn ca_check_rejects_non_ca_and_garbage() {
        let leaf = rcgen::generate_simple_self_signed(vec!["x.example".into()]).unwrap();
        assert!(parse_ca_cert_pem(&leaf.cert.pem()).is_err());
        assert!(parse_ca_cert_pem("hello").is_err());
        let ca = OrgCa::generate("acme-corp", now()).unwrap();
        assert!(parse_ca_cert_pem(&ca.root_cert_pem()).is_ok());
        let two = format!("{}{}", ca.root_cert_pem(), ca.issuing_cert_pem());
        assert!(parse_ca_cert_pem(&two).is_err());
        assert_eq!(
            fingerprint_pem(&ca.root_cert_pem()),
            Some(ca.root_fingerprint())
        );
    }

    #[test]
    fn empty_org_is_refused() {
        assert!(matches!(
            OrgCa::generate("  ", now()),
            Err(PkiError::EmptyOrg)
        ));
    }
}

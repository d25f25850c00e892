//! Certificates the issuing CA signs: machine certificates from device CSRs, and the
//! server's own TLS certificate.
//!
//! A machine certificate is built from our template, never from the request: the CSR
//! contributes its public key and nothing else. Subject `CN=<machine id>, O=<org>`,
//! basicConstraints CA:FALSE (critical), keyUsage digitalSignature, extended key usage
//! clientAuth only, a random 16-byte serial, a lifetime set by the org. The CSR must
//! carry a valid self-signature (proof the device holds the key) over a sound key type:
//! ECDSA P-256 or P-384, Ed25519, or RSA of 2048 to 8192 bits; and that signature must
//! use a hash of SHA-256 or better. A CSR signed with MD5 or SHA-1 is refused by name
//! before its signature is checked: "does not verify" would send the requester hunting
//! for a key mix-up when the fix is one `-sha256`.

use super::{IssuingCa, PkiError, Result, fingerprint_der};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

/// Largest CSR accepted (an RSA-8192 request is about 1.2 KB of DER).
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// notBefore lies this far in the past, for devices whose clock runs a little behind.
const BACKDATE: Duration = Duration::minutes(5);

/// Why a certificate request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    #[error("the certificate request is {size} bytes; the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("the certificate request is not one PEM `CERTIFICATE REQUEST` block")]
    NotPem,
    #[error("the certificate request is not valid PKCS#10 DER")]
    Malformed,
    #[error("the certificate request's key type is not allowed: {0}")]
    KeyType(String),
    #[error(
        "the certificate request's signature does not verify (the requester does not hold the key)"
    )]
    BadSignature,
    #[error(
        "the CSR is signed with {0}, which is not accepted; sign it with SHA-256 or better (ECDSA with SHA-256/384/512, Ed25519, or RSA with SHA-256/384/512)"
    )]
    SignatureAlgorithm(String),
}

/// Signature algorithms a CSR may use (OID, name): the hashes of SHA-256 or better
/// that rcgen also verifies. Everything else, MD5 and SHA-1 first, is refused.
const ACCEPTED_SIGNATURES: &[(&str, &str)] = &[
    ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256"),
    ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384"),
    ("1.2.840.10045.4.3.4", "ecdsa-with-SHA512"),
    ("1.3.101.112", "Ed25519"),
    ("1.2.840.113549.1.1.11", "sha256WithRSAEncryption"),
    ("1.2.840.113549.1.1.12", "sha384WithRSAEncryption"),
    ("1.2.840.113549.1.1.13", "sha512WithRSAEncryption"),
];

/// Names of refused signature algorithms the OID registry lacks.
const REFUSED_NAMES: &[(&str, &str)] = &[
    ("1.2.840.10045.4.1", "ecdsa-with-SHA1"),
    ("1.2.840.10045.4.3.1", "ecdsa-with-SHA224"),
    ("2.16.840.1.101.3.4.3.2", "dsa-with-SHA256"),
];

/// A certificate the issuing CA signed.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub der: Vec<u8>,
    pub pem: String,
    /// `sha256:<hex>` of the DER.
    pub fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Hex of the serial number.
    pub serial: String,
}

/// A checked certificate request: its signature verified, its key type allowed.
pub struct CheckedCsr {
    params: CertificateSigningRequestParams,
    /// `sha256:<hex>` of the request's SubjectPublicKeyInfo: which key the device
    /// holds (its self-signature proved possession).
    key_fingerprint: String,
}

impl CheckedCsr {
    /// `sha256:<hex>` of the requested key's SubjectPublicKeyInfo DER.
    pub fn key_fingerprint(&self) -> &str {
        &self.key_fingerprint
    }
}

impl std::fmt::Debug for CheckedCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedCsr").finish_non_exhaustive()
    }
}

/// Parses a PEM CSR, checks its key type and verifies its self-signature.
pub fn check_csr_pem(pem: &str) -> std::result::Result<CheckedCsr, CsrError> {
    if pem.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge {
            size: pem.len(),
            max: MAX_CSR_BYTES,
        });
    }
    let (rest, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| CsrError::NotPem)?;
    if block.label != "CERTIFICATE REQUEST" || !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(CsrError::NotPem);
    }
    check_csr_der(&block.contents)
}

/// [`check_csr_pem`] for DER.
pub fn check_csr_der(der: &[u8]) -> std::result::Result<CheckedCsr, CsrError> {
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge {
            size: der.len(),
            max: MAX_CSR_BYTES,
        });
    }
    let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|_| CsrError::Malformed)?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed);
    }
    check_key_type(&csr.certification_request_info.subject_pki)?;
    check_signature_algorithm(&csr.signature_algorithm.algorithm)?;
    // rcgen verifies the self-signature while parsing.
    let params = CertificateSigningRequestParams::from_der(&der.into()).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => CsrError::BadSignature,
        rcgen::Error::UnsupportedSignatureAlgorithm => {
            CsrError::SignatureAlgorithm(signature_name(&csr.signature_algorithm.algorithm))
        }
        _ => CsrError::Malformed,
    })?;
    Ok(CheckedCsr {
        params,
        key_fingerprint: crate::pki::fingerprint_der(
            csr.certification_request_info.subject_pki.raw,
        ),
    })
}

/// Refuses a signature algorithm outside [`ACCEPTED_SIGNATURES`], naming it.
fn check_signature_algorithm(
    oid: &x509_parser::der_parser::oid::Oid<'_>,
) -> std::result::Result<(), CsrError> {
    let id = oid.to_id_string();
    if ACCEPTED_SIGNATURES.iter().any(|(o, _)| *o == id) {
        Ok(())
    } else {
        Err(CsrError::SignatureAlgorithm(signature_name(oid)))
    }
}

/// The usual name of a signature algorithm (`sha1WithRSAEncryption`), else its OID.
fn signature_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    let id = oid.to_id_string();
    if let Some((_, name)) = ACCEPTED_SIGNATURES
        .iter()
        .chain(REFUSED_NAMES)
        .find(|(o, _)| *o == id)
    {
        return (*name).to_string();
    }
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_string)
        .unwrap_or_else(|_| format!("the signature algorithm {id}"))
}

fn check_key_type(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> std::result::Result<(), CsrError> {
    use x509_parser::public_key::PublicKey;
    match spki.parsed() {
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                // prime256v1, secp384r1
                "1.2.840.10045.3.1.7" | "1.3.132.0.34" if point.key_size() >= 256 => Ok(()),
                other => Err(CsrError::KeyType(format!(
                    "elliptic curve {other:?}; use P-256 or P-384"
                ))),
            }
        }
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if (2048..=8192).contains(&bits) {
                Ok(())
            } else {
                Err(CsrError::KeyType(format!(
                    "RSA-{bits}; use 2048 to 8192 bits"
                )))
            }
        }
        Ok(PublicKey::Unknown(_)) if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            Ok(()) // Ed25519
        }
        Ok(_) => Err(CsrError::KeyType(format!(
            "algorithm {}",
            spki.algorithm.algorithm.to_id_string()
        ))),
        Err(_) => Err(CsrError::Malformed),
    }
}

/// What the server decides about a machine certificate.
#[derive(Debug, Clone)]
pub struct MachineTemplate<'a> {
    pub machine_id: &'a str,
    pub org: &'a str,
    pub lifetime: Duration,
    pub now: OffsetDateTime,
}

/// What a SCEP certificate says: the request's names, checked by the server.
#[derive(Debug, Clone)]
pub struct ScepTemplate {
    /// The device's serial number (the profile asks for `CN=$SERIALNUMBER`), checked
    /// by the server; on renewal, the renewed certificate's.
    pub common_name: String,
    pub org: String,
    pub lifetime: Duration,
    pub now: OffsetDateTime,
}

impl ScepTemplate {
    /// The subject as text, for the inventory.
    pub fn subject_text(&self) -> String {
        format!("CN={}, O={}", self.common_name, self.org)
    }
}

/// The parameters every leaf we issue shares: `CN=<common_name>, O=<org>`, valid from
/// a little before `now` (clock skew) for `lifetime`, a random serial, CA:FALSE, the
/// authority key identifier; the key usages and the one extended key usage as given.
fn leaf_params(
    common_name: &str,
    org: &str,
    now: OffsetDateTime,
    lifetime: Duration,
    key_usages: Vec<KeyUsagePurpose>,
    extended_key_usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, org);
    params.distinguished_name = dn;
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = key_usages;
    params.extended_key_usages = vec![extended_key_usage];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

impl IssuingCa {
    /// Signs a machine certificate for the key in `csr`, from our template only.
    pub fn issue_machine(
        &self,
        csr: &CheckedCsr,
        template: &MachineTemplate<'_>,
    ) -> Result<IssuedCertificate> {
        let params = leaf_params(
            template.machine_id,
            template.org,
            template.now,
            template.lifetime,
            vec![KeyUsagePurpose::DigitalSignature],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        self.sign(params, &csr.params.public_key)
    }

    /// Signs a TLS server certificate for `names` (DNS names or IP addresses).
    pub fn issue_server(
        &self,
        key: &rcgen::KeyPair,
        names: &[String],
        org: &str,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate> {
        let mut params = leaf_params(
            names.first().map(String::as_str).unwrap_or_default(),
            org,
            now,
            lifetime,
            vec![KeyUsagePurpose::DigitalSignature],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        self.sign(params, key)
    }

    /// Signs a certificate for a SCEP request's key (`spki_der`) from `template`:
    /// CA:FALSE, keyUsage digitalSignature + keyEncipherment (the key serves 802.1X,
    /// VPN and mTLS, some of which still use RSA key transport), clientAuth.
    pub fn issue_scep(
        &self,
        spki_der: &[u8],
        template: &ScepTemplate,
    ) -> Result<IssuedCertificate> {
        let public = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        let params = leaf_params(
            &template.common_name,
            &template.org,
            template.now,
            template.lifetime,
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        self.sign(params, &public)
    }

    fn sign(
        &self,
        params: CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<IssuedCertificate> {
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| hex::encode(s.as_ref()))
            .unwrap_or_default();
        let (not_before, not_after) = (params.not_before, params.not_after);
        let cert = params.signed_by(public_key, &self.issuer()?)?;
        let der = cert.der().to_vec();
        Ok(IssuedCertificate {
            fingerprint: fingerprint_der(&der),
            pem: cert.pem(),
            der,
            not_before,
            not_after,
            serial,
        })
    }
}

pub(super) fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| PkiError::Random(e.to_string()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::OrgCa;
    use rcgen::{BasicConstraints, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};

    fn csr_for(key: &KeyPair, cn: &str, ca: bool) -> String {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    fn issuing() -> IssuingCa {
        OrgCa::generate("acme-corp", crate::clock::now())
            .unwrap()
            .into_issuing()
    }

    #[test]
    fn the_template_wins_over_the_request() {
        let ca = issuing();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = check_csr_pem(&csr_for(&key, "evil-admin", true)).unwrap();
        let now = crate::clock::now();
        let cert = ca
            .issue_machine(
                &csr,
                &MachineTemplate {
                    machine_id: "m-123",
                    org: "acme-corp",
                    lifetime: Duration::days(90),
                    now,
                },
            )
            .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.der).unwrap();
        let cn = parsed.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "m-123");
        assert!(!parsed.basic_constraints().unwrap().unwrap().value.ca);
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(
            parsed.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        assert_eq!(cert.not_after, now + Duration::days(90));
    }

    #[test]
    fn ed25519_requests_are_allowed() {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        check_csr_pem(&csr_for(&key, "m-1", false)).unwrap();
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let good = csr_for(&key, "m-1", false);
        assert_eq!(check_csr_pem("hello").unwrap_err(), CsrError::NotPem);
        let big = "A".repeat(MAX_CSR_BYTES + 1);
        assert!(matches!(
            check_csr_pem(&big).unwrap_err(),
            CsrError::TooLarge { .. }
        ));
        // Flip a byte of the signature (the end of the DER).
        let (_, block) = x509_parser::pem::parse_x509_pem(good.as_bytes()).unwrap();
        let mut der = block.contents.clone();
        let last = der.len() - 2;
        der[last] ^= 0x01;
        assert_eq!(check_csr_der(&der).unwrap_err(), CsrError::BadSignature);
        assert_eq!(check_csr_der(&der[..20]).unwrap_err(), CsrError::Malformed);
    }
}

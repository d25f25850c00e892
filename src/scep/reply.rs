//! Writing the server's answers: CertRep (RFC 8894 section 3.3.2) and the GetCACert
//! certificate bundle (section 4.2.1.2).
//!
//! A CertRep is SignedData signed by the RA with the digest the client used, carrying
//! transactionID, messageType 3, pkiStatus, failInfo (on FAILURE), a fresh senderNonce
//! and recipientNonce = the client's senderNonce. On SUCCESS its content is
//! EnvelopedData, encrypted to the client's signer certificate with the client's
//! cipher, holding a certs-only SignedData with the issued certificate alone (Apple's
//! client and micromdm's both take the first certificate; a DER SET OF of several
//! may put the CA first).

use super::algorithms::{ContentCipher, DigestAlg};
use super::request::Header;
use super::{FailInfo, MessageType, oid};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo,
    RecipientInfos,
};
use cms::signed_data::{
    CertificateSet, DigestAlgorithmIdentifiers, EncapsulatedContentInfo, SignedData,
    SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Null, ObjectIdentifier, OctetString, PrintableStringRef, SetOfVec};
use der::{Any, Decode, Encode};
use rsa::pkcs1::DecodeRsaPublicKey;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// Why an answer could not be written (a bug or a broken RNG, never the client's
/// input: the server answers HTTP 500 without detail).
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("DER encoding failed: {0}")]
    Der(#[from] der::Error),
    #[error("RSA operation failed: {0}")]
    Rsa(#[from] rsa::Error),
    #[error("the system random number generator failed: {0}")]
    Random(#[from] getrandom::Error),
    #[error("the recipient certificate has no usable RSA key")]
    RecipientKey,
    #[error("the RSA signature failed")]
    RingSign,
}

/// The outcome a CertRep reports.
pub enum CertRepStatus<'a> {
    /// The certificate, enveloped to `recipient_cert_der` (the client's signer
    /// certificate) with `cipher`.
    Success {
        issued_cert_der: &'a [u8],
        recipient_cert_der: &'a [u8],
        cipher: ContentCipher,
    },
    Failure(FailInfo),
}

/// The RA as signer of replies.
pub struct Signer<'a> {
    pub key: &'a rsa::PrivateKey,
    /// The same key for ring, which signs SHA-256 and SHA-512 about four times
    /// faster than `rsa`; SHA-1 (and `None`) signs with `key`.
    pub ring: Option<&'a ring::signature::RsaKeyPair>,
    pub cert_der: &'a [u8],
}

impl Signer<'_> {
    /// A PKCS#1 v1.5 signature over `message` with `digest`.
    fn sign(&self, digest: DigestAlg, message: &[u8]) -> Result<Vec<u8>, ReplyError> {
        let padding: Option<&'static dyn ring::signature::RsaEncoding> = match digest {
            DigestAlg::Sha256 => Some(&ring::signature::RSA_PKCS1_SHA256),
            DigestAlg::Sha512 => Some(&ring::signature::RSA_PKCS1_SHA512),
            DigestAlg::Sha1 => None,
        };
        if let (Some(key), Some(padding)) = (self.ring, padding) {
            let mut signature = vec![0u8; key.public().modulus_len()];
            key.sign(
                padding,
                &ring::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| ReplyError::RingSign)?;
            return Ok(signature);
        }
        Ok(digest.sign(self.key, &digest.digest(message))?)
    }
}

/// A CertRep answering `to`.
pub fn cert_rep(
    ra: &Signer<'_>,
    to: &Header,
    status: CertRepStatus<'_>,
) -> Result<Vec<u8>, ReplyError> {
    let ra_cert = Certificate::from_der(ra.cert_der)?;
    let (content, pki_status, fail_info) = match status {
        CertRepStatus::Success {
            issued_cert_der,
            recipient_cert_der,
            cipher,
        } => {
            let degenerate = certs_only(&[issued_cert_der])?;
            let recipient = Certificate::from_der(recipient_cert_der)?;
            (Some(envelope(&degenerate, &recipient, cipher)?), "0", None)
        }
        CertRepStatus::Failure(info) => (None, "2", Some(info)),
    };
    let digest = to.digest;
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)?;
    let mut attrs = vec![
        attribute(oid::CONTENT_TYPE, Any::encode_from(&oid::DATA)?)?,
        attribute(
            oid::MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(
                digest.digest(content.as_deref().unwrap_or_default()),
            )?)?,
        )?,
        attribute(oid::MESSAGE_TYPE, printable(MessageType::CertRep.code())?)?,
        attribute(oid::PKI_STATUS, printable(pki_status)?)?,
        attribute(oid::TRANSACTION_ID, text(&to.transaction_id)?)?,
        attribute(
            oid::SENDER_NONCE,
            Any::encode_from(&OctetString::new(nonce.to_vec())?)?,
        )?,
        attribute(
            oid::RECIPIENT_NONCE,
            Any::encode_from(&OctetString::new(to.sender_nonce.clone())?)?,
        )?,
    ];
    if let Some(info) = fail_info {
        attrs.push(attribute(oid::FAIL_INFO, printable(info.code())?)?);
    }
    let signed_attrs = SetOfVec::try_from(attrs)?;
    let signature = ra.sign(digest, &signed_attrs.to_der()?)?;
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(issuer_and_serial(&ra_cert)),
        digest_alg: digest_algorithm(digest),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: rsa_encryption(),
        signature: OctetString::new(signature)?,
        unsigned_attrs: None,
    };
    let econtent = content
        .map(|c| Any::encode_from(&OctetString::new(c)?))
        .transpose()?;
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: DigestAlgorithmIdentifiers::try_from(vec![digest_algorithm(digest)])?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: oid::DATA,
            econtent,
        },
        certificates: Some(CertificateSet(SetOfVec::try_from(vec![
            CertificateChoices::Certificate(ra_cert),
        ])?)),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer])?),
    };
    content_info(oid::SIGNED_DATA, &signed)
}

/// The GetCACert answer: a certs-only SignedData of the RA and CA certificates.
pub fn ca_certs(certs_der: &[&[u8]]) -> Result<Vec<u8>, ReplyError> {
    certs_only(certs_der)
}

/// A degenerate (certs-only) SignedData ContentInfo.
fn certs_only(certs_der: &[&[u8]]) -> Result<Vec<u8>, ReplyError> {
    let certs = certs_der
        .iter()
        .map(|der| Certificate::from_der(der).map(CertificateChoices::Certificate))
        .collect::<Result<Vec<_>, _>>()?;
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: DigestAlgorithmIdentifiers::try_from(Vec::new())?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: oid::DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(SetOfVec::try_from(certs)?)),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(Vec::new())?),
    };
    content_info(oid::SIGNED_DATA, &signed)
}

/// EnvelopedData of `content` for `recipient` (RSA key transport).
fn envelope(
    content: &[u8],
    recipient: &Certificate,
    cipher: ContentCipher,
) -> Result<Vec<u8>, ReplyError> {
    let spki = recipient.tbs_certificate().subject_public_key_info();
    if spki.algorithm.oid != oid::RSA_ENCRYPTION {
        return Err(ReplyError::RecipientKey);
    }
    let public = rsa::PublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes())
        .map_err(|_| ReplyError::RecipientKey)?;
    let sealed = cipher.encrypt(content)?;
    let enc_key = public.pkcs1v15_encrypt(&sealed.key)?;
    let env = EnvelopedData {
        version: CmsVersion::V0,
        originator_info: None,
        recip_infos: RecipientInfos(SetOfVec::try_from(vec![RecipientInfo::Ktri(
            KeyTransRecipientInfo {
                version: CmsVersion::V0,
                rid: RecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(recipient)),
                key_enc_alg: rsa_encryption(),
                enc_key: OctetString::new(enc_key)?,
            },
        )])?),
        encrypted_content: EncryptedContentInfo {
            content_type: oid::DATA,
            content_enc_alg: AlgorithmIdentifierOwned {
                oid: cipher.oid(),
                parameters: Some(Any::encode_from(&OctetString::new(sealed.iv)?)?),
            },
            encrypted_content: Some(OctetString::new(sealed.ciphertext)?),
        },
        unprotected_attrs: None,
    };
    content_info(oid::ENVELOPED_DATA, &env)
}

fn content_info(
    content_type: ObjectIdentifier,
    content: &(impl der::Tagged + der::EncodeValue),
) -> Result<Vec<u8>, ReplyError> {
    Ok(ContentInfo {
        content_type,
        content: Any::encode_from(content)?,
    }
    .to_der()?)
}

fn issuer_and_serial(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate().issuer().clone(),
        serial_number: cert.tbs_certificate().serial_number().clone(),
    }
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, ReplyError> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value])?,
    })
}

fn printable(s: &str) -> Result<Any, ReplyError> {
    Ok(Any::encode_from(&PrintableStringRef::new(s)?)?)
}

/// A transactionID echoed back: PrintableString when it fits, else UTF8String.
fn text(s: &str) -> Result<Any, ReplyError> {
    match PrintableStringRef::new(s) {
        Ok(p) => Ok(Any::encode_from(&p)?),
        Err(_) => Ok(Any::encode_from(&der::asn1::Utf8StringRef::new(s)?)?),
    }
}

fn digest_algorithm(digest: DigestAlg) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: digest.oid(),
        parameters: None,
    }
}

fn rsa_encryption() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: oid::RSA_ENCRYPTION,
        parameters: Any::encode_from(&Null).ok(),
    }
}

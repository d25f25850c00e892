//! Reading a client's pkiMessage: the outer SignedData (its SCEP attributes, its
//! signer certificate, its signature), the EnvelopedData inside (decrypted with the
//! RA key), and the PKCS#10 request inside that.
//!
//! What cannot be read far enough to answer (no transactionID or senderNonce) is
//! [`RequestError::Unreadable`], which the server answers with HTTP 400 and a stable
//! code. Everything after that is [`RequestError::Failure`]: a CertRep FAILURE with
//! its failInfo, so the client learns why.

use super::algorithms::{ContentCipher, DigestAlg};
use super::{FailInfo, MessageType, oid};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::enveloped_data::{
    KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode, Tag, Tagged};
use rsa::pkcs1::DecodeRsaPublicKey;
use x509_cert::Certificate;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// The SCEP attributes every message carries: enough to answer with a CertRep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub message_type: MessageType,
    pub transaction_id: String,
    pub sender_nonce: Vec<u8>,
    /// The digest the client signed with; the reply uses the same.
    pub digest: DigestAlg,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Not a pkiMessage: answered with HTTP 400 and `code`.
    Unreadable { code: &'static str, reason: String },
    /// A pkiMessage that fails: answered with a CertRep FAILURE.
    Failure {
        header: Header,
        fail_info: FailInfo,
        reason: String,
    },
}

/// A pkiMessage whose signature verified (its envelope still sealed).
#[derive(Debug, Clone)]
pub struct PkiMessage {
    pub header: Header,
    /// The certificate that signed the message: self-signed over the requested key
    /// (a first request) or a certificate the CA issued (a renewal).
    pub signer_cert_der: Vec<u8>,
    /// `sha256:<hex>` of the signer's SubjectPublicKeyInfo DER.
    pub signer_key_fingerprint: String,
    signer_key: rsa::PublicKey,
    /// The signed content: a ContentInfo holding EnvelopedData.
    enveloped: Vec<u8>,
}

fn unreadable(code: &'static str, reason: impl Into<String>) -> RequestError {
    RequestError::Unreadable {
        code,
        reason: reason.into(),
    }
}

/// Reads and verifies a pkiMessage (DER).
pub fn parse(der: &[u8]) -> Result<PkiMessage, RequestError> {
    if der.len() > super::MAX_MESSAGE_BYTES {
        return Err(unreadable(
            "scep_too_large",
            format!(
                "the message is {} bytes; the limit is {}",
                der.len(),
                super::MAX_MESSAGE_BYTES
            ),
        ));
    }
    let info = ContentInfo::from_der(der)
        .map_err(|e| unreadable("scep_bad_message", format!("not a CMS ContentInfo ({e})")))?;
    if info.content_type != oid::SIGNED_DATA {
        return Err(unreadable(
            "scep_bad_message",
            "the message is not CMS SignedData",
        ));
    }
    let signed: SignedData = info
        .content
        .decode_as()
        .map_err(|e| unreadable("scep_bad_message", format!("bad SignedData ({e})")))?;
    let signer = match signed.signer_infos.0.as_slice() {
        [one] => one,
        _ => {
            return Err(unreadable(
                "scep_bad_message",
                "the SignedData must have exactly one signer",
            ));
        }
    };
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| unreadable("scep_bad_message", "the signer has no signed attributes"))?;
    let find = |wanted: ObjectIdentifier| -> Option<&Any> {
        attrs
            .iter()
            .find(|a| a.oid == wanted)
            .and_then(|a| a.values.iter().next())
    };
    let message_type = find(oid::MESSAGE_TYPE)
        .and_then(text_of)
        .and_then(|code| MessageType::from_code(&code))
        .ok_or_else(|| unreadable("scep_bad_message", "no known messageType attribute"))?;
    let transaction_id = find(oid::TRANSACTION_ID)
        .and_then(text_of)
        .filter(|t| (1..=128).contains(&t.len()) && t.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or_else(|| {
            unreadable(
                "scep_bad_message",
                "no transactionID attribute of 1 to 128 printable characters",
            )
        })?;
    let sender_nonce = find(oid::SENDER_NONCE)
        .and_then(|a| a.decode_as::<OctetString>().ok())
        .map(|o| o.as_bytes().to_vec())
        .filter(|n| (8..=64).contains(&n.len()))
        .ok_or_else(|| {
            unreadable(
                "scep_bad_message",
                "no senderNonce attribute of 8 to 64 bytes",
            )
        })?;
    let digest_oid = signer.digest_alg.oid;
    let mut header = Header {
        message_type,
        transaction_id,
        sender_nonce,
        digest: DigestAlg::Sha256,
    };
    let fail = |header: &Header, fail_info, reason: String| RequestError::Failure {
        header: header.clone(),
        fail_info,
        reason,
    };
    let Some(digest) = DigestAlg::from_oid(&digest_oid) else {
        return Err(fail(
            &header,
            FailInfo::BadAlg,
            format!("the digest {digest_oid} is not accepted; use SHA-256 or SHA-1"),
        ));
    };
    header.digest = digest;
    if !is_rsa_signature(&signer.signature_algorithm) {
        return Err(fail(
            &header,
            FailInfo::BadAlg,
            format!(
                "the signature algorithm {} is not accepted; sign with RSA",
                signer.signature_algorithm.oid
            ),
        ));
    }

    // The signer certificate, found by the signer identifier.
    let certs: Vec<&Certificate> = signed
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    cms::cert::CertificateChoices::Certificate(c) => Some(c),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(signer_cert) = certs.iter().find(|c| identifies(&signer.sid, c)) else {
        return Err(fail(
            &header,
            FailInfo::BadMessageCheck,
            "the signer's certificate is not in the message".into(),
        ));
    };
    let spki = signer_cert.tbs_certificate().subject_public_key_info();
    let signer_key = (spki.algorithm.oid == oid::RSA_ENCRYPTION)
        .then(|| rsa::PublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes()).ok())
        .flatten()
        .ok_or_else(|| {
            fail(
                &header,
                FailInfo::BadAlg,
                "the signer's key is not RSA".into(),
            )
        })?;
    let spki_der = spki
        .to_der()
        .map_err(|e| fail(&header, FailInfo::BadMessageCheck, e.to_string()))?;

    // The content, its digest, the signature over the signed attributes.
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .and_then(|any| any.decode_as::<OctetString>().ok())
        .map(|o| o.as_bytes().to_vec())
        .ok_or_else(|| {
            fail(
                &header,
                FailInfo::BadRequest,
                "the message has no content".into(),
            )
        })?;
    let claimed = find(oid::MESSAGE_DIGEST)
        .and_then(|a| a.decode_as::<OctetString>().ok())
        .map(|o| o.as_bytes().to_vec());
    if claimed.as_deref() != Some(digest.digest(&content).as_slice()) {
        return Err(fail(
            &header,
            FailInfo::BadMessageCheck,
            "the messageDigest attribute does not match the content".into(),
        ));
    }
    let signed_attrs_der = attrs
        .to_der()
        .map_err(|e| fail(&header, FailInfo::BadMessageCheck, e.to_string()))?;
    if !digest.verify(
        &signer_key,
        &digest.digest(&signed_attrs_der),
        signer.signature.as_bytes(),
    ) {
        return Err(fail(
            &header,
            FailInfo::BadMessageCheck,
            "the message's signature does not verify".into(),
        ));
    }
    Ok(PkiMessage {
        signer_cert_der: signer_cert
            .to_der()
            .map_err(|e| fail(&header, FailInfo::BadMessageCheck, e.to_string()))?,
        signer_key_fingerprint: crate::pki::fingerprint_der(&spki_der),
        signer_key,
        enveloped: content,
        header,
    })
}

/// The text of a PrintableString, UTF8String or IA5String attribute value.
fn text_of(any: &Any) -> Option<String> {
    match any.tag() {
        Tag::PrintableString | Tag::Utf8String | Tag::Ia5String => {
            std::str::from_utf8(any.value()).ok().map(str::to_string)
        }
        _ => None,
    }
}

fn is_rsa_signature(alg: &AlgorithmIdentifierOwned) -> bool {
    alg.oid == oid::RSA_ENCRYPTION || DigestAlg::from_oid(&alg.oid).is_some()
}

/// Whether `sid` names `cert`.
fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(isn) => names(isn, cert),
        SignerIdentifier::SubjectKeyIdentifier(ski) => subject_key_id(cert).as_ref() == Some(ski),
    }
}

fn names(isn: &IssuerAndSerialNumber, cert: &Certificate) -> bool {
    let tbs = cert.tbs_certificate();
    isn.issuer == *tbs.issuer() && isn.serial_number == *tbs.serial_number()
}

fn subject_key_id(cert: &Certificate) -> Option<x509_cert::ext::pkix::SubjectKeyIdentifier> {
    cert.tbs_certificate()
        .get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
        .ok()
        .flatten()
        .map(|(_, ski)| ski)
}

/// EnvelopedData as clients send it. The encrypted content is read as [`Any`]:
/// micromdm's client sends it as a constructed `[0]` of OCTET STRINGs, which strict
/// DER decoding of the `cms` type refuses.
#[derive(der::Sequence)]
struct LooseEnvelopedData {
    _version: cms::content_info::CmsVersion,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    _originator_info: Option<cms::enveloped_data::OriginatorInfo>,
    recip_infos: RecipientInfos,
    encrypted_content: LooseEncryptedContentInfo,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    _unprotected_attrs: Option<x509_cert::attr::Attributes>,
}

#[derive(der::Sequence)]
struct LooseEncryptedContentInfo {
    _content_type: ObjectIdentifier,
    content_enc_alg: AlgorithmIdentifierOwned,
    encrypted_content: Option<Any>,
}

/// The key transport recipient of `env` that names `ra`, by issuer and serial or by
/// subject key identifier.
fn ours<'e>(env: &'e LooseEnvelopedData, ra: &Recipient<'_>) -> Option<&'e KeyTransRecipientInfo> {
    let ra_isn = IssuerAndSerialNumber {
        issuer: ra.cert.tbs_certificate().issuer().clone(),
        serial_number: ra.cert.tbs_certificate().serial_number().clone(),
    };
    let ra_ski = subject_key_id(ra.cert);
    env.recip_infos.0.iter().find_map(|r| match r {
        RecipientInfo::Ktri(k) => {
            let matches = match &k.rid {
                RecipientIdentifier::IssuerAndSerialNumber(isn) => *isn == ra_isn,
                RecipientIdentifier::SubjectKeyIdentifier(ski) => ra_ski.as_ref() == Some(ski),
            };
            matches.then_some(k)
        }
        _ => None,
    })
}

/// The bytes of an `[0] IMPLICIT OCTET STRING`, primitive or constructed (one level
/// of definite-length segments).
fn implicit_octets(any: &Any) -> Option<Vec<u8>> {
    let tag = any.tag();
    if !matches!(tag, Tag::ContextSpecific { number, .. } if number.value() == 0) {
        return None;
    }
    if !tag.is_constructed() {
        return Some(any.value().to_vec());
    }
    let mut out = Vec::new();
    let mut rest = any.value();
    while !rest.is_empty() {
        let (segment, tail) = OctetString::from_der_partial(rest).ok()?;
        out.extend_from_slice(segment.as_bytes());
        rest = tail;
    }
    Some(out)
}

/// The one reason given when an envelope addressed to the RA does not open, or
/// opens to something that is not a signed certificate request: a different answer
/// for each would be a CBC padding oracle on captured requests.
pub const SEALED: &str =
    "the envelope does not open with the RA key to a signed certificate request";

/// The RA that decrypts: its key and certificate.
pub struct Recipient<'a> {
    pub key: &'a rsa::PrivateKey,
    pub cert: &'a Certificate,
}

impl PkiMessage {
    /// The signer's RSA public key.
    pub fn signer_key(&self) -> &rsa::PublicKey {
        &self.signer_key
    }

    fn fail(&self, fail_info: FailInfo, reason: impl Into<String>) -> RequestError {
        RequestError::Failure {
            header: self.header.clone(),
            fail_info,
            reason: reason.into(),
        }
    }

    /// Which of `recipients` the envelope is encrypted to (the first one it names),
    /// without decrypting anything: the server answers with the RA the client knows.
    pub fn addressed_to(&self, recipients: &[Recipient<'_>]) -> Option<usize> {
        let env = self.envelope().ok()?;
        recipients.iter().position(|ra| ours(&env, ra).is_some())
    }

    fn envelope(&self) -> Result<LooseEnvelopedData, RequestError> {
        let bad = |reason: &str| self.fail(FailInfo::BadMessageCheck, reason);
        let info = ContentInfo::from_der(&self.enveloped)
            .map_err(|_| bad("the content is not a CMS ContentInfo"))?;
        if info.content_type != oid::ENVELOPED_DATA {
            return Err(bad("the content is not CMS EnvelopedData"));
        }
        info.content
            .decode_as()
            .map_err(|_| bad("the EnvelopedData cannot be read"))
    }

    /// Opens the envelope with the RA key; returns the plaintext and the cipher the
    /// client used (the reply uses the same).
    pub fn decrypt(
        &self,
        ra: &Recipient<'_>,
        allow_single_des: bool,
    ) -> Result<(Vec<u8>, ContentCipher), RequestError> {
        let bad = |reason: &str| self.fail(FailInfo::BadMessageCheck, reason);
        let env = self.envelope()?;
        let Some(ktri) = ours(&env, ra) else {
            return Err(bad(
                "the request is encrypted to another certificate, not this server's RA (fetch GetCACert again)",
            ));
        };
        if ktri.key_enc_alg.oid != oid::RSA_ENCRYPTION {
            return Err(self.fail(
                FailInfo::BadAlg,
                format!(
                    "the key transport {} is not accepted; use rsaEncryption",
                    ktri.key_enc_alg.oid
                ),
            ));
        }
        let alg = &env.encrypted_content.content_enc_alg;
        let cipher = match ContentCipher::from_oid(&alg.oid) {
            Some(ContentCipher::DesCbc) if !allow_single_des => {
                return Err(self.fail(
                    FailInfo::BadAlg,
                    "single DES is refused (RFC 8894); use AES or DES-EDE3, or start the server with --scep-allow-des for an old client",
                ));
            }
            Some(c) => c,
            None => {
                return Err(self.fail(
                    FailInfo::BadAlg,
                    format!(
                        "the content cipher {} is not accepted; use AES-128-CBC, AES-256-CBC or DES-EDE3-CBC",
                        alg.oid
                    ),
                ));
            }
        };
        let iv = alg
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<OctetString>().ok())
            .ok_or_else(|| bad("the content cipher has no IV"))?;
        // Implicit rejection: a ciphertext not for this key decrypts to a
        // deterministic random key, which fails the length or padding check below,
        // in the same time as a good one (no padding oracle).
        let cek = zeroize::Zeroizing::new(
            ra.key
                .pkcs1v15_decrypt(ktri.enc_key.as_bytes())
                .map_err(|_| bad(SEALED))?,
        );
        let ciphertext = env
            .encrypted_content
            .encrypted_content
            .as_ref()
            .and_then(implicit_octets)
            .ok_or_else(|| bad(SEALED))?;
        let plain = cipher
            .decrypt(&cek, iv.as_bytes(), &ciphertext)
            .ok_or_else(|| bad(SEALED))?;
        Ok((plain, cipher))
    }
}

/// A certificate request as SCEP carries it, its self-signature verified.
#[derive(Debug, Clone)]
pub struct ScepCsr {
    /// The requested key's SubjectPublicKeyInfo DER.
    pub spki_der: Vec<u8>,
    /// `sha256:<hex>` of `spki_der`.
    pub key_fingerprint: String,
    pub key_bits: usize,
    pub challenge: Option<String>,
    /// The subject's RDNs as (short name or OID, value), in order.
    pub subject: Vec<(String, String)>,
    /// Requested subjectAltName DNS names, e-mail addresses and URIs.
    pub san_dns: Vec<String>,
    pub san_email: Vec<String>,
    pub san_uri: Vec<String>,
    /// The request asked for basicConstraints CA:TRUE.
    pub asks_for_ca: bool,
}

/// Reads a PKCS#10 request from SCEP: an RSA key of 2048 to 4096 bits (the
/// sizes Apple offers; the RSA crate reads public keys up to 4096 bits), self-signed
/// with SHA-1, SHA-256 or SHA-512 (Apple signs with the message's digest, which is
/// SHA-1 for old clients; a signature here proves possession, where SHA-1's
/// collisions do not help an attacker).
pub fn read_csr(der: &[u8]) -> Result<ScepCsr, (FailInfo, String)> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let bad = |reason: &str| (FailInfo::BadRequest, reason.to_string());
    let sealed = || (FailInfo::BadMessageCheck, SEALED.to_string());
    let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|_| sealed())?;
    if !rest.is_empty() {
        return Err(sealed());
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let key = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa_key)) => rsa_key,
        _ => {
            return Err(bad(
                "the requested key is not RSA (SCEP certifies RSA keys)",
            ));
        }
    };
    let key_bits = key.key_size();
    if !(2048..=4096).contains(&key_bits) {
        return Err(bad(&format!(
            "the requested key is RSA-{key_bits}; use 2048 to 4096 bits"
        )));
    }
    let public = rsa::PublicKey::from_pkcs1_der(spki.subject_public_key.data.as_ref())
        .map_err(|_| bad("the requested RSA key cannot be read"))?;
    let sig_oid = ObjectIdentifier::new(&csr.signature_algorithm.algorithm.to_id_string()).ok();
    let Some(digest) = sig_oid.as_ref().and_then(DigestAlg::from_oid) else {
        return Err((
            FailInfo::BadAlg,
            "the request is not signed with RSA and SHA-1, SHA-256 or SHA-512".into(),
        ));
    };
    if !digest.verify(
        &public,
        &digest.digest(info.raw),
        csr.signature_value.data.as_ref(),
    ) {
        return Err(sealed());
    }
    let mut out = ScepCsr {
        spki_der: spki.raw.to_vec(),
        key_fingerprint: crate::pki::fingerprint_der(spki.raw),
        key_bits,
        challenge: None,
        subject: Vec::new(),
        san_dns: Vec::new(),
        san_email: Vec::new(),
        san_uri: Vec::new(),
        asks_for_ca: false,
    };
    for attribute in info.iter_attributes() {
        if let x509_parser::cri_attributes::ParsedCriAttribute::ChallengePassword(p) =
            attribute.parsed_attribute()
        {
            out.challenge = Some(p.0.clone());
        }
    }
    for rdn in info.subject.iter() {
        for atv in rdn.iter() {
            let oid = atv.attr_type().to_id_string();
            let name = match oid.as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.5" => "serialNumber".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                _ => oid,
            };
            let value = atv
                .as_str()
                .map_err(|_| bad("a subject attribute is not a string"))?;
            out.subject.push((name, value.to_string()));
        }
    }
    if let Some(extensions) = csr.requested_extensions() {
        for ext in extensions {
            match ext {
                ParsedExtension::BasicConstraints(bc) => out.asks_for_ca |= bc.ca,
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => out.san_dns.push(d.to_string()),
                            GeneralName::RFC822Name(m) => out.san_email.push(m.to_string()),
                            GeneralName::URI(u) => out.san_uri.push(u.to_string()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Parses a DER certificate as the `x509-cert` type the CMS structures use.
pub fn certificate(der: &[u8]) -> Option<Certificate> {
    Certificate::from_der(der).ok()
}

/// `Encode` helper for callers that need a certificate's DER back.
pub fn certificate_der(cert: &Certificate) -> Option<Vec<u8>> {
    cert.to_der().ok()
}

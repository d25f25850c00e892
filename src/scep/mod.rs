//! SCEP (RFC 8894), the message layer: read a client's pkiMessage and write the
//! server's CertRep and GetCACert answers. No I/O and no policy here: the server
//! module (`server::scep`) decides who gets a certificate; this module only says what
//! a message contains and whether its signature and encryption hold.
//!
//! A pkiMessage is CMS SignedData, signed by the requester (a self-signed certificate
//! over the key being certified, or its current certificate when renewing), whose
//! content is CMS EnvelopedData encrypted to our RA certificate, whose content is the
//! PKCS#10 request. The CMS structures come from RustCrypto's `cms` crate; the RSA,
//! block cipher and digest operations from `rsa`, `des`, `aes`, `cbc`, `sha1`, `sha2`.
//!
//! - [`request`]: parse, verify the signature, decrypt.
//! - [`reply`]: CertRep (SUCCESS with the certificate enveloped to the requester, or
//!   FAILURE with a failInfo) and the GetCACert certificate bundle.
//! - [`algorithms`]: the digests and content ciphers we accept, by OID.

pub mod algorithms;
pub mod reply;
pub mod request;

pub use algorithms::{ContentCipher, DigestAlg, Sealed};
pub use reply::{CertRepStatus, ca_certs, cert_rep};
pub use request::{Header, PkiMessage, RequestError, parse};

/// SCEP attribute OIDs (RFC 8894 section 3.2.1), under id-VeriSign 2.16.840.1.113733.1.9.
pub mod oid {
    use der::asn1::ObjectIdentifier;
    pub const MESSAGE_TYPE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.2");
    pub const PKI_STATUS: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.3");
    pub const FAIL_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.4");
    pub const SENDER_NONCE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.5");
    pub const RECIPIENT_NONCE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.6");
    pub const TRANSACTION_ID: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.7");
    pub const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
    pub const MESSAGE_DIGEST: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
    pub const CHALLENGE_PASSWORD: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");
    pub const DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
    pub const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
    pub const ENVELOPED_DATA: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
    pub const RSA_ENCRYPTION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
}

/// messageType (RFC 8894 section 3.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    CertRep,
    RenewalReq,
    PkcsReq,
    CertPoll,
    GetCert,
    GetCrl,
}

impl MessageType {
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "3" => Self::CertRep,
            "17" => Self::RenewalReq,
            "19" => Self::PkcsReq,
            "20" => Self::CertPoll,
            "21" => Self::GetCert,
            "22" => Self::GetCrl,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::CertRep => "3",
            Self::RenewalReq => "17",
            Self::PkcsReq => "19",
            Self::CertPoll => "20",
            Self::GetCert => "21",
            Self::GetCrl => "22",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::CertRep => "CertRep",
            Self::RenewalReq => "RenewalReq",
            Self::PkcsReq => "PKCSReq",
            Self::CertPoll => "CertPoll",
            Self::GetCert => "GetCert",
            Self::GetCrl => "GetCRL",
        }
    }
}

/// failInfo (RFC 8894 section 3.2.1.4): why a request failed, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailInfo {
    /// Unrecognized or unsupported algorithm.
    BadAlg,
    /// Integrity check (signature, decryption) failed.
    BadMessageCheck,
    /// Transaction not permitted or supported (a bad challenge, a refused CSR).
    BadRequest,
    /// The signing certificate is expired or not yet valid.
    BadTime,
    /// No certificate could be identified matching the provided criteria.
    BadCertId,
}

impl FailInfo {
    pub fn code(self) -> &'static str {
        match self {
            Self::BadAlg => "0",
            Self::BadMessageCheck => "1",
            Self::BadRequest => "2",
            Self::BadTime => "3",
            Self::BadCertId => "4",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::BadAlg => "badAlg",
            Self::BadMessageCheck => "badMessageCheck",
            Self::BadRequest => "badRequest",
            Self::BadTime => "badTime",
            Self::BadCertId => "badCertId",
        }
    }
}

/// What GetCACaps advertises (RFC 8894 section 3.5.2), one per line. Never "DES"
/// or MD5: single DES is accepted only behind the server's explicit setting and is
/// not advertised even then.
pub const CA_CAPS: &[&str] = &[
    "POSTPKIOperation",
    "SHA-256",
    "SHA-1",
    "AES",
    "DES3",
    "SCEPStandard",
    "Renewal",
];

/// The largest pkiMessage we read: an RSA-4096 request with its signer certificate is
/// about 5 KB; 64 KiB leaves room for long subjects without inviting abuse.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

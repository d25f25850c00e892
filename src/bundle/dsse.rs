//! DSSE, the in-toto / Sigstore "Dead Simple Signing Envelope".
//!
//! ```json
//! {"payloadType": "application/vnd.fleetkit.policy+json",
//!  "payload": "<standard base64 of the payload bytes>",
//!  "signatures": [{"keyid": "<hex sha256 of the raw public key>", "sig": "<base64>"}]}
//! ```
//!
//! Each signature is Ed25519 over the pre-authentication encoding
//! `PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body` (LEN: ASCII decimal
//! byte count), never over the payload alone, so a signature cannot be replayed
//! under another payload type. The `keyid` is only a hint for finding the key; what
//! counts is that the named key's signature verifies.

use crate::pki::PolicyKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

/// The envelope as it travels: JSON with base64 strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Standard base64 (with padding) of the payload bytes.
    pub payload: String,
    pub signatures: Vec<Signature>,
}

/// One signature of an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    /// Standard base64 of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// Why bytes are not a well-formed envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("not a DSSE envelope: {0}")]
    Json(String),
    #[error("the envelope's `{field}` is not valid standard base64")]
    Base64 { field: String },
    #[error("cannot encode the envelope: {0}")]
    Encode(String),
}

/// The pre-authentication encoding that DSSE signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` with each key (a key given twice signs once).
    pub fn sign(payload_type: &str, payload: &[u8], signers: &[&PolicyKey]) -> Self {
        let message = pae(payload_type, payload);
        let mut signatures: Vec<Signature> = Vec::with_capacity(signers.len());
        for key in signers {
            let keyid = key.keyid();
            if signatures.iter().any(|s| s.keyid == keyid) {
                continue;
            }
            signatures.push(Signature {
                keyid,
                sig: STANDARD.encode(key.sign(&message)),
            });
        }
        Self {
            payload_type: payload_type.to_string(),
            payload: STANDARD.encode(payload),
            signatures,
        }
    }

    /// Pretty JSON with a final newline; the same envelope always gives the same bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, DsseError> {
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| DsseError::Encode(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Parses the JSON (base64 fields are checked by [`Envelope::decode`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DsseError> {
        serde_json::from_slice(bytes).map_err(|e| DsseError::Json(e.to_string()))
    }

    /// Decodes the base64 fields.
    pub fn decode(&self) -> Result<Decoded, DsseError> {
        let payload = STANDARD
            .decode(&self.payload)
            .map_err(|_| DsseError::Base64 {
                field: "payload".into(),
            })?;
        let signatures = self
            .signatures
            .iter()
            .enumerate()
            .map(|(i, s)| {
                STANDARD
                    .decode(&s.sig)
                    .map(|sig| DecodedSignature {
                        keyid: s.keyid.clone(),
                        sig,
                    })
                    .map_err(|_| DsseError::Base64 {
                        field: format!("signatures[{i}].sig"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Decoded {
            payload_type: self.payload_type.clone(),
            payload,
            signatures,
        })
    }
}

/// An envelope with its base64 decoded. Nothing in it is trusted yet.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<DecodedSignature>,
}

#[derive(Debug, Clone)]
pub struct DecodedSignature {
    pub keyid: String,
    pub sig: Vec<u8>,
}

/// What the verifier knows about a key id.
pub enum KeyLookup {
    /// A trusted key, valid at the verification time.
    Usable(VerifyingKey),
    /// A trusted key, but outside its validity window at the verification time.
    NotValidNow,
    /// Not a trusted key.
    Unknown,
}

/// The signatures of one envelope, sorted by what they are worth. Key ids appear in
/// the order of the envelope, each at most once per list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Distinct usable keys whose signature verifies: these count toward a threshold.
    pub valid: Vec<String>,
    /// Usable keys that signed more than once (they still count once).
    pub repeated: Vec<String>,
    /// Usable keys whose signature does not verify over this payload.
    pub bad: Vec<String>,
    /// Trusted keys used outside their validity window.
    pub not_valid_now: Vec<String>,
    /// Key ids the verifier does not trust.
    pub unknown: Vec<String>,
}

fn push_once(list: &mut Vec<String>, keyid: &str) {
    if !list.iter().any(|k| k == keyid) {
        list.push(keyid.to_string());
    }
}

/// Ed25519 with `verify_strict`: rejects small-order keys and non-canonical
/// signatures, so one signature cannot be mauled into another valid one.
fn verifies(key: &VerifyingKey, message: &[u8], sig: &[u8]) -> bool {
    match ed25519_dalek::Signature::from_slice(sig) {
        Ok(sig) => key.verify_strict(message, &sig).is_ok(),
        Err(_) => false,
    }
}

impl Decoded {
    /// The bytes the signatures are over.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Checks every signature against the keys `lookup` knows.
    pub fn tally(&self, lookup: impl Fn(&str) -> KeyLookup) -> Tally {
        let message = self.pae();
        let mut t = Tally::default();
        for s in &self.signatures {
            match lookup(&s.keyid) {
                KeyLookup::Usable(key) => {
                    if !verifies(&key, &message, &s.sig) {
                        push_once(&mut t.bad, &s.keyid);
                    } else if t.valid.contains(&s.keyid) {
                        push_once(&mut t.repeated, &s.keyid);
                    } else {
                        t.valid.push(s.keyid.clone());
                    }
                }
                KeyLookup::NotValidNow => push_once(&mut t.not_valid_now, &s.keyid),
                KeyLookup::Unknown => push_once(&mut t.unknown, &s.keyid),
            }
        }
        // A key with one good and one bad signature is a signer; its bad copy is noise.
        t.bad.retain(|k| !t.valid.contains(k));
        t
    }

    /// Whether `key`, named `keyid`, signed this envelope (regardless of validity
    /// windows): the proof that whoever added a key holds its private half.
    pub fn signed_by(&self, keyid: &str, key: &VerifyingKey) -> bool {
        let message = self.pae();
        self.signatures
            .iter()
            .any(|s| s.keyid == keyid && verifies(key, &message, &s.sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_known_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn pae_counts_bytes_not_chars() {
        assert_eq!(
            pae("t", "é".as_bytes()),
            "DSSEv1 1 t 2 é".as_bytes().to_vec()
        );
    }

    #[test]
    fn sign_and_tally() {
        let a = PolicyKey::generate().unwrap();
        let b = PolicyKey::generate().unwrap();
        let env = Envelope::sign("t", b"body", &[&a, &a, &b]);
        assert_eq!(env.signatures.len(), 2, "a key given twice signs once");
        let bytes = env.to_json().unwrap();
        let decoded = Envelope::from_json(&bytes).unwrap().decode().unwrap();
        assert_eq!(decoded.payload, b"body");
        let (ka, kb) = (a.keyid(), b.keyid());
        let (va, vb) = (a.verifying_key(), b.verifying_key());
        let t = decoded.tally(|id| {
            if id == ka {
                KeyLookup::Usable(va)
            } else if id == kb {
                KeyLookup::NotValidNow
            } else {
                KeyLookup::Unknown
            }
        });
        assert_eq!(t.valid, vec![ka.clone()]);
        assert_eq!(t.not_valid_now, vec![kb.clone()]);
        assert!(decoded.signed_by(&kb, &vb));
        assert!(!decoded.signed_by(&kb, &va));
    }

    #[test]
    fn signature_over_another_type_does_not_verify() {
        let a = PolicyKey::generate().unwrap();
        let env = Envelope::sign("type-a", b"body", &[&a]);
        let mut decoded = env.decode().unwrap();
        decoded.payload_type = "type-b".into();
        let id = a.keyid();
        let t = decoded.tally(|k| {
            if k == id {
                KeyLookup::Usable(a.verifying_key())
            } else {
                KeyLookup::Unknown
            }
        });
        assert!(t.valid.is_empty());
        assert_eq!(t.bad, vec![id]);
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        assert!(matches!(Envelope::from_json(b"{"), Err(DsseError::Json(_))));
        assert!(matches!(
            Envelope::from_json(br#"{"payloadType":"t","payload":"","signatures":[],"x":1}"#),
            Err(DsseError::Json(_))
        ));
        let env = Envelope {
            payload_type: "t".into(),
            payload: "!!".into(),
            signatures: vec![],
        };
        assert!(matches!(env.decode(), Err(DsseError::Base64 { field }) if field == "payload"));
        let env = Envelope {
            payload_type: "t".into(),
            payload: "aGk=".into(),
            signatures: vec![Signature {
                keyid: "k".into(),
                sig: "%%".into(),
            }],
        };
        assert!(
            matches!(env.decode(), Err(DsseError::Base64 { field }) if field == "signatures[0].sig")
        );
    }
}

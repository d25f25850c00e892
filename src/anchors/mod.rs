//! Trust anchors (`anchors.json`, public) and their signed rotation chain.
//!
//! ```json
//! {"org": "acme-corp", "version": 2, "threshold": 1,
//!  "keys": [{"keyid": "<hex sha256 of the raw key>", "algorithm": "ed25519",
//!            "public_key": "<base64 of the 32 raw bytes>",
//!            "valid_from": "2025-12-01T00:00:00Z", "valid_until": null}],
//!  "root_ca": ["-----BEGIN CERTIFICATE-----\n..."]}
//! ```
//!
//! A policy bundle needs `threshold` signatures from distinct keys valid at the
//! verification time (`valid_from <= now < valid_until`). To rotate keys, the admin
//! signs the next anchors document (version + 1, payload type
//! `application/vnd.fleetkit.anchors+json`) with a threshold of the current keys
//! *and* with the new key; a holder of the old anchors accepts it only when both
//! hold, every added key has signed (proof of possession), the org is the same and
//! the version goes up by exactly one ([`accept_rotation`], [`accept_chain`]). Trust
//! therefore only ever flows from the anchors installed with an artefact (DESIGN.md
//! rule 1).
//!
//! ## When a step is checked: at its own time
//!
//! Each rotation step is checked at the time it was made, not when a device
//! happens to see it (TUF's root-rotation rule). The *step time* is the latest
//! `valid_from` among the keys the step adds — a value inside the payload, so signed
//! by the very keys being checked. The step is accepted only if
//!
//! - the step time is not after `now` + [`ROTATION_CLOCK_SKEW`] (a rotation made "in
//!   the future" is refused; the skew allows for the admin's clock running ahead of
//!   the device's);
//! - a threshold of the trusted keys that are valid *at the step time* **and have no
//!   planned end in the trusted document** (`valid_until` is `None`) signed it;
//! - a threshold of the new document's own keys valid at the step time signed it;
//! - every added key signed it.
//!
//! A step that adds no key (it only drops keys or changes the threshold) has no time
//! of its own and is checked at `now`. So a device that slept through a whole
//! retirement window still follows the chain: the old key was valid when it signed
//! the step, even though it has retired since. Without this a fleet would be
//! stranded by every rotation it did not see in time.
//!
//! ## Why a retiring key never counts
//!
//! The step time is chosen by whoever signs the step, so on its own it would let a
//! key that has retired — and leaked later — sign a step backdated into its old
//! window. [`rotate`] keeps the retiring keys *in* the new anchors (with a
//! `valid_until`), so that would hold against the newest anchors too, not only
//! against old ones. Hence: a key with a planned end in the trusted document may
//! co-sign a step but does not count toward the trusted threshold. A key only gets
//! an end by a rotation that also adds its successors, and those successors (with
//! no end) are the ones that sign the next step. A holder of v1 (where K1 had no
//! end) still follows v1 → v2 signed by K1 at any later time; a holder of v2 (where
//! K1 retires) follows v2 → v3 only with the signatures of v2's lasting keys. A
//! stolen retired key therefore cannot extend the anchors in which it was retired.
//!
//! **The cost that remains.** A device still holding anchors *older* than the
//! rotation that retired a key (v1 above, where K1 had no end) would follow another
//! v2 signed by that stolen key, if it were ever served one: the server refuses a
//! second step of a version it holds, so this takes control of the server's
//! database too. Destroy retired private keys (`keys/policy-<keyid>.key`) once the
//! fleet has moved on; `fleetkit keys list` shows which retired keys still have one
//! in the workspace.
//!
//! The server adds one rule for a step it is asked to store (`PUT
//! /v1/admin/rotations`): a threshold of its current keys valid *now* signed it.
//! Backdating serves only devices walking old history, never a new step.

use crate::bundle::dsse::{DsseError, Envelope, KeyLookup, Tally};
use crate::bundle::short;
use crate::clock::rfc3339;
use crate::fsutil::{self, FsError, PUBLIC_MODE, ReadError};
use crate::pki::{PolicyKey, keyid_of};
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime, UtcOffset};

/// DSSE payload type of a signed anchors document (one rotation step).
pub const ANCHORS_PAYLOAD_TYPE: &str = "application/vnd.fleetkit.anchors+json";

/// Largest anchors document or rotation envelope accepted, checked before parsing.
pub const MAX_ANCHORS_BYTES: usize = 1024 * 1024;

/// How far in the future a rotation's step time may be: the admin's clock may run
/// a little ahead of the device's.
pub const ROTATION_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Signature algorithm of a policy key; only Ed25519 exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    Ed25519,
}

/// A policy-signing public key with its validity window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorKey {
    pub keyid: String,
    pub algorithm: KeyAlgorithm,
    #[serde(with = "base64_key")]
    pub public_key: [u8; 32],
    #[serde(with = "time::serde::rfc3339")]
    pub valid_from: OffsetDateTime,
    /// `None`: no planned end.
    #[serde(with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
}

/// The anchors document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustAnchors {
    pub org: String,
    /// Goes up by one at each rotation.
    pub version: u64,
    /// Distinct valid signatures a bundle (or a rotation) needs.
    pub threshold: u32,
    pub keys: Vec<AnchorKey>,
    /// The org root CA certificate(s), PEM.
    pub root_ca: Vec<String>,
}

/// Why anchors are invalid, or a rotation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AnchorsError {
    #[error("anchors document is {size} bytes, larger than the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("not a trust anchors document: {0}")]
    Json(String),
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<AnchorsError>,
    },
    #[error("the anchors' org is empty")]
    EmptyOrg,
    #[error(
        "threshold {threshold} is impossible with {keys} key(s): it must be between 1 and the number of keys"
    )]
    Threshold { threshold: u32, keys: usize },
    #[error("key {} is listed twice", short(keyid))]
    DuplicateKey { keyid: String },
    #[error(
        "key id {} does not match its public key (whose key id is {})",
        short(keyid),
        short(expected)
    )]
    KeyIdMismatch { keyid: String, expected: String },
    #[error("key {} is not a usable Ed25519 public key", short(keyid))]
    BadPublicKey { keyid: String },
    #[error("key {} ends ({}) before it starts ({})", short(keyid), rfc3339(*valid_until), rfc3339(*valid_from))]
    BadWindow {
        keyid: String,
        valid_from: OffsetDateTime,
        valid_until: OffsetDateTime,
    },
    #[error("root_ca[{index}] is not a CA certificate: {reason}")]
    BadRootCa { index: usize, reason: String },
    #[error("rotation envelope is not a DSSE envelope: {0}")]
    MalformedEnvelope(String),
    #[error("rotation envelope's `{field}` is not valid standard base64")]
    MalformedBase64 { field: String },
    #[error("rotation envelope has payload type `{found}`, expected `{expected}`")]
    WrongPayloadType { found: String, expected: String },
    #[error(
        "new anchors are signed by {valid} key(s) of the trusted anchors valid at the rotation's time ({}), threshold is {threshold}{detail}",
        rfc3339(*at)
    )]
    NotSignedByCurrent {
        valid: usize,
        threshold: u32,
        /// The step time the keys were checked at.
        at: OffsetDateTime,
        detail: String,
    },
    #[error("rotation payload is not a trust anchors document: {0}")]
    MalformedPayload(String),
    #[error("the new anchors document is invalid: {0}")]
    InvalidNewAnchors(Box<AnchorsError>),
    #[error("new anchors are for org {found}, trusted anchors are for {expected}")]
    OrgMismatch { found: String, expected: String },
    #[error("new anchors version {version} is not above the trusted version {current}")]
    VersionNotIncreasing { version: u64, current: u64 },
    #[error(
        "new anchors are signed by {valid} of their own key(s) valid at the rotation's time ({}), their threshold is {threshold}{detail}",
        rfc3339(*at)
    )]
    NotSignedByNew {
        valid: usize,
        threshold: u32,
        at: OffsetDateTime,
        detail: String,
    },
    #[error(
        "new anchors version {version} skips a version: the next after {current} is {}",
        current + 1
    )]
    VersionSkipped { version: u64, current: u64 },
    #[error(
        "the rotation adds key {} valid from {}, later than now ({}): a rotation cannot be dated in the future",
        short(keyid),
        rfc3339(*valid_from),
        rfc3339(*now)
    )]
    StepInFuture {
        keyid: String,
        valid_from: OffsetDateTime,
        now: OffsetDateTime,
    },
    #[error(
        "new key {} did not sign the new anchors (no proof its holder has the private key)",
        short(keyid)
    )]
    MissingProofOfPossession { keyid: String },
    #[error("rotation {index} of {total}: {source}")]
    Chain {
        /// 1-based position in the chain.
        index: usize,
        total: usize,
        #[source]
        source: Box<AnchorsError>,
    },
    #[error(
        "key {} is not a current key of the anchors; it cannot sign a rotation",
        short(keyid)
    )]
    SignerNotCurrent { keyid: String },
    #[error("{have} current key(s) given to sign the rotation, threshold is {threshold}")]
    NotEnoughSigners { have: usize, threshold: u32 },
    #[error("key {} is already in the anchors", short(keyid))]
    NewKeyAlreadyPresent { keyid: String },
    #[error(
        "{have} of the keys given to sign the rotation have no planned end in anchors v{version}, threshold is {threshold}: keys that are already retiring may co-sign a rotation but do not count"
    )]
    NotEnoughLastingSigners {
        have: usize,
        threshold: u32,
        version: u64,
    },
    #[error(
        "{have} distinct new key(s) given, the threshold is {threshold}: a rotation retires every current key, so it must add at least a threshold of new ones"
    )]
    NotEnoughNewKeys { have: usize, threshold: u32 },
    #[error(
        "the rotation is signed by {valid} of the current key(s) valid now ({}), threshold is {threshold}{detail}",
        rfc3339(*now)
    )]
    NotSignedNow {
        valid: usize,
        threshold: u32,
        now: OffsetDateTime,
        detail: String,
    },
    #[error("the retirement window must be zero or positive and end before year 10000")]
    BadRetirement,
    #[error("the anchors version cannot go higher")]
    VersionExhausted,
    #[error("cannot encode the anchors: {0}")]
    Encode(String),
    #[error(transparent)]
    Io(#[from] FsError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// `Result` with [`AnchorsError`].
pub type Result<T, E = AnchorsError> = std::result::Result<T, E>;

impl From<DsseError> for AnchorsError {
    fn from(e: DsseError) -> Self {
        match e {
            DsseError::Json(m) => Self::MalformedEnvelope(m),
            DsseError::Base64 { field } => Self::MalformedBase64 { field },
            DsseError::Encode(m) => Self::Encode(m),
        }
    }
}

mod base64_key {
    use super::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(|_| D::Error::custom("public_key is not standard base64"))?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            D::Error::custom(format!(
                "public_key is {} bytes, an Ed25519 public key is 32",
                bytes.len()
            ))
        })
    }
}

impl AnchorKey {
    /// The anchor entry for `key`, valid from `valid_from` (until `valid_until`).
    pub fn new(
        key: &PolicyKey,
        valid_from: OffsetDateTime,
        valid_until: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            keyid: key.keyid(),
            algorithm: KeyAlgorithm::Ed25519,
            public_key: key.public_key_bytes(),
            valid_from: valid_from.to_offset(UtcOffset::UTC),
            valid_until: valid_until.map(|t| t.to_offset(UtcOffset::UTC)),
        }
    }

    /// `valid_from <= now < valid_until`.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.valid_from <= now && self.valid_until.is_none_or(|until| now < until)
    }

    /// The public key; `None` if the bytes are not a usable Ed25519 key.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.public_key)
            .ok()
            .filter(|k| !k.is_weak())
    }

    /// "from <t> until <t>" or "from <t> with no end", for messages.
    pub fn window_description(&self) -> String {
        match self.valid_until {
            Some(until) => format!("from {} until {}", rfc3339(self.valid_from), rfc3339(until)),
            None => format!("from {} with no end", rfc3339(self.valid_from)),
        }
    }
}

impl TrustAnchors {
    /// Checks the document's own consistency: org set, 1 <= threshold <= keys, key
    /// ids unique and matching their keys, windows that end after they start, and
    /// root CA entries that are CA certificates.
    pub fn validate(&self) -> Result<()> {
        if self.org.trim().is_empty() {
            return Err(AnchorsError::EmptyOrg);
        }
        if self.threshold == 0 || self.threshold as usize > self.keys.len() {
            return Err(AnchorsError::Threshold {
                threshold: self.threshold,
                keys: self.keys.len(),
            });
        }
        for (i, k) in self.keys.iter().enumerate() {
            if self.keys[..i].iter().any(|other| other.keyid == k.keyid) {
                return Err(AnchorsError::DuplicateKey {
                    keyid: k.keyid.clone(),
                });
            }
            let expected = keyid_of(&k.public_key);
            if k.keyid != expected {
                return Err(AnchorsError::KeyIdMismatch {
                    keyid: k.keyid.clone(),
                    expected,
                });
            }
            if k.verifying_key().is_none() {
                return Err(AnchorsError::BadPublicKey {
                    keyid: k.keyid.clone(),
                });
            }
            if let Some(until) = k.valid_until
                && until <= k.valid_from
            {
                return Err(AnchorsError::BadWindow {
                    keyid: k.keyid.clone(),
                    valid_from: k.valid_from,
                    valid_until: until,
                });
            }
        }
        for (index, pem) in self.root_ca.iter().enumerate() {
            crate::pki::parse_ca_cert_pem(pem)
                .map_err(|reason| AnchorsError::BadRootCa { index, reason })?;
        }
        Ok(())
    }

    /// The keys valid at `now`.
    pub fn keys_valid_at(&self, now: OffsetDateTime) -> impl Iterator<Item = &AnchorKey> + '_ {
        self.keys.iter().filter(move |k| k.is_valid_at(now))
    }

    /// The key with this id.
    pub fn key(&self, keyid: &str) -> Option<&AnchorKey> {
        self.keys.iter().find(|k| k.keyid == keyid)
    }

    /// What these anchors say about `keyid` at `now`, for signature counting.
    pub fn key_lookup(&self, keyid: &str, now: OffsetDateTime) -> KeyLookup {
        match self.key(keyid) {
            None => KeyLookup::Unknown,
            Some(k) if !k.is_valid_at(now) => KeyLookup::NotValidNow,
            Some(k) => match k.verifying_key() {
                Some(vk) => KeyLookup::Usable(vk),
                None => KeyLookup::Unknown,
            },
        }
    }

    /// Pretty JSON with a final newline (field order fixed: same anchors, same bytes).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| AnchorsError::Encode(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Parses and validates an anchors document.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_ANCHORS_BYTES {
            return Err(AnchorsError::TooLarge {
                size: bytes.len(),
                max: MAX_ANCHORS_BYTES,
            });
        }
        let anchors: Self =
            serde_json::from_slice(bytes).map_err(|e| AnchorsError::Json(e.to_string()))?;
        anchors.validate()?;
        Ok(anchors)
    }
}

/// Reads and validates `anchors.json`.
pub fn load(path: &Path) -> Result<TrustAnchors> {
    let bytes = fsutil::read_capped(path, MAX_ANCHORS_BYTES as u64)?;
    TrustAnchors::from_json(&bytes).map_err(|e| AnchorsError::InFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// Validates and writes `anchors` atomically (public, 0644).
pub fn save(anchors: &TrustAnchors, path: &Path) -> Result<()> {
    anchors.validate()?;
    fsutil::write_atomic(path, &anchors.to_json()?, PUBLIC_MODE)?;
    Ok(())
}

/// Why a tally fell short, as "; key … is not in …" notes for an error message.
fn tally_detail(t: &Tally, whose: &str) -> String {
    let mut notes = Vec::new();
    for k in &t.bad {
        notes.push(format!(
            "the signature by key {} does not verify (modified after signing?)",
            short(k)
        ));
    }
    for k in &t.not_valid_now {
        notes.push(format!("key {} is outside its validity window", short(k)));
    }
    for k in &t.unknown {
        notes.push(format!("key {} is not in the {whose} anchors", short(k)));
    }
    for k in &t.repeated {
        notes.push(format!(
            "key {} signed more than once and counts once",
            short(k)
        ));
    }
    notes.iter().map(|n| format!("; {n}")).collect()
}

/// Makes the next anchors document: version + 1, the current keys kept but retired
/// at `now + retire_after` (a key that already ends sooner keeps its end; keys
/// already expired are dropped; keys not yet valid are left as planned), the new keys
/// added from `now` with no end, threshold and root CA unchanged. Returns it with its
/// rotation envelope (JSON bytes), signed by every given signer and by every new key
/// (proof of possession).
///
/// Every current key retires, so at least `threshold` new keys are needed, or the
/// org could sign nothing once the window ends ([`AnchorsError::NotEnoughNewKeys`]).
/// The signers must be current keys, at least `threshold` of them with no planned
/// end: a retiring key never counts toward a rotation (see the module comment), so
/// an envelope without them would be refused by every holder
/// ([`AnchorsError::NotEnoughLastingSigners`]). The result is checked with
/// [`accept_rotation`] before it is returned.
pub fn rotate(
    current: &TrustAnchors,
    signers: &[&PolicyKey],
    new_keys: &[&PolicyKey],
    retire_after: Duration,
    now: OffsetDateTime,
) -> Result<(TrustAnchors, Vec<u8>)> {
    current.validate()?;
    if retire_after.is_negative() {
        return Err(AnchorsError::BadRetirement);
    }
    let now = now.to_offset(UtcOffset::UTC);
    let retire_at = now
        .checked_add(retire_after)
        .filter(|t| t.year() <= 9999)
        .ok_or(AnchorsError::BadRetirement)?;
    let mut added: Vec<&PolicyKey> = Vec::with_capacity(new_keys.len());
    for new_key in new_keys {
        let keyid = new_key.keyid();
        if current.key(&keyid).is_some() {
            return Err(AnchorsError::NewKeyAlreadyPresent { keyid });
        }
        if !added.iter().any(|a| a.keyid() == keyid) {
            added.push(new_key);
        }
    }
    if added.len() < current.threshold as usize {
        return Err(AnchorsError::NotEnoughNewKeys {
            have: added.len(),
            threshold: current.threshold,
        });
    }
    let mut used: Vec<&PolicyKey> = Vec::with_capacity(signers.len() + added.len());
    let mut lasting = 0;
    for signer in signers {
        let keyid = signer.keyid();
        match current.key(&keyid) {
            Some(k) if k.is_valid_at(now) => {
                if !used.iter().any(|u| u.keyid() == keyid) {
                    used.push(signer);
                    if k.valid_until.is_none() {
                        lasting += 1;
                    }
                }
            }
            _ => return Err(AnchorsError::SignerNotCurrent { keyid }),
        }
    }
    if used.len() < current.threshold as usize {
        return Err(AnchorsError::NotEnoughSigners {
            have: used.len(),
            threshold: current.threshold,
        });
    }
    if lasting < current.threshold as usize {
        return Err(AnchorsError::NotEnoughLastingSigners {
            have: lasting,
            threshold: current.threshold,
            version: current.version,
        });
    }

    let mut next = current.clone();
    next.version = current
        .version
        .checked_add(1)
        .ok_or(AnchorsError::VersionExhausted)?;
    next.keys
        .retain(|k| k.valid_until.is_none_or(|until| until > now));
    for k in &mut next.keys {
        if k.valid_from <= now {
            k.valid_until = Some(match k.valid_until {
                Some(until) if until < retire_at => until,
                _ => retire_at,
            });
        }
    }
    for new_key in &added {
        next.keys.push(AnchorKey::new(new_key, now, None));
    }
    next.validate()?;

    let payload = next.to_json()?;
    used.extend(added.iter().copied());
    let envelope = Envelope::sign(ANCHORS_PAYLOAD_TYPE, &payload, &used).to_json()?;
    // Release only what a device holding `current` will accept.
    accept_rotation(current, &envelope, now)?;
    Ok((next, envelope))
}

/// Accepts the anchors document signed in `envelope_bytes` as the successor of
/// `trusted` (see the module comment for the rules and the step time). `now` bounds
/// the step time and is the time of a step that adds no key.
pub fn accept_rotation(
    trusted: &TrustAnchors,
    envelope_bytes: &[u8],
    now: OffsetDateTime,
) -> Result<TrustAnchors> {
    // Threshold 0 in the trusted document would let anything through.
    trusted.validate()?;
    let decoded = decode_rotation(envelope_bytes)?;
    // The payload is parsed (not believed) first: the step time is in it. Nothing
    // of it counts before the trusted keys' signatures over these bytes are checked.
    let next: TrustAnchors = serde_json::from_slice(&decoded.payload)
        .map_err(|e| AnchorsError::MalformedPayload(e.to_string()))?;
    let at = step_time(trusted, &next, now)?;

    let by_current = decoded.tally(|keyid| trusted.key_lookup(keyid, at));
    // A key with a planned end may co-sign but never counts: the step time is the
    // signer's choice, and a retired key that leaked could otherwise backdate a step
    // into its old window (see the module comment).
    let (lasting, retiring): (Vec<&String>, Vec<&String>) = by_current
        .valid
        .iter()
        .partition(|keyid| trusted.key(keyid).is_some_and(|k| k.valid_until.is_none()));
    if lasting.len() < trusted.threshold as usize {
        let mut detail = tally_detail(&by_current, "trusted");
        for keyid in retiring {
            if let Some(until) = trusted.key(keyid).and_then(|k| k.valid_until) {
                detail.push_str(&format!(
                    "; key {} retires at {} in the trusted anchors: a retiring key may co-sign a rotation but does not count",
                    short(keyid),
                    rfc3339(until)
                ));
            }
        }
        return Err(AnchorsError::NotSignedByCurrent {
            valid: lasting.len(),
            threshold: trusted.threshold,
            at,
            detail,
        });
    }

    next.validate()
        .map_err(|e| AnchorsError::InvalidNewAnchors(Box::new(e)))?;
    if next.org != trusted.org {
        return Err(AnchorsError::OrgMismatch {
            found: next.org,
            expected: trusted.org.clone(),
        });
    }
    if next.version <= trusted.version {
        return Err(AnchorsError::VersionNotIncreasing {
            version: next.version,
            current: trusted.version,
        });
    }
    // One step per version: the chain a server serves (`after=N`) has no gaps, and
    // a step cannot jump over one the fleet is expected to have seen.
    if next.version != trusted.version + 1 {
        return Err(AnchorsError::VersionSkipped {
            version: next.version,
            current: trusted.version,
        });
    }

    let by_own = decoded.tally(|keyid| next.key_lookup(keyid, at));
    if by_own.valid.len() < next.threshold as usize {
        return Err(AnchorsError::NotSignedByNew {
            valid: by_own.valid.len(),
            threshold: next.threshold,
            at,
            detail: tally_detail(&by_own, "new"),
        });
    }
    for k in &next.keys {
        if trusted.key(&k.keyid).is_some() {
            continue;
        }
        let signed = k
            .verifying_key()
            .is_some_and(|vk| decoded.signed_by(&k.keyid, &vk));
        if !signed {
            return Err(AnchorsError::MissingProofOfPossession {
                keyid: k.keyid.clone(),
            });
        }
    }
    Ok(next)
}

/// Checks that a threshold of the `trusted` keys valid at `now` signed the rotation
/// envelope (signatures only; [`accept_rotation`] does the rest). For a party that
/// is handed a *new* step, such as the server's `PUT /v1/admin/rotations`: a new
/// step has no reason to be dated in the past, so the keys must be valid now.
pub fn check_signed_now(
    trusted: &TrustAnchors,
    envelope_bytes: &[u8],
    now: OffsetDateTime,
) -> Result<()> {
    let decoded = decode_rotation(envelope_bytes)?;
    let tally = decoded.tally(|keyid| trusted.key_lookup(keyid, now));
    if tally.valid.len() < trusted.threshold as usize {
        return Err(AnchorsError::NotSignedNow {
            valid: tally.valid.len(),
            threshold: trusted.threshold,
            now,
            detail: tally_detail(&tally, "current"),
        });
    }
    Ok(())
}

/// The time a rotation step is checked at: the latest `valid_from` of the keys it
/// adds (those not in `trusted`), which must not be after `now` plus
/// [`ROTATION_CLOCK_SKEW`]; `now` for a step that adds no key.
fn step_time(
    trusted: &TrustAnchors,
    next: &TrustAnchors,
    now: OffsetDateTime,
) -> Result<OffsetDateTime> {
    let Some(latest) = next
        .keys
        .iter()
        .filter(|k| trusted.key(&k.keyid).is_none())
        .max_by_key(|k| k.valid_from)
    else {
        return Ok(now);
    };
    if latest.valid_from > now + ROTATION_CLOCK_SKEW {
        return Err(AnchorsError::StepInFuture {
            keyid: latest.keyid.clone(),
            valid_from: latest.valid_from,
            now,
        });
    }
    Ok(latest.valid_from)
}

/// Applies rotation envelopes in order (oldest first) starting from `trusted`, each
/// checked at its own step time; returns the last accepted anchors (`trusted` itself
/// for an empty chain). Any refusal stops the walk and names the step.
pub fn accept_chain(
    trusted: &TrustAnchors,
    envelopes: &[&[u8]],
    now: OffsetDateTime,
) -> Result<TrustAnchors> {
    let total = envelopes.len();
    let mut current = trusted.clone();
    for (i, envelope) in envelopes.iter().enumerate() {
        current = accept_rotation(&current, envelope, now).map_err(|e| AnchorsError::Chain {
            index: i + 1,
            total,
            source: Box::new(e),
        })?;
    }
    Ok(current)
}

/// A rotation envelope decoded, within the size cap and of the anchors payload
/// type; nothing of it is believed yet.
fn decode_rotation(envelope_bytes: &[u8]) -> Result<crate::bundle::dsse::Decoded> {
    if envelope_bytes.len() > MAX_ANCHORS_BYTES {
        return Err(AnchorsError::TooLarge {
            size: envelope_bytes.len(),
            max: MAX_ANCHORS_BYTES,
        });
    }
    let decoded = Envelope::from_json(envelope_bytes)?.decode()?;
    if decoded.payload_type != ANCHORS_PAYLOAD_TYPE {
        return Err(AnchorsError::WrongPayloadType {
            found: decoded.payload_type,
            expected: ANCHORS_PAYLOAD_TYPE.into(),
        });
    }
    Ok(decoded)
}

/// The anchors document a rotation envelope holds, parsed but neither verified nor
/// validated: for a holder of the chain's history who checks each step from the
/// one before (see the server's start), never a reason to trust it.
pub fn unverified_anchors(envelope_bytes: &[u8]) -> Result<TrustAnchors> {
    let decoded = decode_rotation(envelope_bytes)?;
    serde_json::from_slice(&decoded.payload)
        .map_err(|e| AnchorsError::MalformedPayload(e.to_string()))
}

/// What a rotation envelope claims, read without checking any signature: its
/// payload's org and version. For naming a step in messages and for keeping a
/// server's table in order; never a reason to trust it.
pub fn claimed_version(envelope_bytes: &[u8]) -> Result<(String, u64)> {
    let decoded = decode_rotation(envelope_bytes)?;
    #[derive(Deserialize)]
    struct Claim {
        org: String,
        version: u64,
    }
    let claim: Claim = serde_json::from_slice(&decoded.payload)
        .map_err(|e| AnchorsError::MalformedPayload(e.to_string()))?;
    Ok((claim.org, claim.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        time::macros::datetime!(2025-12-01 00:00 UTC)
    }

    fn anchors(keys: &[&PolicyKey], threshold: u32) -> TrustAnchors {
        TrustAnchors {
            org: "acme-corp".into(),
            version: 1,
            threshold,
            keys: keys.iter().map(|k| AnchorKey::new(k, t0(), None)).collect(),
            root_ca: vec![],
        }
    }

    #[test]
    fn json_round_trip_and_shape() {
        let k = PolicyKey::generate().unwrap();
        let a = anchors(&[&k], 1);
        let json = a.to_json().unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"algorithm\": \"ed25519\""));
        assert!(text.contains("\"valid_until\": null"));
        assert!(text.contains("\"valid_from\": \"2025-12-01T00:00:00Z\""));
        assert_eq!(TrustAnchors::from_json(&json).unwrap(), a);
        assert_eq!(a.to_json().unwrap(), json, "deterministic");
    }

    #[test]
    fn validation_catches_each_problem() {
        let k = PolicyKey::generate().unwrap();
        let k2 = PolicyKey::generate().unwrap();
        let good = anchors(&[&k, &k2], 2);
        good.validate().unwrap();

        let mut a = good.clone();
        a.org = " ".into();
        assert!(matches!(a.validate(), Err(AnchorsError::EmptyOrg)));
        let mut a = good.clone();
        a.threshold = 0;
        assert!(matches!(a.validate(), Err(AnchorsError::Threshold { .. })));
        let mut a = good.clone();
        a.threshold = 3;
        assert!(matches!(a.validate(), Err(AnchorsError::Threshold { .. })));
        let mut a = good.clone();
        a.keys[1] = a.keys[0].clone();
        assert!(matches!(
            a.validate(),
            Err(AnchorsError::DuplicateKey { .. })
        ));
        let mut a = good.clone();
        a.keys[1].keyid = a.keys[0].keyid.clone();
        a.keys[0].keyid = "00".repeat(32);
        assert!(matches!(
            a.validate(),
            Err(AnchorsError::KeyIdMismatch { .. })
        ));
        let mut a = good.clone();
        a.keys[0].public_key = [0u8; 32]; // a small-order point
        a.keys[0].keyid = keyid_of(&[0u8; 32]);
        assert!(matches!(
            a.validate(),
            Err(AnchorsError::BadPublicKey { .. })
        ));
        let mut a = good.clone();
        a.keys[0].valid_until = Some(t0());
        assert!(matches!(a.validate(), Err(AnchorsError::BadWindow { .. })));
        let mut a = good.clone();
        a.root_ca = vec!["not a cert".into()];
        assert!(matches!(
            a.validate(),
            Err(AnchorsError::BadRootCa { index: 0, .. })
        ));
    }

    #[test]
    fn bad_json_is_refused() {
        for bad in [
            &b"{"[..],
            br#"{"org":"a","version":1,"threshold":1,"keys":[],"root_ca":[],"extra":1}"#,
            br#"{"org":"a","version":1,"threshold":1,"keys":[{"keyid":"x","algorithm":"rsa","public_key":"","valid_from":"2025-12-01T00:00:00Z","valid_until":null}],"root_ca":[]}"#,
            br#"{"org":"a","version":1,"threshold":1,"keys":[{"keyid":"x","algorithm":"ed25519","public_key":"AAAA","valid_from":"2025-12-01T00:00:00Z","valid_until":null}],"root_ca":[]}"#,
        ] {
            assert!(matches!(TrustAnchors::from_json(bad), Err(AnchorsError::Json(_))));
        }
    }

    #[test]
    fn validity_window_is_half_open() {
        let k = PolicyKey::generate().unwrap();
        let key = AnchorKey::new(&k, t0(), Some(t0() + Duration::days(1)));
        assert!(!key.is_valid_at(t0() - Duration::seconds(1)));
        assert!(key.is_valid_at(t0()));
        assert!(!key.is_valid_at(t0() + Duration::days(1)));
    }

    #[test]
    fn rotation_retires_without_extending() {
        let a = PolicyKey::generate().unwrap();
        let b = PolicyKey::generate().unwrap();
        let mut current = anchors(&[&a, &b], 1);
        let now = t0() + Duration::days(10);
        current.keys[1].valid_until = Some(now + Duration::days(2));
        let new = PolicyKey::generate().unwrap();
        let (next, _) = rotate(&current, &[&a], &[&new], Duration::days(30), now).unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(next.keys[0].valid_until, Some(now + Duration::days(30)));
        assert_eq!(next.keys[1].valid_until, Some(now + Duration::days(2)));
        assert_eq!(next.keys[2].keyid, new.keyid());
        assert_eq!(next.keys[2].valid_from, now);
        assert_eq!(next.keys[2].valid_until, None);
    }

    #[test]
    fn rotation_refuses_bad_signers() {
        let a = PolicyKey::generate().unwrap();
        let b = PolicyKey::generate().unwrap();
        let stranger = PolicyKey::generate().unwrap();
        let current = anchors(&[&a, &b], 2);
        let now = t0() + Duration::days(1);
        let new = PolicyKey::generate().unwrap();
        let new2 = PolicyKey::generate().unwrap();
        assert!(matches!(
            rotate(&current, &[&a, &b], &[&new, &new], Duration::days(1), now),
            Err(AnchorsError::NotEnoughNewKeys {
                have: 1,
                threshold: 2
            })
        ));
        assert!(matches!(
            rotate(&current, &[&a, &a], &[&new, &new2], Duration::days(1), now),
            Err(AnchorsError::NotEnoughSigners {
                have: 1,
                threshold: 2
            })
        ));
        assert!(matches!(
            rotate(
                &current,
                &[&a, &stranger],
                &[&new, &new2],
                Duration::days(1),
                now
            ),
            Err(AnchorsError::SignerNotCurrent { .. })
        ));
        assert!(matches!(
            rotate(&current, &[&a, &b], &[&a], Duration::days(1), now),
            Err(AnchorsError::NewKeyAlreadyPresent { .. })
        ));
        assert!(matches!(
            rotate(&current, &[&a, &b], &[&new, &new2], Duration::days(-1), now),
            Err(AnchorsError::BadRetirement)
        ));
        rotate(&current, &[&a, &b], &[&new, &new2], Duration::days(1), now).unwrap();
    }

    #[test]
    fn check_signed_now_counts_only_keys_valid_now() {
        let (a, b) = (
            PolicyKey::generate().unwrap(),
            PolicyKey::generate().unwrap(),
        );
        let mut current = anchors(&[&a, &b], 1);
        current.keys[0].valid_until = Some(t0() + Duration::days(5));
        let env = Envelope::sign(ANCHORS_PAYLOAD_TYPE, b"{}", &[&a])
            .to_json()
            .unwrap();
        check_signed_now(&current, &env, t0() + Duration::days(1)).unwrap();
        let err = check_signed_now(&current, &env, t0() + Duration::days(6)).unwrap_err();
        assert!(
            matches!(
                err,
                AnchorsError::NotSignedNow {
                    valid: 0,
                    threshold: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("outside its validity window"),
            "{err}"
        );
    }
}

//! Signed policy bundles: a DSSE envelope ([`dsse`]) whose payload is
//!
//! ```json
//! {"org": "acme-corp", "version": 7, "issued_at": "2025-12-01T00:00:00Z",
//!  "expires_at": "2026-01-01T00:00:00Z", "policy": { ...the org policy... }}
//! ```
//!
//! with payload type `application/vnd.fleetkit.policy+json`, signed by one or more
//! Ed25519 policy keys listed in the trust anchors. [`verify_bundle`] applies
//! DESIGN.md security rule 2 in order, at one fixed `now`: size cap → envelope →
//! threshold of distinct valid signatures (keys valid at `now`) → payload → org →
//! version (within [`MAX_VERSION`]) against the installed one (equal: nothing to do;
//! lower: rollback) → expiry. Each failure is its own [`BundleError`] variant saying
//! exactly why.

pub mod dsse;

use crate::anchors::TrustAnchors;
use crate::clock::rfc3339;
use crate::pki::PolicyKey;
use dsse::{DsseError, Envelope, Tally};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, UtcOffset};

/// DSSE payload type of policy bundles.
pub const POLICY_PAYLOAD_TYPE: &str = "application/vnd.fleetkit.policy+json";

/// Largest bundle accepted, checked before anything is parsed.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

/// Highest bundle version: what every store holds (SQLite INTEGER and PostgreSQL
/// BIGINT are signed 64-bit). A higher version cannot be stored faithfully, so it is
/// refused where it is made ([`sign_bundle`]) and wherever it is read
/// ([`verify_bundle`]), never clamped: a clamped version would be below the signed one
/// and every later release would look like a rollback.
pub const MAX_VERSION: u64 = i64::MAX as u64;

/// How far in the future `issued_at` may lie (clock skew between admin and device)
/// before the bundle is refused as post-dated.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// The signed content of a bundle. Field order is the serialisation order, so the
/// same payload always gives the same bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePayload {
    pub org: String,
    /// Monotonic: devices refuse anything lower than what they hold.
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The org policy as JSON text; its model belongs to the policy module. Kept raw
    /// so that verifying a large bundle does not build a JSON tree nobody reads: the
    /// device deserialises it once, straight into the policy model.
    pub policy: Box<serde_json::value::RawValue>,
}

impl PartialEq for BundlePayload {
    fn eq(&self, other: &Self) -> bool {
        self.org == other.org
            && self.version == other.version
            && self.issued_at == other.issued_at
            && self.expires_at == other.expires_at
            && self.policy.get() == other.policy.get()
    }
}

/// Inputs of [`verify_bundle`] other than the bytes and anchors.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// The one time every check uses, taken once by the caller.
    pub now: OffsetDateTime,
    /// When set, the bundle's org must be this one (as well as the anchors' org).
    pub expected_org: Option<&'a str>,
    /// The version installed on this machine, if any.
    pub stored_version: Option<u64>,
}

/// A bundle that passed verification.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified {
    /// Newer than the installed version (or nothing installed): install it.
    Accepted {
        payload: BundlePayload,
        /// The distinct keys whose signatures counted.
        keyids: Vec<String>,
    },
    /// Correctly signed, and exactly the installed version: nothing to do.
    AlreadyCurrent { version: u64 },
}

/// Why a bundle was refused (or could not be made).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is {size} bytes, larger than the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("bundle is not a DSSE envelope: {0}")]
    MalformedEnvelope(String),
    #[error("bundle envelope's `{field}` is not valid standard base64")]
    MalformedBase64 { field: String },
    #[error("bundle has payload type `{found}`, expected `{expected}`")]
    WrongPayloadType { found: String, expected: String },
    #[error("bundle carries no signatures, threshold is {threshold}")]
    NoSignatures { threshold: u32 },
    #[error(
        "payload was modified after signing (signature by key {} does not verify); signed by {valid} valid key(s), threshold is {threshold}",
        short(keyid)
    )]
    BadSignature {
        keyid: String,
        valid: usize,
        threshold: u32,
    },
    #[error(
        "key {} is in the trust anchors but valid {window}, not at {}; signed by {valid} valid key(s), threshold is {threshold}",
        short(keyid), rfc3339(*now)
    )]
    KeyNotValid {
        keyid: String,
        window: String,
        now: OffsetDateTime,
        valid: usize,
        threshold: u32,
    },
    #[error(
        "key {} is not in the trust anchors; signed by {valid} valid key(s), threshold is {threshold}",
        short(keyid)
    )]
    UnknownKey {
        keyid: String,
        valid: usize,
        threshold: u32,
    },
    #[error(
        "signed by {valid} valid key(s), threshold is {threshold}{}",
        repeated_note(repeated)
    )]
    BelowThreshold {
        valid: usize,
        threshold: u32,
        /// Keys that signed more than once: each counts once.
        repeated: Vec<String>,
    },
    #[error("bundle payload is not a fleetkit policy bundle: {0}")]
    MalformedPayload(String),
    #[error("bundle is for org {bundle}, anchors are for {anchors}")]
    OrgMismatch { bundle: String, anchors: String },
    #[error("bundle is for org {bundle}, expected {expected}")]
    UnexpectedOrg { bundle: String, expected: String },
    #[error(
        "bundle version {version} is older than the installed version {installed}: rollback refused"
    )]
    Rollback { version: u64, installed: u64 },
    #[error("bundle version {version} is above the highest version, {max}", max = MAX_VERSION)]
    VersionOutOfRange { version: u64 },
    #[error("bundle expired at {} (now is {})", rfc3339(*expires_at), rfc3339(*now))]
    Expired {
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    },
    #[error(
        "bundle claims to be issued at {}, in the future (now is {}); check the clocks",
        rfc3339(*issued_at), rfc3339(*now)
    )]
    IssuedInFuture {
        issued_at: OffsetDateTime,
        now: OffsetDateTime,
    },
    #[error("the trust anchors are unusable: {0}")]
    BadAnchors(String),
    #[error("no signing keys given")]
    NoSigners,
    #[error("bundle would expire ({}) before it is issued ({})", rfc3339(*expires_at), rfc3339(*issued_at))]
    BadLifetime {
        issued_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    },
    #[error("cannot encode the bundle: {0}")]
    Encode(String),
}

/// `Result` with [`BundleError`].
pub type Result<T, E = BundleError> = std::result::Result<T, E>;

impl BundleError {
    /// A stable machine-readable reason (for `--json` output and logs).
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too-large",
            Self::MalformedEnvelope(_) => "malformed-envelope",
            Self::MalformedBase64 { .. } => "malformed-base64",
            Self::WrongPayloadType { .. } => "wrong-payload-type",
            Self::NoSignatures { .. } => "no-signatures",
            Self::BadSignature { .. } => "bad-signature",
            Self::KeyNotValid { .. } => "key-not-valid",
            Self::UnknownKey { .. } => "unknown-key",
            Self::BelowThreshold { .. } => "below-threshold",
            Self::MalformedPayload(_) => "malformed-payload",
            Self::OrgMismatch { .. } => "org-mismatch",
            Self::UnexpectedOrg { .. } => "unexpected-org",
            Self::Rollback { .. } => "rollback",
            Self::VersionOutOfRange { .. } => "version-out-of-range",
            Self::Expired { .. } => "expired",
            Self::IssuedInFuture { .. } => "issued-in-future",
            Self::BadAnchors(_) => "bad-anchors",
            Self::NoSigners => "no-signers",
            Self::BadLifetime { .. } => "bad-lifetime",
            Self::Encode(_) => "encode",
        }
    }
}

impl From<DsseError> for BundleError {
    fn from(e: DsseError) -> Self {
        match e {
            DsseError::Json(m) => Self::MalformedEnvelope(m),
            DsseError::Base64 { field } => Self::MalformedBase64 { field },
            DsseError::Encode(m) => Self::Encode(m),
        }
    }
}

/// The first 16 hex digits of a key id, enough to tell keys apart in a message.
pub(crate) fn short(keyid: &str) -> String {
    match keyid.get(..16) {
        Some(head) if keyid.len() > 16 => format!("{head}…"),
        _ => keyid.to_string(),
    }
}

fn repeated_note(repeated: &[String]) -> String {
    if repeated.is_empty() {
        String::new()
    } else {
        let keys: Vec<String> = repeated.iter().map(|k| short(k)).collect();
        format!(
            " (key {} signed more than once; a key counts once)",
            keys.join(", ")
        )
    }
}

/// Signs `payload` with every key in `signers` and returns the envelope's JSON bytes.
/// Timestamps are written in UTC, so equal inputs give equal bytes.
pub fn sign_bundle(payload: &BundlePayload, signers: &[&PolicyKey]) -> Result<Vec<u8>> {
    if signers.is_empty() {
        return Err(BundleError::NoSigners);
    }
    check_version(payload.version)?;
    if payload.expires_at <= payload.issued_at {
        return Err(BundleError::BadLifetime {
            issued_at: payload.issued_at,
            expires_at: payload.expires_at,
        });
    }
    let mut payload = payload.clone();
    payload.issued_at = payload.issued_at.to_offset(UtcOffset::UTC);
    payload.expires_at = payload.expires_at.to_offset(UtcOffset::UTC);
    let body = serde_json::to_vec(&payload).map_err(|e| BundleError::Encode(e.to_string()))?;
    Ok(Envelope::sign(POLICY_PAYLOAD_TYPE, &body, signers).to_json()?)
}

/// Verifies a bundle against the trust anchors (DESIGN.md security rule 2).
pub fn verify_bundle(
    bytes: &[u8],
    anchors: &TrustAnchors,
    opts: &VerifyOptions<'_>,
) -> Result<Verified> {
    let now = opts.now;
    // 1. Size, before any parsing.
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge {
            size: bytes.len(),
            max: MAX_BUNDLE_BYTES,
        });
    }
    // A threshold of 0 would accept unsigned bundles: never verify against anchors
    // that do not validate.
    anchors
        .validate()
        .map_err(|e| BundleError::BadAnchors(e.to_string()))?;

    // 2. Envelope.
    let decoded = Envelope::from_json(bytes)?.decode()?;
    if decoded.payload_type != POLICY_PAYLOAD_TYPE {
        return Err(BundleError::WrongPayloadType {
            found: decoded.payload_type,
            expected: POLICY_PAYLOAD_TYPE.into(),
        });
    }

    // 3. Threshold of distinct keys, valid at `now`, whose signature verifies.
    let tally = decoded.tally(|keyid| anchors.key_lookup(keyid, now));
    if tally.valid.len() < anchors.threshold as usize {
        return Err(threshold_error(
            tally,
            anchors,
            now,
            decoded.signatures.len(),
        ));
    }

    // 4. Payload: only now is it believed enough to be parsed.
    let payload: BundlePayload = serde_json::from_slice(&decoded.payload)
        .map_err(|e| BundleError::MalformedPayload(e.to_string()))?;

    // 5. Org.
    if payload.org != anchors.org {
        return Err(BundleError::OrgMismatch {
            bundle: payload.org,
            anchors: anchors.org.clone(),
        });
    }
    if let Some(expected) = opts.expected_org
        && payload.org != expected
    {
        return Err(BundleError::UnexpectedOrg {
            bundle: payload.org,
            expected: expected.to_string(),
        });
    }

    // 6. Version: storable, then against the installed one.
    check_version(payload.version)?;
    if let Some(installed) = opts.stored_version {
        if payload.version < installed {
            return Err(BundleError::Rollback {
                version: payload.version,
                installed,
            });
        }
        if payload.version == installed {
            return Ok(Verified::AlreadyCurrent {
                version: payload.version,
            });
        }
    }

    // 7. Time.
    if payload.expires_at <= now {
        return Err(BundleError::Expired {
            expires_at: payload.expires_at,
            now,
        });
    }
    if payload.issued_at > now + MAX_CLOCK_SKEW {
        return Err(BundleError::IssuedInFuture {
            issued_at: payload.issued_at,
            now,
        });
    }

    Ok(Verified::Accepted {
        payload,
        keyids: tally.valid,
    })
}

/// Refuses a version above [`MAX_VERSION`]; the one check every producer and reader
/// of versions (signing, verifying, the server's publish) shares.
pub fn check_version(version: u64) -> Result<()> {
    if version > MAX_VERSION {
        return Err(BundleError::VersionOutOfRange { version });
    }
    Ok(())
}

/// The most telling reason a bundle fell short of the threshold: a signature that
/// does not verify (tampering) first, then a key outside its window, then a key the
/// anchors do not know, then plain shortage.
fn threshold_error(
    tally: Tally,
    anchors: &TrustAnchors,
    now: OffsetDateTime,
    signatures: usize,
) -> BundleError {
    let valid = tally.valid.len();
    let threshold = anchors.threshold;
    if signatures == 0 {
        return BundleError::NoSignatures { threshold };
    }
    if let Some(keyid) = tally.bad.into_iter().next() {
        return BundleError::BadSignature {
            keyid,
            valid,
            threshold,
        };
    }
    if let Some(keyid) = tally.not_valid_now.into_iter().next() {
        let window = anchors
            .key(&keyid)
            .map(|k| k.window_description())
            .unwrap_or_default();
        return BundleError::KeyNotValid {
            keyid,
            window,
            now,
            valid,
            threshold,
        };
    }
    if let Some(keyid) = tally.unknown.into_iter().next() {
        return BundleError::UnknownKey {
            keyid,
            valid,
            threshold,
        };
    }
    BundleError::BelowThreshold {
        valid,
        threshold,
        repeated: tally.repeated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keyid() {
        assert_eq!(short("0123456789abcdef0123"), "0123456789abcdef…");
        assert_eq!(short("abc"), "abc");
        // Byte 16 inside a multi-byte character: no panic, the id is shown whole.
        let odd = format!("a{}", "é".repeat(20));
        assert_eq!(short(&odd), odd);
    }

    #[test]
    fn every_error_has_a_distinct_code() {
        let t = time::macros::datetime!(2025-12-01 00:00 UTC);
        let errors = [
            BundleError::TooLarge { size: 2, max: 1 },
            BundleError::MalformedEnvelope(String::new()),
            BundleError::MalformedBase64 {
                field: String::new(),
            },
            BundleError::WrongPayloadType {
                found: String::new(),
                expected: String::new(),
            },
            BundleError::NoSignatures { threshold: 1 },
            BundleError::BadSignature {
                keyid: String::new(),
                valid: 0,
                threshold: 1,
            },
            BundleError::KeyNotValid {
                keyid: String::new(),
                window: String::new(),
                now: t,
                valid: 0,
                threshold: 1,
            },
            BundleError::UnknownKey {
                keyid: String::new(),
                valid: 0,
                threshold: 1,
            },
            BundleError::BelowThreshold {
                valid: 0,
                threshold: 1,
                repeated: vec![],
            },
            BundleError::MalformedPayload(String::new()),
            BundleError::OrgMismatch {
                bundle: String::new(),
                anchors: String::new(),
            },
            BundleError::UnexpectedOrg {
                bundle: String::new(),
                expected: String::new(),
            },
            BundleError::Rollback {
                version: 1,
                installed: 2,
            },
            BundleError::VersionOutOfRange {
                version: MAX_VERSION + 1,
            },
            BundleError::Expired {
                expires_at: t,
                now: t,
            },
            BundleError::IssuedInFuture {
                issued_at: t,
                now: t,
            },
            BundleError::BadAnchors(String::new()),
            BundleError::NoSigners,
            BundleError::BadLifetime {
                issued_at: t,
                expires_at: t,
            },
            BundleError::Encode(String::new()),
        ];
        let mut codes: Vec<&str> = errors.iter().map(BundleError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
    }
}

//! `policy sign`: validate the workspace policy, sign it with the workspace's policy
//! keys into a bundle, check the result against the anchors, and record the version.
//!
//! The version defaults to the last signed one + 1 and can never go down: a device
//! refuses a lower version as a rollback, so releasing one would strand the fleet.
//! Nor can it go above [`bundle::MAX_VERSION`]: no store could hold the bundle, so the
//! release would be refused everywhere (and once there, no version could follow it).

use super::Workspace;
use super::state::{State, StateError};
use crate::anchors::TrustAnchors;
use crate::bundle::{self, BundlePayload};
use crate::diag::Diagnostics;
use crate::fsutil::{self, FsError, PUBLIC_MODE};
use crate::pki::PolicyKey;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use time::OffsetDateTime;

/// What the caller may set; everything else comes from the workspace.
#[derive(Debug, Clone, Default)]
pub struct SignOptions {
    pub version: Option<u64>,
    /// Bundle lifetime (default: `policy.lifetime_days`).
    pub lifetime: Option<time::Duration>,
    /// Output path (default: `bundles/policy-v<N>.json`).
    pub out: Option<PathBuf>,
    /// Sign with this enforcement mode instead of the policy file's: an
    /// `audit-only` release is a dry run in the field (devices decide and record,
    /// never block), measured with `fleetkit audit stats` before it is enforced.
    pub mode: Option<crate::policy::EnforcementMode>,
}

/// What was signed.
#[derive(Debug, Clone)]
pub struct SignReport {
    pub org: String,
    pub version: u64,
    pub path: PathBuf,
    pub issued_at: String,
    pub expires_at: String,
    pub keyids: Vec<String>,
    pub sha256: String,
    /// The enforcement mode signed into the bundle.
    pub mode: crate::policy::EnforcementMode,
    pub warnings: Diagnostics,
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{0}")]
    Policy(Diagnostics),
    #[error("the policy is for organization `{policy}` but the workspace org is `{workspace}`")]
    OrgMismatch { policy: String, workspace: String },
    #[error("version {requested} is not above the last signed version {last}")]
    VersionNotIncreasing { requested: u64, last: u64 },
    #[error("version {requested} is above the highest bundle version, {max}", max = bundle::MAX_VERSION)]
    VersionOutOfRange { requested: u64 },
    #[error("only {have} signing key(s) valid now are in keys/, the anchors need {threshold}")]
    NotEnoughKeys { have: usize, threshold: u32 },
    #[error(transparent)]
    Anchors(#[from] crate::anchors::AnchorsError),
    #[error(transparent)]
    Keys(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Io(#[from] FsError),
    #[error(transparent)]
    Clock(#[from] crate::clock::BadSourceDateEpoch),
    #[error("the bundle lifetime is out of range")]
    Lifetime,
}

impl SignError {
    /// What the user should do next.
    pub fn help(&self) -> &'static str {
        match self {
            Self::Policy(_) => "fix the policy as shown, then sign again",
            Self::OrgMismatch { .. } => {
                "make `organization` in the policy match `org` in fleetkit.yaml"
            }
            Self::VersionNotIncreasing { .. } => {
                "omit --version to use the next one; devices refuse lower versions as rollbacks"
            }
            Self::VersionOutOfRange { .. } => {
                "bundle versions go up to 9223372036854775807 (a signed 64-bit integer, what every server store holds)"
            }
            Self::NotEnoughKeys { .. } => {
                "sign on the machine holding the policy keys, or rotate keys with `fleetkit keys rotate`"
            }
            Self::Anchors(_) | Self::Keys(_) => {
                "check anchors.json and keys/, or recreate them with `fleetkit init --force`"
            }
            Self::State(_) => "state.json records the last signed version",
            Self::Clock(_) => "unset SOURCE_DATE_EPOCH or give seconds since 1970",
            _ => "",
        }
    }
}

/// The policy keys in `keys/` that the anchors list and that are valid at `now`.
pub fn signing_keys(
    ws: &Workspace,
    anchors: &TrustAnchors,
    now: OffsetDateTime,
) -> Result<Vec<PolicyKey>, SignError> {
    let mut keys = Vec::new();
    for k in anchors.keys_valid_at(now) {
        let path = super::paths::policy_key(&ws.root, &k.keyid);
        if path.is_file() {
            let key = PolicyKey::load(&path)?;
            if key.keyid() == k.keyid {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

/// Signs the workspace policy. Nothing is written unless every check passed.
pub fn sign_policy(ws: &Workspace, opts: &SignOptions) -> Result<SignReport, SignError> {
    let mut checked = crate::policy::load(&ws.policy_path()).map_err(SignError::Policy)?;
    if let Some(mode) = opts.mode {
        checked.policy.enforcement.mode = mode;
    }
    if checked.policy.organization != ws.config.org {
        return Err(SignError::OrgMismatch {
            policy: checked.policy.organization.clone(),
            workspace: ws.config.org.clone(),
        });
    }
    let state = State::load(&ws.state_path())?;
    // Saturating: a state.json at u64::MAX gives an out-of-range version, not a panic.
    let version = opts
        .version
        .unwrap_or(state.policy_version.saturating_add(1));
    if version > bundle::MAX_VERSION {
        return Err(SignError::VersionOutOfRange { requested: version });
    }
    if version <= state.policy_version {
        return Err(SignError::VersionNotIncreasing {
            requested: version,
            last: state.policy_version,
        });
    }
    let now = crate::clock::now();
    let issued_at = crate::clock::build_time()?;
    let lifetime = opts
        .lifetime
        .unwrap_or(time::Duration::days(ws.config.policy.lifetime_days as i64));
    let expires_at = issued_at.checked_add(lifetime).ok_or(SignError::Lifetime)?;

    let anchors = crate::anchors::load(&ws.anchors_path())?;
    // Keys are chosen by validity at the issue time, so a reproducible build
    // (SOURCE_DATE_EPOCH) picks the same keys.
    let keys = signing_keys(ws, &anchors, issued_at)?;
    if keys.len() < anchors.threshold as usize {
        return Err(SignError::NotEnoughKeys {
            have: keys.len(),
            threshold: anchors.threshold,
        });
    }
    let payload = BundlePayload {
        org: ws.config.org.clone(),
        version,
        issued_at,
        expires_at,
        policy: serde_json::value::to_raw_value(&checked.policy)
            .map_err(|e| SignError::Bundle(crate::bundle::BundleError::Encode(e.to_string())))?,
    };
    let signers: Vec<&PolicyKey> = keys.iter().collect();
    let bytes = bundle::sign_bundle(&payload, &signers)?;

    // Verify what we are about to release, as a device would (at issue time when it
    // lies ahead of the wall clock, e.g. a SOURCE_DATE_EPOCH in the future).
    let check_time = if issued_at > now { issued_at } else { now };
    bundle::verify_bundle(
        &bytes,
        &anchors,
        &bundle::VerifyOptions {
            now: check_time,
            expected_org: Some(&ws.config.org),
            stored_version: None,
        },
    )?;

    let path = opts.out.clone().unwrap_or_else(|| ws.bundle_path(version));
    fsutil::write_atomic(&path, &bytes, PUBLIC_MODE)?;
    State {
        policy_version: version,
    }
    .save(&ws.state_path())?;
    Ok(SignReport {
        org: ws.config.org.clone(),
        version,
        path,
        issued_at: crate::clock::rfc3339(issued_at),
        expires_at: crate::clock::rfc3339(expires_at),
        keyids: keys.iter().map(PolicyKey::keyid).collect(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        mode: checked.policy.enforcement.mode,
        warnings: checked.warnings,
    })
}

//! The policy in force on the device: the exact bytes of the last bundle that
//! passed verification, in one file swapped atomically (temp file, fsync, rename),
//! so that a crash leaves the old bundle or the new one, never a mix.
//!
//! The file, not the state, decides which policy is in force: it is re-verified on
//! every load (cache poisoning), at the fixed time it was installed, so a bundle
//! written there by anything but the agent is not believed.

use super::state::PolicyRecord;
use super::{Agent, Result};
use crate::bundle::{self, BundleError, BundlePayload, MAX_BUNDLE_BYTES, Verified, VerifyOptions};
use crate::fsutil::{self, PUBLIC_MODE};
use crate::pki::fingerprint_der;
use std::path::Path;
use time::OffsetDateTime;

/// A verified bundle held on the device.
#[derive(Debug, Clone)]
pub struct HeldPolicy {
    pub version: u64,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl From<&BundlePayload> for HeldPolicy {
    fn from(p: &BundlePayload) -> Self {
        Self {
            version: p.version,
            issued_at: p.issued_at,
            expires_at: p.expires_at,
        }
    }
}

impl Agent {
    /// Verifies `bytes` as a bundle for this device at time `at`, against the
    /// installed anchors and the device's org, with no version check.
    fn verify_at(&self, bytes: &[u8], at: OffsetDateTime) -> Result<BundlePayload, BundleError> {
        let opts = VerifyOptions {
            now: at,
            expected_org: Some(&self.settings.org),
            stored_version: None,
        };
        match bundle::verify_bundle(bytes, &self.anchors, &opts)? {
            Verified::Accepted { payload, .. } => Ok(payload),
            Verified::AlreadyCurrent { .. } => Err(BundleError::Encode(
                "unexpected answer without a stored version".into(),
            )),
        }
    }

    /// The policy in force, re-verified; `None` when there is none or it does not
    /// verify any more.
    pub fn held_policy(&self, now: OffsetDateTime) -> Option<HeldPolicy> {
        self.held_payload(now).map(|p| HeldPolicy::from(&p))
    }

    /// The payload of the policy file, re-verified at the time it was installed.
    fn held_payload(&self, now: OffsetDateTime) -> Option<BundlePayload> {
        let bytes = read_bundle(&self.paths.policy)?;
        let at = self
            .state
            .policy
            .as_ref()
            .filter(|r| r.sha256 == fingerprint_der(&bytes))
            .map_or(now, |r| r.installed_at);
        self.verify_at(&bytes, at).ok()
    }

    /// The policy in force, re-verified, with its bundle version; else the shipped
    /// bundle's (the installer's default). `None` when neither verifies.
    pub fn policy_in_force(&self, now: OffsetDateTime) -> Option<(u64, crate::policy::OrgPolicy)> {
        let payload = match self.held_payload(now) {
            Some(p) => p,
            None => self.shipped_payload(now)?.0,
        };
        let policy = serde_json::from_str(payload.policy.get()).ok()?;
        Some((payload.version, policy))
    }

    /// The bundle shipped with the artefact, when it verifies. Its expiry is not held
    /// against it: it is the installer's own default, used only as a fallback.
    pub fn shipped_policy(&self, now: OffsetDateTime) -> Option<(HeldPolicy, Vec<u8>)> {
        let (payload, bytes) = self.shipped_payload(now)?;
        Some((HeldPolicy::from(&payload), bytes))
    }

    fn shipped_payload(&self, now: OffsetDateTime) -> Option<(BundlePayload, Vec<u8>)> {
        let bytes = read_bundle(&self.paths.shipped_bundle)?;
        let payload = match self.verify_at(&bytes, now) {
            Ok(p) => p,
            Err(BundleError::Expired { expires_at, .. }) => self
                .verify_at(&bytes, expires_at - time::Duration::seconds(1))
                .ok()?,
            Err(_) => return None,
        };
        Some((payload, bytes))
    }

    /// Verifies a bundle offered to the device (DESIGN.md rule 2, with the version
    /// held now) and, when it is newer, swaps it in.
    pub fn offer_bundle(
        &mut self,
        bytes: &[u8],
        source: &str,
        etag: Option<String>,
        now: OffsetDateTime,
    ) -> Result<Verified, BundleError> {
        // The rollback floor is the higher of the file and the record: a policy file
        // that stops verifying (expired, keys rotated away) never lowers it.
        let in_file = self.held_policy(now).map(|h| h.version);
        let floor = in_file.max(self.state.policy.as_ref().map(|r| r.version));
        let opts = VerifyOptions {
            now,
            expected_org: Some(&self.settings.org),
            stored_version: floor,
        };
        let verified = bundle::verify_bundle(bytes, &self.anchors, &opts)?;
        let payload = match &verified {
            Verified::Accepted { payload, .. } => Some(payload.clone()),
            // The recorded version, but the file does not hold it (deleted, damaged,
            // or a run killed between swap and record): put it back.
            Verified::AlreadyCurrent { version } if in_file != Some(*version) => {
                Some(self.verify_at(bytes, now)?)
            }
            Verified::AlreadyCurrent { .. } => None,
        };
        match payload {
            Some(payload) => {
                fsutil::write_atomic(&self.paths.policy, bytes, PUBLIC_MODE)
                    .map_err(|e| BundleError::Encode(e.to_string()))?;
                self.state.policy = Some(PolicyRecord {
                    version: payload.version,
                    expires_at: payload.expires_at,
                    installed_at: now,
                    source: source.to_string(),
                    etag,
                    sha256: fingerprint_der(bytes),
                });
            }
            None => {
                if let Some(record) = self.state.policy.as_mut()
                    && etag.is_some()
                {
                    record.etag = etag;
                }
            }
        }
        Ok(verified)
    }
}

fn read_bundle(path: &Path) -> Option<Vec<u8>> {
    fsutil::read_capped(path, MAX_BUNDLE_BYTES as u64).ok()
}

//! `state.json`: what the agent knows between runs: enrollment, the policy in force
//! and how the last sync went. Written atomically after every change. The policy
//! file itself stays the authority on which policy is in force: the state only
//! remembers when it was verified and where it came from.

use super::settings::Assignment;
use crate::fsutil::{self, PUBLIC_MODE};
use serde::{Deserialize, Serialize};
use std::path::Path;
use time::OffsetDateTime;

const MAX_STATE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnrollmentStatus {
    /// Facts and key are ready; the server has not been reached yet.
    Pending,
    Registered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub status: EnrollmentStatus,
    pub machine_id: String,
    pub device_id: Option<String>,
    /// The team the server bound the device to (the token's team).
    pub team: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub registered_at: Option<OffsetDateTime>,
    pub certificate_fingerprint: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub certificate_not_before: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub certificate_not_after: Option<OffsetDateTime>,
    /// Why the last attempt did not finish, when it did not.
    pub last_error: Option<String>,
}

impl Enrollment {
    /// A registered device with the certificate in `checked`.
    pub fn registered(
        machine_id: String,
        device_id: String,
        team: String,
        now: OffsetDateTime,
        checked: &super::identity::CheckedChain,
    ) -> Self {
        Self {
            status: EnrollmentStatus::Registered,
            machine_id,
            device_id: Some(device_id),
            team: Some(team),
            registered_at: Some(now),
            certificate_fingerprint: Some(checked.fingerprint.clone()),
            certificate_not_before: Some(checked.not_before),
            certificate_not_after: Some(checked.not_after),
            last_error: None,
        }
    }
}

/// The policy bundle in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When this device verified and installed it; the fixed time at which its
    /// signatures are re-checked on every load.
    #[serde(with = "time::serde::rfc3339")]
    pub installed_at: OffsetDateTime,
    /// `server` or `shipped` (the bundle installed with the artefact).
    pub source: String,
    pub etag: Option<String>,
    /// `sha256:<hex>` of the exact bytes.
    pub sha256: String,
}

/// How the last sync ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub ok: bool,
    /// A stable reason code (`current`, `updated`, `unreachable`, `rejected:<code>`…).
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub enrollment: Option<Enrollment>,
    /// The org assignment given at registration (install-time flags over settings).
    #[serde(default)]
    pub assignment: Assignment,
    pub policy: Option<PolicyRecord>,
    /// The last time the server confirmed that the policy in force is the published
    /// one: what the `cached-with-expiry` offline mode measures age from.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_confirmed: Option<OffsetDateTime>,
    pub last_sync: Option<SyncRecord>,
    /// What the agent last did with Claude Code's managed settings.
    #[serde(default)]
    pub claude_settings: Option<super::claude_code::ClaudeSettingsRecord>,
    /// How far the server holds this device's audit records.
    #[serde(default)]
    pub audit_sent: Option<AuditCursor>,
    /// Why the last forwarding of audit records to the server failed, if it did.
    #[serde(default)]
    pub audit_forward_error: Option<String>,
    /// How far the org's SIEM acknowledged the audit records.
    #[serde(default)]
    pub siem: Option<super::siem::SiemState>,
}

/// The server acknowledged every audit record up to `seq` for `device_id` (a device
/// registered again under a new id sends its log again; the server keeps each
/// record once, by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCursor {
    pub device_id: String,
    pub seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "{path}: the agent state is damaged ({reason}); move it aside and run `fleetkit agent register` again"
    )]
    Damaged { path: String, reason: String },
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
}

impl AgentState {
    /// Reads the state; a missing file is a device that never ran the agent.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let damaged = |reason: String| StateError::Damaged {
            path: path.display().to_string(),
            reason,
        };
        let bytes =
            fsutil::read_capped(path, MAX_STATE_BYTES).map_err(|e| damaged(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))
    }

    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| StateError::Damaged {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        fsutil::write_atomic(path, &bytes, PUBLIC_MODE)?;
        Ok(())
    }

    pub fn is_registered(&self) -> bool {
        self.enrollment
            .as_ref()
            .is_some_and(|e| e.status == EnrollmentStatus::Registered)
    }
}

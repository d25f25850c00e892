//! `fleetkit agent status`: identity, certificate expiry, the policy in force and
//! the last sync, from the device's own files (no server needed).

use super::Agent;
use super::offline::InForce;
use crate::clock::rfc3339;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub org: String,
    pub server_url: String,
    /// The version of the trust anchors in force (it goes up as the device follows
    /// the org's key rotations).
    pub anchors_version: u64,
    /// `registered`, `pending` or `not-registered`.
    pub enrollment: String,
    pub machine_id: Option<String>,
    pub device_id: Option<String>,
    pub team: Option<String>,
    pub registered_at: Option<String>,
    pub certificate_fingerprint: Option<String>,
    pub certificate_not_after: Option<String>,
    pub certificate_renewal_due: bool,
    pub policy_version: Option<u64>,
    pub policy_expires_at: Option<String>,
    pub policy_source: Option<String>,
    pub last_confirmed: Option<String>,
    pub last_sync: Option<String>,
    pub last_sync_ok: Option<bool>,
    pub last_sync_result: Option<String>,
    /// The last sync's reason code (`current`, `updated`, or why it failed, e.g.
    /// `refused:redirect_refused`), for scripts.
    pub last_sync_code: Option<String>,
    pub last_error: Option<String>,
    pub offline_mode: String,
    /// What enforcement uses now: `cached`, `default` or `none`.
    pub in_force: String,
    pub in_force_version: Option<u64>,
    /// Why, when it is not simply the cached policy.
    pub in_force_note: Option<String>,
    /// The audit record the server has acknowledged up to.
    pub audit_sent_seq: Option<u64>,
    /// Why the last forwarding of audit records to the server failed.
    pub audit_forward_error: Option<String>,
    /// Forwarding to the org's SIEM, when the policy asks for it.
    pub siem: Option<super::siem::SiemState>,
}

impl Agent {
    pub fn status(&self, now: OffsetDateTime) -> Status {
        let e = self.state.enrollment.as_ref();
        let held = self.held_policy(now);
        let record = self
            .state
            .policy
            .as_ref()
            .filter(|r| held.as_ref().is_some_and(|h| h.version == r.version));
        let last = self.state.last_sync.as_ref();
        // The verified policy is in force while the server confirmed it recently
        // (within the offline window) and the last sync went well; otherwise the
        // offline mode decides, whatever made the sync fail.
        let window = time::Duration::hours(self.settings.offline_max_age_hours as i64);
        let fresh = last.is_some_and(|s| s.ok)
            && self
                .state
                .last_confirmed
                .is_some_and(|c| now < c.checked_add(window).unwrap_or(c));
        let in_force = if !fresh {
            self.offline_decision(now)
        } else {
            match &held {
                Some(h) if h.expires_at > now => InForce::Cached {
                    version: h.version,
                    warning: None,
                },
                Some(h) => self.expired_in_force(h.version, now),
                None => InForce::Nothing {
                    reason: "no verified policy is held".into(),
                },
            }
        };
        let (kind, version, note) = match in_force {
            InForce::Cached { version, warning } => ("cached", Some(version), warning),
            InForce::Default { version } => (
                "default",
                Some(version),
                Some("the installer's default policy (offline mode default-policy)".into()),
            ),
            InForce::Nothing { reason } => ("none", None, Some(reason)),
        };
        Status {
            org: self.settings.org.clone(),
            server_url: self.settings.server_url.clone(),
            anchors_version: self.anchors.version,
            enrollment: match e.map(|e| e.status) {
                Some(super::state::EnrollmentStatus::Registered) => "registered",
                Some(super::state::EnrollmentStatus::Pending) => "pending",
                None => "not-registered",
            }
            .into(),
            machine_id: e.map(|e| e.machine_id.clone()),
            device_id: e.and_then(|e| e.device_id.clone()),
            team: e.and_then(|e| e.team.clone()),
            registered_at: e.and_then(|e| e.registered_at).map(rfc3339),
            certificate_fingerprint: e.and_then(|e| e.certificate_fingerprint.clone()),
            certificate_not_after: e.and_then(|e| e.certificate_not_after).map(rfc3339),
            certificate_renewal_due: self.renewal_due(now),
            policy_version: held.as_ref().map(|h| h.version),
            policy_expires_at: held.as_ref().map(|h| rfc3339(h.expires_at)),
            policy_source: record.map(|r| r.source.clone()),
            last_confirmed: self.state.last_confirmed.map(rfc3339),
            last_sync: last.map(|s| rfc3339(s.at)),
            last_sync_ok: last.map(|s| s.ok),
            last_sync_result: last.map(|s| {
                if s.ok {
                    s.code.clone()
                } else {
                    s.message.clone()
                }
            }),
            last_sync_code: last.map(|s| s.code.clone()),
            last_error: e.and_then(|e| e.last_error.clone()),
            offline_mode: self.settings.offline_mode.as_str().into(),
            in_force: kind.into(),
            in_force_version: version,
            in_force_note: note,
            audit_sent_seq: self.state.audit_sent.as_ref().map(|c| c.seq),
            audit_forward_error: self.state.audit_forward_error.clone(),
            siem: self.state.siem.clone(),
        }
    }

    /// An expired bundle is in force only under cached-indefinite.
    fn expired_in_force(&self, version: u64, now: OffsetDateTime) -> InForce {
        match self.offline_decision(now) {
            keep @ InForce::Cached { .. } => keep,
            _ => InForce::Nothing {
                reason: format!("policy v{version} has expired and the server has no newer one"),
            },
        }
    }
}

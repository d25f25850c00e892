//! The agent's part of the audit trail: who its records are about, the events of
//! its own runs (registration, renewal, policy installed or refused), and the
//! upkeep every run does — collect the inbox, prune by `audit.log_retention_days`,
//! and sign a checkpoint with the device key.

use super::Agent;
use super::identity::Identity;
use crate::audit::checkpoint::{self, Signer};
use crate::audit::inbox;
use crate::audit::{DeviceAudit, Event, Record, Subject};
use time::OffsetDateTime;

/// What a run's audit upkeep did.
#[derive(Debug, Clone, Default)]
pub struct Upkeep {
    pub collected: usize,
    pub refused: usize,
    pub pruned_segments: usize,
    /// The seq of the checkpoint signed, if one was.
    pub checkpoint: Option<u64>,
}

impl Agent {
    /// The device's audit log and inbox.
    pub fn audit(&self) -> DeviceAudit {
        DeviceAudit::new(&self.paths.data_dir)
    }

    /// Who this device's records are about; the policy fields from `policy` when
    /// given (the policy that decided), else from the state.
    pub fn audit_subject(&self, policy: Option<(u64, &crate::policy::OrgPolicy)>) -> Subject {
        let enrollment = self.state.enrollment.as_ref();
        Subject {
            device: enrollment.and_then(|e| e.device_id.clone()),
            machine_id: enrollment.map(|e| e.machine_id.clone()),
            team: enrollment
                .and_then(|e| e.team.clone())
                .or_else(|| self.state.assignment.team.clone())
                .or_else(|| self.settings.assignment.team.clone()),
            policy_version: policy
                .map(|(v, _)| v)
                .or_else(|| self.state.policy.as_ref().map(|p| p.version)),
            mode: policy.map(|(_, p)| p.enforcement.mode.as_str().to_string()),
        }
    }

    /// Appends the agent's own event records. A failure is returned as a warning:
    /// the run's real work (a policy installed, a certificate saved) stands.
    pub(crate) fn record_events(
        &self,
        records: Vec<Record>,
        now: OffsetDateTime,
    ) -> Option<String> {
        if records.is_empty() {
            return None;
        }
        self.audit()
            .append(records, now)
            .err()
            .map(|e| format!("could not write the audit log: {e}"))
    }

    /// A record of `event` about this device.
    pub(crate) fn event(&self, event: Event, now: OffsetDateTime) -> Record {
        let mut r = self.audit_subject(None).record(event, now);
        r.source = Some("agent".into());
        r.user = Some(inbox::current_user());
        r
    }

    /// Collects the inbox, prunes by the policy's retention, and signs a checkpoint
    /// when the device has an identity.
    pub fn audit_upkeep(&self, now: OffsetDateTime) -> crate::audit::log::Result<Upkeep> {
        let audit = self.audit();
        let collected = inbox::collect(&audit.inbox, &audit.log, now)?;
        let retention = self.policy_in_force(now).map_or(
            crate::policy::Audit::default().log_retention_days,
            |(_, p)| p.audit.log_retention_days,
        );
        let pruned = audit.log.prune(retention, now)?;
        let mut upkeep = Upkeep {
            collected: collected.records,
            refused: collected.refused,
            pruned_segments: pruned
                .as_ref()
                .and_then(|r| r.detail("segments")?.as_array().map(Vec::len))
                .unwrap_or(0),
            checkpoint: None,
        };
        let machine_id = self.state.enrollment.as_ref().map(|e| e.machine_id.clone());
        if let (Some(machine_id), Ok(identity)) = (machine_id, Identity::load(&self.paths.identity))
        {
            let device = self
                .state
                .enrollment
                .as_ref()
                .and_then(|e| e.device_id.clone());
            let signer = Signer {
                key: &identity.key,
                chain_pem: &identity.chain_pem,
                machine_id: &machine_id,
                device: device.as_deref(),
            };
            upkeep.checkpoint = checkpoint::sign(&audit.log, &signer, now)?.map(|r| r.seq);
        }
        Ok(upkeep)
    }
}

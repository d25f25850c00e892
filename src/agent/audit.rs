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
        let policy = self.policy_in_force(now).map(|(_, p)| p);
        self.audit_upkeep_under(policy.as_ref(), now)
    }

    /// [`Agent::audit_upkeep`] under `policy`, the policy in force as the caller
    /// verified it.
    pub fn audit_upkeep_under(
        &self,
        policy: Option<&crate::policy::OrgPolicy>,
        now: OffsetDateTime,
    ) -> crate::audit::log::Result<Upkeep> {
        let audit = self.audit();
        let collected = inbox::collect(&audit.inbox, &audit.log, now)?;
        let retention = policy.map_or(crate::policy::Audit::default().log_retention_days, |p| {
            p.audit.log_retention_days
        });
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

/// The most upload batches one run sends (500 records each); the rest waits for
/// the next run, so a device back from a month offline does not hold its sync.
const MAX_BATCHES_PER_RUN: usize = 40;

/// What forwarding to the server did.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    pub sent: u64,
    pub stored: u64,
    pub duplicates: u64,
    /// Where the server found this device's chain broken.
    pub breaks: Vec<String>,
    /// Everything in the log is held by the server.
    pub caught_up: bool,
}

impl Agent {
    /// Sends the audit records the server does not hold yet, oldest first, and
    /// moves `state.audit_sent` after each acknowledged batch (the caller saves the
    /// state). A batch whose answer is lost is sent again: the server keeps each
    /// record once.
    pub(crate) fn forward_audit(
        &mut self,
        client: &super::client::DeviceClient,
    ) -> Result<Forwarded, String> {
        use crate::protocol::{AuditUpload, MAX_AUDIT_UPLOAD_BYTES, MAX_AUDIT_UPLOAD_RECORDS};
        let mut done = Forwarded::default();
        let Some(device_id) = self
            .state
            .enrollment
            .as_ref()
            .and_then(|e| e.device_id.clone())
        else {
            return Ok(done);
        };
        let mut after = match &self.state.audit_sent {
            Some(c) if c.device_id == device_id => c.seq,
            _ => 0,
        };
        let log = self.audit().log;
        for _ in 0..MAX_BATCHES_PER_RUN {
            // Room for the JSON around the lines and their escaping.
            let lines = log
                .lines_after(after, MAX_AUDIT_UPLOAD_RECORDS, MAX_AUDIT_UPLOAD_BYTES / 2)
                .map_err(|e| e.to_string())?;
            let Some(last) = lines.last().map(|(s, _)| *s) else {
                done.caught_up = true;
                break;
            };
            let upload = AuditUpload {
                records: lines.into_iter().map(|(_, l)| l).collect(),
            };
            let ack = client
                .audit(&upload)
                .map_err(|e| format!("the server did not take the audit records: {e}"))?;
            done.sent += upload.records.len() as u64;
            done.stored += ack.stored;
            done.duplicates += ack.duplicates;
            done.breaks.extend(ack.chain_breaks);
            if ack.acknowledged_seq < last {
                return Err(format!(
                    "the server acknowledged audit records up to {} of {last} sent",
                    ack.acknowledged_seq
                ));
            }
            after = ack.acknowledged_seq;
            self.state.audit_sent = Some(crate::agent::state::AuditCursor {
                device_id: device_id.clone(),
                seq: after,
            });
        }
        Ok(done)
    }
}

//! Forwarding the audit log to the org's SIEM (`audit.send_to_siem`,
//! `audit.siem_endpoint`), in the Elasticsearch bulk envelope
//! ([`crate::audit::elastic_bulk`]).
//!
//! The spool is the audit log itself: records are already durable, in order, with
//! ids, before anyone sends them; `state.siem` keeps how far the SIEM acknowledged.
//! So the endpoint or the network down, the agent killed mid-batch: the next run
//! sends from the last acknowledged record, and the SIEM keeps each id once. What
//! bounds the spool: at most `siem_spool_max_records` (agent.yaml, default
//! [`MAX_UNSENT`]) records wait; past that, and for
//! records pruned by retention before the SIEM took them, the oldest are dropped
//! and an `audit.dropped` record says how many and which seqs (it is forwarded
//! too).
//!
//! A 401 or 403 is not retried at every run: it waits [`AUTH_RETRY_HOURS`], or
//! until the endpoint or the credential file changes, and `agent status` says so.
//! TLS trusts the org root CA, the certificates of `siem_ca_file` and, unless
//! `siem_public_roots: false` pins the SIEM to those, the public web roots
//! (Mozilla's, built into the agent); https only, no redirect.

use super::Agent;
use crate::audit::{Event, Record, elastic_bulk};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Records waiting for the SIEM beyond this are dropped, oldest first.
pub const MAX_UNSENT: u64 = 200_000;
/// Hours between attempts after the SIEM refused the credential.
pub const AUTH_RETRY_HOURS: i64 = 24;
const MAX_BATCH_RECORDS: usize = 500;
const MAX_BATCH_BYTES: usize = 1024 * 1024;
const MAX_BATCHES_PER_RUN: usize = 40;
/// Largest bulk answer read (one item per record, ~150 bytes each).
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// Where forwarding to the SIEM stands (in `state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiemState {
    pub endpoint: String,
    /// Every record up to this seq is acknowledged by the SIEM.
    pub seq: u64,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_ok: Option<OffsetDateTime>,
    /// When the SIEM last refused the credential, and for which endpoint and
    /// credential (a hash): a change of either is tried at once.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub auth_refused_at: Option<OffsetDateTime>,
    pub auth_refused_for: Option<String>,
    /// Records dropped so far (spool full, or pruned before they were sent).
    pub dropped: u64,
}

/// What a forwarding run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiemOutcome {
    /// The policy in force sends nothing to a SIEM.
    Off,
    Sent {
        records: u64,
        duplicates: u64,
        dropped: u64,
        caught_up: bool,
    },
}

impl Agent {
    /// Forwards what the SIEM has not acknowledged under `policy` (the policy in
    /// force, as the caller verified it), then saves the state.
    pub fn siem_forward_under(
        &mut self,
        policy: Option<&crate::policy::OrgPolicy>,
        now: OffsetDateTime,
    ) -> Result<SiemOutcome, String> {
        let outcome = self.siem_forward_unsaved(policy, now);
        if let (Some(siem), Err(e)) = (self.state.siem.as_mut(), &outcome) {
            siem.last_error = Some(e.clone());
        }
        self.save_state().map_err(|e| e.to_string())?;
        outcome
    }

    fn siem_forward_unsaved(
        &mut self,
        policy: Option<&crate::policy::OrgPolicy>,
        now: OffsetDateTime,
    ) -> Result<SiemOutcome, String> {
        let Some(policy) = policy else {
            return Ok(SiemOutcome::Off);
        };
        let endpoint = match (&policy.audit.siem_endpoint, policy.audit.send_to_siem) {
            (Some(e), true) => e.clone(),
            _ => return Ok(SiemOutcome::Off),
        };
        let credential = match &self.settings.siem_credential_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| {
                        format!("cannot read siem_credential_file {}: {e}", path.display())
                    })?,
            ),
            None => None,
        };
        let fingerprint = hex::encode(Sha256::digest(format!(
            "{endpoint}\n{}",
            credential.as_deref().unwrap_or("")
        )));
        // A new endpoint is a new SIEM: it gets what the log still holds.
        let mut state = match self.state.siem.take() {
            Some(s) if s.endpoint == endpoint => s,
            _ => SiemState {
                endpoint: endpoint.clone(),
                ..Default::default()
            },
        };
        let result = self.send_to_siem(&mut state, credential.as_deref(), &fingerprint, now);
        match &result {
            Ok(_) => {
                state.last_error = None;
                state.last_ok = Some(now);
            }
            Err(e) => state.last_error = Some(e.clone()),
        }
        self.state.siem = Some(state);
        result
    }

    fn send_to_siem(
        &self,
        state: &mut SiemState,
        credential: Option<&str>,
        fingerprint: &str,
        now: OffsetDateTime,
    ) -> Result<SiemOutcome, String> {
        if let (Some(at), Some(for_)) = (state.auth_refused_at, &state.auth_refused_for)
            && for_ == fingerprint
            && now < at + time::Duration::hours(AUTH_RETRY_HOURS)
        {
            return Err(format!(
                "the SIEM refused the credential at {}; not tried again before {} unless siem_credential_file or the endpoint changes",
                crate::clock::rfc3339(at),
                crate::clock::rfc3339(at + time::Duration::hours(AUTH_RETRY_HOURS))
            ));
        }
        let log = self.audit().log;
        let dropped = self.bound_spool(state, now)?;
        let mut roots = self.roots().to_vec();
        if let Some(path) = &self.settings.siem_ca_file {
            roots.push(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read siem_ca_file {}: {e}", path.display()))?,
            );
        }
        let client = super::client::DeviceClient::for_service(
            &state.endpoint,
            &roots,
            self.settings.siem_public_roots,
        )
        .map_err(|e| e.to_string())?;
        let (mut records, mut duplicates, mut caught_up) = (0u64, 0u64, false);
        for _ in 0..MAX_BATCHES_PER_RUN {
            let lines = log
                .lines_after(state.seq, MAX_BATCH_RECORDS, MAX_BATCH_BYTES)
                .map_err(|e| e.to_string())?;
            if lines.is_empty() {
                caught_up = true;
                break;
            }
            let ids: Vec<String> = lines
                .iter()
                .map(|(_, l)| {
                    Record::from_line(l.as_bytes())
                        .map(|r| r.id)
                        .unwrap_or_default()
                })
                .collect();
            let body = elastic_bulk::body(
                ids.iter()
                    .map(String::as_str)
                    .zip(lines.iter().map(|(_, l)| l.as_str())),
            );
            let (status, answer) = client
                .post_raw("application/x-ndjson", credential, &body, MAX_ANSWER_BYTES)
                .map_err(|e| format!("cannot reach the SIEM at {}: {e}", state.endpoint))?;
            if status == 401 || status == 403 {
                state.auth_refused_at = Some(now);
                state.auth_refused_for = Some(fingerprint.to_string());
                return Err(format!(
                    "the SIEM at {} refused the credential ({status}); fix siem_credential_file",
                    state.endpoint
                ));
            }
            if status != 200 {
                return Err(format!(
                    "the SIEM at {} answered {status}: {}",
                    state.endpoint,
                    String::from_utf8_lossy(&answer)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ));
            }
            state.auth_refused_at = None;
            state.auth_refused_for = None;
            let outcome = elastic_bulk::outcome(&answer, lines.len())?;
            if outcome.acknowledged > 0 {
                state.seq = lines[outcome.acknowledged - 1].0;
            }
            records += outcome.acknowledged as u64;
            duplicates += outcome.duplicates as u64;
            if let Some(why) = outcome.refused {
                return Err(format!(
                    "the SIEM took {} of {} records, then refused one: {why}",
                    outcome.acknowledged,
                    lines.len()
                ));
            }
        }
        Ok(SiemOutcome::Sent {
            records,
            duplicates,
            dropped,
            caught_up,
        })
    }

    /// Drops what the SIEM can no longer get (pruned before it was sent) and what
    /// is past [`MAX_UNSENT`], oldest first, recording it in the chain.
    fn bound_spool(&self, state: &mut SiemState, now: OffsetDateTime) -> Result<u64, String> {
        let log = self.audit().log;
        let head = log.head().map_err(|e| e.to_string())?;
        let oldest = log
            .first_seq()
            .map_err(|e| e.to_string())?
            .unwrap_or(head.seq + 1);
        let mut dropped = 0;
        let mut drop_to = |to: u64, reason: &str, state: &mut SiemState| -> Result<(), String> {
            let count = to - state.seq;
            let record = Record::new(Event::Dropped, now)
                .with_detail("reason", reason)
                .with_detail("count", count)
                .with_detail("from_seq", state.seq + 1)
                .with_detail("to_seq", to)
                .with_detail("endpoint", state.endpoint.clone());
            self.audit()
                .append(vec![record], now)
                .map_err(|e| e.to_string())?;
            state.seq = to;
            state.dropped += count;
            dropped += count;
            Ok(())
        };
        if oldest > state.seq + 1 {
            drop_to(
                oldest - 1,
                "pruned by retention before the SIEM took them",
                state,
            )?;
        }
        // Past the bound, down to nine tenths of it (counting the record that says
        // so), so that a long outage drops once, not a record at every run.
        let max = self.settings.siem_spool_max_records;
        if head.seq.saturating_sub(state.seq) > max {
            drop_to(
                head.seq + 1 - max * 9 / 10,
                "the SIEM spool was full (oldest dropped first)",
                state,
            )?;
        }
        Ok(dropped)
    }
}

//! `fleetkit agent sync` and `fleetkit agent renew`.
//!
//! Sync: finish a pending registration; renew the machine certificate once
//! `renew_at_percent` of its lifetime has passed (or finish a renewal whose answer
//! was lost); check in (facts, policy version); follow the org's key rotation chain
//! when the server's reaches further than the anchors in force (see
//! [`super::rotation`]); pull the bundle with `If-None-Match`; verify it (DESIGN.md
//! rule 2) and swap the exact bytes in atomically. Any failure keeps the policy in force, records why in
//! the state and the manifest, and is returned as an error (non-zero exit). When the
//! server cannot be reached, the offline mode decides what stays in force.

use super::client::{BundleAnswer, ClientError, DeviceClient};
use super::identity::{self, Identity};
use super::offline::{self, Holdings, InForce};
use super::register::RegisterOptions;
use super::state::{EnrollmentStatus, SyncRecord};
use super::{Agent, AgentError, Result};
use crate::audit::{Event, Record};
use crate::bundle::Verified;
use crate::fsutil::{self, PUBLIC_MODE};
use crate::protocol::{CheckinRequest, DeviceFacts, ErrorCode, RenewRequest};
use time::{Duration, OffsetDateTime};

/// How a successful sync ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The policy in force is the published one.
    Current { version: Option<u64> },
    /// A newer bundle was verified and swapped in.
    Updated { from: Option<u64>, to: u64 },
}

/// The outcome of a sync, with what happened on the way.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub synced: Synced,
    /// Set when the anchors followed the server's rotation chain during this sync.
    pub anchors: Option<super::rotation::AnchorsUpdate>,
    /// Set when the certificate was renewed during this sync.
    pub renewed_until: Option<OffsetDateTime>,
    /// Problems that did not stop the sync (e.g. a renewal the server refused).
    pub warnings: Vec<String>,
}

impl Agent {
    /// Syncs the policy (see the module comment).
    pub fn sync(&mut self, now: OffsetDateTime) -> Result<SyncReport> {
        if !self.state.is_registered() {
            if self.state.enrollment.is_none() {
                return Err(AgentError::NotRegistered);
            }
            // Pending: the next run finishes the registration.
            self.register(&RegisterOptions::default(), now)?;
        }
        let facts = self.facts()?;
        let mut client = None;
        let result = self.sync_registered(&facts, now, &mut client);
        let record = match &result {
            Ok(report) => SyncRecord {
                at: now,
                ok: true,
                code: match report.synced {
                    Synced::Current { .. } => "current".into(),
                    Synced::Updated { .. } => "updated".into(),
                },
                message: String::new(),
            },
            Err(e) => SyncRecord {
                at: now,
                ok: false,
                code: e.code(),
                message: e.to_string(),
            },
        };
        self.state.last_sync = Some(record);
        // Verified once for what follows: the settings, the retention, the SIEM.
        let in_force = self.policy_in_force(now);
        // The policy in force (new, or the same one) reaches Claude Code's settings.
        let settings_warning = self.apply_claude_settings(in_force.as_ref(), now).warning();
        self.save_state()?;
        self.write_manifest(&facts, now)?;
        let policy = in_force.map(|(_, p)| p);
        let audit_warnings = self.audit_sync(&result, client, policy.as_ref(), now);
        result.map(|mut report| {
            report.warnings.extend(settings_warning);
            report.warnings.extend(audit_warnings);
            report
        })
    }

    /// Records what this sync changed, then the audit upkeep (inbox, retention,
    /// checkpoint) and forwarding, over the sync's own connection (`client`).
    /// Problems are warnings: the sync's outcome stands.
    fn audit_sync(
        &mut self,
        result: &Result<SyncReport>,
        client: Option<DeviceClient>,
        policy: Option<&crate::policy::OrgPolicy>,
        now: OffsetDateTime,
    ) -> Vec<String> {
        let mut events = Vec::new();
        match result {
            Ok(report) => {
                if let Synced::Updated { from, to } = report.synced {
                    events.push(
                        self.event(Event::PolicyInstalled, now)
                            .with_detail("from", from)
                            .with_detail("to", to),
                    );
                }
                if let Some(until) = report.renewed_until {
                    events.push(
                        self.event(Event::Renewed, now)
                            .with_detail("not_after", crate::clock::rfc3339(until)),
                    );
                }
            }
            Err(e @ (AgentError::BundleRejected(_) | AgentError::RotationRefused { .. })) => {
                let mut r = self.event(Event::PolicyRefused, now);
                r.reason = Record::text(&e.to_string());
                events.push(r.with_detail("code", e.code()));
            }
            Err(_) => {}
        }
        let mut warnings: Vec<String> = self.record_events(events, now).into_iter().collect();
        if let Err(e) = self.audit_upkeep_under(policy, now) {
            warnings.push(format!("audit upkeep failed: {e}"));
        }
        // The server holds the fleet's records: send what it does not have yet,
        // unless this sync just found it unreachable (a second wait for nothing;
        // the records keep until the next run).
        // The sync's own error says the server is unreachable; the last
        // forwarding's outcome stays as it was.
        let offline = matches!(result, Err(AgentError::Offline { .. }));
        if self.state.is_registered() && !offline {
            let forwarded = match client {
                Some(c) => Ok(c),
                None => self.device_client().map_err(|e| e.to_string()),
            }
            .and_then(|client| self.forward_audit(&client));
            match forwarded {
                Ok(f) => {
                    self.state.audit_forward_error = None;
                    if !f.breaks.is_empty() {
                        warnings.push(format!(
                            "the server found this device's audit chain broken: {}",
                            f.breaks.join("; ")
                        ));
                    }
                }
                Err(e) => {
                    warnings.push(format!("audit records not sent: {e}"));
                    self.state.audit_forward_error = Some(e);
                }
            }
            if let Err(e) = self.save_state() {
                warnings.push(format!(
                    "could not save how far the audit records were sent: {e}"
                ));
            }
        }
        if let Err(e) = self.siem_forward_under(policy, now) {
            warnings.push(format!("audit records not sent to the SIEM: {e}"));
        }
        warnings
    }

    /// The sync proper; leaves the client it used last in `used` for the audit
    /// forwarding that follows.
    fn sync_registered(
        &mut self,
        facts: &DeviceFacts,
        now: OffsetDateTime,
        used: &mut Option<DeviceClient>,
    ) -> Result<SyncReport> {
        let mut warnings = Vec::new();
        let mut renewed_until = None;
        // An expired certificate fails the TLS handshake, which looks like an
        // unreachable server: say what it really is.
        if let Some(until) = self
            .state
            .enrollment
            .as_ref()
            .and_then(|e| e.certificate_not_after)
            && until <= now
        {
            return Err(AgentError::CertificateExpired {
                at: crate::clock::rfc3339(until),
            });
        }
        let mut client = self.device_client()?;
        *used = Some(client.clone());

        // Renew first: a certificate close to its end should not wait for the rest,
        // and a renewal left unfinished (its answer lost) must finish before the
        // superseded certificate is used for anything else.
        if self.renewal_due(now) || self.paths.renewing_key.exists() {
            match self.renew_with(&client, facts, now) {
                Ok(until) => {
                    renewed_until = Some(until);
                    self.save_state()?;
                    client = self.device_client()?;
                    *used = Some(client.clone());
                }
                Err(e) => warnings.push(format!("certificate renewal failed: {e}")),
            }
        }

        let before = self.held_policy(now).map(|h| h.version);
        let checkin = CheckinRequest {
            policy_version: before,
            facts: facts.clone(),
        };
        let checked_in = match client.checkin(&checkin) {
            Ok(answer) => answer,
            Err(e) => return Err(self.server_failure(e, now)),
        };
        // Follow the rotation chain first: the bundle may be signed by a key only
        // the newer anchors know.
        let mut anchors = None;
        if checked_in
            .anchors_version
            .is_some_and(|v| v > self.anchors.version)
        {
            let chain = client
                .rotations(self.anchors.version)
                .map_err(|e| self.server_failure(e, now))?;
            anchors = self.follow_rotations(&chain, now)?;
        }

        // Ask with the ETag only when what it names is still in force.
        let etag = self
            .state
            .policy
            .as_ref()
            .filter(|p| Some(p.version) == before)
            .and_then(|p| p.etag.clone());
        let answer = match client.bundle(etag.as_deref()) {
            Ok(answer) => Some(answer),
            // Nothing published yet: the policy in force is as current as it gets.
            Err(ClientError::Refused {
                code: ErrorCode::NoBundle,
                ..
            }) => None,
            Err(e) => return Err(self.server_failure(e, now)),
        };
        let synced = match answer {
            None | Some(BundleAnswer::NotModified) => Synced::Current { version: before },
            Some(BundleAnswer::Bundle { bytes, etag }) => {
                match self.offer_bundle(&bytes, "server", etag, now) {
                    Ok(Verified::Accepted { payload, .. }) => {
                        // Record the swap at once, before any further network call.
                        self.save_state()?;
                        Synced::Updated {
                            from: before,
                            to: payload.version,
                        }
                    }
                    Ok(Verified::AlreadyCurrent { version }) => Synced::Current {
                        version: Some(version),
                    },
                    Err(e) => return Err(AgentError::BundleRejected(e)),
                }
            }
        };
        self.state.last_confirmed = Some(now);
        if let Synced::Updated { to, .. } = synced {
            // Tell the inventory at once rather than at the next run.
            let report = CheckinRequest {
                policy_version: Some(to),
                facts: facts.clone(),
            };
            if let Err(e) = client.checkin(&report) {
                warnings.push(format!("could not report policy v{to} to the server: {e}"));
            }
        }
        Ok(SyncReport {
            synced,
            anchors,
            renewed_until,
            warnings,
        })
    }

    /// Keeps a checked key and chain: the 0600 identity file (both at once), then
    /// the public copy of the chain.
    pub(crate) fn save_identity(
        &self,
        key: &rcgen::KeyPair,
        checked: &identity::CheckedChain,
    ) -> Result<()> {
        identity::save_pair(key, &checked.chain_pem, &self.paths.identity)?;
        fsutil::write_atomic(
            &self.paths.certificate,
            checked.chain_pem.as_bytes(),
            PUBLIC_MODE,
        )?;
        Ok(())
    }

    /// A client presenting the device certificate.
    fn device_client(&self) -> Result<DeviceClient> {
        let identity = Identity::load(&self.paths.identity)?;
        DeviceClient::new(&self.settings.server_url, self.roots(), Some(&identity))
            .map_err(|e| AgentError::Server(e.to_string()))
    }

    /// Maps a failed request: unreachable → the offline mode's decision; refused →
    /// the server's reason.
    fn server_failure(&self, e: ClientError, now: OffsetDateTime) -> AgentError {
        match e {
            ClientError::Unreachable { url, reason } => {
                let in_force = match self.offline_decision(now) {
                    InForce::Cached { version, warning } => {
                        let mut s = format!(
                            "offline mode {}: cached policy v{version} stays in force",
                            self.settings.offline_mode.as_str()
                        );
                        if let Some(w) = warning {
                            s.push_str(&format!(" ({w})"));
                        }
                        s
                    }
                    InForce::Default { version } => format!(
                        "offline mode default-policy: the installer's default policy v{version} is in force"
                    ),
                    InForce::Nothing { reason } => reason,
                };
                AgentError::Offline {
                    reason: format!("{url}: {reason}"),
                    in_force,
                }
            }
            ClientError::Refused { code, message, .. } => AgentError::Refused { code, message },
            other => AgentError::Server(other.to_string()),
        }
    }

    /// What the offline mode puts in force now, without the server.
    pub fn offline_decision(&self, now: OffsetDateTime) -> InForce {
        let held = Holdings {
            cached: self.held_policy(now).map(|h| (h.version, h.expires_at)),
            shipped: self
                .shipped_policy(now)
                .map(|(h, _)| (h.version, h.expires_at)),
            last_confirmed: self.state.last_confirmed,
        };
        offline::decide(
            self.settings.offline_mode,
            Duration::hours(self.settings.offline_max_age_hours as i64),
            &held,
            now,
        )
    }

    /// True once `renew_at_percent` of the certificate's lifetime has passed.
    pub fn renewal_due(&self, now: OffsetDateTime) -> bool {
        let Some(e) = &self.state.enrollment else {
            return false;
        };
        match (e.certificate_not_before, e.certificate_not_after) {
            (Some(from), Some(until)) => {
                let lifetime = until - from;
                now >= from + lifetime * (self.settings.renew_at_percent as f64 / 100.0)
            }
            _ => false,
        }
    }

    /// `fleetkit agent renew`: a new key and certificate, authenticated by the
    /// current one. Returns the new expiry.
    pub fn renew(&mut self, now: OffsetDateTime) -> Result<OffsetDateTime> {
        if !self.state.is_registered() {
            return Err(AgentError::NotRegistered);
        }
        let facts = self.facts()?;
        let client = self.device_client()?;
        let until = self.renew_with(&client, &facts, now)?;
        self.save_state()?;
        self.write_manifest(&facts, now)?;
        let renewed = self
            .event(Event::Renewed, now)
            .with_detail("not_after", crate::clock::rfc3339(until));
        // The certificate is saved; an audit write that fails is caught up by the
        // next sync's upkeep, so it does not fail the renewal.
        let _ = self.record_events(vec![renewed], now);
        let _ = self.audit_upkeep(now);
        Ok(until)
    }

    fn renew_with(
        &mut self,
        client: &DeviceClient,
        facts: &DeviceFacts,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime> {
        // The same key until a certificate for it is saved: if the server renewed but
        // the answer was lost, only the renewed key can ask for that answer again
        // (the previous certificate authenticates nothing else).
        let key = match identity::load_pending_key(&self.paths.renewing_key) {
            Some(k) => k,
            None => {
                let k = identity::new_key()?;
                identity::save_pending_key(&k, &self.paths.renewing_key)?;
                k
            }
        };
        let request = RenewRequest {
            csr_pem: identity::csr_pem(&key, &facts.machine_id)?,
        };
        let answer = client.renew(&request).map_err(|e| match e {
            ClientError::Refused { code, message, .. } => AgentError::Refused { code, message },
            other => AgentError::Server(other.to_string()),
        })?;
        let checked = identity::check_chain(
            &answer.certificate_chain_pem,
            self.roots(),
            &facts.machine_id,
            &key,
            now,
        )?;
        self.save_identity(&key, &checked)?;
        let _ = std::fs::remove_file(&self.paths.renewing_key);
        if let Some(e) = self.state.enrollment.as_mut() {
            e.status = EnrollmentStatus::Registered;
            e.certificate_fingerprint = Some(checked.fingerprint);
            e.certificate_not_before = Some(checked.not_before);
            e.certificate_not_after = Some(checked.not_after);
        }
        Ok(checked.not_after)
    }
}

//! `fleetkit agent register`: first run on a device. Gathers facts, makes the
//! device's own key and CSR, enrolls with a token, checks the returned chain against
//! the installed root CA, keeps key and chain (0600), installs the shipped policy
//! and writes the manifest with its mirrors.
//!
//! When no server answers, everything that can be done offline is done (key kept,
//! shipped policy installed, manifest written with `enrollment: pending`) and the
//! next `register` or `sync` finishes the enrollment with the same key.

use super::client::{ClientError, DeviceClient};
use super::facts;
use super::identity::{self, Identity};
use super::manifest::{self, Manifest};
use super::paths::Platform;
use super::settings::Assignment;
use super::state::{Enrollment, EnrollmentStatus};
use super::{Agent, AgentError, Result};
use crate::bundle::Verified;
use crate::fsutil;
use crate::protocol::{DeviceFacts, EnrollRequest, ErrorCode};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// What the installer or the admin passed to `agent register`.
#[derive(Debug, Clone, Default)]
pub struct RegisterOptions {
    /// The enrollment token (else the installer's token file is read).
    pub token: Option<Zeroizing<String>>,
    /// Install-time org assignment; set fields override `agent.yaml`.
    pub assignment: Assignment,
    /// Enroll again even when registered (a new key and certificate).
    pub force: bool,
}

/// How registration ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Enrolled now.
    Enrolled {
        device_id: String,
        machine_id: String,
        team: String,
        certificate_not_after: OffsetDateTime,
    },
    /// Was already registered; the manifest was refreshed.
    Already {
        device_id: String,
        machine_id: String,
    },
}

impl Agent {
    /// Registers the device (see the module comment).
    pub fn register(&mut self, opts: &RegisterOptions, now: OffsetDateTime) -> Result<Registered> {
        // Windows: what the MSI took from its FLEETKIT_* properties, read once for
        // both the assignment and the token; the options win over it.
        let installer = if self.is_windows_device() {
            super::windows::read_installer_values().map_err(AgentError::Platform)?
        } else {
            None
        };
        let asked = match &installer {
            Some(given) => given.assignment.overridden_by(&opts.assignment),
            None => opts.assignment.clone(),
        };
        // The state keeps only what was given on the command line, so that a
        // reinstall that changes agent.yaml is heard; flags still win over it.
        self.state.assignment = self.state.assignment.overridden_by(&asked);
        let facts = self.facts()?;

        if self.state.is_registered() && !opts.force {
            let e = self
                .state
                .enrollment
                .clone()
                .ok_or(AgentError::NotRegistered)?;
            self.install_shipped_policy(now);
            self.save_state()?;
            self.write_manifest(&facts, now)?;
            // A reinstall may have left a new token (Intune's install command carries
            // one every time): it is not needed, do not keep it.
            self.forget_token();
            return Ok(Registered::Already {
                device_id: e.device_id.unwrap_or_default(),
                machine_id: e.machine_id,
            });
        }

        // The key is made once and kept while enrollment is pending, so a device
        // that registers offline, or whose enrollment answer was lost, enrolls with
        // the key it already has (the server answers a repeated enrollment with the
        // same certificate). `--force` on a registered device enrolls with the key
        // of its current certificate, even an expired one: that proves to the server
        // it is the same device, which an enrollment needs to change an existing
        // device (DESIGN.md rule 9).
        let key = match identity::load_pending_key(&self.paths.pending_key) {
            Some(k) if !self.state.is_registered() => k,
            _ => {
                let k = match Identity::load(&self.paths.identity) {
                    Ok(current) if self.state.is_registered() => current.key,
                    _ => identity::new_key()?,
                };
                identity::save_pending_key(&k, &self.paths.pending_key)?;
                k
            }
        };
        if !self.state.is_registered() {
            self.state.enrollment = Some(Enrollment {
                status: EnrollmentStatus::Pending,
                machine_id: facts.machine_id.clone(),
                device_id: None,
                team: None,
                registered_at: None,
                certificate_fingerprint: None,
                certificate_not_before: None,
                certificate_not_after: None,
                last_error: None,
            });
        }
        self.install_shipped_policy(now);
        self.trust_root_ca()?;

        let token = match &opts.token {
            Some(t) => Some(t.clone()),
            None => read_token_file(&self.paths.token_file)
                .or_else(|| installer.and_then(|given| given.token)),
        };
        let was_registered = self.state.is_registered();
        let result = match self.adopt_identity(&key, &facts, now) {
            Some(adopted) => Ok(adopted),
            None => match token {
                None => Err(AgentError::NoToken),
                Some(token) => match self.enroll(&key, &token, &facts, now) {
                    // A renewal whose answer was lost left the server holding the
                    // renewal key, not the identity's: prove that one instead.
                    Err(AgentError::EnrollRefused {
                        code: ErrorCode::DeviceExists,
                        ..
                    }) if was_registered
                        && let Some(renewing) =
                            identity::load_pending_key(&self.paths.renewing_key) =>
                    {
                        self.enroll(&renewing, &token, &facts, now)
                    }
                    other => other,
                },
            },
        };
        // `--force` on a registered device keeps the old identity when it fails:
        // nothing will finish it later, so it is a plain failure, not "pending".
        let result = match result {
            Err(AgentError::Pending { reason }) if was_registered => {
                Err(AgentError::Server(format!("cannot enroll again: {reason}")))
            }
            other => other,
        };
        match result {
            Ok(done) => {
                // Record first; only then drop the one-time token and the pending key,
                // so that a kill in between never loses what the next run needs.
                self.save_state()?;
                self.write_manifest(&facts, now)?;
                self.forget_token();
                let _ = std::fs::remove_file(&self.paths.pending_key);
                // A new identity makes any unfinished renewal moot.
                let _ = std::fs::remove_file(&self.paths.renewing_key);
                Ok(done)
            }
            Err(e) => {
                if let Some(en) = self.state.enrollment.as_mut() {
                    en.last_error = Some(e.to_string());
                }
                self.save_state()?;
                self.write_manifest(&facts, now)?;
                Err(e)
            }
        }
    }

    fn enroll(
        &mut self,
        key: &rcgen::KeyPair,
        token: &str,
        facts: &DeviceFacts,
        now: OffsetDateTime,
    ) -> Result<Registered> {
        let client = DeviceClient::new(&self.settings.server_url, self.roots(), None)
            .map_err(|e| AgentError::Server(e.to_string()))?;
        let request = EnrollRequest {
            token: token.to_string(),
            csr_pem: identity::csr_pem(key, &facts.machine_id)?,
            facts: facts.clone(),
        };
        let answer = client.enroll(&request).map_err(|e| match e {
            ClientError::Unreachable { url, reason } => AgentError::Pending {
                reason: format!("cannot reach {url}: {reason}"),
            },
            ClientError::Refused { code, message, .. } => {
                AgentError::EnrollRefused { code, message }
            }
            other => AgentError::Server(other.to_string()),
        })?;
        if answer.machine_id != facts.machine_id {
            return Err(AgentError::Server(format!(
                "the server answered for machine `{}`, this is `{}`",
                answer.machine_id, facts.machine_id
            )));
        }
        let checked = identity::check_chain(
            &answer.certificate_chain_pem,
            self.roots(),
            &facts.machine_id,
            key,
            now,
        )?;
        self.save_identity(key, &checked)?;
        self.state.enrollment = Some(Enrollment::registered(
            facts.machine_id.clone(),
            answer.device_id.clone(),
            answer.team.clone(),
            now,
            &checked,
        ));
        let registered = self
            .event(crate::audit::Event::Registered, now)
            .with_detail("certificate_fingerprint", checked.fingerprint.clone());
        // The identity is saved; the next sync's upkeep catches up an audit write
        // that fails here, so it does not fail the registration.
        let _ = self.record_events(vec![registered], now);
        let _ = self.audit_upkeep(now);
        Ok(Registered::Enrolled {
            device_id: answer.device_id,
            machine_id: answer.machine_id,
            team: answer.team,
            certificate_not_after: checked.not_after,
        })
    }

    /// A run killed after saving the new identity but before recording it leaves a
    /// pending state beside a valid identity for the pending key: take it (the
    /// server knows the device already; a second enrollment would spend the token
    /// again). The device id comes from a check-in with that identity.
    fn adopt_identity(
        &mut self,
        key: &rcgen::KeyPair,
        facts: &DeviceFacts,
        now: OffsetDateTime,
    ) -> Option<Registered> {
        if self.state.is_registered() {
            return None;
        }
        let id = Identity::load(&self.paths.identity).ok()?;
        if id.key.public_key_raw() != key.public_key_raw() {
            return None;
        }
        let checked =
            identity::check_chain(&id.chain_pem, self.roots(), &facts.machine_id, key, now).ok()?;
        let client = DeviceClient::new(&self.settings.server_url, self.roots(), Some(&id)).ok()?;
        let answer = client
            .checkin(&crate::protocol::CheckinRequest {
                policy_version: None,
                facts: facts.clone(),
            })
            .ok()?;
        // The server's binding (the token's team), not what the device asked for.
        let team = answer
            .team
            .clone()
            .or_else(|| self.assignment().team)
            .unwrap_or_default();
        self.state.enrollment = Some(Enrollment::registered(
            facts.machine_id.clone(),
            answer.device_id.clone(),
            team.clone(),
            now,
            &checked,
        ));
        Some(Registered::Enrolled {
            device_id: answer.device_id,
            machine_id: facts.machine_id.clone(),
            team,
            certificate_not_after: checked.not_after,
        })
    }

    /// The facts of this device. The machine id is the one recorded when the device
    /// first registered (or went pending), not recomputed: a renamed host keeps its
    /// identity, and the inventory follows its new host name at the next check-in.
    pub fn facts(&self) -> Result<DeviceFacts> {
        let mut facts = facts::gather(&self.paths, &self.settings.org, &self.assignment())?;
        if let Some(e) = &self.state.enrollment {
            facts.machine_id = e.machine_id.clone();
        }
        Ok(facts)
    }

    /// The org assignment in effect: agent.yaml, then install-time flags.
    pub fn assignment(&self) -> Assignment {
        self.settings
            .assignment
            .overridden_by(&self.state.assignment)
    }

    /// Installs the bundle shipped with the artefact when it is newer than the
    /// policy in force (or none is). A shipped bundle that does not verify is
    /// ignored: the server's bundle will come with the next sync.
    fn install_shipped_policy(&mut self, now: OffsetDateTime) {
        let Some((shipped, bytes)) = self.shipped_policy(now) else {
            return;
        };
        if self
            .held_policy(now)
            .is_some_and(|h| h.version >= shipped.version)
        {
            return;
        }
        if let Ok(Verified::Accepted { .. }) = self.offer_bundle(&bytes, "shipped", None, now) {
            // Installed; `last_confirmed` stays unset until the server confirms it.
        }
    }

    /// Writes the manifest and its mirrors from the facts and the state.
    pub fn write_manifest(&self, facts: &DeviceFacts, now: OffsetDateTime) -> Result<()> {
        let e = self.state.enrollment.clone();
        let held = self.held_policy(now);
        let registered = self.state.is_registered();
        let a = &self.assignment();
        let m = Manifest {
            machine_id: facts.machine_id.clone(),
            organization: self.settings.org.clone(),
            user: facts.user.clone(),
            hostname: facts.hostname.clone(),
            platform: facts.platform.clone(),
            cmdai_version: if self.paths.is_real_root() {
                manifest::cmdai_version()
            } else {
                None
            },
            enterprise_plugin_version: facts.agent_version.clone(),
            registered_at: e.as_ref().and_then(|e| e.registered_at),
            certificate_fingerprint: e.as_ref().and_then(|e| e.certificate_fingerprint.clone()),
            department: a.department.clone(),
            // The server's binding (the token's team) wins over what was asked.
            team: e
                .as_ref()
                .and_then(|e| e.team.clone())
                .or_else(|| a.team.clone()),
            environment: a.environment.clone(),
            compliance_zone: a.compliance_zone.clone(),
            provisioned: registered && held.is_some(),
            policy_version: held.as_ref().map(|h| h.version),
            last_policy_update: self.state.policy.as_ref().map(|p| p.installed_at),
            device_id: e.as_ref().and_then(|e| e.device_id.clone()),
            enrollment: if registered { "registered" } else { "pending" }.into(),
            os_name: facts.os_name.clone(),
            os_version: facts.os_version.clone(),
            serial: facts.serial.clone(),
            certificate_not_after: e.as_ref().and_then(|e| e.certificate_not_after),
            last_sync: self.state.last_sync.as_ref().map(|s| s.at),
            last_sync_result: self
                .state
                .last_sync
                .as_ref()
                .map(|s| if s.ok { "ok".into() } else { s.code.clone() }),
        };
        m.write(&self.paths)?;
        if self.is_windows_device() {
            super::windows::record_device(&super::windows::DeviceRecord {
                machine_id: m.machine_id.clone(),
                device_id: m.device_id.clone(),
                enrollment: m.enrollment.clone(),
                policy_version: m.policy_version,
            })
            .map_err(AgentError::Platform)?;
        }
        Ok(())
    }

    /// Drops the one-time enrollment token wherever an installer left it: the token
    /// file, and on Windows the Token value of the Enrollment key.
    fn forget_token(&self) {
        let _ = std::fs::remove_file(&self.paths.token_file);
        if self.is_windows_device() {
            super::windows::forget_token();
        }
    }

    /// True on a real Windows device (not under a test root).
    fn is_windows_device(&self) -> bool {
        self.paths.platform == Platform::Windows && self.paths.is_real_root()
    }

    /// Windows: puts the root CA of the installed anchors (not a file anyone could
    /// have replaced) in the machine's Root store.
    fn trust_root_ca(&self) -> Result<()> {
        if !self.is_windows_device() {
            return Ok(());
        }
        let Some(pem) = self.anchors.root_ca.first() else {
            return Ok(());
        };
        let file = self.paths.data_dir.join("root-ca.pem");
        fsutil::write_atomic(&file, pem.as_bytes(), fsutil::PUBLIC_MODE)?;
        super::windows::trust_root_ca(&file).map_err(AgentError::Platform)
    }
}

/// The token the installer left (first line, trimmed), if any.
fn read_token_file(path: &std::path::Path) -> Option<Zeroizing<String>> {
    let bytes = Zeroizing::new(fsutil::read_capped(path, 4096).ok()?);
    let text = std::str::from_utf8(&bytes).ok()?;
    let token = text.lines().next()?.trim();
    (!token.is_empty()).then(|| Zeroizing::new(token.to_string()))
}

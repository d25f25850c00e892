//! `agent.yaml`: the install-time settings an artefact writes beside the agent.
//!
//! ```yaml
//! org: acme-corp
//! server_url: https://fleet.acme-corp.example:8443
//! team: platform            # optional: install-time org assignment
//! department: engineering
//! environment: production
//! compliance_zone: confidential
//! offline_mode: cached-with-expiry   # fail-closed | cached-with-expiry | cached-indefinite | default-policy
//! offline_max_age_hours: 24
//! renew_at_percent: 66
//! ```
//!
//! Unknown keys are refused, so that a typo in an installer template is an error and
//! not a silently ignored setting. Command-line flags of `agent register` (the values
//! an MDM passes at install time) override the org assignment.

use crate::fsutil;
use crate::workspace::config::{OfflineMode, check_https_url, yaml_quote};
use serde::Deserialize;
use std::path::Path;

/// Largest settings file read.
const MAX_SETTINGS_BYTES: u64 = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    org: String,
    server_url: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    compliance_zone: Option<String>,
    #[serde(default)]
    offline_mode: Option<String>,
    #[serde(default)]
    offline_max_age_hours: Option<u64>,
    #[serde(default)]
    renew_at_percent: Option<u64>,
    #[serde(default)]
    managed_preferences_domain: Option<String>,
    #[serde(default)]
    claude_code_settings: Option<String>,
    #[serde(default)]
    siem_credential_file: Option<String>,
    #[serde(default)]
    siem_ca_file: Option<String>,
    #[serde(default)]
    siem_spool_max_records: Option<u64>,
    #[serde(default)]
    siem_public_roots: Option<bool>,
}

/// Where the device belongs in the org: reported in facts, manifest and inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    pub team: Option<String>,
    pub department: Option<String>,
    pub environment: Option<String>,
    pub compliance_zone: Option<String>,
}

impl Assignment {
    /// `self`, with every field `other` sets taken from `other`.
    pub fn overridden_by(&self, other: &Assignment) -> Assignment {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        Assignment {
            team: pick(&self.team, &other.team),
            department: pick(&self.department, &other.department),
            environment: pick(&self.environment, &other.environment),
            compliance_zone: pick(&self.compliance_zone, &other.compliance_zone),
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    pub org: String,
    pub server_url: String,
    pub assignment: Assignment,
    pub offline_mode: OfflineMode,
    pub offline_max_age_hours: u64,
    pub renew_at_percent: u64,
    /// macOS: the managed-preferences domain (`<prefix>.fleetkit`) whose values an
    /// MDM profile sets; they take precedence over this file.
    pub managed_preferences_domain: Option<String>,
    /// Whether the agent writes Claude Code's managed settings (`manage`, the
    /// default; `force`; `off`).
    pub claude_code_settings: super::claude_code::ClaudeSettingsMode,
    /// A file (0600) holding the whole `Authorization` header value the SIEM wants
    /// (`ApiKey …`, `Basic …`, `Bearer …`), when the policy forwards to one.
    pub siem_credential_file: Option<std::path::PathBuf>,
    /// PEM certificates the SIEM's TLS certificate may chain to, besides the org
    /// root CA and (unless `siem_public_roots` is false) the public roots.
    pub siem_ca_file: Option<std::path::PathBuf>,
    /// Trust the public web roots (Mozilla's, built into the agent) for the SIEM
    /// too (a hosted SIEM with a public certificate). Default false: the SIEM is
    /// pinned to the org root CA and `siem_ca_file`, so no public CA can stand in
    /// for it and receive its credential and the fleet's commands.
    pub siem_public_roots: bool,
    /// Records waiting for the SIEM beyond this are dropped, oldest first
    /// (default [`super::siem::MAX_UNSENT`]).
    pub siem_spool_max_records: u64,
}

/// An absolute path setting.
fn absolute(key: &str, value: Option<String>) -> Result<Option<std::path::PathBuf>, String> {
    match value {
        None => Ok(None),
        Some(v) if std::path::Path::new(&v).is_absolute() => Ok(Some(v.into())),
        Some(v) => Err(format!("`{key}` is `{v}`; give an absolute path")),
    }
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: cannot read the agent settings: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl AgentSettings {
    /// Reads and validates `agent.yaml`.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let shown = path.display().to_string();
        let bytes =
            fsutil::read_capped(path, MAX_SETTINGS_BYTES).map_err(|e| SettingsError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| SettingsError::Invalid {
            path: shown.clone(),
            reason: "not UTF-8 text".into(),
        })?;
        Self::parse(&text).map_err(|reason| SettingsError::Invalid {
            path: shown,
            reason,
        })
    }

    /// Parses and validates settings text; the error says which field and what to do.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawSettings = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if raw.org.trim().is_empty() {
            return Err("`org` is empty: set it to the org of the policy".into());
        }
        let server_url =
            check_https_url(&raw.server_url).map_err(|e| format!("`server_url`: {e}"))?;
        let offline_mode = match raw.offline_mode.as_deref() {
            None => OfflineMode::CachedWithExpiry,
            Some(s) => OfflineMode::parse(s).ok_or_else(|| {
                format!(
                    "`offline_mode` is `{s}`; use one of {}",
                    OfflineMode::NAMES.join(", ")
                )
            })?,
        };
        let offline_max_age_hours = raw.offline_max_age_hours.unwrap_or(24);
        if offline_max_age_hours == 0 || offline_max_age_hours > 24 * 366 {
            return Err("`offline_max_age_hours` must be between 1 and 8784".into());
        }
        let renew_at_percent = raw.renew_at_percent.unwrap_or(66);
        if !(10..=95).contains(&renew_at_percent) {
            return Err("`renew_at_percent` must be between 10 and 95".into());
        }
        let assignment = Assignment {
            team: check_label("team", raw.team)?,
            department: check_label("department", raw.department)?,
            environment: check_label("environment", raw.environment)?,
            compliance_zone: check_label("compliance_zone", raw.compliance_zone)?,
        };
        Ok(Self {
            org: raw.org,
            server_url,
            assignment,
            offline_mode,
            offline_max_age_hours,
            renew_at_percent,
            managed_preferences_domain: match raw.managed_preferences_domain {
                Some(d) if crate::workspace::config::is_reverse_dns(&d) => Some(d),
                Some(d) => {
                    return Err(format!(
                        "`managed_preferences_domain` `{d}` is not a reverse-DNS name"
                    ));
                }
                None => None,
            },
            claude_code_settings: match raw.claude_code_settings.as_deref() {
                None => super::claude_code::ClaudeSettingsMode::default(),
                Some(s) => super::claude_code::ClaudeSettingsMode::parse(s).ok_or_else(|| {
                    format!(
                        "`claude_code_settings` is `{s}`; use one of {}",
                        super::claude_code::ClaudeSettingsMode::NAMES.join(", ")
                    )
                })?,
            },
            siem_credential_file: absolute("siem_credential_file", raw.siem_credential_file)?,
            siem_ca_file: absolute("siem_ca_file", raw.siem_ca_file)?,
            siem_public_roots: raw.siem_public_roots.unwrap_or(false),
            siem_spool_max_records: match raw.siem_spool_max_records {
                None => super::siem::MAX_UNSENT,
                Some(n) if (10..=100_000_000).contains(&n) => n,
                Some(n) => {
                    return Err(format!(
                        "`siem_spool_max_records` is {n}; give 10 to 100000000"
                    ));
                }
            },
        })
    }

    /// The settings as `agent.yaml` text (every value quoted, so any org name stays
    /// one value). Installers and tests write this.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from("# fleetkit agent settings, written at install time.\n");
        out.push_str(&format!("org: {}\n", yaml_quote(&self.org)));
        out.push_str(&format!("server_url: {}\n", yaml_quote(&self.server_url)));
        let a = &self.assignment;
        for (key, value) in [
            ("team", &a.team),
            ("department", &a.department),
            ("environment", &a.environment),
            ("compliance_zone", &a.compliance_zone),
        ] {
            if let Some(v) = value {
                out.push_str(&format!("{key}: {}\n", yaml_quote(v)));
            }
        }
        out.push_str(&format!("offline_mode: {}\n", self.offline_mode.as_str()));
        out.push_str(&format!(
            "offline_max_age_hours: {}\n",
            self.offline_max_age_hours
        ));
        out.push_str(&format!("renew_at_percent: {}\n", self.renew_at_percent));
        if let Some(domain) = &self.managed_preferences_domain {
            out.push_str(&format!(
                "managed_preferences_domain: {}\n",
                yaml_quote(domain)
            ));
        }
        if self.claude_code_settings != super::claude_code::ClaudeSettingsMode::default() {
            out.push_str(&format!(
                "claude_code_settings: {}\n",
                self.claude_code_settings.as_str()
            ));
        }
        if self.siem_public_roots {
            out.push_str("siem_public_roots: true\n");
        }
        if self.siem_spool_max_records != super::siem::MAX_UNSENT {
            out.push_str(&format!(
                "siem_spool_max_records: {}\n",
                self.siem_spool_max_records
            ));
        }
        for (key, value) in [
            ("siem_credential_file", &self.siem_credential_file),
            ("siem_ca_file", &self.siem_ca_file),
        ] {
            if let Some(p) = value {
                out.push_str(&format!("{key}: {}\n", yaml_quote(&p.to_string_lossy())));
            }
        }
        out
    }
}

impl AgentSettings {
    /// Applies an MDM's managed preferences (a plist dictionary: `ServerURL`, `Org`,
    /// `Team`, `Department`, `Environment`, `ComplianceZone`, `OfflineMode`,
    /// `OfflineMaxAgeHours`) over these settings. The org cannot be changed there.
    pub fn apply_managed_preferences(&mut self, prefs: &plist::Dictionary) -> Result<(), String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            match prefs.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_string()
                    .map(|s| Some(s.to_string()))
                    .ok_or_else(|| format!("`{key}` is not a string")),
            }
        };
        if let Some(org) = text("Org")?
            && org != self.org
        {
            return Err(format!(
                "`Org` is `{org}`, this agent belongs to `{}`",
                self.org
            ));
        }
        if let Some(url) = text("ServerURL")? {
            self.server_url = check_https_url(&url).map_err(|e| format!("`ServerURL`: {e}"))?;
        }
        let labels = [
            ("Team", &mut self.assignment.team),
            ("Department", &mut self.assignment.department),
            ("Environment", &mut self.assignment.environment),
            ("ComplianceZone", &mut self.assignment.compliance_zone),
        ];
        for (key, slot) in labels {
            if let Some(v) = check_label(key, text(key)?)? {
                *slot = Some(v);
            }
        }
        if let Some(mode) = text("OfflineMode")? {
            self.offline_mode = OfflineMode::parse(&mode).ok_or_else(|| {
                format!(
                    "`OfflineMode` `{mode}` is not one of {}",
                    OfflineMode::NAMES.join(", ")
                )
            })?;
        }
        if let Some(v) = prefs.get("OfflineMaxAgeHours") {
            let hours = v
                .as_unsigned_integer()
                .filter(|h| (1..=24 * 366).contains(h))
                .ok_or("`OfflineMaxAgeHours` must be a number of hours from 1 to 8784")?;
            self.offline_max_age_hours = hours;
        }
        Ok(())
    }
}

/// An org-assignment label: empty means unset; control characters are refused.
pub fn check_label(field: &str, value: Option<String>) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) if v.chars().any(char::is_control) => {
            Err(format!("`{field}` contains control characters"))
        }
        Some(v) if v.len() > 200 => Err(format!("`{field}` is longer than 200 bytes")),
        Some(v) => Ok(Some(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_yaml_with_hostile_values() {
        let s = AgentSettings {
            org: "a\"c'me $(x) `y` ü".into(),
            server_url: "https://fleet.example:8443".into(),
            assignment: Assignment {
                team: Some("pl: at # form".into()),
                ..Default::default()
            },
            offline_mode: OfflineMode::FailClosed,
            offline_max_age_hours: 3,
            renew_at_percent: 50,
            managed_preferences_domain: Some("com.acme.fleetkit".into()),
            claude_code_settings: Default::default(),
            siem_credential_file: None,
            siem_ca_file: None,
            siem_public_roots: false,
            siem_spool_max_records: crate::agent::siem::MAX_UNSENT,
        };
        assert_eq!(AgentSettings::parse(&s.to_yaml()).unwrap(), s);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let base = "org: a\nserver_url: https://x.example\n";
        assert!(AgentSettings::parse(&format!("{base}tema: x\n")).is_err());
        let e = AgentSettings::parse(&format!("{base}offline_mode: sometimes\n")).unwrap_err();
        assert!(e.contains("fail-closed"), "{e}");
        assert!(AgentSettings::parse("org: a\nserver_url: http://x.example\n").is_err());
        assert!(AgentSettings::parse(&format!("{base}renew_at_percent: 100\n")).is_err());
    }
}

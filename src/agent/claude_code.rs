//! Claude Code's managed settings on the device, kept in step with the policy in
//! force: after every sync (and registration) the agent renders
//! `managed-settings.json` from the policy, with the hook naming this very agent
//! binary, and swaps it in atomically when it differs, so a published policy
//! reaches Claude Code within one sync and a deleted file comes back.
//!
//! A file fleetkit did not write is left alone (`claude_code_settings: manage`, the
//! default) unless agent.yaml says `force`; `off` never touches it. A file is
//! fleetkit's when its PreToolUse hook runs `agent decide --claude-code` — what
//! every fleetkit installer and this module write — or when it is byte for byte the
//! last file this agent wrote. Failing to write is a warning, never a failed sync:
//! the policy itself is already in force for the hook.

use super::Agent;
use crate::enforce::claude_settings;
use crate::fsutil::{self, PUBLIC_MODE};
use crate::pki::fingerprint_der;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Largest existing settings file read to judge whose it is.
const MAX_EXISTING_BYTES: u64 = 4 * 1024 * 1024;

/// What agent.yaml's `claude_code_settings` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaudeSettingsMode {
    /// Write the file, unless someone else's file is there.
    #[default]
    Manage,
    /// Write the file, replacing whatever is there.
    Force,
    /// Never touch it.
    Off,
}

impl ClaudeSettingsMode {
    pub const NAMES: &'static [&'static str] = &["manage", "force", "off"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "manage" => Some(Self::Manage),
            "force" => Some(Self::Force),
            "off" => Some(Self::Off),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manage => "manage",
            Self::Force => "force",
            Self::Off => "off",
        }
    }
}

/// The last thing the agent did with the settings file, for `agent status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaudeSettingsRecord {
    pub path: String,
    /// `sha256:<hex>` of the file the agent last wrote.
    pub sha256: Option<String>,
    /// For policy bundle version.
    pub policy_version: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Why the file was not written, when it was not.
    pub refused: Option<String>,
}

/// Whether `bytes` are a settings file fleetkit wrote: its PreToolUse hook runs
/// `agent decide --claude-code`.
fn written_by_fleetkit(bytes: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    v["hooks"]["PreToolUse"].as_array().is_some_and(|matchers| {
        matchers.iter().any(|m| {
            m["hooks"].as_array().is_some_and(|hooks| {
                hooks
                    .iter()
                    .any(|h| h["args"] == serde_json::json!(["agent", "decide", "--claude-code"]))
            })
        })
    })
}

impl Agent {
    /// Brings Claude Code's managed settings in step with the policy in force.
    /// Returns a warning when the file could not or may not be written.
    pub fn apply_claude_settings(&mut self, now: OffsetDateTime) -> Option<String> {
        let mode = self.settings.claude_code_settings;
        if mode == ClaudeSettingsMode::Off {
            return None;
        }
        let (version, policy) = self.policy_in_force(now)?;
        let path = self.paths.claude_settings.clone();
        let bin = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "fleetkit".into());
        let bytes = claude_settings::render(&policy, &bin);
        let sha = fingerprint_der(&bytes);
        let mut record = ClaudeSettingsRecord {
            path: path.display().to_string(),
            sha256: None,
            policy_version: Some(version),
            at: now,
            refused: None,
        };
        let existing = fsutil::read_capped(&path, MAX_EXISTING_BYTES).ok();
        let warning = match existing {
            Some(old) if old == bytes => {
                record.sha256 = Some(sha);
                None
            }
            Some(old)
                if mode == ClaudeSettingsMode::Manage
                    && !written_by_fleetkit(&old)
                    && self
                        .state
                        .claude_settings
                        .as_ref()
                        .and_then(|r| r.sha256.as_ref())
                        != Some(&fingerprint_der(&old)) =>
            {
                Some(format!(
                    "{}: Claude Code's managed settings were not written by fleetkit: left as they are (set `claude_code_settings: force` in agent.yaml to replace them)",
                    path.display()
                ))
            }
            _ => {
                let written = path
                    .parent()
                    .map_or(Ok(()), |dir| {
                        std::fs::create_dir_all(dir).map_err(|e| e.to_string())
                    })
                    .and_then(|()| {
                        fsutil::write_atomic(&path, &bytes, PUBLIC_MODE).map_err(|e| e.to_string())
                    });
                match written {
                    Ok(()) => {
                        record.sha256 = Some(sha);
                        None
                    }
                    Err(e) => Some(format!("cannot write Claude Code's managed settings: {e}")),
                }
            }
        };
        record.refused = warning.clone();
        if record.sha256.is_none()
            && let Some(prev) = &self.state.claude_settings
        {
            record.sha256 = prev.sha256.clone();
        }
        self.state.claude_settings = Some(record);
        warning
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleetkit_files_are_recognised_by_their_hook() {
        let policy: crate::policy::OrgPolicy = serde_json::from_str(
            r#"{"version":"1.0","organization":"o","effective_date":"2025-12-01"}"#,
        )
        .unwrap();
        assert!(written_by_fleetkit(&claude_settings::render(
            &policy,
            "/x/fleetkit"
        )));
        assert!(!written_by_fleetkit(
            br#"{"permissions":{"deny":["Bash(rm)"]}}"#
        ));
        assert!(!written_by_fleetkit(b"not json"));
    }
}

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

use super::{Agent, Result};
use crate::enforce::claude_settings;
use crate::fsutil::{self, PUBLIC_MODE};
use crate::pki::fingerprint_der;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
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

/// Whether the settings are to be in place or gone, and whether to act or only
/// say what acting would do (`agent claude-settings --check`, the Puppet and Chef
/// guards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsAction {
    /// Write the file the policy in force gives (installers, every sync).
    Apply,
    /// Remove fleetkit's file (uninstallers: its hook would name a missing binary).
    Remove,
}

/// What one pass over the settings file did or, checking, would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsOutcome {
    Written,
    /// The file already says what the policy in force says.
    Unchanged,
    Removed,
    /// No file to remove.
    Absent,
    /// agent.yaml says `claude_code_settings: off`.
    Off,
    /// No verified policy is in force, so there is nothing to write.
    NoPolicy,
    /// Someone else's file: left as it is.
    NotOurs(String),
    /// Writing or removing failed.
    Failed(String),
}

impl SettingsOutcome {
    /// The word `agent claude-settings --json` says.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Written => "written",
            Self::Unchanged => "unchanged",
            Self::Removed => "removed",
            Self::Absent => "absent",
            Self::Off => "off",
            Self::NoPolicy => "no-policy",
            Self::NotOurs(_) => "not-ours",
            Self::Failed(_) => "failed",
        }
    }

    /// Whether the pass changed (or would change) the file.
    pub fn changes(&self) -> bool {
        matches!(self, Self::Written | Self::Removed)
    }

    /// What a sync reports as a warning.
    pub fn warning(&self) -> Option<String> {
        match self {
            Self::NotOurs(m) | Self::Failed(m) => Some(m.clone()),
            _ => None,
        }
    }
}

/// Where this agent binary is. Without /proc (a package's scripts in a chroot, an
/// early boot) the kernel cannot say, but the name the run was started by can, as
/// a path or found on PATH.
fn agent_binary() -> Option<PathBuf> {
    if let Ok(exe) = std::env::current_exe() {
        return Some(exe);
    }
    let arg0 = PathBuf::from(std::env::args_os().next()?);
    if arg0.components().count() > 1 {
        return arg0.canonicalize().ok();
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(&arg0))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}

/// The hook binary as the device will see it: this agent's absolute path, without
/// the `--root` prefix a staging install runs under (Claude Code reads the file on
/// the device itself, where that prefix is `/`). `None` when it cannot be told: a
/// hook naming a binary Claude Code cannot find would let every command through.
fn hook_binary(root: &Path) -> Option<String> {
    let exe = agent_binary().filter(|p| p.is_absolute())?;
    if root != Path::new("/")
        && let Ok(root) = root.canonicalize()
        && let Ok(rel) = exe.strip_prefix(&root)
    {
        return Some(format!("/{}", rel.display()));
    }
    Some(exe.display().to_string())
}

impl Agent {
    /// Brings Claude Code's managed settings in step with the policy in force, as
    /// every sync does.
    /// `in_force`: the policy in force, as the caller verified it.
    pub fn apply_claude_settings(
        &mut self,
        in_force: Option<&(u64, crate::policy::OrgPolicy)>,
        now: OffsetDateTime,
    ) -> SettingsOutcome {
        self.claude_settings_pass(SettingsAction::Apply, false, in_force, now)
    }

    /// `agent claude-settings`: one pass (or, with `check`, what it would do), with
    /// the state saved after a real one.
    pub fn claude_settings(
        &mut self,
        action: SettingsAction,
        check: bool,
        now: OffsetDateTime,
    ) -> Result<SettingsOutcome> {
        let in_force = self.policy_in_force(now);
        let outcome = self.claude_settings_pass(action, check, in_force.as_ref(), now);
        if !check {
            self.save_state()?;
        }
        Ok(outcome)
    }

    fn claude_settings_pass(
        &mut self,
        action: SettingsAction,
        check: bool,
        in_force: Option<&(u64, crate::policy::OrgPolicy)>,
        now: OffsetDateTime,
    ) -> SettingsOutcome {
        let mode = self.settings.claude_code_settings;
        if mode == ClaudeSettingsMode::Off {
            return SettingsOutcome::Off;
        }
        let path = self.paths.claude_settings.clone();
        let existing = fsutil::read_capped(&path, MAX_EXISTING_BYTES).ok();
        let recorded = self
            .state
            .claude_settings
            .as_ref()
            .and_then(|r| r.sha256.clone());
        let ours = |old: &[u8]| {
            written_by_fleetkit(old) || recorded.as_deref() == Some(&fingerprint_der(old))
        };
        if action == SettingsAction::Remove {
            let outcome = match &existing {
                None => SettingsOutcome::Absent,
                Some(old) if !ours(old) => SettingsOutcome::NotOurs(format!(
                    "{}: Claude Code's managed settings were not written by fleetkit: left in place",
                    path.display()
                )),
                Some(_) if check => SettingsOutcome::Removed,
                Some(_) => match std::fs::remove_file(&path) {
                    Ok(()) => {
                        // The folder goes too when nothing else is in it.
                        if let Some(dir) = path.parent() {
                            let _ = std::fs::remove_dir(dir);
                        }
                        SettingsOutcome::Removed
                    }
                    Err(e) => {
                        SettingsOutcome::Failed(format!("cannot remove {}: {e}", path.display()))
                    }
                },
            };
            if !check && outcome == SettingsOutcome::Removed {
                self.state.claude_settings = None;
            }
            return outcome;
        }
        let Some((version, policy)) = in_force else {
            return SettingsOutcome::NoPolicy;
        };
        let Some(bin) = hook_binary(&self.paths.root) else {
            return SettingsOutcome::Failed(
                "cannot tell where this agent is installed, so the hook could not name it: run it by its full path".into(),
            );
        };
        let bytes = claude_settings::render(policy, &bin);
        let outcome = match existing {
            Some(old) if old == bytes => SettingsOutcome::Unchanged,
            Some(old) if mode == ClaudeSettingsMode::Manage && !ours(&old) => {
                SettingsOutcome::NotOurs(format!(
                    "{}: Claude Code's managed settings were not written by fleetkit: left as they are (set `claude_code_settings: force` in agent.yaml to replace them)",
                    path.display()
                ))
            }
            _ if check => SettingsOutcome::Written,
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
                    Ok(()) => SettingsOutcome::Written,
                    Err(e) => SettingsOutcome::Failed(format!(
                        "cannot write Claude Code's managed settings: {e}"
                    )),
                }
            }
        };
        if !check {
            let wrote = matches!(
                outcome,
                SettingsOutcome::Written | SettingsOutcome::Unchanged
            );
            self.state.claude_settings = Some(ClaudeSettingsRecord {
                path: path.display().to_string(),
                // After a refusal, the last file the agent wrote is still the one
                // it may replace.
                sha256: if wrote {
                    Some(fingerprint_der(&bytes))
                } else {
                    recorded
                },
                policy_version: Some(*version),
                at: now,
                refused: outcome.warning(),
            });
        }
        outcome
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

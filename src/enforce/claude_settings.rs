//! Claude Code's enterprise `managed-settings.json`, made from the org policy: the
//! `PreToolUse` hook that sends every Bash and PowerShell command to
//! `fleetkit agent decide --claude-code`, plus what Claude Code enforces natively
//! without asking fleetkit (so the rules hold even while the hook cannot run):
//! permission rules for blocked tools and dangerous paths, the model allowlist,
//! managed hooks and rules only, bypass mode disabled.
//!
//! The file is the same for every channel but for the hook's path to the agent,
//! which each installer knows ([`HOOK_BINARIES`]). The JSON is deterministic
//! (sorted keys, sorted and de-duplicated rules) and validates against
//! SchemaStore's `claude-code-settings.json` (tests/claude_settings.rs).

use super::classify::SECRET_PATHS;
use super::paths::ENFORCEMENT_PATHS;
use crate::policy::{OrgPolicy, RiskTolerance};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Where Claude Code reads the managed settings on each platform.
pub const MANAGED_SETTINGS_MACOS: &str =
    "/Library/Application Support/ClaudeCode/managed-settings.json";
pub const MANAGED_SETTINGS_LINUX: &str = "/etc/claude-code/managed-settings.json";
pub const MANAGED_SETTINGS_WINDOWS: &str = r"C:\Program Files\ClaudeCode\managed-settings.json";

/// The agent's path as each channel installs it: (channel, path).
pub const HOOK_BINARIES: &[(&str, &str)] = &[
    ("macos", "/usr/local/bin/fleetkit"),
    ("linux-package", "/usr/bin/fleetkit"),
    ("linux-cm", "/usr/local/bin/fleetkit"),
    ("windows", r"C:\Program Files\fleetkit\fleetkit.exe"),
];

/// How long Claude Code waits for the hook, in seconds. A decision takes
/// milliseconds; the limit covers a first `kubectl version` on a cold cache. A
/// hook that times out lets the command run, so it is generous.
pub const HOOK_TIMEOUT_SECS: u32 = 30;

/// A permission rule's specifier may not hold `)` (the schema's pattern), and a
/// rule with a parenthesis would not mean what the policy says: such entries are
/// left to the hook, which judges them all anyway.
fn usable(s: &str) -> bool {
    !s.is_empty() && !s.contains(['(', ')'])
}

/// A policy path glob as Claude Code's path rules spell it: `//abs/path` for an
/// absolute path, `~/…` for the home folder, `//c/…` for a Windows drive.
fn rule_path(glob: &str) -> Option<String> {
    let g = glob.replace('\\', "/");
    let b = g.as_bytes();
    let path = if g.starts_with("~/") {
        g
    } else if g.starts_with('/') {
        format!("/{g}")
    } else if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'/' {
        format!("//{}{}", (b[0] as char).to_ascii_lowercase(), &g[2..])
    } else if let Some(rest) = g.strip_prefix("**/") {
        format!("**/{rest}")
    } else {
        return None;
    };
    usable(&path).then_some(path)
}

/// The managed settings for `policy`, with the hook running `fleetkit_bin`.
pub fn managed_settings(policy: &OrgPolicy, fleetkit_bin: &str) -> Value {
    let mut deny = BTreeSet::new();
    let mut ask = BTreeSet::new();
    for t in &policy.blocked_tools {
        if usable(&t.name) {
            deny.insert(format!("Bash({})", t.name));
            deny.insert(format!("Bash({} *)", t.name));
            deny.insert(format!("PowerShell({})", t.name));
            deny.insert(format!("PowerShell({} *)", t.name));
        }
    }
    let low = policy.safety.risk_tolerance == RiskTolerance::Low;
    for p in policy
        .safety
        .additional_dangerous_paths
        .iter()
        .filter_map(|g| rule_path(g))
    {
        ask.insert(format!("Read({p})"));
        if low {
            deny.insert(format!("Edit({p})"));
        } else {
            ask.insert(format!("Edit({p})"));
        }
    }
    for p in SECRET_PATHS.iter().filter_map(|g| rule_path(g)) {
        ask.insert(format!("Read({p})"));
        ask.insert(format!("Edit({p})"));
    }
    for p in ENFORCEMENT_PATHS.iter().filter_map(|g| rule_path(g)) {
        deny.insert(format!("Edit({p})"));
    }
    // A rule both denied and asked is denied.
    ask.retain(|r| !deny.contains(r));
    let mut settings = json!({
        "$schema": "https://json.schemastore.org/claude-code-settings.json",
        "permissions": {
            "deny": deny.into_iter().collect::<Vec<_>>(),
            "ask": ask.into_iter().collect::<Vec<_>>(),
            "disableBypassPermissionsMode": "disable",
        },
        "hooks": {
            "PreToolUse": [{
                "matcher": "Bash|PowerShell",
                "hooks": [{
                    "type": "command",
                    "command": fleetkit_bin,
                    "args": ["agent", "decide", "--claude-code"],
                    "timeout": HOOK_TIMEOUT_SECS,
                    "statusMessage": format!("Checking the {} policy", policy.organization),
                }],
            }],
        },
        "allowManagedHooksOnly": true,
        "allowManagedPermissionRulesOnly": true,
    });
    let models = &policy.inference.model_allowlist;
    if !models.is_empty() {
        settings["availableModels"] = json!(models);
        settings["enforceAvailableModels"] = json!(true);
    }
    settings
}

/// The file's bytes: pretty JSON with a final newline.
pub fn render(policy: &OrgPolicy, fleetkit_bin: &str) -> Vec<u8> {
    let mut bytes =
        serde_json::to_vec_pretty(&managed_settings(policy, fleetkit_bin)).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Whether the policy lets Claude Code reach its own model service (Anthropic's
/// API): when it does not, the settings still install the hook, and the build says
/// that Claude Code will not be able to work under this policy.
pub fn allows_claude(policy: &OrgPolicy) -> bool {
    let inf = &policy.inference;
    let backend = "anthropic";
    !inf.require_local
        && !inf
            .blocked_backends
            .iter()
            .any(|b| b == backend || b == "external-api")
        && (inf.allowed_backends.is_empty() || inf.allowed_backends.iter().any(|b| b == backend))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_spelled_as_claude_code_reads_them() {
        assert_eq!(
            rule_path("/data/production/*").as_deref(),
            Some("//data/production/*")
        );
        assert_eq!(rule_path("~/secrets/**").as_deref(), Some("~/secrets/**"));
        assert_eq!(rule_path(r"C:\Finance\*").as_deref(), Some("//c/Finance/*"));
        assert_eq!(rule_path("**/.env").as_deref(), Some("**/.env"));
        assert_eq!(rule_path("/odd)path"), None);
        assert_eq!(rule_path("relative/x"), None);
    }
}

//! The commented starting policy that `fleetkit init` writes: every section of the
//! schema, with values a cautious org can start from and comments saying what each
//! key does.

use crate::workspace::config::yaml_quote;

/// Renders the starting policy for `org`. The org is written as a YAML double-quoted
/// scalar, so any name (quotes, `$`, backticks, newlines, non-ASCII) stays one value.
pub fn starter_policy(org: &str, effective_date: time::Date) -> String {
    let date = format!(
        "{:04}-{:02}-{:02}",
        effective_date.year(),
        u8::from(effective_date.month()),
        effective_date.day()
    );
    format!(
        r#"# Organisation policy (fleetkit / ADR-002 schema 1.0).
# Check it with `fleetkit policy check`; sign it with `fleetkit policy sign`.
# Unknown keys are errors, so a typo never silently weakens the policy.

version: "1.0"
# Must match `org` in fleetkit.yaml.
organization: {org}
effective_date: "{date}"

# Safety guardrails, beyond the community defaults.
safety:
  # low | medium | high
  risk_tolerance: "low"
  # Command classes that need approval before they run.
  require_approval_for:
    - destructive_commands
    - privilege_escalation
    - network_operations
  # Regular expressions (Rust regex syntax) matched against commands. Note that
  # `|` means OR in a regex: write `\|` to match a shell pipe.
  blocked_patterns:
    - pattern: 'curl\s.*\|\s*(ba|z)?sh'
      reason: "Arbitrary code execution via pipe to shell"
    - pattern: 'docker\s+run\s.*--privileged'
      reason: "Privileged containers require security review"
  # Absolute paths or globs that commands must not touch.
  additional_dangerous_paths:
    - /data/production/*
    - /backup/*

# Tools that may be used, with semver constraints (all must hold).
allowed_tools:
  - name: "git"
    versions: [">=2.30.0"]
    reason: "Versions below 2.30.0 have known vulnerabilities"
  - name: "kubectl"
    versions: [">=1.25.0", "<1.30.0"]
    approved_contexts: ["dev-*", "staging-*"]
    blocked_contexts: ["prod-*"]
  - name: "terraform"
    versions: ["~1.6.0"]
    required_flags: ["--lock=true"]
  - name: "aws"
    versions: [">=2.0.0"]
    approved_profiles: ["dev", "staging"]

# Tools that must not be used or installed.
blocked_tools:
  - name: "telnet"
    reason: "Cleartext remote shell"

# Where AI inference may run.
inference:
  allowed_backends: ["ollama", "vllm"]
  blocked_backends: ["external-api"]
  model_allowlist:
    - "llama-3.1-8b-instruct"
    - "codellama-13b"
  # true: every inference stays on the machine.
  require_local: true

# Approval workflows, by command class.
approvals:
  require_manager_approval:
    - high_risk_commands
    - production_database_operations
  auto_approve:
    - safe_commands
    - read_only_operations

# Audit requirements.
audit:
  log_all_commands: true
  log_retention_days: 365
  send_to_siem: false
  # Required when send_to_siem is true; https only.
  # siem_endpoint: "https://siem.example.com/events"

# Compliance tags.
compliance:
  frameworks: ["SOC2", "ISO27001"]
  # public | internal | confidential | restricted
  data_classification: "confidential"
  require_mfa: true
"#,
        org = yaml_quote(org),
    )
}

//! The validated org policy (ADR-002 schema v1.0). Its serde JSON form is what goes
//! into a signed bundle; `Deserialize` is for a device reading a verified bundle.

use serde::{Deserialize, Serialize};

/// One organisation's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgPolicy {
    /// Schema version ("1.0").
    pub version: String,
    pub organization: String,
    /// `YYYY-MM-DD`.
    pub effective_date: String,
    #[serde(default)]
    pub safety: Safety,
    #[serde(default)]
    pub allowed_tools: Vec<AllowedTool>,
    #[serde(default)]
    pub blocked_tools: Vec<BlockedTool>,
    #[serde(default)]
    pub inference: Inference,
    #[serde(default)]
    pub approvals: Approvals,
    #[serde(default)]
    pub audit: Audit,
    #[serde(default)]
    pub compliance: Compliance,
    /// Left out of the bundle when it is the default, so that agents older than the
    /// field (which refuse unknown fields) still read the policies that do not use it.
    #[serde(default, skip_serializing_if = "Enforcement::is_default")]
    pub enforcement: Enforcement,
}

/// How devices apply the decisions of the engine (src/enforce/).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnforcementMode {
    /// Deny and ask as decided.
    #[default]
    Enforce,
    /// Decide and record, never block: a dry run in the field.
    AuditOnly,
    /// Block what the deny rules deny; what would ask goes ahead (and is recorded).
    Permissive,
}

impl EnforcementMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::AuditOnly => "audit-only",
            Self::Permissive => "permissive",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enforcement {
    pub mode: EnforcementMode,
}

impl Enforcement {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskTolerance {
    Low,
    #[default]
    Medium,
    High,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Safety {
    pub risk_tolerance: RiskTolerance,
    pub require_approval_for: Vec<String>,
    pub blocked_patterns: Vec<BlockedPattern>,
    pub additional_dangerous_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockedPattern {
    /// A regular expression (Rust `regex` syntax) matched against commands.
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedTool {
    pub name: String,
    /// semver requirements, all of which must hold (`>=1.25.0`, `<1.30.0`).
    pub versions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub approved_contexts: Vec<String>,
    pub blocked_contexts: Vec<String>,
    pub required_flags: Vec<String>,
    pub approved_profiles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockedTool {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inference {
    pub allowed_backends: Vec<String>,
    pub blocked_backends: Vec<String>,
    pub model_allowlist: Vec<String>,
    pub require_local: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    pub require_manager_approval: Vec<String>,
    pub auto_approve: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub log_all_commands: bool,
    pub log_retention_days: u64,
    pub send_to_siem: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siem_endpoint: Option<String>,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            log_all_commands: false,
            log_retention_days: 90,
            send_to_siem: false,
            siem_endpoint: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataClassification {
    Public,
    #[default]
    Internal,
    Confidential,
    Restricted,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compliance {
    pub frameworks: Vec<String>,
    pub data_classification: DataClassification,
    pub require_mfa: bool,
}

impl OrgPolicy {
    /// How many rules the policy states: blocked patterns, dangerous paths, tools
    /// (allowed and blocked) and inference backends/models. For reports.
    pub fn rule_count(&self) -> usize {
        self.safety.blocked_patterns.len()
            + self.safety.additional_dangerous_paths.len()
            + self.allowed_tools.len()
            + self.blocked_tools.len()
            + self.inference.allowed_backends.len()
            + self.inference.blocked_backends.len()
            + self.inference.model_allowlist.len()
    }
}

//! The closed vocabularies of the policy schema: approval classes, compliance
//! frameworks, and the inference backends known to leave the machine.

/// Classes of commands that approvals and safety rules refer to.
pub const APPROVAL_CLASSES: &[&str] = &[
    "destructive_commands",
    "privilege_escalation",
    "network_operations",
    "high_risk_commands",
    "production_database_operations",
    "safe_commands",
    "read_only_operations",
    "package_installation",
    "credential_access",
    "data_exfiltration",
    "file_deletion",
    "system_configuration",
];

/// Compliance frameworks a policy may be tagged with.
pub const FRAMEWORKS: &[&str] = &[
    "SOC2",
    "ISO27001",
    "HIPAA",
    "PCI-DSS",
    "GDPR",
    "FedRAMP",
    "NIST-800-53",
    "NIST-CSF",
    "CIS",
    "CCPA",
];

/// Inference backends that send prompts off the machine: incompatible with
/// `require_local: true`.
pub const REMOTE_BACKENDS: &[&str] = &[
    "external-api",
    "openai",
    "anthropic",
    "azure-openai",
    "bedrock",
    "vertex-ai",
    "gemini",
];

pub const RISK_TOLERANCES: &[&str] = &["low", "medium", "high"];
pub const DATA_CLASSIFICATIONS: &[&str] = &["public", "internal", "confidential", "restricted"];
pub const ENFORCEMENT_MODES: &[&str] = &["enforce", "audit-only", "permissive"];

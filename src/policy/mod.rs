//! The org policy: the ADR-002 YAML schema (version, organization, effective_date,
//! safety, allowed_tools, blocked_tools, inference, approvals, audit, compliance),
//! parsed into a located tree and checked into a validated [`OrgPolicy`].
//!
//! [`load`] and [`parse`] report every error of a file in one run, each with file,
//! line, column, field path, a source snippet and what to do; warnings (legal but
//! probably wrong, such as a regex ` | ` meant as a pipe) do not fail the check.

mod check;
mod model;
mod patterns;
mod starter;
mod versions;
pub mod vocab;

pub use model::*;
pub use starter::starter_policy;

use crate::diag::{Diagnostics, SourceFile};
use crate::yaml::{self, Limits, Reader};
use std::path::Path;

/// The largest policy file accepted. A 1,000-rule policy is about 150 KiB.
pub const MAX_POLICY_BYTES: u64 = 4 * 1024 * 1024;

/// A valid policy and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Checked {
    pub policy: OrgPolicy,
    pub warnings: Diagnostics,
}

fn limits() -> Limits {
    Limits {
        max_bytes: MAX_POLICY_BYTES,
        ..Limits::default()
    }
}

/// Reads, parses and validates the policy file at `path`.
pub fn load(path: &Path) -> Result<Checked, Diagnostics> {
    let (src, node) = yaml::load_file(path, limits())?;
    check_tree(&src, &node)
}

/// Parses and validates policy text already in memory.
pub fn parse(src: &SourceFile) -> Result<Checked, Diagnostics> {
    if src.text.len() as u64 > MAX_POLICY_BYTES {
        return Err(Diagnostics(vec![src.diagnostic(
            crate::diag::Loc::default(),
            "",
            format!(
                "the policy is {} bytes; the limit is {MAX_POLICY_BYTES} bytes",
                src.text.len()
            ),
            Some("a policy is a few KiB of YAML: check that this is the right file".into()),
        )]));
    }
    let node = yaml::parse(src, limits())?;
    check_tree(src, &node)
}

fn check_tree(src: &SourceFile, node: &yaml::Node) -> Result<Checked, Diagnostics> {
    let mut c = check::Checker::new(Reader::new(src));
    let policy = c.policy(node);
    let errors = c.r.finish();
    match policy {
        Some(policy) if errors.is_empty() => Ok(Checked {
            policy,
            warnings: c.warnings.sorted(),
        }),
        _ => Err(errors),
    }
}

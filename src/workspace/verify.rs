//! `policy verify`: read a bundle and an anchors file and apply DESIGN.md security
//! rule 2 at one fixed time, reporting exactly why a bundle fails.

use crate::bundle::{self, BundleError, Verified};
use serde::Serialize;
use std::path::Path;

/// A bundle that passed.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub org: String,
    pub version: u64,
    pub issued_at: String,
    pub expires_at: String,
    pub threshold: u32,
    pub keyids: Vec<String>,
}

/// What verification concluded.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    Accepted(Summary),
    /// The bundle is valid and its version is the one already installed.
    AlreadyCurrent {
        version: u64,
    },
}

/// Why the bundle (or the anchors) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot use the anchors: {0}")]
    Anchors(#[from] crate::anchors::AnchorsError),
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Read(#[from] crate::fsutil::ReadError),
}

impl VerifyError {
    /// A stable machine-readable reason for `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Anchors(_) => "anchors",
            Self::Bundle(b) => b.code(),
            Self::Read(crate::fsutil::ReadError::TooLarge { .. }) => "too-large",
            Self::Read(_) => "unreadable",
        }
    }
}

/// Verifies the bundle file against the anchors file, now.
pub fn verify_bundle_file(
    bundle_path: &Path,
    anchors_path: &Path,
    stored_version: Option<u64>,
) -> Result<Outcome, VerifyError> {
    let now = crate::clock::now();
    let anchors = crate::anchors::load(anchors_path)?;
    // Read one byte past the cap so the verifier itself reports the size rule.
    let bytes = crate::fsutil::read_capped(bundle_path, bundle::MAX_BUNDLE_BYTES as u64 + 1)?;
    let verified = bundle::verify_bundle(
        &bytes,
        &anchors,
        &bundle::VerifyOptions {
            now,
            expected_org: None,
            stored_version,
        },
    )?;
    Ok(match verified {
        Verified::Accepted { payload, keyids } => Outcome::Accepted(Summary {
            org: payload.org,
            version: payload.version,
            issued_at: crate::clock::rfc3339(payload.issued_at),
            expires_at: crate::clock::rfc3339(payload.expires_at),
            threshold: anchors.threshold,
            keyids,
        }),
        Verified::AlreadyCurrent { version } => Outcome::AlreadyCurrent { version },
    })
}

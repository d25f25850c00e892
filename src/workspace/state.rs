//! `state.json`: what the workspace has already released, so that a policy version
//! can never go down (a device refuses a lower version as a rollback).

use crate::fsutil::{self, FsError, PUBLIC_MODE};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The workspace's release state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The highest policy bundle version signed so far (0: none yet).
    pub policy_version: u64,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Io(#[from] FsError),
    #[error(
        "{path}: {reason}; it records the last signed policy version: restore it from version control, or delete it only if no bundle was ever released"
    )]
    Corrupt { path: String, reason: String },
}

impl State {
    /// Loads the state; a missing file means nothing was signed yet.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let bytes = match fsutil::read_capped(path, 64 * 1024) {
            Ok(b) => b,
            Err(fsutil::ReadError::Io(e)) if e.source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(fsutil::ReadError::Io(e)) => return Err(e.into()),
            Err(e @ fsutil::ReadError::TooLarge { .. }) => {
                return Err(StateError::Corrupt {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), FsError> {
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        fsutil::write_atomic(path, &json, PUBLIC_MODE)
    }
}

//! Following the org's key rotations (DESIGN.md rules 1, 3 and 10).
//!
//! At check-in the server says which anchors version its rotation chain reaches.
//! When that is above the version installed here, `agent sync` fetches the steps
//! after ours (`GET /v1/rotations?after=N`, oldest first) and walks them with
//! [`crate::anchors::accept_chain`] — the same rules as `fleetkit keys accept`: a
//! threshold of the trusted keys and of the new ones, each checked at the step's own
//! time, proof of possession of added keys, same org, version up by one. Only when
//! every step verifies are the steps kept (each envelope in the data directory's
//! `rotations/`, written atomically) and the anchors in force replaced; the bundle
//! is verified with them afterwards. A refused step changes nothing, and the sync
//! fails naming the step.
//!
//! The installed `anchors.json` is never written: it belongs to the installer or
//! the configuration management that put it there, which would put it back at its
//! next run. Instead the agent walks its kept steps from the installed anchors each
//! time it starts ([`anchors_in_force`]), so a rotation it followed stays followed
//! whatever happens to that file, and a newer installed file simply wins.
//!
//! The server is not trusted for any of this: what it announces only decides
//! whether to ask, and what it serves is believed only through the signatures.

use super::paths::AgentPaths;
use super::{Agent, AgentError, Result};
use crate::anchors::{self, TrustAnchors};
use crate::fsutil::{self, PUBLIC_MODE};

/// The anchors in force: the installed ones, advanced through every kept rotation
/// step above their version that still verifies, in version order. A step that no
/// longer verifies (a damaged file) ends the walk: trust never goes further than
/// what the signatures show, and the next sync fetches the steps again.
pub fn anchors_in_force(
    paths: &AgentPaths,
    installed: TrustAnchors,
    now: time::OffsetDateTime,
) -> TrustAnchors {
    let Ok(entries) = std::fs::read_dir(&paths.rotations_dir) else {
        return installed;
    };
    let mut steps: Vec<(u64, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let v: u64 = name
                .strip_prefix("anchors-v")?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            (v > installed.version).then(|| (v, e.path()))
        })
        .collect();
    steps.sort();
    let mut current = installed;
    for (_, path) in steps {
        let Ok(bytes) = fsutil::read_capped(&path, anchors::MAX_ANCHORS_BYTES as u64) else {
            break;
        };
        match anchors::accept_rotation(&current, &bytes, now) {
            Ok(next) => current = next,
            Err(_) => break,
        }
    }
    current
}

/// Anchors moved from one version to another during a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorsUpdate {
    pub from: u64,
    pub to: u64,
}

impl Agent {
    /// Walks `chain` (rotation envelopes after the installed version, oldest first)
    /// from the installed anchors and, when every step verifies, installs the result
    /// atomically. `None` for an empty chain.
    pub fn follow_rotations(
        &mut self,
        chain: &[Vec<u8>],
        now: time::OffsetDateTime,
    ) -> Result<Option<AnchorsUpdate>> {
        if chain.is_empty() {
            return Ok(None);
        }
        let from = self.anchors.version;
        let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        let next = anchors::accept_chain(&self.anchors, &refs, now).map_err(|source| {
            // Name the refused step by what it claims (unverified, for the message).
            let claimed = match &source {
                anchors::AnchorsError::Chain { index, .. } => chain
                    .get(index.saturating_sub(1))
                    .and_then(|e| anchors::claimed_version(e).ok())
                    .map(|(_, v)| v),
                _ => None,
            };
            AgentError::RotationRefused {
                installed: from,
                claimed,
                source,
            }
        })?;
        // The chain keeps the org (checked at each step); the agent's own setting
        // was matched against the installed anchors when it opened. Steps first,
        // oldest first: a kill in between leaves a prefix that still walks.
        for (step, bytes) in chain.iter().enumerate() {
            let version = from + 1 + step as u64;
            let file = self
                .paths
                .rotations_dir
                .join(format!("anchors-v{version}.json"));
            std::fs::create_dir_all(&self.paths.rotations_dir).map_err(|e| {
                AgentError::Fs(fsutil::FsError::new(
                    "cannot create directory",
                    &self.paths.rotations_dir,
                    e,
                ))
            })?;
            fsutil::write_atomic(&file, bytes, PUBLIC_MODE)?;
        }
        anchors::save(&next, &self.paths.anchors_in_force).map_err(|e| match e {
            anchors::AnchorsError::Io(fs) => AgentError::Fs(fs),
            other => AgentError::Anchors(other),
        })?;
        let to = next.version;
        self.anchors = next;
        Ok(Some(AnchorsUpdate { from, to }))
    }
}

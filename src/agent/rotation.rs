//! Following the org's key rotations (DESIGN.md rules 1, 3 and 10).
//!
//! At check-in the server says which anchors version its rotation chain reaches.
//! When that is above the version installed here, `agent sync` fetches the steps
//! after ours (`GET /v1/rotations?after=N`, oldest first) and walks them with
//! [`crate::anchors::accept_chain`] — the same rules as `fleetkit keys accept`: a
//! threshold of the trusted keys and of the new ones, each checked at the step's own
//! time, proof of possession of added keys, same org, version up by one. Only when
//! every step verifies is the new `anchors.json` written (temp file, fsync, rename);
//! the bundle is verified with it afterwards. A refused step changes nothing: the
//! installed anchors stay byte for byte, and the sync fails naming the step.
//!
//! The server is not trusted for any of this: what it announces only decides
//! whether to ask, and what it serves is believed only through the signatures.

use super::{Agent, AgentError, Result};
use crate::anchors;

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
        // was matched against the installed anchors when it opened.
        anchors::save(&next, &self.paths.anchors).map_err(|e| match e {
            anchors::AnchorsError::Io(fs) => AgentError::Fs(fs),
            other => AgentError::Anchors(other),
        })?;
        let to = next.version;
        self.anchors = next;
        Ok(Some(AnchorsUpdate { from, to }))
    }
}

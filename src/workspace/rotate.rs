//! `keys rotate` and `keys accept`: policy-key rotation through signed anchors.
//!
//! Rotation adds a threshold of new keys and retires the current ones after a window,
//! so devices that have not yet fetched the new anchors keep accepting bundles
//! meanwhile. The new anchors document is signed by a threshold of the current keys
//! with no planned end and by every new key,
//! and kept under `rotations/` so any device can walk the chain from the anchors it
//! was installed with.
//!
//! The rotation reaches the fleet through the server: `fleetkit policy publish`
//! sends the workspace's rotations the server lacks (oldest first), then the bundle;
//! `fleetkit serve` also stores them when it starts. A running server picks the new
//! anchors up at once, and each device follows the chain at its next sync, before it
//! verifies the bundle. Each step is checked at its own time (see `crate::anchors`),
//! so a device that syncs only after the old keys retired still follows it.

use super::Workspace;
use super::sign::{SignError, signing_keys};
use crate::anchors::{self, TrustAnchors};
use crate::bundle::dsse::{Envelope, KeyLookup};
use crate::fsutil::{self, FsError, PUBLIC_MODE};
use crate::pki::PolicyKey;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// What `keys rotate` did.
#[derive(Debug, Clone)]
pub struct RotateReport {
    /// The new keys, one per signature the threshold needs (each saved 0600 in
    /// `keys/`).
    pub new_keyids: Vec<String>,
    pub retiring: Vec<String>,
    pub retire_at: String,
    pub anchors_version: u64,
    pub envelope_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Anchors(#[from] anchors::AnchorsError),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Io(#[from] FsError),
    #[error("{0}")]
    Read(#[from] crate::fsutil::ReadError),
}

/// Rotates the workspace's policy keys: as many new keys as the threshold needs
/// (every current key retires, so fewer would leave the org unable to sign once the
/// window ends), signed by the current keys valid now and by each new key.
pub fn rotate_keys(
    ws: &Workspace,
    retire_after: time::Duration,
) -> Result<RotateReport, RotateError> {
    let now = crate::clock::now();
    let current = anchors::load(&ws.anchors_path())?;
    let signers = signing_keys(ws, &current, now)?;
    if signers.len() < current.threshold as usize {
        return Err(SignError::NotEnoughKeys {
            have: signers.len(),
            threshold: current.threshold,
        }
        .into());
    }
    let new_keys = (0..current.threshold)
        .map(|_| PolicyKey::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let signer_refs: Vec<&PolicyKey> = signers.iter().collect();
    let new_refs: Vec<&PolicyKey> = new_keys.iter().collect();
    let (next, envelope) = anchors::rotate(&current, &signer_refs, &new_refs, retire_after, now)?;

    // New private keys first: if a later write fails, the old anchors still stand and
    // the unused keys are harmless.
    for key in &new_keys {
        key.save(&super::paths::policy_key(&ws.root, &key.keyid()))?;
    }
    let envelope_path = ws
        .rotations_dir()
        .join(format!("anchors-v{}.json", next.version));
    fsutil::write_atomic(&envelope_path, &envelope, PUBLIC_MODE)?;
    anchors::save(&next, &ws.anchors_path())?;
    Ok(RotateReport {
        new_keyids: new_keys.iter().map(PolicyKey::keyid).collect(),
        retiring: signers.iter().map(PolicyKey::keyid).collect(),
        retire_at: crate::clock::rfc3339(now + retire_after),
        anchors_version: next.version,
        envelope_path,
    })
}

/// Accepts a chain of signed anchors documents starting from `trusted`, each step
/// checked at its own time (as a device does); returns the last one. For admins
/// holding older anchors.
pub fn accept_chain_files(trusted: &Path, chain: &[PathBuf]) -> Result<TrustAnchors, RotateError> {
    let now = crate::clock::now();
    let trusted = anchors::load(trusted)?;
    let mut envelopes = Vec::with_capacity(chain.len());
    for p in chain {
        envelopes.push(crate::fsutil::read_capped(
            p,
            anchors::MAX_ANCHORS_BYTES as u64,
        )?);
    }
    let refs: Vec<&[u8]> = envelopes.iter().map(Vec::as_slice).collect();
    Ok(anchors::accept_chain(&trusted, &refs, now)?)
}

/// One signed step of the workspace's rotation chain.
#[derive(Debug, Clone)]
pub struct ChainFile {
    /// The anchors version the step leads to (from the file name).
    pub version: u64,
    pub path: PathBuf,
    pub envelope: Vec<u8>,
}

/// The workspace's rotation chain, `rotations/anchors-v<N>.json`, oldest first
/// (none when the directory does not exist). Read only: each step is checked by
/// whoever it is given to (the server, a device).
pub fn chain_files(ws: &Workspace) -> Result<Vec<ChainFile>, RotateError> {
    let dir = ws.rotations_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::new("cannot read directory", &dir, e).into()),
    };
    let mut chain = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("cannot read directory", &dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name
            .strip_prefix("anchors-v")
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let envelope = fsutil::read_capped(&path, anchors::MAX_ANCHORS_BYTES as u64)?;
        chain.push(ChainFile {
            version,
            path,
            envelope,
        });
    }
    chain.sort_by_key(|f| f.version);
    Ok(chain)
}

/// A bundle that verifies against the anchors only while retiring keys last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlivedBundle {
    /// The bundle's version (as its payload claims).
    pub version: u64,
    /// From this time on, fewer than a threshold of its signers are valid: a device
    /// installed with these anchors (or anything newer) refuses the bundle.
    pub refused_from: OffsetDateTime,
}

/// Whether `bundle` stays verifiable after the retiring keys of `anchors` end, i.e.
/// is signed by a threshold of keys with no planned end. `Some` when it is not,
/// saying from when a device refuses it. `None` also when it is not signed by a
/// threshold of the anchors' keys at all (whoever verifies it says why), or is not
/// a bundle. For `policy publish` after `keys rotate`: an old bundle republished
/// then looks fine today and strands every device installed after the window.
pub fn outlived_bundle(anchors: &TrustAnchors, bundle: &[u8]) -> Option<OutlivedBundle> {
    #[derive(serde::Deserialize)]
    struct Claim {
        version: u64,
    }
    let decoded = Envelope::from_json(bundle).ok()?.decode().ok()?;
    let claim: Claim = serde_json::from_slice(&decoded.payload).ok()?;
    // Which anchor keys really signed it, whatever their windows.
    let tally = decoded.tally(
        |keyid| match anchors.key(keyid).and_then(|k| k.verifying_key()) {
            Some(vk) => KeyLookup::Usable(vk),
            None => KeyLookup::Unknown,
        },
    );
    // Each signer's end, latest first (no end sorts first): the bundle verifies
    // until the threshold-th latest end.
    let mut ends: Vec<Option<OffsetDateTime>> = tally
        .valid
        .iter()
        .filter_map(|keyid| anchors.key(keyid))
        .map(|k| k.valid_until)
        .collect();
    ends.sort_by(|a, b| match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(a),
    });
    let end = ends.get(anchors.threshold.checked_sub(1)? as usize)?;
    end.map(|refused_from| OutlivedBundle {
        version: claim.version,
        refused_from,
    })
}

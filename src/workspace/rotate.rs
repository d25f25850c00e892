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
//!
//! `keys rotate` writes the new private keys, then the envelope, then anchors.json.
//! A crash between the last two leaves an envelope one version above anchors.json.
//! The next `keys rotate` finishes that rotation when it can (the envelope extends
//! anchors.json and every key it adds has its private half in `keys/`) and refuses
//! otherwise; it never writes a second, different step under the same version. Until
//! then `policy publish` and `fleetkit serve` leave such a step alone
//! ([`above_anchors`]): a step stored by a server is permanent, and one the
//! workspace's anchors.json does not follow would make every later publish fail.

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
    /// True when this run made no new key but finished a rotation that an earlier
    /// run left half done (envelope written, anchors.json not).
    pub finished_interrupted: bool,
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
    #[error(
        "{} is above the workspace's anchors.json (v{anchors_version}) and cannot be finished as an interrupted `fleetkit keys rotate`: {reason}; nothing was written",
        path.display()
    )]
    StrayStep {
        path: PathBuf,
        anchors_version: u64,
        reason: String,
    },
}

impl RotateError {
    /// What to do next, for the CLI.
    pub fn help(&self) -> String {
        match self {
            Self::StrayStep { path, .. } => format!(
                "move {} out of rotations/ (keep it until you know where it came from), then run `fleetkit keys rotate` again",
                path.display()
            ),
            _ => "check anchors.json and keys/".to_string(),
        }
    }
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
    if let Some(report) = finish_interrupted(ws, &current, now)? {
        return Ok(report);
    }
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
        finished_interrupted: false,
    })
}

/// Finishes a rotation an earlier `keys rotate` left half done: a step in
/// `rotations/` above `current` (the workspace's anchors.json). `None` when there
/// is none. It is finished (anchors.json written from it) only when it is exactly
/// the next version, is accepted from `current` as a device would accept it, and
/// the private key of every key it adds is in `keys/` (else the org could not sign
/// once the current keys retire). Anything else is refused, writing nothing:
/// making a new step would overwrite a file that may already have reached a
/// server, which keeps the first one for good.
fn finish_interrupted(
    ws: &Workspace,
    current: &TrustAnchors,
    now: OffsetDateTime,
) -> Result<Option<RotateReport>, RotateError> {
    let above: Vec<ChainFile> = chain_files(ws)?
        .into_iter()
        .filter(|f| above_anchors(f, current.version))
        .collect();
    let Some(step) = above.first() else {
        return Ok(None);
    };
    let stray = |path: &Path, reason: String| RotateError::StrayStep {
        path: path.to_path_buf(),
        anchors_version: current.version,
        reason,
    };
    let next_version = current.version.saturating_add(1);
    if let Some(far) = above.iter().find(|f| f.version != next_version) {
        return Err(stray(
            &far.path,
            format!(
                "`keys rotate` writes only anchors-v{next_version}.json next, so this file was not left by it"
            ),
        ));
    }
    let next = anchors::accept_rotation(current, &step.envelope, now).map_err(|e| {
        stray(
            &step.path,
            format!(
                "it is not a rotation of anchors.json v{}: {e}",
                current.version
            ),
        )
    })?;
    if next.version != step.version {
        return Err(stray(
            &step.path,
            format!("it holds anchors v{}", next.version),
        ));
    }
    let added: Vec<String> = next
        .keys
        .iter()
        .filter(|k| current.key(&k.keyid).is_none())
        .map(|k| k.keyid.clone())
        .collect();
    for keyid in &added {
        let path = super::paths::policy_key(&ws.root, keyid);
        let held = path.is_file() && PolicyKey::load(&path).is_ok_and(|k| k.keyid() == *keyid);
        if !held {
            return Err(stray(
                &step.path,
                format!(
                    "the private key of key {keyid}, which it adds, is not in {}",
                    path.display()
                ),
            ));
        }
    }
    // The keys this step gave an end that anchors.json does not.
    let retiring: Vec<(String, OffsetDateTime)> = next
        .keys
        .iter()
        .filter_map(|k| {
            let until = k.valid_until?;
            let before = current.key(&k.keyid)?;
            (before.valid_until != Some(until)).then(|| (k.keyid.clone(), until))
        })
        .collect();
    anchors::save(&next, &ws.anchors_path())?;
    Ok(Some(RotateReport {
        new_keyids: added,
        retire_at: retiring
            .iter()
            .map(|(_, until)| *until)
            .max()
            .map_or_else(|| "-".to_string(), crate::clock::rfc3339),
        retiring: retiring.into_iter().map(|(keyid, _)| keyid).collect(),
        anchors_version: next.version,
        envelope_path: step.path.clone(),
        finished_interrupted: true,
    }))
}

/// Whether a step of the workspace's chain leads above `anchors_version` (the
/// workspace's anchors.json), by its file name or by the version its payload
/// claims. Such a step was left by an interrupted `keys rotate` (or put there by
/// hand): `policy publish` does not send it and `fleetkit serve` does not store it,
/// since a server keeps a stored step for good.
pub fn above_anchors(step: &ChainFile, anchors_version: u64) -> bool {
    step.version > anchors_version
        || anchors::claimed_version(&step.envelope).is_ok_and(|(_, v)| v > anchors_version)
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

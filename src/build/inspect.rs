//! `fleetkit inspect ARTEFACT`: what an artefact carries. Every artefact embeds
//! `fleetkit.json` (written from the payload) beside its bundle and anchors;
//! inspect reads it and checks it against the files themselves: the bundle is
//! verified with the embedded anchors, the agent binaries' hashes recomputed and the
//! binaries checked to be executables of their platforms ([`super::agent_check`]).

use super::agent_check;
use super::payload::{AgentOrigin, Payload, sha256};
use crate::bundle::{self, MAX_BUNDLE_BYTES, Verified, VerifyOptions};
use crate::fsutil;
use crate::platform::{Os, Platform};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The description every artefact embeds.
pub const DESCRIPTION_FILE: &str = "fleetkit.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    pub org: String,
    pub server_url: String,
    pub team: Option<String>,
    pub bundle_version: u64,
    pub bundle_expires_at: String,
    pub bundle_sha256: String,
    pub anchor_keyids: Vec<String>,
    pub root_ca_fingerprint: String,
    pub agent_version: String,
    pub agents: Vec<DescribedAgent>,
    pub offline_mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescribedAgent {
    pub platform: String,
    pub sha256: String,
    pub size: u64,
    /// Which source the build found it in (absent in artefacts of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<AgentOrigin>,
}

/// `fleetkit.json` for an artefact carrying the payload's agents of `os`.
pub fn describe(payload: &Payload, os: Os) -> String {
    let d = Description {
        org: payload.org.clone(),
        server_url: payload.server_url.clone(),
        team: payload.settings.assignment.team.clone(),
        bundle_version: payload.bundle_version,
        bundle_expires_at: crate::clock::rfc3339(payload.bundle_expires_at),
        bundle_sha256: payload.bundle_sha256.clone(),
        anchor_keyids: payload.anchor_keyids.clone(),
        root_ca_fingerprint: payload.root_ca_fingerprint.clone(),
        agent_version: payload.agent_version.clone(),
        agents: payload
            .agents_for(os)
            .into_iter()
            .map(|a| DescribedAgent {
                platform: a.platform.name().to_string(),
                sha256: a.sha256().to_string(),
                size: a.bytes.len() as u64,
                origin: Some(a.origin),
            })
            .collect(),
        offline_mode: payload.settings.offline_mode.as_str().into(),
    };
    let mut s = serde_json::to_string_pretty(&d).unwrap_or_default();
    s.push('\n');
    s
}

/// What inspect found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The directory holding the payload files.
    pub payload_dir: PathBuf,
    pub description: Description,
    /// The bundle verified against the embedded anchors (at its issue time, so an
    /// old artefact is still described), and its expiry judged now.
    pub bundle_verified: bool,
    pub bundle_expired: bool,
    /// Agents whose bytes match the description and are executables of their
    /// platforms.
    pub agents_verified: Vec<String>,
    /// Everything that does not match.
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(
        "{0}: no {DESCRIPTION_FILE} inside; is this a fleetkit artefact (a role, module, cookbook or build output)?"
    )]
    NotAnArtefact(PathBuf),
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
}

/// Inspects an artefact directory (or a build output holding several).
pub fn inspect(path: &Path) -> Result<Vec<Inspection>, InspectError> {
    let mut found = Vec::new();
    find_descriptions(path, 0, &mut found);
    if found.is_empty() {
        return Err(InspectError::NotAnArtefact(path.to_path_buf()));
    }
    found.sort();
    found.iter().map(|f| inspect_one(f)).collect()
}

fn find_descriptions(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 6 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_descriptions(&path, depth + 1, out);
        } else if entry.file_name() == DESCRIPTION_FILE {
            out.push(path);
        }
    }
}

fn inspect_one(file: &Path) -> Result<Inspection, InspectError> {
    let bad = |path: &Path, reason: String| InspectError::Bad {
        path: path.to_path_buf(),
        reason,
    };
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let bytes = fsutil::read_capped(file, 1024 * 1024).map_err(|e| bad(file, e.to_string()))?;
    let description: Description =
        serde_json::from_slice(&bytes).map_err(|e| bad(file, e.to_string()))?;
    let mut problems = Vec::new();

    let anchors = crate::anchors::load(&dir.join("anchors.json"));
    let bundle_bytes = fsutil::read_capped(&dir.join("bundle.json"), MAX_BUNDLE_BYTES as u64);
    let mut bundle_verified = false;
    let mut bundle_expired = false;
    match (&anchors, &bundle_bytes) {
        (Ok(anchors), Ok(bytes)) => {
            if sha256(bytes) != description.bundle_sha256 {
                problems.push("bundle.json is not the bundle the description names".into());
            }
            let issued = crate::bundle::dsse::Envelope::from_json(bytes)
                .ok()
                .and_then(|e| e.decode().ok())
                .and_then(|d| {
                    serde_json::from_slice::<crate::bundle::BundlePayload>(&d.payload).ok()
                });
            match issued {
                Some(p) => {
                    let opts = VerifyOptions {
                        now: p.issued_at,
                        expected_org: Some(&description.org),
                        stored_version: None,
                    };
                    match bundle::verify_bundle(bytes, anchors, &opts) {
                        Ok(Verified::Accepted { payload, .. }) => {
                            bundle_verified = payload.version == description.bundle_version;
                            if !bundle_verified {
                                problems.push(
                                    "the bundle's version differs from the description".into(),
                                );
                            }
                            bundle_expired = payload.expires_at <= crate::clock::now();
                        }
                        Ok(_) => {}
                        Err(e) => problems.push(format!("bundle.json does not verify: {e}")),
                    }
                }
                None => problems.push("bundle.json is not a policy bundle".into()),
            }
        }
        (Err(e), _) => problems.push(format!("anchors.json: {e}")),
        (_, Err(e)) => problems.push(format!("bundle.json: {e}")),
    }

    let mut agents_verified = Vec::new();
    for agent in &description.agents {
        // Read as text: an artefact of another version may name a platform this
        // one does not know.
        let Some(platform) = Platform::parse(&agent.platform) else {
            problems.push(format!("unknown agent platform {:?}", agent.platform));
            continue;
        };
        let path = dir.join(platform.agent_file_name());
        match fsutil::read_capped(&path, 1024 * 1024 * 1024) {
            Ok(b) if sha256(&b) != agent.sha256 => {
                problems.push(format!("{} does not match its hash", path.display()))
            }
            Ok(b) => match agent_check::check(platform, &b) {
                Ok(()) => agents_verified.push(agent.platform.clone()),
                Err(refused) => problems.push(format!("{}: {refused}", path.display())),
            },
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    Ok(Inspection {
        payload_dir: dir,
        description,
        bundle_verified,
        bundle_expired,
        agents_verified,
        problems,
    })
}

//! `fleetkit init`: create an org workspace — settings, a starting policy, the policy
//! signing key, the org root and issuing CA, and the public trust anchors.
//!
//! Existing `fleetkit.yaml` and `policy.yaml` are kept (they are the user's files);
//! existing key material is never replaced without `force`, because replacing it
//! invalidates every artefact already built. All key material is generated before
//! anything is written, and each file is written atomically.

use super::config::{self, CONFIG_FILE};
use super::paths;
use crate::anchors::{AnchorKey, TrustAnchors};
use crate::diag::Diagnostics;
use crate::fsutil::{self, FsError, PUBLIC_MODE};
use crate::pki::{OrgCa, PolicyKey};
use std::path::{Path, PathBuf};

/// Default server URL: the local `fleetkit serve` with its localhost certificate.
pub const DEFAULT_SERVER_URL: &str = "https://localhost:8443";

#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Required for a new workspace; must match `org` of an existing fleetkit.yaml.
    pub org: Option<String>,
    pub server_url: Option<String>,
    /// Replace existing keys, CA and anchors.
    pub force: bool,
}

#[derive(Debug, Clone)]
pub struct InitReport {
    pub root: PathBuf,
    pub org: String,
    pub created: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
    pub policy_keyid: String,
    pub root_ca_fingerprint: String,
    pub issuing_ca_fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    Config(Diagnostics),
    #[error("--org is required to create a new workspace")]
    MissingOrg,
    #[error("the org name must be 1 to 128 printable characters")]
    BadOrg,
    #[error("--org {given} does not match org `{existing}` in the existing {CONFIG_FILE}")]
    OrgMismatch { given: String, existing: String },
    #[error("--server: {0}")]
    BadServer(String),
    #[error("key material already exists: {}", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    KeysExist(Vec<PathBuf>),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Anchors(#[from] crate::anchors::AnchorsError),
    #[error(transparent)]
    Io(#[from] FsError),
}

impl InitError {
    pub fn help(&self) -> &'static str {
        match self {
            Self::MissingOrg => "e.g. `fleetkit init acme --org acme-corp`",
            Self::OrgMismatch { .. } => "omit --org to keep the workspace's org",
            Self::BadServer(_) => "give an https:// URL such as https://fleet.example.com:8443",
            Self::KeysExist(_) => {
                "keep them, or pass --force to replace them: every artefact built with the old keys stops verifying"
            }
            Self::Config(_) => "fix fleetkit.yaml as shown",
            _ => "",
        }
    }
}

/// Creates (or completes) the workspace at `dir`.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<InitReport, InitError> {
    let config_path = dir.join(CONFIG_FILE);
    let existing = if config_path.is_file() {
        Some(config::load(&config_path).map_err(InitError::Config)?)
    } else {
        None
    };
    let org = match (&existing, &opts.org) {
        (Some(c), Some(given)) if &c.org != given => {
            return Err(InitError::OrgMismatch {
                given: given.clone(),
                existing: c.org.clone(),
            });
        }
        (Some(c), _) => c.org.clone(),
        (None, Some(given)) => given.clone(),
        (None, None) => return Err(InitError::MissingOrg),
    };
    if org.trim().is_empty()
        || org.chars().count() > 128
        || org.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(InitError::BadOrg);
    }
    let server_url = match &opts.server_url {
        Some(u) => config::check_https_url(u).map_err(InitError::BadServer)?,
        None => DEFAULT_SERVER_URL.to_string(),
    };

    let keys_dir = paths::keys(dir);
    let existing_keys = existing_key_material(dir);
    if !existing_keys.is_empty() && !opts.force {
        return Err(InitError::KeysExist(existing_keys));
    }
    let previous_anchors_version = crate::anchors::load(&paths::anchors(dir))
        .map(|a| a.version)
        .unwrap_or(0);

    // Generate everything before writing anything.
    let now = crate::clock::now();
    let policy_key = PolicyKey::generate()?;
    let ca = OrgCa::generate(&org, now)?;
    let anchors = TrustAnchors {
        org: org.clone(),
        version: previous_anchors_version + 1,
        threshold: 1,
        keys: vec![AnchorKey::new(&policy_key, now, None)],
        root_ca: vec![ca.root_cert_pem()],
    };
    anchors.validate()?;

    let mut created = Vec::new();
    let mut kept = Vec::new();
    let policy_path = dir.join(
        existing
            .as_ref()
            .map_or("policy.yaml", |c| c.policy.file.as_str()),
    );
    if existing.is_none() {
        fsutil::write_atomic(
            &config_path,
            config::starter_config(&org, &server_url).as_bytes(),
            PUBLIC_MODE,
        )?;
        created.push(config_path.clone());
    } else {
        kept.push(config_path.clone());
    }
    if policy_path.exists() {
        kept.push(policy_path);
    } else {
        let text = crate::policy::starter_policy(&org, now.date());
        fsutil::write_atomic(&policy_path, text.as_bytes(), PUBLIC_MODE)?;
        created.push(policy_path);
    }

    if opts.force {
        remove_old_policy_keys(&keys_dir)?;
    }
    let key_path = paths::policy_key(dir, &policy_key.keyid());
    policy_key.save(&key_path)?;
    created.push(key_path);
    created.extend(ca.write(&keys_dir, opts.force)?);
    let anchors_path = paths::anchors(dir);
    crate::anchors::save(&anchors, &anchors_path)?;
    created.push(anchors_path);

    Ok(InitReport {
        root: dir.to_path_buf(),
        org,
        created,
        kept,
        policy_keyid: policy_key.keyid(),
        root_ca_fingerprint: ca.root_fingerprint(),
        issuing_ca_fingerprint: ca.issuing_fingerprint(),
    })
}

/// Key files and anchors that `init` would replace.
fn existing_key_material(dir: &Path) -> Vec<PathBuf> {
    let keys_dir = paths::keys(dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&keys_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "key" || x == "pem"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    let anchors = paths::anchors(dir);
    if anchors.exists() {
        found.push(anchors);
    }
    found
}

fn remove_old_policy_keys(keys_dir: &Path) -> Result<(), FsError> {
    let Ok(rd) = std::fs::read_dir(keys_dir) else {
        return Ok(());
    };
    for entry in rd.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("policy-") && name.ends_with(".key") {
            std::fs::remove_file(entry.path())
                .map_err(|e| FsError::new("cannot remove", &entry.path(), e))?;
        }
    }
    Ok(())
}

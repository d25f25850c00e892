//! The org workspace on disk, found like git finds a repository: from the current
//! directory upwards, or from `--workspace DIR`.
//!
//! ```text
//! <workspace>/
//!   fleetkit.yaml     settings (config.rs)
//!   policy.yaml       the org policy (policy module)
//!   anchors.json      public trust anchors: policy keys, threshold, root CA
//!   keys/             policy-<keyid>.key (Ed25519, 0600), root-ca.{pem,key}, issuing-ca.{pem,key}
//!   bundles/          signed policy bundles, policy-v<N>.json
//!   rotations/        signed anchors documents, anchors-v<N>.json (the rotation chain)
//!   state.json        the last signed policy version
//!   agents/           agent binaries for `fleetkit build`, fleetkit-<platform>[.exe] (optional)
//! ```

pub mod config;
#[cfg(feature = "admin")]
pub mod init;
#[cfg(feature = "admin")]
pub mod rotate;
#[cfg(feature = "admin")]
pub mod sign;
#[cfg(feature = "admin")]
pub mod state;
#[cfg(feature = "admin")]
pub mod verify;

use crate::diag::Diagnostics;
use config::{CONFIG_FILE, Config};
use std::path::{Path, PathBuf};

/// An opened workspace: its root and validated settings.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub config: Config,
}

/// Why a workspace could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("no fleetkit workspace (a directory with {CONFIG_FILE}) in {start} or any parent")]
    NotFound { start: PathBuf },
    #[error("{0}")]
    Config(Diagnostics),
}

pub type Result<T, E = WorkspaceError> = std::result::Result<T, E>;

impl WorkspaceError {
    /// What the user should do next.
    pub fn help(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => {
                "run the command inside a workspace, pass --workspace DIR, or create one with `fleetkit init DIR --org ORG`"
            }
            Self::Config(_) => "fix fleetkit.yaml as shown",
        }
    }
}

impl Workspace {
    /// Finds the workspace containing `start` (or `start` itself) and loads it.
    pub fn discover(start: &Path) -> Result<Self> {
        let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
        let mut dir = Some(start.as_path());
        while let Some(d) = dir {
            if d.join(CONFIG_FILE).is_file() {
                return Self::open(d);
            }
            dir = d.parent();
        }
        Err(WorkspaceError::NotFound { start })
    }

    /// Opens the workspace rooted exactly at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let config_path = root.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(WorkspaceError::NotFound {
                start: root.to_path_buf(),
            });
        }
        let config = config::load(&config_path).map_err(WorkspaceError::Config)?;
        Ok(Self {
            root: root.to_path_buf(),
            config,
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    pub fn policy_path(&self) -> PathBuf {
        self.root.join(&self.config.policy.file)
    }
    pub fn anchors_path(&self) -> PathBuf {
        paths::anchors(&self.root)
    }
    pub fn keys_dir(&self) -> PathBuf {
        paths::keys(&self.root)
    }
    pub fn bundles_dir(&self) -> PathBuf {
        self.root.join("bundles")
    }
    pub fn rotations_dir(&self) -> PathBuf {
        self.root.join("rotations")
    }
    /// Agent binaries found without flags: `fleetkit-<platform>[.exe]`.
    pub fn agents_dir(&self) -> PathBuf {
        self.root.join("agents")
    }
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// Where `policy sign` puts version `v`.
    pub fn bundle_path(&self, version: u64) -> PathBuf {
        self.bundles_dir().join(format!("policy-v{version}.json"))
    }
}

/// Paths inside a workspace root, usable before a config exists (`init`).
pub mod paths {
    use std::path::{Path, PathBuf};

    pub fn anchors(root: &Path) -> PathBuf {
        root.join("anchors.json")
    }
    pub fn keys(root: &Path) -> PathBuf {
        root.join("keys")
    }
    /// The private key file of the policy key with this key id.
    pub fn policy_key(root: &Path, keyid: &str) -> PathBuf {
        keys(root).join(format!("policy-{}.key", &keyid[..keyid.len().min(16)]))
    }
}

//! The device side (`fleetkit agent …`): registration, machine-certificate enrollment,
//! the device manifest and its channel mirrors, policy sync with offline modes.
//!
//! - [`paths`]: every on-device path per platform, under an optional root prefix;
//! - [`settings`]: `agent.yaml`, the install-time settings;
//! - [`facts`]: sysinfo facts and the stable machine id;
//! - [`identity`]: the device key, CSR and the check of the returned chain;
//! - [`client`]: HTTPS to the server, trusting only the installed root CA;
//! - [`state`]: `state.json` between runs;
//! - [`policy_cache`]: the verified policy in force and its atomic swap;
//! - [`offline`]: the offline modes as one pure decision;
//! - [`manifest`]: the device manifest and its fact mirrors;
//! - [`register`], [`sync`], [`status`]: the commands;
//! - [`audit`]: the audit records of its own runs and the upkeep of the log;
//! - [`siem`]: forwarding the audit log to the org's SIEM;
//! - [`rotation`]: following the org's key rotation chain before a bundle is verified;
//! - [`windows`]: the MSI's enrollment values, the device's registry record and the
//!   machine Root store, on Windows.
//!
//! Trust comes only from the anchors installed with the artefact, or a rotation chain
//! signed by them (DESIGN.md rule 1): the server's TLS certificate, the machine
//! certificate it returns and every policy bundle are checked against them, never
//! against what the server says.

pub mod audit;
pub mod claude_code;
pub mod client;
pub mod facts;
pub mod identity;
pub mod manifest;
pub mod offline;
pub mod paths;
pub mod policy_cache;
pub mod register;
pub mod rotation;
pub mod settings;
pub mod siem;
pub mod state;
pub mod status;
pub mod sync;
pub mod windows;

use crate::anchors::{self, TrustAnchors};
use crate::bundle::BundleError;
use crate::fsutil::FsError;
use crate::protocol::ErrorCode;
use paths::{AgentPaths, Platform};
use settings::AgentSettings;
use state::AgentState;
use std::path::Path;

/// Why an agent command did not do what was asked. Every variant keeps the device's
/// current state: nothing is half written.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error("the installed trust anchors cannot be used: {0}")]
    Anchors(#[from] anchors::AnchorsError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("this device is not registered yet")]
    NotRegistered,
    #[error("no enrollment token was given")]
    NoToken,
    #[error("registration is pending: {reason}")]
    Pending { reason: String },
    #[error("the server refused the registration ({code}): {message}")]
    EnrollRefused { code: ErrorCode, message: String },
    #[error("the server refused ({code}): {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("{0}")]
    Server(String),
    #[error("the machine certificate expired at {at}")]
    CertificateExpired { at: String },
    #[error("the server's policy bundle was refused, the current policy stays in force: {0}")]
    BundleRejected(BundleError),
    #[error(
        "the server's key rotation{} was refused, the installed anchors v{installed} stay in force: {source}",
        claimed.map_or(String::new(), |v| format!(" to anchors v{v}"))
    )]
    RotationRefused {
        installed: u64,
        /// The version the refused step claims (unverified).
        claimed: Option<u64>,
        source: anchors::AnchorsError,
    },
    #[error("{0}")]
    Platform(String),
    #[error("cannot reach the server: {reason}; {in_force}")]
    Offline {
        reason: String,
        /// What the offline mode decided, in words.
        in_force: String,
    },
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    /// What to do about it.
    pub fn help(&self) -> String {
        match self {
            Self::Settings(_) => "the installer writes agent.yaml; reinstall, or fix the named field".into(),
            Self::Anchors(_) => "the trust anchors come with the installer; reinstall the artefact".into(),
            Self::NotRegistered => "run `fleetkit agent register` first".into(),
            Self::NoToken => "pass --token, set FLEETKIT_ENROLL_TOKEN, or let the installer write the token file; create a token with `fleetkit token create`".into(),
            Self::Pending { .. } => "the device will finish registering on the next `agent register` or `agent sync`".into(),
            Self::Refused {
                code: ErrorCode::RedirectRefused,
                ..
            }
            | Self::EnrollRefused {
                code: ErrorCode::RedirectRefused,
                ..
            } => {
                "the agent talks only to server_url, over https, and follows no redirect: set server_url (agent.yaml or the managed preference) to the server's own address, or remove the redirect in front of it".into()
            }
            Self::EnrollRefused { code, .. } => match code {
                c if c.is_token_problem() => {
                    "ask IT for a fresh enrollment token (`fleetkit token create`)".into()
                }
                ErrorCode::TeamMismatch => "register with the token's team, or ask IT for a token of this team".into(),
                ErrorCode::DeviceExists => "this machine id is enrolled by another key: if the machine was re-imaged, IT removes the old device (`fleetkit devices remove`) or gives a token made with `--replace-existing`".into(),
                _ => "see the server's reason above".into(),
            },
            Self::Refused {
                code: ErrorCode::UnknownCertificate,
                ..
            } => {
                "the server no longer knows this device: `fleetkit agent register --force` with a fresh token".into()
            }
            Self::Refused {
                code: ErrorCode::BadPolicyVersion,
                ..
            } => {
                "the device holds a newer policy than the server publishes (it came with the installer): IT publishes it with `fleetkit policy publish`".into()
            }
            Self::CertificateExpired { .. } => "the device was offline past its certificate's lifetime: `fleetkit agent register --force` with a fresh enrollment token".into(),
            Self::BundleRejected(_) => "IT must publish a bundle signed by the org's keys; nothing was changed on this device".into(),
            Self::RotationRefused { .. } => "IT must publish rotations signed by the org's keys (`fleetkit policy publish` sends the workspace's rotations/); nothing was changed on this device".into(),
            Self::Offline { .. } => "the agent tries again at its next run".into(),
            _ => String::new(),
        }
    }

    /// A stable reason code, for `--json` output and the state file.
    pub fn code(&self) -> String {
        match self {
            Self::Settings(_) => "settings".into(),
            Self::Anchors(_) => "anchors".into(),
            Self::State(_) => "state".into(),
            Self::Identity(_) => "identity".into(),
            Self::Fs(_) => "filesystem".into(),
            Self::NotRegistered => "not-registered".into(),
            Self::NoToken => "no-token".into(),
            Self::Pending { .. } => "pending".into(),
            Self::EnrollRefused { code, .. } | Self::Refused { code, .. } => {
                format!("refused:{code}")
            }
            Self::Server(_) => "server".into(),
            Self::Platform(_) => "platform".into(),
            Self::CertificateExpired { .. } => "certificate-expired".into(),
            Self::BundleRejected(e) => format!("rejected:{}", e.code()),
            Self::RotationRefused { .. } => "rotation-refused".into(),
            Self::Offline { .. } => "unreachable".into(),
        }
    }
}

/// The agent on one device (or under one root prefix).
pub struct Agent {
    /// Held for the agent's lifetime: one agent at a time per device, so that a
    /// timer-started sync and a manual one never interleave their writes. `None`
    /// when opened to read only ([`Agent::open_to_read`]).
    lock: Option<std::fs::File>,
    pub paths: AgentPaths,
    pub settings: AgentSettings,
    pub anchors: TrustAnchors,
    pub state: AgentState,
}

impl Agent {
    /// Opens the agent installed under `root` (`/` on a real device).
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with(AgentPaths::new(root, Platform::current()))
    }

    pub fn open_with(paths: AgentPaths) -> Result<Self> {
        Self::load(paths, true)
    }

    /// Opens the agent to read the policy in force and nothing else, without its
    /// lock: what Claude Code's hook does, as the user running Claude Code, who may
    /// not write the data directory (and needs no lock: every file the agent
    /// replaces is swapped in whole, so a reader sees the old file or the new one).
    /// Such an agent never saves its state.
    pub fn open_to_read(root: &Path) -> Result<Self> {
        Self::load(AgentPaths::new(root, Platform::current()), false)
    }

    /// Reads the settings and anchors, then (`lock`) takes the agent lock: a
    /// device whose settings are wrong says so at once instead of waiting for
    /// another run to end.
    fn load(paths: AgentPaths, lock: bool) -> Result<Self> {
        let mut settings = AgentSettings::load(&paths.settings)?;
        if let (Some(dir), Some(domain)) = (
            &paths.managed_preferences,
            &settings.managed_preferences_domain,
        ) {
            let file = dir.join(format!("{domain}.plist"));
            if file.exists() {
                let invalid = |reason: String| {
                    AgentError::Settings(settings::SettingsError::Invalid {
                        path: file.display().to_string(),
                        reason,
                    })
                };
                let value = plist::Value::from_file(&file).map_err(|e| invalid(e.to_string()))?;
                let dict = value
                    .as_dictionary()
                    .ok_or_else(|| invalid("not a dictionary".into()))?;
                settings.apply_managed_preferences(dict).map_err(invalid)?;
            }
        }
        let anchors = anchors::load(&paths.anchors)?;
        if anchors.org != settings.org {
            return Err(AgentError::Settings(settings::SettingsError::Invalid {
                path: paths.settings.display().to_string(),
                reason: format!(
                    "`org` is `{}` but the installed trust anchors are for `{}`",
                    settings.org, anchors.org
                ),
            }));
        }
        let lock = if lock {
            Some(lock_data_dir(&paths.data_dir)?)
        } else {
            None
        };
        // With the lock held (or reading only): no run of ours is writing the kept
        // rotation steps, and each is written whole.
        let anchors = rotation::anchors_in_force(&paths, anchors, crate::clock::now());
        let state = AgentState::load(&paths.state)?;
        Ok(Self {
            lock,
            paths,
            settings,
            anchors,
            state,
        })
    }

    /// The root CA certificates of the anchors in force.
    pub fn roots(&self) -> &[String] {
        &self.anchors.root_ca
    }

    fn save_state(&self) -> Result<()> {
        if self.lock.is_none() {
            return Err(AgentError::Fs(FsError::new(
                "opened to read only, will not write",
                &self.paths.state,
                std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            )));
        }
        self.state.save(&self.paths.state)?;
        Ok(())
    }
}

/// Takes the device's agent lock (`<data>/agent.lock`, waiting for another agent
/// run to end), then removes temporary files a killed run left behind: with the
/// lock held, no other run can be writing them.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| FsError::new("cannot create directory", data_dir, e))?;
    // Others may pass through (Claude Code's hook, run as the user, reads the
    // policy in force by name) but not list it; the keys in it are 0600. Older
    // installers made it 0700, which this heals at the next run.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o711));
    }
    let path = data_dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| FsError::new("cannot open", &path, e))?;
    file.lock()
        .map_err(|e| FsError::new("cannot lock", &path, e))?;
    // Every run as the agent makes sure the hook, run as a user, has an inbox to
    // hand its audit records to (the folder is root's, 1733).
    let _ = crate::audit::inbox::prepare(&data_dir.join("audit-inbox"));
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(crate::fsutil::TEMP_PREFIX)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(file)
}

//! The payload every target carries, built once per build and handed to each
//! target read-only: the newest signed bundle (verified here, so a broken bundle is
//! never shipped), the trust anchors, the root CA certificate, the agent settings
//! and one agent binary per platform.
//!
//! Agents are found without flags; each source overrides the one before it:
//!
//! ```text
//! the running fleetkit           the build host's platform only, a last resort (the
//!                                full admin build: a note says so)
//! <workspace>/agents/fleetkit-<platform>[.exe]   what scripts/build-agents.sh writes
//! agents: in fleetkit.yaml       paths relative to the workspace
//! --agent PLATFORM=PATH
//! ```
//!
//! Every agent read is checked ([`super::agent_check`]) before anything is built:
//! an [`AgentBinary`] only exists for an executable of its platform.

use super::agent_check::{self, Refused};
use super::scep::{self, ScepEnrollment};
use super::{BuildError, Result};
use crate::agent::settings::{AgentSettings, Assignment, check_label};
use crate::bundle::{self, MAX_BUNDLE_BYTES, Verified, VerifyOptions};
use crate::fsutil;
use crate::pki::fingerprint_pem;
use crate::platform::{Os, Platform};
use crate::workspace::Workspace;
use crate::workspace::config::MacosEnrollment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;

/// Largest agent binary accepted (a release build is ~15 MB).
const MAX_AGENT_BYTES: u64 = 512 * 1024 * 1024;

/// Which of the sources an agent was found in (the module comment lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentOrigin {
    /// The running fleetkit, for the build host's platform.
    HostBinary,
    /// `<workspace>/agents/fleetkit-<platform>[.exe]`.
    WorkspaceAgents,
    /// `agents:` in fleetkit.yaml.
    Config,
    /// `--agent PLATFORM=PATH`.
    Flag,
}

impl AgentOrigin {
    /// How `fleetkit inspect` says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::HostBinary => "the fleetkit that built it (full admin build)",
            Self::WorkspaceAgents => "the workspace's agents/ folder",
            Self::Config => "agents: in fleetkit.yaml",
            Self::Flag => "--agent",
        }
    }
}

/// One agent binary, checked to be an executable of its platform.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    pub platform: Platform,
    /// Shared by every target that ships it: read and hashed once.
    pub bytes: Arc<Vec<u8>>,
    /// The path it was read from.
    pub source: String,
    pub origin: AgentOrigin,
    digest: Arc<BackgroundDigest>,
}

impl AgentBinary {
    /// Checks `bytes` ([`agent_check`]); nothing else is read: they are hashed on a
    /// background thread from here on, so that hashing a 20 MB binary overlaps the
    /// targets' work instead of preceding it.
    pub fn new(
        platform: Platform,
        bytes: Vec<u8>,
        source: String,
        origin: AgentOrigin,
    ) -> Result<Self, Refused> {
        agent_check::check(platform, &bytes)?;
        let bytes = Arc::new(bytes);
        Ok(Self {
            digest: Arc::new(BackgroundDigest::start(Arc::clone(&bytes))),
            platform,
            bytes,
            source,
            origin,
        })
    }

    /// `sha256:<hex>` of the binary (waits for the background hash).
    pub fn sha256(&self) -> &str {
        self.digest.get()
    }
}

/// A SHA-256 computed on its own thread, waited for when first asked.
#[derive(Debug)]
struct BackgroundDigest {
    bytes: Arc<Vec<u8>>,
    pending: std::sync::Mutex<Option<std::thread::JoinHandle<String>>>,
    value: std::sync::OnceLock<String>,
}

impl BackgroundDigest {
    fn start(bytes: Arc<Vec<u8>>) -> Self {
        let for_thread = Arc::clone(&bytes);
        let pending = std::thread::Builder::new()
            .name("agent-sha256".into())
            .spawn(move || sha256(&for_thread))
            .ok();
        Self {
            bytes,
            pending: std::sync::Mutex::new(pending),
            value: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> &str {
        self.value.get_or_init(|| {
            let handle = self.pending.lock().ok().and_then(|mut p| p.take());
            // No thread (spawn failed) or a failed one: hash here.
            handle
                .and_then(|h| h.join().ok())
                .unwrap_or_else(|| sha256(&self.bytes))
        })
    }
}

/// What every artefact carries.
#[derive(Debug, Clone)]
pub struct Payload {
    pub org: String,
    pub display_name: String,
    pub identifier_prefix: String,
    pub server_url: String,
    /// `Name <address>` of whoever maintains the Linux packages.
    pub maintainer: String,
    /// How macOS devices get their machine certificate through the profile.
    pub macos_enrollment: MacosEnrollment,
    /// The profile's SCEP enrollment, when `macos_enrollment` is SCEP and a
    /// challenge was given; without it the profile carries no certificate payload.
    pub scep: Option<ScepEnrollment>,
    /// The agent settings as installed on a device (`agent.yaml`), with the team
    /// given to `build --team`, if any.
    pub settings: AgentSettings,
    pub bundle: Arc<Vec<u8>>,
    pub bundle_version: u64,
    pub bundle_expires_at: OffsetDateTime,
    pub bundle_sha256: String,
    /// The signed bundle's policy (what devices will enforce).
    pub policy: Arc<crate::policy::OrgPolicy>,
    pub anchors_json: Arc<Vec<u8>>,
    /// Key ids of the policy keys in the anchors.
    pub anchor_keyids: Vec<String>,
    pub root_ca_pem: String,
    pub root_ca_fingerprint: String,
    pub agents: BTreeMap<Platform, AgentBinary>,
    pub agent_version: String,
    /// `SOURCE_DATE_EPOCH`, or now.
    pub build_time: OffsetDateTime,
    /// Signs the pkg (and the profile) when given.
    pub installer_identity: Option<Arc<crate::pki::installer::InstallerIdentity>>,
    /// What the person building should know about the payload (e.g. that an agent
    /// is the full admin build).
    pub notes: Vec<String>,
    /// Code-signs the darwin agent when given (Developer ID Application); ad hoc
    /// otherwise.
    pub codesign_identity: Option<Arc<crate::pki::installer::InstallerIdentity>>,
    /// Signs the .rpm and the apt repository when given.
    pub package_signing_key: Option<Arc<crate::pki::package_key::PackageSigningKey>>,
    /// The deb target also writes a signed flat apt repository of its packages.
    pub apt_repo: bool,
}

/// What the caller decides about the payload.
#[derive(Debug, Clone, Default)]
pub struct PayloadOptions {
    pub team: Option<String>,
    /// The build host's own binary (the running fleetkit), for its platform: the
    /// last resort, under the workspace's `agents/` folder.
    pub host_agent: Option<PathBuf>,
    /// `--agent PLATFORM=PATH`, over fleetkit.yaml's `agents:`, over the
    /// workspace's `agents/` folder.
    pub agents: BTreeMap<Platform, PathBuf>,
    /// The installer signing identity (PEM: PKCS#8 RSA key + certificate chain; or
    /// PKCS#12).
    pub installer_identity: Option<PathBuf>,
    /// The PKCS#12's password.
    pub installer_identity_password: zeroize::Zeroizing<String>,
    /// The darwin agent's code-signing identity (Developer ID Application), in the
    /// installer identity's forms.
    pub codesign_identity: Option<PathBuf>,
    /// Its PKCS#12's password.
    pub codesign_identity_password: zeroize::Zeroizing<String>,
    /// The OpenPGP package-signing key (`--package-signing-key`, ASCII-armored).
    pub package_signing_key: Option<PathBuf>,
    /// Its passphrase (empty: none).
    pub package_signing_key_passphrase: zeroize::Zeroizing<String>,
    /// `--apt-repo`: the debs as a signed apt repository.
    pub apt_repo: bool,
    /// The file holding the SCEP challenge for the profile (`--scep-challenge-file`).
    pub scep_challenge_file: Option<PathBuf>,
    /// Read only the agents of these OSes (those the requested targets ship); `None`
    /// reads every configured agent. A 20 MB binary no target ships is not read.
    pub agent_oses: Option<Vec<Os>>,
}

/// `sha256:<hex>` of bytes (the fingerprint format used everywhere).
pub use crate::pki::fingerprint_der as sha256;

impl Payload {
    /// Assembles the payload of `ws`.
    pub fn assemble(ws: &Workspace, opts: &PayloadOptions) -> Result<Self> {
        let config = &ws.config;
        let build_time = crate::clock::build_time().map_err(|e| BuildError::Input {
            what: "SOURCE_DATE_EPOCH".into(),
            reason: e.to_string(),
            help: String::new(),
        })?;
        let team = check_label("team", opts.team.clone()).map_err(|reason| BuildError::Input {
            what: "--team".into(),
            reason,
            help: "give the team name as plain text".into(),
        })?;

        let anchors_path = ws.anchors_path();
        let anchors = crate::anchors::load(&anchors_path).map_err(|e| BuildError::Input {
            what: anchors_path.display().to_string(),
            reason: e.to_string(),
            help: "create the workspace with `fleetkit init`".into(),
        })?;
        let anchors_json = anchors.to_json().map_err(|e| BuildError::Input {
            what: anchors_path.display().to_string(),
            reason: e.to_string(),
            help: String::new(),
        })?;

        // The newest signed bundle, verified as a device would (no stored version).
        let state = crate::workspace::state::State::load(&ws.state_path()).map_err(|e| {
            BuildError::Input {
                what: ws.state_path().display().to_string(),
                reason: e.to_string(),
                help: String::new(),
            }
        })?;
        if state.policy_version == 0 {
            return Err(BuildError::Input {
                what: "the workspace".into(),
                reason: "no policy bundle has been signed yet".into(),
                help: "run `fleetkit policy sign` first".into(),
            });
        }
        let bundle_path = ws.bundle_path(state.policy_version);
        let bundle_bytes = read(&bundle_path, MAX_BUNDLE_BYTES as u64)?;
        let verified = bundle::verify_bundle(
            &bundle_bytes,
            &anchors,
            &VerifyOptions {
                now: crate::clock::now(),
                expected_org: Some(&config.org),
                stored_version: None,
            },
        )
        .map_err(|e| BuildError::Input {
            what: bundle_path.display().to_string(),
            reason: e.to_string(),
            help: "sign the policy again with `fleetkit policy sign`".into(),
        })?;
        let Verified::Accepted { payload, .. } = verified else {
            return Err(BuildError::Input {
                what: bundle_path.display().to_string(),
                reason: "unexpected verification answer".into(),
                help: String::new(),
            });
        };

        let policy: crate::policy::OrgPolicy =
            serde_json::from_str(payload.policy.get()).map_err(|e| BuildError::Input {
                what: bundle_path.display().to_string(),
                reason: format!("the bundle's policy cannot be read: {e}"),
                help: "sign the policy again with `fleetkit policy sign`".into(),
            })?;
        let root_ca_pem = anchors
            .root_ca
            .first()
            .cloned()
            .ok_or_else(|| BuildError::Input {
                what: anchors_path.display().to_string(),
                reason: "the anchors hold no root CA certificate".into(),
                help: "recreate the workspace with `fleetkit init`".into(),
            })?;
        let root_ca_fingerprint = fingerprint_pem(&root_ca_pem).unwrap_or_default();

        let (agents, mut notes) = read_agents(ws, opts)?;
        let scep = read_scep(ws, opts, &root_ca_pem, &mut notes)?;

        let settings = AgentSettings {
            org: config.org.clone(),
            server_url: config.server.url.clone(),
            assignment: Assignment {
                team,
                ..Assignment::default()
            },
            offline_mode: config.offline.mode,
            offline_max_age_hours: config.offline.max_age_hours,
            renew_at_percent: config.enrollment.renew_at_percent,
            managed_preferences_domain: None,
            claude_code_settings: Default::default(),
            siem_credential_file: None,
            siem_ca_file: None,
            siem_public_roots: false,
            siem_spool_max_records: crate::agent::siem::MAX_UNSENT,
        };
        let installer_identity = load_identity(
            "--installer-identity",
            opts.installer_identity.as_deref(),
            &opts.installer_identity_password,
            "FLEETKIT_INSTALLER_IDENTITY_PASSWORD",
            build_time,
        )?;
        let codesign_identity = load_identity(
            "--codesign-identity",
            opts.codesign_identity.as_deref(),
            &opts.codesign_identity_password,
            "FLEETKIT_CODESIGN_IDENTITY_PASSWORD",
            build_time,
        )?;
        let package_signing_key = match &opts.package_signing_key {
            None => None,
            Some(path) => {
                let now = u32::try_from(build_time.unix_timestamp().max(0)).unwrap_or(u32::MAX);
                let key = crate::pki::package_key::PackageSigningKey::load(
                    path,
                    opts.package_signing_key_passphrase.clone(),
                    now,
                )
                .map_err(|e| BuildError::Input {
                    what: "--package-signing-key".into(),
                    help: e.help(),
                    reason: e.to_string(),
                })?;
                Some(Arc::new(key))
            }
        };
        Ok(Self {
            installer_identity,
            codesign_identity,
            package_signing_key,
            apt_repo: opts.apt_repo,
            org: config.org.clone(),
            display_name: config.display_name.clone(),
            identifier_prefix: config.identifier_prefix.clone(),
            server_url: config.server.url.clone(),
            maintainer: config
                .packages
                .maintainer
                .clone()
                .unwrap_or_else(|| default_maintainer(&config.server.url)),
            macos_enrollment: config.enrollment.macos_method,
            scep,
            settings,
            bundle_sha256: sha256(&bundle_bytes),
            bundle: Arc::new(bundle_bytes),
            bundle_version: payload.version,
            bundle_expires_at: payload.expires_at,
            policy: Arc::new(policy),
            anchors_json: Arc::new(anchors_json),
            anchor_keyids: anchors.keys.iter().map(|k| k.keyid.clone()).collect(),
            root_ca_pem,
            root_ca_fingerprint,
            agents,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            build_time,
            notes,
        })
    }

    /// The agents of one OS, by platform.
    pub fn agents_for(&self, os: Os) -> Vec<&AgentBinary> {
        self.agents
            .values()
            .filter(|a| a.platform.os == os)
            .collect()
    }
}

/// `fleetkit <fleetkit@SERVER-HOST>`: an address of the org's own domain (lintian
/// refuses a maintainer on localhost).
fn default_maintainer(server_url: &str) -> String {
    let host = url::Url::parse(server_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .filter(|h| {
            h.contains('.')
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
        })
        .unwrap_or_else(|| "fleetkit.invalid".into());
    format!("fleetkit <fleetkit@{host}>")
}

/// Where each platform's agent comes from, later sources overriding earlier ones
/// (the module comment); what the user should know about them goes to `notes`.
fn agent_sources(
    ws: &Workspace,
    opts: &PayloadOptions,
    notes: &mut Vec<String>,
) -> Result<BTreeMap<Platform, (PathBuf, AgentOrigin)>> {
    let mut sources = BTreeMap::new();
    if let Some(host) = &opts.host_agent {
        sources.insert(Platform::host(), (host.clone(), AgentOrigin::HostBinary));
    }
    let folder = ws.agents_dir();
    let names: BTreeMap<String, Platform> = Platform::ALL
        .into_iter()
        .map(|p| (p.agent_file_name(), p))
        .collect();
    let mut listing: Vec<_> = std::fs::read_dir(&folder)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    listing.sort();
    for name in listing {
        let name = name.to_string_lossy();
        match names.get(name.as_ref()) {
            Some(platform) => {
                let path = folder.join(name.as_ref());
                sources.insert(*platform, (path, AgentOrigin::WorkspaceAgents));
            }
            None if name.starts_with("fleetkit-") => notes.push(format!(
                "{} is not read: agents are named fleetkit-<platform>, with .exe for Windows ({})",
                folder.join(name.as_ref()).display(),
                Platform::names()
            )),
            None => {}
        }
    }
    for (platform, path) in &ws.config.agents {
        sources.insert(*platform, (ws.root.join(path), AgentOrigin::Config));
    }
    for (platform, path) in &opts.agents {
        sources.insert(*platform, (path.clone(), AgentOrigin::Flag));
    }
    Ok(sources)
}

/// Reads and checks the agents the requested targets ship.
fn read_agents(
    ws: &Workspace,
    opts: &PayloadOptions,
) -> Result<(BTreeMap<Platform, AgentBinary>, Vec<String>)> {
    let mut notes = Vec::new();
    let sources = agent_sources(ws, opts, &mut notes)?;
    let needed = |platform: &Platform| {
        opts.agent_oses
            .as_ref()
            .is_none_or(|oses| oses.contains(&platform.os))
    };
    let mut agents = BTreeMap::new();
    for (platform, (path, origin)) in sources.into_iter().filter(|(p, _)| needed(p)) {
        let bytes = read(&path, MAX_AGENT_BYTES)?;
        let agent = AgentBinary::new(platform, bytes, path.display().to_string(), origin).map_err(
            |refused| BuildError::Input {
                what: path.display().to_string(),
                reason: refused.to_string(),
                help: refused.help(),
            },
        )?;
        if origin == AgentOrigin::HostBinary {
            notes.push(format!(
                "the {platform} agent is this fleetkit ({}), the full admin build; for the lean device agent run `scripts/build-agents.sh {platform}` and copy target/agents/ into the workspace as agents/",
                path.display()
            ));
        }
        agents.insert(platform, agent);
    }
    Ok((agents, notes))
}

/// The SCEP challenge and the issuing CA the profile pins, when a challenge file
/// was given and the profile enrolls over SCEP. A given file is checked whatever
/// the method, so a broken one is found at once.
fn read_scep(
    ws: &Workspace,
    opts: &PayloadOptions,
    root_ca_pem: &str,
    notes: &mut Vec<String>,
) -> Result<Option<ScepEnrollment>> {
    let Some(path) = &opts.scep_challenge_file else {
        return Ok(None);
    };
    let input = |what: &str, e: scep::ScepError| BuildError::Input {
        what: what.into(),
        help: e.help(),
        reason: e.to_string(),
    };
    let challenge = scep::read_challenge(path).map_err(|e| input("--scep-challenge-file", e))?;
    let method = ws.config.enrollment.macos_method;
    if method != MacosEnrollment::Scep {
        notes.push(format!(
            "the SCEP challenge is not used: fleetkit.yaml's enrollment.macos_method is `{}`",
            method.as_str()
        ));
        return Ok(None);
    }
    let issuing = ws.keys_dir().join(crate::pki::ISSUING_CA_CERT);
    let issuing_ca_der = scep::read_issuing_ca(&issuing, root_ca_pem)
        .map_err(|e| input("the CA the profile's SCEP payload pins", e))?;
    Ok(Some(ScepEnrollment {
        challenge,
        issuing_ca_der,
    }))
}

/// A signing identity given as `flag`: PEM or PKCS#12 opened with `password` (from
/// the environment variable `password_var`).
fn load_identity(
    flag: &str,
    path: Option<&Path>,
    password: &str,
    password_var: &str,
    build_time: OffsetDateTime,
) -> Result<Option<Arc<crate::pki::installer::InstallerIdentity>>> {
    let Some(path) = path else { return Ok(None) };
    crate::pki::installer::InstallerIdentity::load(path, password, build_time)
        .map(|identity| Some(Arc::new(identity)))
        .map_err(|e| BuildError::Input {
            what: flag.into(),
            reason: e.to_string(),
            help: format!("give a PEM file with the PKCS#8 RSA private key and the certificate chain (leaf first), or a .p12 with {password_var} set"),
        })
}

fn read(path: &Path, max: u64) -> Result<Vec<u8>> {
    fsutil::read_capped(path, max).map_err(|e| BuildError::Input {
        what: path.display().to_string(),
        reason: e.to_string(),
        help: String::new(),
    })
}

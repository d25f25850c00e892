//! Where the agent reads and writes on each platform, all under an optional root
//! prefix (`--root DIR`) so that tests and staging never touch the real system.
//!
//! | what | Linux | macOS | Windows |
//! |---|---|---|---|
//! | installed config (`agent.yaml`, `anchors.json`, `bundle.json`) | `/etc/fleetkit` | `/Library/Application Support/fleetkit` | `C:\ProgramData\fleetkit` |
//! | state, identity, cached policy, manifest | `/var/lib/fleetkit` | `/Library/Application Support/fleetkit/data` | `C:\ProgramData\fleetkit\data` |
//! | Ansible local fact | `/etc/ansible/facts.d/fleetkit.fact` | same | — |
//! | Puppet external fact | `/etc/puppetlabs/facter/facts.d/fleetkit.json` | same | `C:\ProgramData\PuppetLabs\facter\facts.d\fleetkit.json` |
//! | Chef Ohai hint | `/etc/chef/ohai/hints/fleetkit.json` | same | `C:\chef\ohai\hints\fleetkit.json` |

use std::path::{Path, PathBuf};

/// The platform whose conventions the paths follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Linux,
    Macos,
    Windows,
}

impl Platform {
    /// The platform this binary runs on (other Unixes use the Linux layout).
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Self::Macos
        } else if cfg!(windows) {
            Self::Windows
        } else {
            Self::Linux
        }
    }
}

/// Every path the agent uses.
#[derive(Debug, Clone)]
pub struct AgentPaths {
    /// The root prefix (`/` on a real system).
    pub root: PathBuf,
    /// Whose conventions these are.
    pub platform: Platform,
    /// Install-time settings written by the artefact.
    pub settings: PathBuf,
    /// The trust anchors installed with the artefact. Owned by the installer or the
    /// configuration management that put it there: the agent never writes it.
    pub anchors: PathBuf,
    /// The rotation steps the agent followed past the installed anchors
    /// (`anchors-v<N>.json`, the signed envelopes): re-walked from the installed
    /// anchors at every start, so a reinstalled (older) `anchors.json` cannot undo a
    /// rotation, and nothing here is believed without its signatures.
    pub rotations_dir: PathBuf,
    /// A public copy of the anchors in force (installed + followed), for people
    /// and tools; never read back as a source of trust.
    pub anchors_in_force: PathBuf,
    /// The bundle shipped with the artefact: the first policy, and the default policy
    /// of the `default-policy` offline mode.
    pub shipped_bundle: PathBuf,
    /// An enrollment token left by the installer (0600), read once and then deleted.
    pub token_file: PathBuf,
    /// The agent's own directory.
    pub data_dir: PathBuf,
    /// `state.json`: enrollment, policy version, last sync.
    pub state: PathBuf,
    /// The device key and its certificate chain in one file (0600), so that they are
    /// always swapped together.
    pub identity: PathBuf,
    /// The key waiting for enrollment (0600) while the server cannot be reached.
    pub pending_key: PathBuf,
    /// The key of a renewal in flight (0600), kept until its certificate is saved so
    /// that a renewal whose answer was lost is sent again with the same key.
    pub renewing_key: PathBuf,
    /// A public copy of the certificate chain, for tools that want to read it.
    pub certificate: PathBuf,
    /// The exact bytes of the policy bundle in force.
    pub policy: PathBuf,
    /// A machine id made up here when the platform has no hardware id to read.
    pub local_machine_id: PathBuf,
    /// The device manifest (ADR-002 "Machine manifest").
    pub manifest: PathBuf,
    /// Claude Code's managed settings, which the agent keeps in step with the policy.
    pub claude_settings: PathBuf,
    /// `None` on Windows, where Ansible does not read local facts.
    pub ansible_fact: Option<PathBuf>,
    pub puppet_fact: PathBuf,
    pub chef_hint: PathBuf,
    /// macOS: where the MDM's managed preferences land.
    pub managed_preferences: Option<PathBuf>,
    /// Where the platform keeps its hardware id (Linux `/etc/machine-id`); `None`
    /// where it is read through a command (macOS `ioreg`, Windows registry).
    pub platform_machine_id: Option<PathBuf>,
}

impl AgentPaths {
    /// The paths of `platform` under `root`.
    pub fn new(root: &Path, platform: Platform) -> Self {
        let at = |p: &str| under(root, p);
        let (config, data, puppet, chef, claude) = match platform {
            Platform::Linux => (
                at("/etc/fleetkit"),
                at("/var/lib/fleetkit"),
                at("/etc/puppetlabs/facter/facts.d/fleetkit.json"),
                at("/etc/chef/ohai/hints/fleetkit.json"),
                at("/etc/claude-code/managed-settings.json"),
            ),
            Platform::Macos => (
                at("/Library/Application Support/fleetkit"),
                at("/Library/Application Support/fleetkit/data"),
                at("/etc/puppetlabs/facter/facts.d/fleetkit.json"),
                at("/etc/chef/ohai/hints/fleetkit.json"),
                at("/Library/Application Support/ClaudeCode/managed-settings.json"),
            ),
            Platform::Windows => (
                at("ProgramData/fleetkit"),
                at("ProgramData/fleetkit/data"),
                at("ProgramData/PuppetLabs/facter/facts.d/fleetkit.json"),
                at("chef/ohai/hints/fleetkit.json"),
                at("Program Files/ClaudeCode/managed-settings.json"),
            ),
        };
        Self {
            root: root.to_path_buf(),
            platform,
            settings: config.join("agent.yaml"),
            anchors: config.join("anchors.json"),
            rotations_dir: data.join("rotations"),
            anchors_in_force: data.join("anchors.json"),
            shipped_bundle: config.join("bundle.json"),
            token_file: config.join("enroll-token"),
            state: data.join("state.json"),
            identity: data.join("identity.pem"),
            pending_key: data.join("pending-key.pem"),
            renewing_key: data.join("renewing-key.pem"),
            certificate: data.join("certificate.pem"),
            policy: data.join("policy.json"),
            local_machine_id: data.join("machine-id"),
            manifest: data.join("manifest.yaml"),
            claude_settings: claude,
            data_dir: data,
            ansible_fact: (platform != Platform::Windows)
                .then(|| at("/etc/ansible/facts.d/fleetkit.fact")),
            puppet_fact: puppet,
            chef_hint: chef,
            platform_machine_id: (platform == Platform::Linux).then(|| at("/etc/machine-id")),
            managed_preferences: (platform == Platform::Macos)
                .then(|| at("/Library/Managed Preferences")),
        }
    }

    /// True when the paths are the real system's (no prefix).
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// `path` (absolute, written with `/` in the table above) re-rooted under `root`,
/// one component at a time so that Windows paths use `\\` throughout.
fn under(root: &Path, path: &str) -> PathBuf {
    let mut out = if cfg!(windows) && root == Path::new("/") {
        // On Windows the real root is the system drive.
        let drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
        PathBuf::from(format!("{drive}\\"))
    } else {
        root.to_path_buf()
    };
    out.extend(path.split('/').filter(|c| !c.is_empty()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_lands_under_the_root_prefix() {
        let p = AgentPaths::new(Path::new("/tmp/x"), Platform::Linux);
        for path in [
            &p.settings,
            &p.anchors,
            &p.state,
            &p.identity,
            &p.policy,
            &p.manifest,
            p.ansible_fact.as_ref().unwrap(),
            &p.puppet_fact,
            &p.chef_hint,
        ] {
            assert!(path.starts_with("/tmp/x"), "{}", path.display());
        }
        let windows = AgentPaths::new(Path::new("/w"), Platform::Windows);
        assert_eq!(
            windows.ansible_fact, None,
            "Ansible reads no local facts on Windows"
        );
        assert_eq!(
            windows.manifest,
            Path::new("/w/ProgramData/fleetkit/data/manifest.yaml")
        );
        assert_eq!(p.state, Path::new("/tmp/x/var/lib/fleetkit/state.json"));
        let mac = AgentPaths::new(Path::new("/r"), Platform::Macos);
        assert_eq!(
            mac.manifest,
            Path::new("/r/Library/Application Support/fleetkit/data/manifest.yaml")
        );
    }
}

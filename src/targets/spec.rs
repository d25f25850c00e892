//! The one description of every target: its name (`--target`, `targets:` in
//! fleetkit.yaml), its folder in the build output, the agents it ships, what it is
//! (help texts) and the functions that check and build it. Adding a target is one
//! row here plus its module; the CLI, the config reader, the payload (which agents
//! to read) and the build take everything from this table.
//!
//! The names and folders are compiled into the lean agent too (fleetkit.yaml is
//! read by code it shares); the build functions only into the admin build.

use crate::platform::Os;
use serde::Serialize;

#[cfg(feature = "admin")]
use super::{Artefact, Builder, Result};
#[cfg(feature = "admin")]
use crate::build::payload::Payload;

/// The artefacts fleetkit builds: a closed set, in the order of [`TARGETS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Pkg,
    Mobileconfig,
    Msi,
    Intunewin,
    Ansible,
    Chef,
    Puppet,
    Deb,
    Rpm,
    ClaudeCode,
}

/// What one target is.
pub struct TargetSpec {
    pub target: Target,
    pub name: &'static str,
    /// Its folder in the build output (several targets may share one).
    pub dir: &'static str,
    /// The OS whose agents it ships (`None`: it ships none).
    pub ships: Option<Os>,
    /// One line for help texts.
    pub about: &'static str,
    /// It ships only the lean agent: the running fleetkit (the full admin build, with
    /// the server and builders in it) cannot stand in for a missing one.
    pub lean_agent_only: bool,
    /// It uses what another target built (the [`Builder`]'s MSIs), so it is built
    /// in order on the build's own thread; the others each get a thread.
    pub shares_builder: bool,
    /// Whether it can be built with the payload's settings, checked before anything
    /// is built.
    #[cfg(feature = "admin")]
    pub check: fn(&Payload) -> Result<()>,
    /// Builds it; the [`Builder`] shares work between targets (the .intunewin
    /// wraps the MSI the msi target built).
    #[cfg(feature = "admin")]
    pub build: fn(&mut Builder, &Payload) -> Result<Artefact>,
}

#[cfg(feature = "admin")]
fn no_check(_: &Payload) -> Result<()> {
    Ok(())
}

/// Every target, in the order `all` builds them and help texts list them.
pub const TARGETS: [TargetSpec; 10] = [
    TargetSpec {
        target: Target::Pkg,
        name: "pkg",
        dir: "macos",
        ships: Some(Os::Darwin),
        lean_agent_only: false,
        shares_builder: false,
        about: "signed macOS installer package (Jamf, any MDM)",
        #[cfg(feature = "admin")]
        check: no_check,
        #[cfg(feature = "admin")]
        build: |_, p| super::pkg::build(p),
    },
    TargetSpec {
        target: Target::Mobileconfig,
        name: "mobileconfig",
        dir: "macos",
        ships: None,
        lean_agent_only: false,
        shares_builder: false,
        about: "signed configuration profile: root CA, SCEP machine certificate, managed preferences",
        #[cfg(feature = "admin")]
        check: super::mobileconfig::check,
        #[cfg(feature = "admin")]
        build: |_, p| super::mobileconfig::build(p),
    },
    TargetSpec {
        target: Target::Msi,
        name: "msi",
        dir: "windows",
        ships: Some(Os::Windows),
        lean_agent_only: false,
        shares_builder: true,
        about: "Windows Installer package, one per processor (Intune, GPO, SCCM)",
        #[cfg(feature = "admin")]
        check: no_check,
        #[cfg(feature = "admin")]
        build: Builder::msi,
    },
    TargetSpec {
        target: Target::Intunewin,
        name: "intunewin",
        dir: "windows",
        ships: Some(Os::Windows),
        lean_agent_only: false,
        shares_builder: true,
        about: "the MSI wrapped for Intune's Win32 app upload",
        #[cfg(feature = "admin")]
        check: no_check,
        #[cfg(feature = "admin")]
        build: Builder::intunewin,
    },
    TargetSpec {
        target: Target::Ansible,
        name: "ansible",
        dir: "ansible",
        ships: Some(Os::Linux),
        lean_agent_only: false,
        shares_builder: false,
        about: "Ansible role and example playbook",
        #[cfg(feature = "admin")]
        check: no_check,
        #[cfg(feature = "admin")]
        build: |_, p| super::ansible::build(p),
    },
    TargetSpec {
        target: Target::Chef,
        name: "chef",
        dir: "chef/fleetkit",
        ships: Some(Os::Linux),
        lean_agent_only: false,
        shares_builder: false,
        about: "Chef cookbook",
        #[cfg(feature = "admin")]
        check: no_check,
        #[cfg(feature = "admin")]
        build: |_, p| super::chef::build(p),
    },
    TargetSpec {
        target: Target::Puppet,
        name: "puppet",
        dir: "puppet/fleetkit",
        ships: Some(Os::Linux),
        lean_agent_only: false,
        shares_builder: false,
        about: "Puppet module",
        #[cfg(feature = "admin")]
        check: no_check,
        #[cfg(feature = "admin")]
        build: |_, p| super::puppet::build(p),
    },
    TargetSpec {
        target: Target::Deb,
        name: "deb",
        dir: "linux",
        ships: Some(Os::Linux),
        lean_agent_only: true,
        shares_builder: false,
        about: "Debian/Ubuntu package, one per processor; with --apt-repo a signed apt repository",
        #[cfg(feature = "admin")]
        check: super::deb::check,
        #[cfg(feature = "admin")]
        build: |_, p| super::deb::build(p),
    },
    TargetSpec {
        target: Target::Rpm,
        name: "rpm",
        dir: "linux",
        ships: Some(Os::Linux),
        lean_agent_only: true,
        shares_builder: false,
        about: "RHEL/Fedora (dnf) package, one per processor, signed with --package-signing-key",
        #[cfg(feature = "admin")]
        check: no_check,
        #[cfg(feature = "admin")]
        build: |_, p| super::rpm::build(p),
    },
    TargetSpec {
        target: Target::ClaudeCode,
        name: "claude-code",
        dir: "claude-code",
        ships: None,
        lean_agent_only: false,
        shares_builder: false,
        about: "Claude Code managed-settings.json: the policy hook and native deny rules, per channel",
        #[cfg(feature = "admin")]
        check: no_check,
        #[cfg(feature = "admin")]
        build: |_, p| super::claude_code::build(p),
    },
];

impl Target {
    /// Every target, in table order.
    pub fn all() -> Vec<Target> {
        TARGETS.iter().map(|s| s.target).collect()
    }

    /// Every name, for help texts and did-you-mean.
    pub fn names() -> Vec<&'static str> {
        TARGETS.iter().map(|s| s.name).collect()
    }

    pub fn parse(name: &str) -> Option<Self> {
        TARGETS.iter().find(|s| s.name == name).map(|s| s.target)
    }

    /// This target's row of [`TARGETS`].
    pub fn spec(self) -> &'static TargetSpec {
        // The rows are in variant order: `the_table_describes_every_target_once`.
        &TARGETS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The OS whose agent binaries this target ships (`None`: it ships none).
    pub fn agent_os(self) -> Option<Os> {
        self.spec().ships
    }
}

/// The `--target` help: one line per target, from the table.
pub fn help() -> String {
    let width = TARGETS.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::from(
        "Targets to build (repeatable, or `all`); default: `targets:` in fleetkit.yaml.\n",
    );
    for s in &TARGETS {
        out.push_str(&format!("  {:width$}  {}\n", s.name, s.about));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_describes_every_target_once() {
        for (i, spec) in TARGETS.iter().enumerate() {
            assert_eq!(spec.target as usize, i, "{} is out of order", spec.name);
            assert_eq!(spec.target.spec().name, spec.name);
            assert_eq!(Target::parse(spec.name), Some(spec.target));
            assert_eq!(
                serde_json::to_string(&spec.target).unwrap(),
                format!("\"{}\"", spec.name)
            );
        }
        assert_eq!(Target::all().len(), TARGETS.len());
    }
}

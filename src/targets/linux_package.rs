//! What the .deb and the .rpm install, described once for both: the package's name,
//! version and description, and its files with their modes (root owns all of them).
//!
//! ```text
//! /usr/bin/fleetkit                          0755  the lean agent of the package's arch
//! /etc/fleetkit/agent.yaml                   0644  settings (config: an admin may edit it)
//! /etc/fleetkit/anchors.json, bundle.json    0644  trust anchors, signed policy (config)
//! <unit dir>/fleetkit-sync.service, .timer   0644  `agent sync` every 15 minutes
//! <CA dir>/…                                 0644  the org root CA, for the trust store
//! ```
//!
//! Debian keeps units in /lib/systemd/system and CA certificates for
//! update-ca-certificates in /usr/share/ca-certificates/; Red Hat in
//! /usr/lib/systemd/system and /usr/share/pki/ca-trust-source/anchors/. The binary
//! is in /usr/bin (Debian policy keeps packages out of /usr/local, where the
//! Ansible, Chef and Puppet targets put it; the agent finds its files by their
//! fixed paths, not its own). Nothing else: no token (an image or cloud-init writes
//! /etc/fleetkit/enroll-token on the machine), no private key (the agent makes its
//! own at registration).

use super::systemd::{self, Flavor};
use super::{Result, Target, TargetError, org_slug};
use crate::build::payload::{AgentBinary, AgentOrigin, Payload};
use crate::platform::{Os, Platform};
use std::sync::Arc;

/// The two package families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    RedHat,
}

/// One installed file.
#[derive(Debug, Clone)]
pub struct PackageFile {
    /// Absolute path on the device (`/usr/bin/fleetkit`).
    pub path: String,
    pub bytes: Arc<Vec<u8>>,
    pub mode: u32,
    /// A configuration file: dpkg's conffile, rpm's `%config(noreplace)` for files an
    /// admin may edit. Every file under /etc is one for dpkg.
    pub config: bool,
}

/// A package of one platform.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub platform: Platform,
    /// One line.
    pub summary: String,
    /// Paragraphs, each one line.
    pub description: Vec<String>,
    pub maintainer: String,
    pub files: Vec<PackageFile>,
    /// The org CA's entry in /etc/ca-certificates.conf (Debian).
    pub ca_entry: String,
}

/// `<org>-fleetkit`, in the characters both package managers allow in a name
/// (`[a-z0-9][a-z0-9+.-]*`): the org slug with `-` for `_`.
pub fn package_name(org: &str) -> String {
    format!("{}-fleetkit", org_slug(org).replace('_', "-"))
}

/// `<policy bundle version>.<agent version>` (`5.0.1.0`): a new policy or a new
/// agent is a higher version for dpkg and rpm alike, and the policy comes first
/// because bundles only move forward.
pub fn version(payload: &Payload) -> String {
    let agent: String = payload
        .agent_version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("{}.{agent}", payload.bundle_version)
}

/// `s` on one line: control characters (newlines included) become spaces, runs of
/// spaces one, no space at either end. For header fields that are one line
/// (a newline would start a new control field).
pub fn one_line(s: &str) -> String {
    let spaced: String = s
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}' | '\u{feff}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to at most `max` characters, with `…` where it was cut (Debian wants a
/// synopsis under 80 characters; the whole name is in the description).
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// `text` (one line) as lines of at most `width` characters, broken between words
/// (a longer word is a line of its own).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// The Linux agents `target` packages: at least one, each the lean agent (the
/// running fleetkit, the admin build, is never installed as a device's agent).
pub fn lean_agents(payload: &Payload, target: Target) -> Result<Vec<&AgentBinary>> {
    let agents = payload.agents_for(Os::Linux);
    if agents.is_empty() {
        return Err(TargetError::MissingAgent {
            os: Os::Linux,
            host: Platform::host(),
        });
    }
    if let Some(admin) = agents.iter().find(|a| a.origin == AgentOrigin::HostBinary) {
        return Err(TargetError::AdminBuildAsAgent {
            platform: admin.platform,
            target: target.as_str(),
        });
    }
    Ok(agents)
}

/// The package of `agent` for `family`.
pub fn package(payload: &Payload, agent: &AgentBinary, family: Family) -> Result<Package> {
    let name = package_name(&payload.org);
    let slug = org_slug(&payload.org);
    let text = |path: &str, s: String, config: bool| PackageFile {
        path: path.into(),
        bytes: Arc::new(s.into_bytes()),
        mode: 0o644,
        config,
    };
    let unit_dir = match family {
        Family::Debian => "/lib/systemd/system",
        Family::RedHat => "/usr/lib/systemd/system",
    };
    let ca_entry = format!("fleetkit/{slug}.crt");
    let ca_path = match family {
        Family::Debian => format!("/usr/share/ca-certificates/{ca_entry}"),
        Family::RedHat => format!("/usr/share/pki/ca-trust-source/anchors/fleetkit-{slug}.pem"),
    };
    let files = vec![
        PackageFile {
            path: "/usr/bin/fleetkit".into(),
            bytes: Arc::clone(&agent.bytes),
            mode: 0o755,
            config: false,
        },
        text("/etc/fleetkit/agent.yaml", payload.settings.to_yaml(), true),
        PackageFile {
            path: "/etc/fleetkit/anchors.json".into(),
            bytes: Arc::clone(&payload.anchors_json),
            mode: 0o644,
            // The policy's trust: a new package must replace it, edited or not.
            config: family == Family::Debian,
        },
        PackageFile {
            path: "/etc/fleetkit/bundle.json".into(),
            bytes: Arc::clone(&payload.bundle),
            mode: 0o644,
            config: family == Family::Debian,
        },
        text(
            &format!("{unit_dir}/{}", systemd::SERVICE),
            systemd::sync_service(Flavor::Package)?,
            false,
        ),
        text(
            &format!("{unit_dir}/{}", systemd::TIMER),
            systemd::sync_timer(Flavor::Package)?,
            false,
        ),
        text(&ca_path, payload.root_ca_pem.clone(), false),
    ];
    let org = one_line(&payload.display_name);
    Ok(Package {
        summary: shorten(&format!("Fleetkit device agent and policy for {org}"), 79),
        description: vec![
            format!(
                "Registers this machine with the fleetkit server of {org} ({}), keeps its signed policy (bundle v{}) current and enforces it, and keeps an audit trail.",
                one_line(&payload.server_url),
                payload.bundle_version
            ),
            "Installs the agent, its settings and trust anchors, the org root CA for the system trust store, and a systemd timer that syncs the policy every 15 minutes. The enrollment token is not in the package: put it in /etc/fleetkit/enroll-token (mode 0600) or FLEETKIT_ENROLL_TOKEN before installing.".into(),
        ],
        name,
        version: version(payload),
        platform: agent.platform,
        maintainer: one_line(&payload.maintainer),
        files,
        ca_entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_fit_both_package_managers() {
        assert_eq!(package_name("acme-corp"), "acme-corp-fleetkit");
        assert_eq!(package_name("42 \"Corp\" $(x)"), "org-42-corp-x-fleetkit");
        let name = package_name("Ünïcode Corp;\n rm -rf /");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c)),
            "{name}"
        );
        assert_eq!(one_line(" a\nb\r\n\tc\u{2028}d "), "a b c d");
    }
}

//! The systemd unit that runs `fleetkit agent sync` on Linux, one source for the
//! Ansible role, the Chef cookbook and the Puppet module
//! (`templates/systemd/fleetkit-sync.service`).
//!
//! Each tool renders the unit again on the device (to fill in the agent's path and
//! root prefix), so fleetkit renders the shared template once per tool with that
//! tool's own expressions in place of the values: `{{ fleetkit_bin }}` for Ansible,
//! `<%= @bin %>` for Chef, `<%= $bin %>` for Puppet.
//!
//! The unit is sandboxed with `ProtectSystem=strict`, so it may write only where it
//! lists `ReadWritePaths=`. Those paths come from the agent's own path table
//! ([`crate::agent::paths`]), so the list and the agent cannot drift apart: the data
//! and configuration directories (every installer creates both), and the
//! directories of the three fact mirrors. Those are marked optional (`-`): systemd
//! refuses to start a unit whose listed path is missing (226/NAMESPACE, outside what
//! `agent status` can report); with the `-` the unit starts and the agent records
//! which mirror directory it cannot create, as any failed sync (registration, which
//! runs outside the unit, creates all three).

use super::{Result, Syntax, environment, render};
use crate::agent::paths::{AgentPaths, Platform};
use std::path::Path;

const NAME: &str = "fleetkit-sync.service";
const TEMPLATE: &[(&str, &str)] = &[(
    NAME,
    include_str!("../../templates/systemd/fleetkit-sync.service"),
)];

/// The tool that renders the unit on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Ansible,
    Chef,
    Puppet,
}

impl Flavor {
    /// The header, and the tool's expressions for the agent binary, the root
    /// prefix as given and the root prefix without a trailing slash.
    fn expressions(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::Ansible => (
                "# {{ ansible_managed | comment(decoration='') | trim }}",
                "{{ fleetkit_bin }}",
                "{{ fleetkit_root }}",
                "{{ fleetkit_prefix }}",
            ),
            Self::Chef => (
                "# Managed by Chef.",
                "<%= @bin %>",
                "<%= @root %>",
                "<%= @prefix %>",
            ),
            Self::Puppet => (
                "<%- | String $bin, String $root, String $prefix | -%>\n# Managed by Puppet.",
                "<%= $bin %>",
                "<%= $root %>",
                "<%= $prefix %>",
            ),
        }
    }
}

/// Where `agent sync` writes on Linux, as absolute paths on the device (root `/`),
/// each with whether it may be missing.
pub fn writable_paths() -> Vec<(String, bool)> {
    let p = AgentPaths::new(Path::new("/"), Platform::Linux);
    let dir = |path: &Path| {
        path.parent()
            .unwrap_or(Path::new("/"))
            .to_string_lossy()
            .into_owned()
    };
    let mut paths = vec![
        (p.data_dir.to_string_lossy().into_owned(), false),
        (dir(&p.settings), false),
    ];
    paths.extend(p.ansible_fact.as_deref().map(|fact| (dir(fact), true)));
    paths.extend([(dir(&p.puppet_fact), true), (dir(&p.chef_hint), true)]);
    paths
}

/// The unit's text for `flavor`, itself a template of that tool.
pub fn sync_service(flavor: Flavor) -> Result<String> {
    let env = environment(TEMPLATE, Syntax::Brackets)?;
    let (header, bin, root, prefix) = flavor.expressions();
    let writable: Vec<String> = writable_paths()
        .into_iter()
        .map(|(path, optional)| format!("{}{prefix}{path}", if optional { "-" } else { "" }))
        .collect();
    let ctx = minijinja::context! { header, bin, root, writable };
    render(&env, NAME, &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_sync_writes_is_under_a_writable_path() {
        let p = AgentPaths::new(Path::new("/"), Platform::Linux);
        let writable = writable_paths();
        for file in [
            &p.state,
            &p.identity,
            &p.pending_key,
            &p.certificate,
            &p.policy,
            &p.local_machine_id,
            &p.manifest,
            &p.token_file,
            p.ansible_fact.as_ref().unwrap(),
            &p.puppet_fact,
            &p.chef_hint,
        ] {
            assert!(
                writable
                    .iter()
                    .any(|(dir, _)| file.parent() == Some(Path::new(dir))),
                "{} is not under a ReadWritePaths entry",
                file.display()
            );
        }
    }

    #[test]
    fn the_three_flavors_differ_only_in_their_expressions() {
        let strip = |text: String, flavor: Flavor| {
            let (header, bin, root, prefix) = flavor.expressions();
            text.replacen(header, "HEADER", 1)
                .replace(bin, "BIN")
                .replace(root, "ROOT")
                .replace(prefix, "PREFIX")
        };
        let ansible = strip(sync_service(Flavor::Ansible).unwrap(), Flavor::Ansible);
        assert_eq!(
            ansible,
            strip(sync_service(Flavor::Chef).unwrap(), Flavor::Chef)
        );
        assert_eq!(
            ansible,
            strip(sync_service(Flavor::Puppet).unwrap(), Flavor::Puppet)
        );
        assert!(
            ansible.contains("ReadWritePaths=-PREFIX/etc/ansible/facts.d\n"),
            "{ansible}"
        );
        assert!(ansible.contains("ProtectSystem=strict\n"), "{ansible}");
    }
}

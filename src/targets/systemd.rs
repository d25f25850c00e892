//! The systemd units that run `fleetkit agent sync` on Linux, one source each for
//! the Ansible role, the Chef cookbook, the Puppet module and the .deb/.rpm
//! (`packaging/systemd/fleetkit-sync.service` and `.timer`).
//!
//! Each tool renders the units again on the device (to fill in the agent's path,
//! root prefix and sync interval), so fleetkit renders the shared templates once per
//! tool with that tool's own expressions in place of the values: `{{ fleetkit_bin
//! }}` for Ansible, `<%= @bin %>` for Chef, `<%= $bin %>` for Puppet. The packages
//! get the values themselves: `/usr/bin/fleetkit`, root `/`, every 15 minutes.
//!
//! The unit is sandboxed with `ProtectSystem=strict`, so it may write only where it
//! lists `ReadWritePaths=`. Those paths come from the agent's own path table
//! ([`crate::agent::paths`]), so the list and the agent cannot drift apart: the data
//! and configuration directories (every installer creates both), the
//! directories of the three fact mirrors and of Claude Code's managed settings. Those are marked optional (`-`): systemd
//! refuses to start a unit whose listed path is missing (226/NAMESPACE, outside what
//! `agent status` can report); with the `-` the unit starts and the agent records
//! which mirror directory it cannot create, as any failed sync (registration, which
//! runs outside the unit, creates all three).

use super::{Result, Syntax, environment, render};
use crate::agent::paths::{AgentPaths, Platform};
use std::path::Path;

pub const SERVICE: &str = "fleetkit-sync.service";
pub const TIMER: &str = "fleetkit-sync.timer";
const TEMPLATES: &[(&str, &str)] = &[
    (
        SERVICE,
        include_str!("../../packaging/systemd/fleetkit-sync.service"),
    ),
    (
        TIMER,
        include_str!("../../packaging/systemd/fleetkit-sync.timer"),
    ),
];

/// Who renders the units on the device: a tool, or nobody (a package installs
/// them as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Ansible,
    Chef,
    Puppet,
    Package,
}

/// A flavor's text for each value of the templates.
struct Expressions {
    service_header: &'static str,
    timer_header: &'static str,
    bin: &'static str,
    /// The root prefix as given.
    root: &'static str,
    /// The root prefix without a trailing slash.
    prefix: &'static str,
    interval: &'static str,
}

impl Flavor {
    fn expressions(self) -> Expressions {
        match self {
            Self::Ansible => Expressions {
                service_header: "# {{ ansible_managed | comment(decoration='') | trim }}",
                timer_header: "# {{ ansible_managed | comment(decoration='') | trim }}",
                bin: "{{ fleetkit_bin }}",
                root: "{{ fleetkit_root }}",
                prefix: "{{ fleetkit_prefix }}",
                interval: "{{ fleetkit_sync_interval }}",
            },
            Self::Chef => Expressions {
                service_header: "# Managed by Chef.",
                timer_header: "# Managed by Chef.",
                bin: "<%= @bin %>",
                root: "<%= @root %>",
                prefix: "<%= @prefix %>",
                interval: "<%= @interval %>",
            },
            Self::Puppet => Expressions {
                service_header: "<%- | String $bin, String $root, String $prefix | -%>\n# Managed by Puppet.",
                timer_header: "<%- | String $interval | -%>\n# Managed by Puppet.",
                bin: "<%= $bin %>",
                root: "<%= $root %>",
                prefix: "<%= $prefix %>",
                interval: "<%= $interval %>",
            },
            Self::Package => Expressions {
                service_header: PACKAGE_HEADER,
                timer_header: PACKAGE_HEADER,
                bin: "/usr/bin/fleetkit",
                root: "/",
                prefix: "",
                interval: "15min",
            },
        }
    }
}

const PACKAGE_HEADER: &str = "# Installed by the fleetkit package; an upgrade replaces it: change it with a\n# drop-in (systemctl edit).";

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
    // Claude Code's managed settings, rewritten when a new policy comes into force;
    // the installers create the folder when they first write the file.
    paths.push((dir(&p.claude_settings), true));
    paths
}

/// The sync service's text for `flavor`, itself a template of that tool.
pub fn sync_service(flavor: Flavor) -> Result<String> {
    let env = environment(TEMPLATES, Syntax::Brackets)?;
    let e = flavor.expressions();
    let writable: Vec<String> = writable_paths()
        .into_iter()
        .map(|(path, optional)| format!("{}{}{path}", if optional { "-" } else { "" }, e.prefix))
        .collect();
    let ctx = minijinja::context! {
        header => e.service_header,
        bin => e.bin,
        root => e.root,
        writable,
    };
    render(&env, SERVICE, &ctx)
}

/// The sync timer's text for `flavor`.
pub fn sync_timer(flavor: Flavor) -> Result<String> {
    let env = environment(TEMPLATES, Syntax::Brackets)?;
    let e = flavor.expressions();
    let ctx = minijinja::context! { header => e.timer_header, interval => e.interval };
    render(&env, TIMER, &ctx)
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
            &p.claude_settings,
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
    fn the_flavors_differ_only_in_their_expressions() {
        let strip = |text: String, flavor: Flavor| {
            let e = flavor.expressions();
            let mut text = text
                .replacen(e.service_header, "HEADER", 1)
                .replacen(e.timer_header, "HEADER", 1)
                .replace(e.bin, "BIN")
                .replace(e.interval, "INTERVAL");
            // The package's root and prefix are `/` and empty: nothing to replace.
            if flavor != Flavor::Package {
                text = text.replace(e.root, "ROOT").replace(e.prefix, "PREFIX");
            }
            text
        };
        let units = |flavor: Flavor| {
            strip(sync_service(flavor).unwrap(), flavor)
                + &strip(sync_timer(flavor).unwrap(), flavor)
        };
        let ansible = units(Flavor::Ansible);
        assert_eq!(ansible, units(Flavor::Chef));
        assert_eq!(ansible, units(Flavor::Puppet));
        assert!(
            ansible.contains("ReadWritePaths=-PREFIX/etc/ansible/facts.d\n"),
            "{ansible}"
        );
        assert!(ansible.contains("ProtectSystem=strict\n"), "{ansible}");
        assert!(ansible.contains("OnUnitActiveSec=INTERVAL\n"), "{ansible}");
        let package = units(Flavor::Package);
        assert!(
            package.contains("ExecStart=BIN agent sync --root /\n")
                && package.contains("ReadWritePaths=-/etc/ansible/facts.d\n")
                && package.contains("OnUnitActiveSec=INTERVAL\n"),
            "{package}"
        );
    }
}

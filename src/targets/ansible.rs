//! The Ansible target: a Galaxy-layout role (`roles/fleetkit`: defaults, vars,
//! tasks, handlers, templates, files, meta with platforms) plus an example playbook
//! and inventory, under `ansible/` in the output.
//!
//! The role installs the agent, anchors, bundle and settings, adds the root CA to
//! the trust store, installs a systemd timer for `agent sync`, and runs `agent
//! register` once (`creates:` the device identity, so a second run changes
//! nothing). The token is a role variable given at run time (Vault), passed to the
//! agent through its environment with `no_log`. Built-in values are `!unsafe`
//! YAML: Ansible never templates them.

use super::Target;
use super::{Artefact, Result, Syntax, environment, payload_files, render, text};
use crate::build::payload::Payload;
use crate::platform::Os;

/// Rendered by fleetkit (bracket syntax; the role's own `{{ }}` passes through).
const RENDERED: &[(&str, &str)] = &[
    (
        "playbook.yml",
        include_str!("../../templates/ansible/playbook.yml"),
    ),
    (
        "inventory.ini",
        include_str!("../../templates/ansible/inventory.ini"),
    ),
    (
        "roles/fleetkit/README.md",
        include_str!("../../templates/ansible/roles/fleetkit/README.md"),
    ),
    (
        "roles/fleetkit/defaults/main.yml",
        include_str!("../../templates/ansible/roles/fleetkit/defaults/main.yml"),
    ),
    (
        "roles/fleetkit/vars/main.yml",
        include_str!("../../templates/ansible/roles/fleetkit/vars/main.yml"),
    ),
    (
        "roles/fleetkit/meta/main.yml",
        include_str!("../../templates/ansible/roles/fleetkit/meta/main.yml"),
    ),
];

/// Copied as they are: Ansible itself renders them on the device.
const VERBATIM: &[(&str, &str)] = &[
    (
        "roles/fleetkit/tasks/main.yml",
        include_str!("../../templates/ansible/roles/fleetkit/tasks/main.yml"),
    ),
    (
        "roles/fleetkit/handlers/main.yml",
        include_str!("../../templates/ansible/roles/fleetkit/handlers/main.yml"),
    ),
    (
        "roles/fleetkit/templates/agent.yaml.j2",
        include_str!("../../templates/ansible/roles/fleetkit/templates/agent.yaml.j2"),
    ),
];

/// The values the templates see.
pub fn context(payload: &Payload) -> minijinja::Value {
    minijinja::context! {
        org => payload.org.clone(),
        display_name => payload.display_name.clone(),
        org_slug => super::org_slug(&payload.org),
        server_url => payload.server_url.clone(),
        team => payload.settings.assignment.team.clone(),
        offline_mode => payload.settings.offline_mode.as_str(),
        offline_max_age_hours => payload.settings.offline_max_age_hours,
        renew_at_percent => payload.settings.renew_at_percent,
        bundle_version => payload.bundle_version,
        agent_version => payload.agent_version.clone(),
        agent_platforms => payload.agents_for(Os::Linux).iter().map(|a| a.platform.name()).collect::<Vec<_>>(),
    }
}

pub fn build(payload: &Payload) -> Result<Artefact> {
    let env = environment(RENDERED, Syntax::Brackets)?;
    let ctx = context(payload);
    let mut files = Vec::new();
    for (name, _) in RENDERED {
        files.push(text(name, render(&env, name, &ctx)?));
    }
    for (name, source) in VERBATIM {
        files.push(text(name, source.to_string()));
    }
    files.push(text(
        "roles/fleetkit/templates/fleetkit-sync.service.j2",
        super::systemd::sync_service(super::systemd::Flavor::Ansible)?,
    ));
    files.push(text(
        "roles/fleetkit/templates/fleetkit-sync.timer.j2",
        super::systemd::sync_timer(super::systemd::Flavor::Ansible)?,
    ));
    files.extend(payload_files(payload, "roles/fleetkit/files/")?);
    Ok(Artefact {
        target: Target::Ansible,
        files,
        notes: vec![],
    })
}

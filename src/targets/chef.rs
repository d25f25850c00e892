//! The Chef target: a cookbook (`chef/fleetkit`: metadata.rb, attributes,
//! recipes/default.rb, templates, files/default). `recipe[fleetkit]` does what the
//! Ansible role does; the device manifest is exposed through the Ohai hint the
//! agent writes (`node['hints']['fleetkit']`).
//!
//! Built-in values are Ruby literals (single-quoted, or double-quoted with `#`
//! escaped so nothing is interpolated); attribute values reach `agent.yaml` through
//! `to_json`. `execute` takes its command as an array (no shell) and is `sensitive`.

use super::Target;
use super::{Artefact, Result, Syntax, environment, payload_files, render, text};
use crate::build::payload::Payload;

const RENDERED: &[(&str, &str)] = &[
    ("README.md", include_str!("../../templates/chef/README.md")),
    (
        "metadata.rb",
        include_str!("../../templates/chef/metadata.rb"),
    ),
    (
        "attributes/default.rb",
        include_str!("../../templates/chef/attributes/default.rb"),
    ),
    (
        "recipes/default.rb",
        include_str!("../../templates/chef/recipes/default.rb"),
    ),
];

const VERBATIM: &[(&str, &str)] = &[
    (
        ".rubocop.yml",
        include_str!("../../templates/chef/rubocop.yml"),
    ),
    (
        "templates/agent.yaml.erb",
        include_str!("../../templates/chef/templates/agent.yaml.erb"),
    ),
];

pub fn build(payload: &Payload) -> Result<Artefact> {
    let env = environment(RENDERED, Syntax::Jinja)?;
    let ctx = super::ansible::context(payload);
    let mut files = Vec::new();
    for (name, _) in RENDERED {
        files.push(text(name, render(&env, name, &ctx)?));
    }
    for (name, source) in VERBATIM {
        files.push(text(name, source.to_string()));
    }
    files.push(text(
        "templates/fleetkit-sync.service.erb",
        super::systemd::sync_service(super::systemd::Flavor::Chef)?,
    ));
    files.push(text(
        "templates/fleetkit-sync.timer.erb",
        super::systemd::sync_timer(super::systemd::Flavor::Chef)?,
    ));
    files.extend(payload_files(payload, "files/default/")?);
    Ok(Artefact {
        target: Target::Chef,
        files,
        notes: vec![],
    })
}

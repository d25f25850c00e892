//! The Puppet target: a module (`puppet/fleetkit`: metadata.json, manifests with
//! class parameters, types, functions, templates, files, examples). `class {
//! 'fleetkit': }` does what the Ansible role does; the device manifest is the
//! agent's external fact `$facts['fleetkit']`.
//!
//! Built-in values are Puppet string literals (single-quoted, or double-quoted with
//! `$` escaped); values given at apply time reach `agent.yaml` through
//! `fleetkit::yaml_string`, and the labels' type refuses control characters. The
//! register `exec` takes its command as an array: no shell ever sees a value.

use super::Target;
use super::{Artefact, Result, Syntax, environment, payload_files, render, text};
use crate::build::payload::Payload;

const RENDERED: &[(&str, &str)] = &[
    (
        "README.md",
        include_str!("../../templates/puppet/README.md"),
    ),
    (
        "manifests/init.pp",
        include_str!("../../templates/puppet/manifests/init.pp"),
    ),
    (
        "templates/agent.yaml.epp",
        include_str!("../../templates/puppet/templates/agent.yaml.epp"),
    ),
];

const VERBATIM: &[(&str, &str)] = &[
    (
        "types/label.pp",
        include_str!("../../templates/puppet/types/label.pp"),
    ),
    (
        "functions/yaml_string.pp",
        include_str!("../../templates/puppet/functions/yaml_string.pp"),
    ),
    (
        "examples/init.pp",
        include_str!("../../templates/puppet/examples/init.pp"),
    ),
];

/// `metadata.json`: written with serde_json, so the org's display name is escaped.
fn metadata(payload: &Payload) -> String {
    let value = serde_json::json!({
        "name": format!("{}-fleetkit", super::org_slug(&payload.org).replace('_', "")),
        "version": format!("1.0.{}", payload.bundle_version),
        "author": payload.display_name,
        "summary": format!("Installs the fleetkit agent for {}, registers the device and keeps its signed policy current", payload.display_name),
        "license": "proprietary",
        "source": payload.server_url,
        "dependencies": [],
        "operatingsystem_support": [
            {"operatingsystem": "Debian", "operatingsystemrelease": ["12", "13"]},
            {"operatingsystem": "Ubuntu", "operatingsystemrelease": ["22.04", "24.04"]},
            {"operatingsystem": "RedHat", "operatingsystemrelease": ["8", "9"]}
        ],
        "requirements": [{"name": "puppet", "version_requirement": ">= 7.0.0 < 9.0.0"}]
    });
    let mut s = serde_json::to_string_pretty(&value).unwrap_or_default();
    s.push('\n');
    s
}

pub fn build(payload: &Payload) -> Result<Artefact> {
    let env = environment(RENDERED, Syntax::Jinja)?;
    let ctx = super::ansible::context(payload);
    let mut files = vec![text("metadata.json", metadata(payload))];
    for (name, _) in RENDERED {
        files.push(text(name, render(&env, name, &ctx)?));
    }
    for (name, source) in VERBATIM {
        files.push(text(name, source.to_string()));
    }
    files.push(text(
        "templates/fleetkit-sync.service.epp",
        super::systemd::sync_service(super::systemd::Flavor::Puppet)?,
    ));
    files.push(text(
        "templates/fleetkit-sync.timer.epp",
        super::systemd::sync_timer(super::systemd::Flavor::Puppet)?,
    ));
    files.extend(payload_files(payload, "files/")?);
    Ok(Artefact {
        target: Target::Puppet,
        files,
        notes: vec![],
    })
}

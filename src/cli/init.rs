//! `fleetkit init DIR --org ORG [--server URL] [--force]`.

use super::Context;
use super::output::{Failure, fail, say};
use clap::Args;
use fleetkit::workspace::init::{InitError, InitOptions, init};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory of the new workspace (created if missing).
    dir: PathBuf,
    /// The organisation (required unless DIR already has a fleetkit.yaml).
    #[arg(long)]
    org: Option<String>,
    /// The enrollment server devices will use (https).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Replace existing keys, CA and anchors (invalidates artefacts built with them).
    #[arg(long)]
    force: bool,
}

pub fn run(_ctx: &Context, args: InitArgs) -> Result<(), Failure> {
    let opts = InitOptions {
        org: args.org,
        server_url: args.server,
        force: args.force,
    };
    let report = init(&args.dir, &opts).map_err(|e| match e {
        InitError::Config(d) => Failure::Diagnostics(d),
        other => {
            let help = other.help();
            fail(other, help)
        }
    })?;
    say(format!(
        "workspace for {} in {}",
        report.org,
        report.root.display()
    ));
    for p in &report.created {
        say(format!("  created {}", p.display()));
    }
    for p in &report.kept {
        say(format!("  kept    {}", p.display()));
    }
    say(format!("  policy key      {}", report.policy_keyid));
    say(format!("  root CA         {}", report.root_ca_fingerprint));
    say(format!(
        "  issuing CA      {}",
        report.issuing_ca_fingerprint
    ));
    say("next: edit policy.yaml, then `fleetkit policy check` and `fleetkit policy sign`");
    Ok(())
}

impl InitArgs {
    /// `init DIR` on a directory that already holds the example settings.
    pub fn for_demo(dir: PathBuf) -> Self {
        Self {
            dir,
            org: None,
            server: None,
            force: false,
        }
    }
}

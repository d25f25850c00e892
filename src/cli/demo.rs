//! `fleetkit demo`: the whole admin flow on the built-in example org, in a fresh
//! directory — the README's main command.

use super::Context;
use super::output::{Failure, fail, say};
use clap::Args;
use fleetkit::workspace::Workspace;
use std::path::PathBuf;

const EXAMPLE_CONFIG: &str = include_str!("../../examples/acme-corp/fleetkit.yaml");
const EXAMPLE_POLICY: &str = include_str!("../../examples/acme-corp/policy.yaml");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to create the example workspace (must not exist yet).
    #[arg(long, value_name = "DIR", default_value = "fleetkit-demo")]
    out: PathBuf,
}

pub fn run(_ctx: &Context, args: DemoArgs) -> Result<(), Failure> {
    let dir = args.out;
    if dir.exists() {
        return Err(Failure::invalid(
            format!("{} already exists", dir.display()),
            "give a new directory with --out, or remove it",
        ));
    }
    let io = |e: fleetkit::fsutil::FsError| fail(e, "");
    fleetkit::fsutil::write_atomic(
        &dir.join("fleetkit.yaml"),
        EXAMPLE_CONFIG.as_bytes(),
        fleetkit::fsutil::PUBLIC_MODE,
    )
    .map_err(io)?;
    fleetkit::fsutil::write_atomic(
        &dir.join("policy.yaml"),
        EXAMPLE_POLICY.as_bytes(),
        fleetkit::fsutil::PUBLIC_MODE,
    )
    .map_err(io)?;

    say(format!(
        "1. init: example org acme-corp in {}",
        dir.display()
    ));
    super::init::run(_ctx, super::init::InitArgs::for_demo(dir.clone()))?;

    let ws = Workspace::open(&dir).map_err(|e| fail(e, ""))?;
    let ctx = Context {
        workspace: Some(dir.clone()),
    };
    say("2. policy check");
    super::policy::run(&ctx, super::policy::PolicyCommand::check_workspace())?;
    say("3. policy sign");
    super::policy::run(&ctx, super::policy::PolicyCommand::sign_default())?;
    let bundle = ws.bundle_path(1);
    say("4. policy verify");
    super::policy::run(
        &ctx,
        super::policy::PolicyCommand::verify(bundle.clone(), ws.anchors_path()),
    )?;
    say("5. keys rotate");
    let before = dir.join("anchors-v1.json");
    std::fs::copy(ws.anchors_path(), &before).map_err(|e| fail(e, ""))?;
    super::keys::run(&ctx, super::keys::KeysCommand::rotate_default())?;
    say("6. keys accept: a device holding the v1 anchors follows the rotation chain");
    super::keys::run(
        &ctx,
        super::keys::KeysCommand::accept(before, vec![ws.rotations_dir().join("anchors-v2.json")]),
    )?;
    say("7. policy sign after rotation, verified by the old and the new anchors");
    super::policy::run(&ctx, super::policy::PolicyCommand::sign_default())?;
    super::policy::run(
        &ctx,
        super::policy::PolicyCommand::verify(ws.bundle_path(2), dir.join("anchors-v1.json")),
    )?;
    super::policy::run(
        &ctx,
        super::policy::PolicyCommand::verify(ws.bundle_path(2), ws.anchors_path()),
    )?;
    say(format!("done: see {}", dir.display()));
    Ok(())
}

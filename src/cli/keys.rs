//! `fleetkit keys list | rotate | accept`.

use super::Context;
use super::output::{Failure, fail, note, say};
use super::policy::parse_duration;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the policy keys in the trust anchors, with their validity.
    List,
    /// Add new policy keys (as many as the threshold), retire the current ones after
    /// a window, and write the new anchors signed by the current keys and the new ones.
    Rotate(RotateArgs),
    /// Accept new anchors through their signed rotation chain, starting from anchors
    /// you already trust.
    Accept(AcceptArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// How long the current keys stay valid (e.g. 30d), so devices can catch up.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    retire_after: time::Duration,
}

#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// The anchors you already trust (e.g. those installed with an artefact).
    #[arg(long, value_name = "FILE")]
    trusted: PathBuf,
    /// Signed anchors documents (rotations/anchors-v<N>.json), oldest first.
    #[arg(required = true)]
    chain: Vec<PathBuf>,
    /// Write the accepted anchors here (atomically).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(ctx: &Context, cmd: KeysCommand) -> Result<(), Failure> {
    match cmd {
        KeysCommand::List => list(ctx),
        KeysCommand::Rotate(a) => rotate(ctx, a),
        KeysCommand::Accept(a) => accept(a),
    }
}

fn list(ctx: &Context) -> Result<(), Failure> {
    let ws = ctx.open_workspace()?;
    let anchors = fleetkit::anchors::load(&ws.anchors_path())
        .map_err(|e| fail(e, "check anchors.json, or create it with `fleetkit init`"))?;
    let now = fleetkit::clock::now();
    say(format!(
        "anchors v{} for {}: threshold {} of {} key(s)",
        anchors.version,
        anchors.org,
        anchors.threshold,
        anchors.keys.len()
    ));
    for k in &anchors.keys {
        let status = if k.valid_from > now {
            "not yet valid"
        } else if k.valid_until.is_some_and(|u| u <= now) {
            "retired"
        } else if k.valid_until.is_some() {
            "retiring"
        } else {
            "active"
        };
        let private = fleetkit::workspace::paths::policy_key(&ws.root, &k.keyid).is_file();
        // A retired key can still sign a forged step for devices holding anchors
        // older than the rotation that retired it (rotations are checked at their
        // own time, and it had no end there): its private half should go.
        let private_note = match (private, status) {
            (true, "retired") => "  (private key here: destroy it once the fleet has moved on)",
            (true, _) => "  (private key here)",
            (false, _) => "",
        };
        say(format!(
            "  {}  {:<13} from {} until {}{}",
            k.keyid,
            status,
            fleetkit::clock::rfc3339(k.valid_from),
            k.valid_until
                .map_or_else(|| "-".to_string(), fleetkit::clock::rfc3339),
            private_note
        ));
    }
    Ok(())
}

fn rotate(ctx: &Context, args: RotateArgs) -> Result<(), Failure> {
    let ws = ctx.open_workspace()?;
    let r = fleetkit::workspace::rotate::rotate_keys(&ws, args.retire_after).map_err(|e| {
        let help = e.help();
        fail(e, &help)
    })?;
    if r.finished_interrupted {
        note(format!(
            "{} was left by a `fleetkit keys rotate` that did not finish: finishing that rotation (anchors.json written from it) instead of making a new one; --retire-after is not used",
            r.envelope_path.display()
        ));
    }
    for k in &r.new_keyids {
        say(format!("new policy key {k}"));
    }
    for k in &r.retiring {
        say(format!("retiring       {k} at {}", r.retire_at));
    }
    say(format!(
        "anchors v{} written; rotation envelope {}",
        r.anchors_version,
        r.envelope_path.display()
    ));
    say(format!(
        "next: `fleetkit policy sign`, then `fleetkit policy publish` (it sends the rotation, then the bundle); a bundle signed only by the retiring keys is refused by devices installed after {}",
        r.retire_at
    ));
    Ok(())
}

fn accept(args: AcceptArgs) -> Result<(), Failure> {
    let accepted = fleetkit::workspace::rotate::accept_chain_files(&args.trusted, &args.chain)
        .map_err(|e| {
            fail(
                e,
                "only anchors signed through the rotation chain are accepted",
            )
        })?;
    say(format!(
        "accepted anchors v{} for {} ({} key(s), threshold {})",
        accepted.version,
        accepted.org,
        accepted.keys.len(),
        accepted.threshold
    ));
    if let Some(out) = args.out {
        fleetkit::anchors::save(&accepted, &out).map_err(|e| fail(e, ""))?;
        say(format!("written to {}", out.display()));
    }
    Ok(())
}

impl KeysCommand {
    /// `keys rotate` with the default window.
    pub fn rotate_default() -> Self {
        Self::Rotate(RotateArgs {
            retire_after: time::Duration::days(30),
        })
    }
    /// `keys accept --trusted TRUSTED CHAIN…`.
    pub fn accept(trusted: PathBuf, chain: Vec<PathBuf>) -> Self {
        Self::Accept(AcceptArgs {
            trusted,
            chain,
            out: None,
        })
    }
}

//! `fleetkit build` and `fleetkit inspect`.

use super::Context;
use super::output::{Failure, fail, note, say};
use clap::Args;
use fleetkit::build::payload::{Payload, PayloadOptions};
use fleetkit::build::{self, Progress};
use fleetkit::platform::Platform;
use fleetkit::targets::Target;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct BuildArgs {
    // The help lists every target from the table (`targets::spec::help`).
    #[arg(long = "target", value_name = "NAME", help = fleetkit::targets::spec::help())]
    targets: Vec<String>,
    /// Bake this team into the artefacts (devices can still be given another).
    #[arg(long, value_name = "TEAM")]
    team: Option<String>,
    /// Output directory (default: dist/ in the workspace), replaced as a whole: it
    /// must be missing, empty, or a previous build output.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// An agent binary for a platform (repeatable): PLATFORM=PATH, e.g.
    /// linux-arm64=agents/fleetkit-linux-arm64.
    #[arg(long = "agent", value_name = "PLATFORM=PATH")]
    agents: Vec<String>,
    /// Sign the pkg and the profile with this identity (e.g. a Developer ID
    /// Installer certificate): a PEM file holding the PKCS#8 RSA private key and the
    /// certificate chain, leaf first, or a PKCS#12 (.p12) whose password is in
    /// FLEETKIT_INSTALLER_IDENTITY_PASSWORD.
    #[arg(long, value_name = "FILE", env = "FLEETKIT_INSTALLER_IDENTITY")]
    installer_identity: Option<PathBuf>,
    /// Code-sign the darwin agent in the pkg with this Developer ID Application
    /// identity (hardened runtime), in the same forms as --installer-identity; a
    /// PKCS#12's password is in FLEETKIT_CODESIGN_IDENTITY_PASSWORD. Without it the
    /// agent is signed ad hoc.
    #[arg(long, value_name = "FILE", env = "FLEETKIT_CODESIGN_IDENTITY")]
    codesign_identity: Option<PathBuf>,
    /// The SCEP challenge for the profile's machine-certificate payload: a file
    /// holding the token `fleetkit token create --scep` printed, on one line.
    /// Without it the profile has no certificate payload.
    #[arg(long, value_name = "FILE", env = "FLEETKIT_SCEP_CHALLENGE_FILE")]
    scep_challenge_file: Option<PathBuf>,
    /// Sign the .rpm packages (and the apt repository) with this OpenPGP key: an
    /// ASCII-armored secret key (`gpg --armor --export-secret-keys KEYID`), v4, RSA
    /// of 2048 bits or more or Ed25519; its passphrase, if any, in
    /// FLEETKIT_PACKAGE_SIGNING_KEY_PASSPHRASE. The public key is written beside the
    /// packages as RPM-GPG-KEY-<package>.
    #[arg(
        long,
        visible_alias = "rpm-signing-key",
        value_name = "FILE",
        env = "FLEETKIT_PACKAGE_SIGNING_KEY"
    )]
    package_signing_key: Option<PathBuf>,
    /// With the deb target: make its output folder a signed flat apt repository
    /// (Packages, Release, InRelease, Release.gpg and the keyring devices pin with
    /// `signed-by`). Needs --package-signing-key.
    #[arg(long)]
    apt_repo: bool,
}

impl BuildArgs {
    /// The demo's build: these targets into `out`, agents found in the workspace.
    pub fn for_demo(targets: Vec<String>, out: PathBuf, scep_challenge_file: PathBuf) -> Self {
        Self {
            targets,
            team: None,
            out: Some(out),
            agents: Vec::new(),
            installer_identity: None,
            codesign_identity: None,
            scep_challenge_file: Some(scep_challenge_file),
            package_signing_key: None,
            apt_repo: false,
        }
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An artefact (role, module, cookbook) or a whole build output.
    artefact: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: BuildArgs) -> Result<(), Failure> {
    let ws = ctx.open_workspace()?;
    let requested = resolve_targets(&args.targets, &ws.config.targets)?;
    if args.apt_repo && !requested.contains(&Target::Deb) {
        return Err(Failure::Usage(
            "--apt-repo makes the deb target's output an apt repository; add --target deb".into(),
        ));
    }
    let mut agents = BTreeMap::new();
    for spec in &args.agents {
        let Some((name, path)) = spec.split_once('=') else {
            return Err(Failure::Usage(format!(
                "--agent {spec}: give PLATFORM=PATH, e.g. linux-arm64=agents/fleetkit-linux-arm64"
            )));
        };
        let Some(platform) = Platform::parse(name) else {
            return Err(Failure::Usage(format!(
                "--agent {spec}: `{name}` is not a platform fleetkit knows; platforms are: {}",
                Platform::names()
            )));
        };
        agents.insert(platform, PathBuf::from(path));
    }
    let options = PayloadOptions {
        team: args.team,
        host_agent: std::env::current_exe().ok(),
        agents,
        installer_identity: args.installer_identity,
        installer_identity_password: zeroize::Zeroizing::new(
            std::env::var("FLEETKIT_INSTALLER_IDENTITY_PASSWORD").unwrap_or_default(),
        ),
        codesign_identity: args.codesign_identity,
        codesign_identity_password: zeroize::Zeroizing::new(
            std::env::var("FLEETKIT_CODESIGN_IDENTITY_PASSWORD").unwrap_or_default(),
        ),
        scep_challenge_file: args.scep_challenge_file,
        package_signing_key: args.package_signing_key,
        package_signing_key_passphrase: fleetkit::pki::package_key::passphrase_from_env(),
        apt_repo: args.apt_repo,
        // Only the agents the requested targets ship are read and hashed.
        agent_oses: Some(requested.iter().filter_map(|t| t.agent_os()).collect()),
    };
    let payload = Payload::assemble(&ws, &options).map_err(|e| {
        let help = e.help();
        fail(e, &help)
    })?;
    let out = args.out.unwrap_or_else(|| ws.root.join("dist"));
    build::check_output_dir(&out, &ws.root).map_err(|e| {
        let help = e.help();
        fail(e, &help)
    })?;
    let mut progress = |p: Progress| match p {
        Progress::Payload {
            bundle_version,
            agents,
            notes,
        } => {
            note(format!(
                "payload: policy bundle v{bundle_version}, {agents} agent binar{}",
                if agents == 1 { "y" } else { "ies" }
            ));
            for n in notes {
                note(format!("  note: {n}"));
            }
        }
        Progress::Built {
            target,
            files,
            bytes,
            notes,
        } => {
            note(format!(
                "built {}: {files} files, {:.1} MB",
                target.as_str(),
                bytes as f64 / 1e6
            ));
            for n in notes {
                note(format!("  note: {n}"));
            }
        }
        Progress::Written { out } => note(format!("wrote {}", out.display())),
    };
    let artefacts = build::build(&payload, &requested, &out, &mut progress).map_err(|e| {
        let help = e.help();
        fail(e, &help)
    })?;
    // Each output folder once (the pkg and the profile share macos/, the MSI and
    // the .intunewin windows/).
    let mut printed: Vec<&str> = Vec::new();
    for a in &artefacts {
        if !printed.contains(&a.dir()) {
            printed.push(a.dir());
            say(format!("{}/{}", out.display(), a.dir()));
        }
    }
    say(format!("{}/SHA256SUMS", out.display()));
    say(format!("{}/build.json", out.display()));
    Ok(())
}

/// `--target` values (or the config's) → the targets to build, each once.
fn resolve_targets(given: &[String], configured: &[Target]) -> Result<Vec<Target>, Failure> {
    if given.is_empty() {
        return if configured.is_empty() {
            Err(Failure::invalid(
                "no target to build",
                format!(
                    "list targets under targets: in fleetkit.yaml ({}), or pass --target",
                    Target::names().join(", ")
                ),
            ))
        } else {
            Ok(configured.to_vec())
        };
    }
    if given.iter().any(|t| t == "all") {
        return Ok(Target::all());
    }
    let mut out = Vec::new();
    for name in given {
        let Some(t) = Target::parse(name) else {
            return Err(Failure::Usage(format!(
                "--target {name}: targets are {}, or all",
                Target::names().join(", ")
            )));
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

pub fn inspect(args: InspectArgs) -> Result<(), Failure> {
    let found = fleetkit::build::inspect::inspect(&args.artefact)
        .map_err(|e| fail(e, "give a directory that `fleetkit build` wrote"))?;
    if args.json {
        say(serde_json::to_string_pretty(&found).unwrap_or_default());
    } else {
        for i in &found {
            let d = &i.description;
            say(format!("{}:", i.payload_dir.display()));
            say(format!("  org:             {}", d.org.escape_debug()));
            say(format!("  enrollment URL:  {}", d.server_url));
            if let Some(team) = &d.team {
                say(format!("  team:            {}", team.escape_debug()));
            }
            say(format!(
                "  policy bundle:   v{}, expires {}{}, {}",
                d.bundle_version,
                d.bundle_expires_at,
                if i.bundle_expired { " (EXPIRED)" } else { "" },
                if i.bundle_verified {
                    "verified with the embedded anchors"
                } else {
                    "NOT VERIFIED"
                }
            ));
            say(format!("  policy keys:     {}", d.anchor_keyids.join(", ")));
            say(format!("  root CA:         {}", d.root_ca_fingerprint));
            say(format!("  agent version:   {}", d.agent_version));
            for a in &d.agents {
                say(format!(
                    "  agent {}: {} bytes, {}{}{}",
                    a.platform,
                    a.size,
                    a.sha256,
                    a.origin
                        .map(|o| format!(", from {}", o.describe()))
                        .unwrap_or_default(),
                    if i.agents_verified.contains(&a.platform) {
                        ""
                    } else {
                        " (MISMATCH)"
                    }
                ));
            }
            for p in &i.problems {
                say(format!("  problem: {p}"));
            }
        }
    }
    if found.iter().any(|i| !i.problems.is_empty()) {
        return Err(Failure::Reported);
    }
    Ok(())
}

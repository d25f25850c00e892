//! `fleetkit demo`: the whole flow on the built-in example org, in a fresh
//! directory — the README's main command. The admin side (init, check, sign,
//! verify, rotate), then the fleet: `fleetkit serve` on loopback, an enrollment
//! token, two devices under `<out>/devices/*` installed with the pre-rotation
//! anchors that register and sync with the real agent code (following the key
//! rotation the server serves), a new policy rolled out to them, and the inventory;
//! last, every artefact this machine has agents for.

use super::Context;
use super::output::{Failure, fail, say};
use clap::Args;
use fleetkit::agent::Agent;
use fleetkit::agent::paths::{AgentPaths, Platform};
use fleetkit::agent::register::{RegisterOptions, Registered};
use fleetkit::agent::settings::{AgentSettings, Assignment};
use fleetkit::agent::sync::Synced;
use fleetkit::clock;
use fleetkit::protocol::TokenCreate;
use fleetkit::server::admin_client::AdminClient;
use fleetkit::workspace::Workspace;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const EXAMPLE_CONFIG: &str = include_str!("../../examples/acme-corp/fleetkit.yaml");
const EXAMPLE_POLICY: &str = include_str!("../../examples/acme-corp/policy.yaml");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to create the example workspace (must not exist yet).
    #[arg(long, value_name = "DIR", default_value = "fleetkit-demo")]
    out: PathBuf,
    /// Agents for the other platforms, `fleetkit-<platform>[.exe]`, as
    /// scripts/build-agents.sh writes them; copied into the workspace's `agents/`.
    #[arg(long, value_name = "DIR", default_value = "target/agents")]
    agents: PathBuf,
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
    let scep_challenge = fleet(&ctx, &ws)?;
    build_artefacts(&ctx, &ws, &args.agents, scep_challenge)?;
    say(format!("done: see {}", dir.display()));
    Ok(())
}

/// Steps 8-12: a server, two devices, a rollout, the inventory. Returns the file
/// holding the SCEP challenge the profile of step 13 carries.
fn fleet(ctx: &Context, ws: &Workspace) -> Result<PathBuf, Failure> {
    say("8. serve: fleetkit serve on loopback (SQLite in server/fleet.db)");
    let server = DemoServer::start(&ws.root)?;
    let url = format!("https://localhost:{}", server.port);
    say(format!("   listening on {url}"));

    say("9. token create --team platform --uses 2");
    let credential = std::fs::read_to_string(ws.keys_dir().join("admin-credential"))
        .map_err(|e| fail(format!("cannot read the admin credential: {e}"), ""))?;
    let anchors = fleetkit::anchors::load(&ws.anchors_path()).map_err(|e| fail(e, ""))?;
    let admin = AdminClient::new(&url, &anchors.root_ca, credential.trim())
        .map_err(super::fleet::client_failure)?;
    let token = admin
        .create_token(&TokenCreate {
            team: "platform".into(),
            max_uses: 2,
            expires_in_secs: 3600,
            note: Some("fleetkit demo".into()),
            replace_existing: false,
            kind: fleetkit::protocol::TokenKind::Agent,
        })
        .map_err(super::fleet::client_failure)?;
    say(format!(
        "   {} (the secret is shown once; the server keeps its hash)",
        token.info.id
    ));
    say("   token create --scep --team platform --uses 100: the profile's SCEP challenge");
    let challenge = admin
        .create_token(&TokenCreate {
            team: "platform".into(),
            max_uses: 100,
            expires_in_secs: 30 * 24 * 3600,
            note: Some("fleetkit demo: the profile's SCEP challenge".into()),
            replace_existing: false,
            kind: fleetkit::protocol::TokenKind::Scep,
        })
        .map_err(super::fleet::client_failure)?;
    // A secret: 0600, beside the server's database, never printed.
    let challenge_file = ws.root.join("server").join("scep-challenge.txt");
    fleetkit::fsutil::write_atomic(
        &challenge_file,
        format!("{}\n", challenge.token).as_bytes(),
        fleetkit::fsutil::SECRET_MODE,
    )
    .map_err(|e| fail(e, ""))?;
    say(format!(
        "   {} in {} (0600)",
        challenge.info.id,
        challenge_file.display()
    ));

    let shipped = ws.bundle_path(2);
    // Devices installed before the rotation: they hold the v1 anchors and follow
    // the chain the server serves at their first sync.
    let installed_anchors =
        fleetkit::anchors::load(&ws.root.join("anchors-v1.json")).map_err(|e| fail(e, ""))?;
    let mut devices = Vec::new();
    for (name, department) in [("laptop-1", "engineering"), ("laptop-2", "research")] {
        let root = ws.root.join("devices").join(name);
        say(format!(
            "10. agent register --root {}: facts, own key and CSR, enrollment, manifest",
            root.display()
        ));
        install_device(&root, name, &url, &installed_anchors, &shipped)?;
        let mut agent = Agent::open(&root).map_err(agent_failure)?;
        let options = RegisterOptions {
            token: Some(Zeroizing::new(token.token.clone())),
            assignment: Assignment {
                department: Some(department.into()),
                ..Assignment::default()
            },
            force: false,
        };
        match agent
            .register(&options, clock::now())
            .map_err(agent_failure)?
        {
            Registered::Enrolled {
                device_id,
                machine_id,
                ..
            }
            | Registered::Already {
                device_id,
                machine_id,
            } => say(format!(
                "    {machine_id} registered as {device_id}; manifest {}",
                agent.paths.manifest.display()
            )),
        }
        devices.push(root);
    }

    say(
        "11. policy sign + policy publish, then agent sync on each device (it follows the key rotation first)",
    );
    super::policy::run(ctx, super::policy::PolicyCommand::sign_default())?;
    let v3 = std::fs::read(ws.bundle_path(3)).map_err(|e| fail(e, ""))?;
    let published = admin
        .publish_bundle(&v3)
        .map_err(super::fleet::client_failure)?;
    say(format!(
        "    published v{} ({})",
        published.version, published.etag
    ));
    // The server caches the current bundle for a second.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    for root in &devices {
        let mut agent = Agent::open(root).map_err(agent_failure)?;
        let report = agent.sync(clock::now()).map_err(agent_failure)?;
        if let Some(a) = report.anchors {
            say(format!(
                "    {}: trust anchors v{} → v{} through the rotation chain",
                root.display(),
                a.from,
                a.to
            ));
        }
        let outcome = match report.synced {
            Synced::Updated { from: Some(f), to } => {
                format!("policy v{f} → v{to}, verified and swapped in")
            }
            Synced::Updated { from: None, to } => format!("policy v{to} installed"),
            Synced::Current { version } => format!("policy {version:?} is current"),
        };
        say(format!("    {}: {outcome}", root.display()));
    }

    say("12. devices list");
    super::fleet::run_devices(
        ctx,
        super::fleet::DevicesCommand::list_all(super::fleet::ServerArgs::at(&url)),
    )?;
    drop(server);
    Ok(challenge_file)
}

/// Step 13: every target this machine has agents for. The Ansible, Chef and Puppet
/// ones always (the running binary is the host's agent unless the lean one was
/// built); the packages (pkg, MSI, deb) when `agents_dir` holds the lean agents. They are copied into
/// the workspace's `agents/`, where `fleetkit build` finds them.
fn build_artefacts(
    ctx: &Context,
    ws: &Workspace,
    agents_dir: &Path,
    scep_challenge: PathBuf,
) -> Result<(), Failure> {
    use fleetkit::platform::{Os, Platform};
    use fleetkit::targets::Target;
    let host = Platform::host();
    let mut have: Vec<Platform> = vec![host];
    // The lean agents found (the host's own platform is otherwise the admin build).
    let mut lean: Vec<Platform> = Vec::new();
    for platform in Platform::ALL {
        let file = platform.agent_file_name();
        let found = agents_dir.join(&file);
        if found.is_file() {
            let copy = ws.agents_dir().join(&file);
            std::fs::create_dir_all(ws.agents_dir())
                .and_then(|()| std::fs::copy(&found, &copy))
                .map_err(|e| fail(format!("cannot copy {}: {e}", found.display()), ""))?;
            lean.push(platform);
            if platform != host {
                have.push(platform);
            }
        }
    }
    let has_os = |os: Os, from: &[Platform]| from.iter().any(|p| p.os == os);
    let (buildable, missing): (Vec<Target>, Vec<Target>) =
        Target::all().into_iter().partition(|t| {
            let from = if t.spec().lean_agent_only {
                &lean
            } else {
                &have
            };
            t.agent_os().is_none_or(|os| has_os(os, from))
        });
    let names = |ts: &[Target]| ts.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ");
    say(format!(
        "13. build: {} (agents: {})",
        names(&buildable),
        have.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
    ));
    super::build::run(
        ctx,
        super::build::BuildArgs::for_demo(
            buildable.iter().map(|t| t.as_str().to_string()).collect(),
            ws.root.join("dist"),
            scep_challenge,
        ),
    )?;
    if !missing.is_empty() {
        say(format!(
            "   not built: {} (no agent for that platform here): run scripts/build-agents.sh, then the demo again (it takes the agents from {})",
            names(&missing),
            agents_dir.display()
        ));
    }
    Ok(())
}

fn agent_failure(e: fleetkit::agent::AgentError) -> Failure {
    let help = e.help();
    Failure::invalid(e.to_string(), help)
}

/// Puts under `root` what an installer puts on a device.
fn install_device(
    root: &std::path::Path,
    name: &str,
    url: &str,
    anchors: &fleetkit::anchors::TrustAnchors,
    shipped: &std::path::Path,
) -> Result<(), Failure> {
    let paths = AgentPaths::new(root, Platform::current());
    let settings = AgentSettings {
        org: anchors.org.clone(),
        server_url: url.to_string(),
        assignment: Assignment {
            team: Some("platform".into()),
            environment: Some("development".into()),
            ..Assignment::default()
        },
        offline_mode: fleetkit::workspace::config::OfflineMode::CachedWithExpiry,
        offline_max_age_hours: 24,
        renew_at_percent: 66,
        managed_preferences_domain: None,
        claude_code_settings: Default::default(),
        siem_credential_file: None,
        siem_ca_file: None,
        siem_public_roots: false,
        siem_spool_max_records: fleetkit::agent::siem::MAX_UNSENT,
    };
    let io = |e: fleetkit::fsutil::FsError| fail(e, "");
    let public = fleetkit::fsutil::PUBLIC_MODE;
    fleetkit::fsutil::write_atomic(&paths.settings, settings.to_yaml().as_bytes(), public)
        .map_err(io)?;
    fleetkit::anchors::save(anchors, &paths.anchors).map_err(|e| fail(e, ""))?;
    let bundle = std::fs::read(shipped).map_err(|e| fail(e, ""))?;
    fleetkit::fsutil::write_atomic(&paths.shipped_bundle, &bundle, public).map_err(io)?;
    // A hardware id of its own, as a separate machine would have.
    if let Some(id_file) = &paths.platform_machine_id {
        fleetkit::fsutil::write_atomic(id_file, format!("demo-{name}\n").as_bytes(), public)
            .map_err(io)?;
    }
    Ok(())
}

/// `fleetkit serve` as a child process, stopped when dropped.
struct DemoServer {
    child: std::process::Child,
    port: u16,
}

impl DemoServer {
    fn start(ws: &std::path::Path) -> Result<Self, Failure> {
        use std::io::BufRead;
        let exe = std::env::current_exe()
            .map_err(|e| fail(format!("cannot find the fleetkit binary: {e}"), ""))?;
        let mut child = std::process::Command::new(exe)
            .arg("--workspace")
            .arg(ws)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot start fleetkit serve: {e}"), ""))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let port = line
            .split_once("127.0.0.1:")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => Ok(Self { child, port }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(fail(format!("fleetkit serve did not start: {line:?}"), ""))
            }
        }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

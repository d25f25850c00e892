//! The admin side of the server: `fleetkit token create|list|revoke`, `fleetkit
//! devices list`, and the client used by `fleetkit policy publish`.

use super::Context;
use super::output::{Failure, fail, note, say};
use super::policy::parse_duration;
use clap::{Args, Subcommand};
use fleetkit::protocol::{DeviceRecord, TokenCreate, TokenInfo, TokenKind};
use fleetkit::server::admin_client::{AdminClient, ClientError};
use std::path::PathBuf;

/// Where the server is and how to authenticate to it.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's base URL (default: server.url in fleetkit.yaml).
    #[arg(long, value_name = "URL", env = "FLEETKIT_SERVER")]
    server: Option<String>,
    /// The admin credential file (default: keys/admin-credential in the workspace).
    #[arg(long, value_name = "FILE", env = "FLEETKIT_ADMIN_CREDENTIAL_FILE")]
    admin_credential: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an enrollment token bound to a team; prints the token (once: the
    /// server keeps only its hash).
    Create(TokenCreateArgs),
    /// List enrollment tokens (never the secrets).
    List(TokenListArgs),
    /// Revoke a token: enrollments with it are refused from now on.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The team devices enrolled with this token belong to.
    #[arg(long, value_name = "TEAM")]
    team: String,
    /// How many enrollments the token allows.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    uses: u32,
    /// Lifetime (e.g. 7d, 12h; at most a year).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    expires: time::Duration,
    /// A note for the token list (who it is for).
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
    /// Let an enrollment with this token replace the existing device of the same
    /// machine id (re-imaged machines). Without it, an enrollment never changes an
    /// existing device unless the caller holds that device's key.
    #[arg(long, conflicts_with = "scep")]
    replace_existing: bool,
    /// Make a SCEP challenge (for the configuration profile's certificate payload,
    /// `fleetkit build --scep-challenge-file`) instead of an agent enrollment token.
    /// Give it as many uses as the profile's scope has Macs (each enrollment takes
    /// one; renewals take none).
    #[arg(long)]
    scep: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id (tok_…), as `token list` shows it.
    id: String,
    /// Also revoke every SCEP certificate this challenge admitted, renewals
    /// included (a leaked challenge). Without it, certificates already issued keep
    /// renewing (a routine rotation of the challenge).
    #[arg(long)]
    certificates: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// The device inventory: who, which team, which policy version, last seen.
    List(DevicesListArgs),
    /// Remove a device (lost, stolen, retired): its certificates stop working at once
    /// for new connections; it can only come back by enrolling with a new token.
    Remove(DevicesRemoveArgs),
}

#[derive(Debug, Args)]
pub struct DevicesRemoveArgs {
    /// The device id (dev_…), as `devices list` shows it.
    id: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct DevicesListArgs {
    /// Only this team's devices.
    #[arg(long, value_name = "TEAM")]
    team: Option<String>,
    /// Only devices not seen for this long (e.g. 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    stale: Option<time::Duration>,
    /// JSON array of device records.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV with a header row (cells that a spreadsheet would run as formulas are
    /// neutralised with a leading apostrophe).
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    server: ServerArgs,
}

impl ServerArgs {
    /// The server at `url`, the credential from the workspace (for `demo`).
    pub fn at(url: &str) -> Self {
        Self {
            server: Some(url.to_string()),
            admin_credential: None,
        }
    }
}

impl DevicesCommand {
    /// `devices list --server URL` (for `demo`).
    pub fn list_all(server: ServerArgs) -> Self {
        Self::List(DevicesListArgs {
            team: None,
            stale: None,
            json: false,
            csv: false,
            server,
        })
    }
}

/// Opens an admin client from the workspace and the flags.
pub fn admin_client(ctx: &Context, args: &ServerArgs) -> Result<AdminClient, Failure> {
    let ws = ctx.open_workspace()?;
    let anchors = fleetkit::anchors::load(&ws.anchors_path())
        .map_err(|e| fail(e, "check anchors.json, or create it with `fleetkit init`"))?;
    let url = args
        .server
        .clone()
        .unwrap_or_else(|| ws.config.server.url.clone());
    fleetkit::workspace::config::check_https_url(&url)
        .map_err(|e| Failure::Usage(format!("--server {url:?}: {e}")))?;
    let path = args
        .admin_credential
        .clone()
        .unwrap_or_else(|| ws.keys_dir().join(fleetkit::server::ADMIN_CREDENTIAL_FILE));
    let credential = std::fs::read_to_string(&path).map_err(|e| {
        fail(
            format!("cannot read the admin credential {}: {e}", path.display()),
            "`fleetkit serve` makes it on first start; pass --admin-credential FILE if it lives elsewhere",
        )
    })?;
    AdminClient::new(&url, &anchors.root_ca, credential.trim())
        .map_err(|e| fail(e, "check anchors.json"))
}

/// Maps a client error to a failure with advice.
pub fn client_failure(e: ClientError) -> Failure {
    let help = match &e {
        ClientError::Unreachable { .. } => {
            "is `fleetkit serve` running there? check --server or server.url in fleetkit.yaml"
        }
        ClientError::Refused {
            code: fleetkit::protocol::ErrorCode::AdminCredentialRequired,
            ..
        } => {
            "the admin credential does not match the server's; use the server's keys/admin-credential"
        }
        _ => "",
    };
    fail(e, help)
}

pub fn run_token(ctx: &Context, cmd: TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::Create(a) => {
            let client = admin_client(ctx, &a.server)?;
            let secs = a.expires.whole_seconds().max(1) as u64;
            let created = client
                .create_token(&TokenCreate {
                    team: a.team,
                    max_uses: a.uses,
                    expires_in_secs: secs,
                    note: a.note,
                    replace_existing: a.replace_existing,
                    kind: if a.scep {
                        TokenKind::Scep
                    } else {
                        TokenKind::Agent
                    },
                })
                .map_err(client_failure)?;
            if a.json {
                say(serde_json::to_string_pretty(&created).unwrap_or_default());
            } else {
                say(&created.token);
                note(format!(
                    "{} {} for team {:?}: {} use(s), expires {} (shown once; the server keeps only its hash)",
                    if created.info.kind == TokenKind::Scep {
                        "SCEP challenge"
                    } else {
                        "token"
                    },
                    created.info.id,
                    created.info.team,
                    created.info.max_uses,
                    created.info.expires_at
                ));
            }
            Ok(())
        }
        TokenCommand::List(a) => {
            let client = admin_client(ctx, &a.server)?;
            let tokens = client.list_tokens().map_err(client_failure)?;
            if a.json {
                say(serde_json::to_string_pretty(&tokens).unwrap_or_default());
            } else {
                print_tokens(&tokens);
            }
            Ok(())
        }
        TokenCommand::Revoke(a) => {
            let client = admin_client(ctx, &a.server)?;
            let info = client
                .revoke_token_and(&a.id, a.certificates)
                .map_err(client_failure)?;
            say(format!(
                "revoked {} (team {:?}, used {} of {})",
                info.id, info.team, info.uses, info.max_uses
            ));
            Ok(())
        }
    }
}

fn print_tokens(tokens: &[TokenInfo]) {
    say(format!(
        "{:<21} {:<16} {:>9} {:<20} {}",
        "ID", "TEAM", "USES", "EXPIRES", "STATE"
    ));
    let now = fleetkit::clock::rfc3339(fleetkit::clock::now());
    for t in tokens {
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at <= now {
            "expired"
        } else if t.uses >= t.max_uses {
            "used up"
        } else if t.replace_existing {
            "active, replaces existing"
        } else if t.kind == TokenKind::Scep {
            "active, SCEP challenge"
        } else {
            "active"
        };
        say(format!(
            "{:<21} {:<16} {:>9} {:<20} {}",
            t.id,
            t.team.escape_debug().to_string(),
            format!("{}/{}", t.uses, t.max_uses),
            t.expires_at,
            state
        ));
    }
}

pub fn run_devices(ctx: &Context, cmd: DevicesCommand) -> Result<(), Failure> {
    let a = match cmd {
        DevicesCommand::List(a) => a,
        DevicesCommand::Remove(r) => {
            let client = admin_client(ctx, &r.server)?;
            let removed = client.remove_device(&r.id).map_err(client_failure)?;
            say(format!(
                "removed {} ({} on {}, team {}); its certificates authenticate nothing any more",
                removed.device_id,
                removed.machine_id,
                removed.hostname.escape_debug(),
                removed.team.escape_debug()
            ));
            return Ok(());
        }
    };
    let client = admin_client(ctx, &a.server)?;
    let stale = a.stale.map(|d| d.whole_seconds().max(0) as u64);
    let devices = client
        .list_devices(a.team.as_deref(), stale)
        .map_err(client_failure)?;
    if a.json {
        say(serde_json::to_string_pretty(&devices).unwrap_or_default());
    } else if a.csv {
        say(devices_csv(&devices));
    } else {
        say(format!(
            "{:<22} {:<24} {:<14} {:<16} {:<14} {:>7} {:<20} {}",
            "DEVICE",
            "HOSTNAME",
            "TEAM",
            "USER",
            "PLATFORM",
            "POLICY",
            "LAST SEEN",
            "PROFILE CERT UNTIL"
        ));
        for d in &devices {
            say(format!(
                "{:<22} {:<24} {:<14} {:<16} {:<14} {:>7} {:<20} {}",
                d.device_id,
                d.hostname.escape_debug().to_string(),
                d.team.escape_debug().to_string(),
                d.user.escape_debug().to_string(),
                d.platform.escape_debug().to_string(),
                d.policy_version
                    .map_or_else(|| "-".to_string(), |v| format!("v{v}")),
                d.last_seen,
                // The certificate the configuration profile enrolled over SCEP.
                d.profile_certificate
                    .as_ref()
                    .map_or("-", |c| c.not_after.as_str())
            ));
        }
        note(format!("{} device(s)", devices.len()));
    }
    Ok(())
}

/// RFC 4180 CSV of the inventory.
pub fn devices_csv(devices: &[DeviceRecord]) -> String {
    let header = [
        "device_id",
        "machine_id",
        "org",
        "team",
        "department",
        "environment",
        "compliance_zone",
        "hostname",
        "platform",
        "os_name",
        "os_version",
        "serial",
        "user",
        "agent_version",
        "registered_at",
        "last_seen",
        "policy_version",
        "certificate_fingerprint",
        "certificate_not_after",
        "profile_certificate_serial",
        "profile_certificate_not_after",
    ];
    super::csv::table(&header, devices, |d| {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            d.device_id.clone(),
            d.machine_id.clone(),
            d.org.clone(),
            d.team.clone(),
            opt(&d.department),
            opt(&d.environment),
            opt(&d.compliance_zone),
            d.hostname.clone(),
            d.platform.clone(),
            d.os_name.clone(),
            d.os_version.clone(),
            opt(&d.serial),
            d.user.clone(),
            d.agent_version.clone(),
            d.registered_at.clone(),
            d.last_seen.clone(),
            d.policy_version.map(|v| v.to_string()).unwrap_or_default(),
            d.certificate_fingerprint.clone(),
            d.certificate_not_after.clone(),
            d.profile_certificate
                .as_ref()
                .map(|c| c.serial.clone())
                .unwrap_or_default(),
            d.profile_certificate
                .as_ref()
                .map(|c| c.not_after.clone())
                .unwrap_or_default(),
        ]
    })
}

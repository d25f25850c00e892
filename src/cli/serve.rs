//! `fleetkit serve`: the enrollment, inventory and distribution server for the
//! workspace's org.

use super::Context;
use super::output::{Failure, fail, note, say};
use clap::Args;
use clap::builder::TypedValueParser;
use fleetkit::server::{self, BoundServer, ServeOptions, http};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Database: sqlite://PATH (default: server/fleet.db in the workspace) or
    /// postgres://USER:PASSWORD@HOST/DB.
    #[arg(long, value_name = "URL", env = "FLEETKIT_DB")]
    db: Option<String>,
    /// A DNS name or IP address for the server certificate (repeatable); localhost,
    /// 127.0.0.1, ::1 and the host of fleetkit.yaml's server URL are always included.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// The admin credential file (made, 0600, when missing).
    #[arg(long, value_name = "FILE")]
    admin_credential: Option<PathBuf>,
    /// Database connections kept open.
    #[arg(long, value_name = "N", default_value_t = 8)]
    db_connections: u32,
    /// Connections open at once. A quarter of them is kept for devices (connections
    /// with a client certificate): anonymous clients, in their TLS handshake or
    /// without a certificate, cannot take those.
    #[arg(long, value_name = "N", default_value_t = http::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u64).range(4..=1_000_000).map(|n| n as usize))]
    max_connections: usize,
    /// Anonymous connections (handshake in progress, or no client certificate) from
    /// one source address (IPv6: one /64); more are closed at once. Raise it when many
    /// machines enroll at once from behind one NAT address.
    #[arg(long, value_name = "N", default_value_t = http::DEFAULT_PER_IP,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|n| n as usize))]
    max_connections_per_ip: usize,
    /// Seconds a request's body may take once its headers are in (also caps the
    /// 15 s header deadline). For tests; the default suits every real client.
    #[arg(long, value_name = "SECS", hide = true,
          default_value_t = http::DEFAULT_REQUEST_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_secs: u64,
    /// Accept single-DES SCEP requests, for an old client that knows nothing else
    /// (micromdm's scepclient). RFC 8894 forbids single DES; leave this off unless
    /// such a client must enroll.
    #[arg(long)]
    scep_allow_des: bool,
    /// Keep the fleet's audit records this many whole days, then remove them
    /// (once serving, then hourly). Default: keep them all. Keep at least the
    /// devices' `audit.log_retention_days`, and what your auditors ask for.
    #[arg(long, value_name = "DAYS",
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    audit_retention_days: Option<u32>,
}

pub fn run(ctx: &Context, args: ServeArgs) -> Result<(), Failure> {
    let ws = ctx.open_workspace()?;
    let config = &ws.config;
    let anchors = fleetkit::anchors::load(&ws.anchors_path())
        .map_err(|e| fail(e, "check anchors.json, or create it with `fleetkit init`"))?;
    let ca = fleetkit::pki::IssuingCa::load(&ws.keys_dir()).map_err(|e| {
        fail(
            e,
            "the server needs keys/issuing-ca.pem, keys/issuing-ca.key and keys/root-ca.pem (from `fleetkit init`)",
        )
    })?;
    let (scep_ras, ra_origin) = fleetkit::pki::scep_ra::ScepRa::load_or_create(
        &ws.keys_dir(),
        &ca,
        &config.org,
        fleetkit::clock::now(),
    )
    .map_err(|e| {
        fail(
            e,
            "the SCEP RA is keys/scep-ra.pem and keys/scep-ra.key; move them away and the server makes a new pair",
        )
    })?;
    match ra_origin {
        fleetkit::pki::scep_ra::RaOrigin::Loaded => {}
        fleetkit::pki::scep_ra::RaOrigin::Created => note(format!(
            "made the SCEP RA certificate and key in {} (RSA-2048, issued by the issuing CA; the key is 0600)",
            ws.keys_dir().display()
        )),
        fleetkit::pki::scep_ra::RaOrigin::Renewed => note(format!(
            "made a new SCEP RA certificate and key in {}: the old one expired or was about to{}",
            ws.keys_dir().display(),
            if scep_ras.previous.is_some() {
                " (it still opens requests encrypted to it until it expires)"
            } else {
                ""
            }
        )),
    }
    let credential_path = args
        .admin_credential
        .unwrap_or_else(|| ws.keys_dir().join(server::ADMIN_CREDENTIAL_FILE));
    let (credential, made) = server::load_or_create_admin_credential(&credential_path)
        .map_err(|e| fail(e, "the admin credential file holds one line: fka_…"))?;
    if made {
        note(format!(
            "made a new admin credential in {} (0600); `fleetkit token` and `fleetkit devices` read it from there",
            credential_path.display()
        ));
    }
    let database_url = match args.db {
        Some(url) => url,
        None => {
            // server/ holds the inventory database: 0700, like keys/ (the
            // database file itself is made 0600 by BoundServer::bind).
            let dir = ws.root.join("server");
            private_dir(&dir).map_err(|e| {
                fail(
                    format!("cannot create {} (0700): {e}", dir.display()),
                    "check the workspace's permissions, or pass --db",
                )
            })?;
            format!("sqlite://{}", dir.join("fleet.db").display())
        }
    };
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(url) = url::Url::parse(&config.server.url)
        && let Some(host) = url.host_str()
    {
        names.push(host.trim_matches(['[', ']']).to_string());
    }
    names.extend(args.names);
    names.dedup();
    let anchors_version = anchors.version;
    let publish_at_start = newest_bundle(&ws)?.into_iter().collect();
    let rotations_at_start = fleetkit::workspace::rotate::chain_files(&ws)
        .map_err(|e| fail(e, "check the workspace's rotations/ directory"))?
        .into_iter()
        .map(|f| (f.path.display().to_string(), f.envelope))
        .collect();
    let cert_lifetime =
        time::Duration::days(config.enrollment.certificate_lifetime_days.min(3650) as i64);
    let fd_fit = server::fdlimit::raise_and_fit(args.max_connections, args.db_connections)
        .map_err(|e| {
            let help = raise_fd_limit_help(4 + e.reserved);
            fail(e, &help)
        })?;
    if let Some(asked) = fd_fit.lowered_from {
        let soft = fd_fit.soft_limit.unwrap_or_default();
        note(format!(
            "note: --max-connections lowered from {asked} to {}: the open-file limit is {soft}{} and the server keeps {} descriptors for the database and itself",
            fd_fit.max_connections,
            fd_fit
                .hard_limit
                .map_or_else(String::new, |h| format!(" (hard limit {h})")),
            fd_fit.reserved
        ));
        note(format!(
            "  = help: {}",
            raise_fd_limit_help(asked as u64 + fd_fit.reserved)
        ));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}"), ""))?;
    runtime.block_on(async move {
        let bound = BoundServer::bind(ServeOptions {
            listen: args.listen,
            database_url: database_url.clone(),
            org: config.org.clone(),
            ca,
            anchors,
            cert_lifetime,
            admin_credential_hash: server::admin_credential_hash(&credential),
            server_names: names,
            publish_at_start,
            rotations_at_start,
            max_db_connections: args.db_connections,
            scep_ra: Some(scep_ras),
            scep_allow_des: args.scep_allow_des,
            audit_retention_days: args.audit_retention_days,
            limits: http::Limits::new(
                fd_fit.max_connections,
                args.max_connections_per_ip,
                std::time::Duration::from_secs(args.request_timeout_secs),
            ),
        })
        .await
        .map_err(|e| {
            let help = match e {
                server::ServeError::Rotation(_) => {
                    "check the workspace's rotations/ directory against its anchors.json"
                }
                _ => "check --listen and --db",
            };
            fail(e, help)
        })?;
        let addr = bound
            .local_addr()
            .map_err(|e| fail(format!("cannot read the bound address: {e}"), ""))?;
        for v in &bound.rotations_stored {
            note(format!(
                "stored key rotation to anchors v{v} from the workspace's rotations/"
            ));
        }
        for (label, v) in &bound.rotations_skipped {
            note(format!(
                "warning: not storing {label} (anchors v{v}): it is above the workspace's anchors.json (v{}), left by a `fleetkit keys rotate` that did not finish; run `fleetkit keys rotate` to finish it (or move the file out of rotations/), then `fleetkit policy publish`",
                anchors_version
            ));
        }
        if let Some(days) = args.audit_retention_days {
            note(format!(
                "audit retention: records of the days before the last {days} are removed now and every hour (`fleetkit audit stats` says how many)"
            ));
        }
        for v in &bound.published {
            note(format!("published policy bundle v{v} from the workspace"));
        }
        say(format!(
            "fleetkit server for {} listening on https://{addr} ({:?} database {})",
            config.org,
            bound.backend(),
            redact_password(&database_url)
        ));
        bound.run(shutdown_signal()).await;
        note("shutting down");
        Ok(())
    })
}

/// How to give the server `needed` open files.
fn raise_fd_limit_help(needed: u64) -> String {
    format!(
        "raise the open-file limit to at least {needed}: `ulimit -n {needed}` in the shell that starts fleetkit serve (up to the hard limit; `ulimit -Hn` as root above it), or `LimitNOFILE={needed}` in its systemd unit"
    )
}

/// Creates `dir` 0700, or narrows it to 0700 when it exists.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// The workspace's newest signed bundle, if any.
fn newest_bundle(ws: &fleetkit::workspace::Workspace) -> Result<Option<Vec<u8>>, Failure> {
    let state = fleetkit::workspace::state::State::load(&ws.state_path())
        .map_err(|e| fail(e, "check state.json"))?;
    if state.policy_version == 0 {
        return Ok(None);
    }
    let version = state.policy_version;
    let path = ws.bundle_path(version);
    fleetkit::fsutil::read_capped(&path, fleetkit::bundle::MAX_BUNDLE_BYTES as u64)
        .map(Some)
        .map_err(|e| fail(e, "sign the policy again with `fleetkit policy sign`"))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

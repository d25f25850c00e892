//! `fleetkit agent register|sync|status|renew|claude-settings`: the device side. The agent never
//! uses the org workspace; it reads what the installer put on the device (under
//! `--root`, `/` by default).
//!
//! Exit codes: 0 done; 1 failed (the device's state is unchanged, the reason is
//! printed); 75 registration pending because the server could not be reached (the
//! next `register` or `sync` finishes it: installers treat 75 as success).

use super::output::{Failure, say};
use clap::{Args, Subcommand};
use fleetkit::agent::claude_code::{SettingsAction, SettingsOutcome};
use fleetkit::agent::register::{RegisterOptions, Registered};
use fleetkit::agent::settings::{Assignment, check_label};
use fleetkit::agent::sync::Synced;
use fleetkit::agent::{Agent, AgentError};
use fleetkit::clock::{self, rfc3339};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Exit code of a registration waiting for the server (EX_TEMPFAIL).
const EXIT_PENDING: u8 = 75;
/// `agent claude-settings --check`: a run would change the file.
const EXIT_WOULD_CHANGE: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register this device: facts, own key and CSR, enrollment, manifest.
    Register(RegisterArgs),
    /// Pull, verify and install the newest signed policy; check in; renew the certificate when due.
    Sync(CommonArgs),
    /// Show identity, certificate expiry, the policy in force and the last sync.
    Status(CommonArgs),
    /// Renew the machine certificate now (sync does it at the configured share of its lifetime).
    Renew(CommonArgs),
    /// Decide a command (or an inference request) under the policy in force: allow,
    /// ask or deny, with the rule that decided. Exit: 0 allow, 3 ask, 4 deny.
    Decide(super::decide::DecideArgs),
    /// Put Claude Code's managed settings in step with the policy in force now (the
    /// installers run it; every sync does it too), or remove fleetkit's file.
    /// Exit: 0 done or nothing to do, 1 failed or someone else's file, 3 (--check)
    /// a run would change the file.
    ClaudeSettings(ClaudeSettingsArgs),
    /// The device's audit log: verify the chain, run its upkeep, show records.
    #[command(subcommand)]
    Audit(super::audit_log::AuditCommand),
}

#[derive(Debug, Args)]
pub struct ClaudeSettingsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Remove the file instead, when fleetkit wrote it (uninstallers: its hook
    /// would name a binary that is gone).
    #[arg(long)]
    remove: bool,
    /// Change nothing: exit 0 when a run would change nothing, 3 when it would
    /// write or remove the file (the Puppet and Chef guards).
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Put every path the agent reads and writes under DIR (tests, staging).
    #[arg(
        long,
        value_name = "DIR",
        env = "FLEETKIT_AGENT_ROOT",
        default_value = "/"
    )]
    pub(super) root: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The enrollment token (prefer the environment variable: a command line is
    /// visible to other users). Default: the token file the installer wrote.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FLEETKIT_ENROLL_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Read the enrollment token from this file (first line).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// The device's team (overrides agent.yaml).
    #[arg(long)]
    team: Option<String>,
    #[arg(long)]
    department: Option<String>,
    #[arg(long)]
    environment: Option<String>,
    #[arg(long)]
    compliance_zone: Option<String>,
    /// Enroll again with a new key even when registered.
    #[arg(long)]
    force: bool,
}

pub fn run(cmd: AgentCommand) -> Result<(), Failure> {
    match cmd {
        AgentCommand::Register(args) => register(args),
        AgentCommand::Sync(args) => sync(args),
        AgentCommand::Status(args) => status(args),
        AgentCommand::Renew(args) => renew(args),
        AgentCommand::Decide(args) => super::decide::run(args),
        AgentCommand::ClaudeSettings(args) => claude_settings(args),
        AgentCommand::Audit(cmd) => super::audit_log::run(cmd),
    }
}

fn open(common: &CommonArgs) -> Result<Agent, Failure> {
    Agent::open(&common.root).map_err(failure)
}

fn failure(e: AgentError) -> Failure {
    let help = e.help();
    match e {
        AgentError::Pending { .. } => Failure::WithCode {
            message: e.to_string(),
            help,
            code: EXIT_PENDING,
        },
        other => Failure::invalid(other.to_string(), help),
    }
}

fn print_json(value: &serde_json::Value) {
    say(serde_json::to_string_pretty(value).unwrap_or_default());
}

fn register(args: RegisterArgs) -> Result<(), Failure> {
    let label = |field: &str, v: Option<String>| {
        check_label(field, v)
            .map_err(|m| Failure::Usage(format!("--{}: {m}", field.replace('_', "-"))))
    };
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(Zeroizing::new(t.trim().to_string())),
        (None, Some(path)) => {
            let text =
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    Failure::Usage(format!("--token-file {}: {e}", path.display()))
                })?);
            Some(Zeroizing::new(
                text.lines().next().unwrap_or_default().trim().to_string(),
            ))
        }
        (None, None) => None,
    }
    .filter(|t| !t.is_empty());
    let opts = RegisterOptions {
        token,
        assignment: Assignment {
            team: label("team", args.team)?,
            department: label("department", args.department)?,
            environment: label("environment", args.environment)?,
            compliance_zone: label("compliance_zone", args.compliance_zone)?,
        },
        force: args.force,
    };
    let mut agent = open(&args.common)?;
    let result = agent.register(&opts, clock::now());
    if args.common.json {
        let value = match &result {
            Ok(Registered::Enrolled {
                device_id,
                machine_id,
                team,
                certificate_not_after,
            }) => serde_json::json!({"result": "enrolled", "device_id": device_id,
                "machine_id": machine_id, "team": team,
                "certificate_not_after": rfc3339(*certificate_not_after)}),
            Ok(Registered::Already {
                device_id,
                machine_id,
            }) => serde_json::json!({"result": "already-registered", "device_id": device_id,
                "machine_id": machine_id}),
            Err(e) => {
                serde_json::json!({"result": "failed", "code": e.code(), "message": e.to_string()})
            }
        };
        print_json(&value);
    }
    match result {
        Ok(Registered::Enrolled {
            device_id,
            machine_id,
            team,
            certificate_not_after,
        }) => {
            if !args.common.json {
                say(format!(
                    "registered {machine_id} as {device_id} (team {team}); machine certificate valid until {}",
                    rfc3339(certificate_not_after)
                ));
                say(format!("manifest: {}", agent.paths.manifest.display()));
            }
            Ok(())
        }
        Ok(Registered::Already {
            device_id,
            machine_id,
        }) => {
            if !args.common.json {
                say(format!(
                    "already registered: {machine_id} is {device_id}; manifest refreshed (use --force to enroll again)"
                ));
            }
            Ok(())
        }
        Err(e) => Err(failure(e)),
    }
}

fn sync(args: CommonArgs) -> Result<(), Failure> {
    let mut agent = open(&args)?;
    let result = agent.sync(clock::now());
    if args.json {
        let value = match &result {
            Ok(r) => {
                let (outcome, version) = match r.synced {
                    Synced::Current { version } => ("current", version),
                    Synced::Updated { to, .. } => ("updated", Some(to)),
                };
                serde_json::json!({"result": outcome, "policy_version": version,
                    "anchors_version": agent.anchors.version,
                    "renewed_until": r.renewed_until.map(rfc3339), "warnings": r.warnings})
            }
            Err(e) => {
                serde_json::json!({"result": "failed", "code": e.code(), "message": e.to_string()})
            }
        };
        print_json(&value);
    }
    match result {
        Ok(report) => {
            if !args.json {
                if let Some(a) = report.anchors {
                    say(format!(
                        "trust anchors v{} → v{}: followed the org's key rotation",
                        a.from, a.to
                    ));
                }
                match report.synced {
                    Synced::Current { version: Some(v) } => say(format!("policy v{v} is current")),
                    Synced::Current { version: None } => say("no policy is published yet"),
                    Synced::Updated { from: Some(f), to } => {
                        say(format!("policy updated v{f} → v{to}"))
                    }
                    Synced::Updated { from: None, to } => say(format!("policy v{to} installed")),
                }
                if let Some(until) = report.renewed_until {
                    say(format!(
                        "machine certificate renewed until {}",
                        rfc3339(until)
                    ));
                }
                for w in &report.warnings {
                    super::output::note(format!("warning: {w}"));
                }
            }
            Ok(())
        }
        Err(e) => Err(failure(e)),
    }
}

fn claude_settings(args: ClaudeSettingsArgs) -> Result<(), Failure> {
    let action = if args.remove {
        SettingsAction::Remove
    } else {
        SettingsAction::Apply
    };
    let mut agent = open(&args.common)?;
    let outcome = agent
        .claude_settings(action, args.check, clock::now())
        .map_err(failure)?;
    let path = agent.paths.claude_settings.display().to_string();
    if args.common.json {
        print_json(&serde_json::json!({"result": outcome.code(), "path": path,
            "check": args.check, "changes": outcome.changes(), "message": outcome.warning()}));
    } else {
        let would = if args.check { "would be " } else { "" };
        match &outcome {
            SettingsOutcome::Written => say(format!("{path}: {would}written")),
            SettingsOutcome::Removed => say(format!("{path}: {would}removed")),
            SettingsOutcome::Unchanged => say(format!("{path}: up to date")),
            SettingsOutcome::Absent => say(format!("{path}: not there; nothing to remove")),
            SettingsOutcome::Off => say(format!(
                "{path}: left alone (agent.yaml says `claude_code_settings: off`)"
            )),
            SettingsOutcome::NoPolicy => say(format!(
                "{path}: no verified policy is in force yet; nothing to write"
            )),
            SettingsOutcome::NotOurs(_) | SettingsOutcome::Failed(_) => {}
        }
    }
    if let Some(message) = outcome.warning() {
        // Someone else's file is not a change either: a guard stays quiet about it.
        if args.check && matches!(outcome, SettingsOutcome::NotOurs(_)) {
            super::output::note(format!("warning: {message}"));
            return Ok(());
        }
        return Err(if args.common.json {
            Failure::Reported
        } else {
            Failure::invalid(
                message,
                "see `claude_code_settings` in agent.yaml (manage, force, off)",
            )
        });
    }
    if args.check && outcome.changes() {
        return Err(Failure::WithCode {
            message: format!("{path}: a run would change it"),
            help: String::new(),
            code: EXIT_WOULD_CHANGE,
        });
    }
    Ok(())
}

fn status(args: CommonArgs) -> Result<(), Failure> {
    let agent = open(&args)?;
    let s = agent.status(clock::now());
    if args.json {
        print_json(&serde_json::to_value(&s).unwrap_or_default());
        return Ok(());
    }
    let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
    say(format!("org:           {}", s.org));
    say(format!("server:        {}", s.server_url));
    say(format!("anchors:       v{}", s.anchors_version));
    say(format!("enrollment:    {}", s.enrollment));
    say(format!("machine id:    {}", or(&s.machine_id, "-")));
    say(format!("device id:     {}", or(&s.device_id, "-")));
    say(format!("team:          {}", or(&s.team, "-")));
    say(format!(
        "certificate:   {}{}",
        s.certificate_not_after
            .as_ref()
            .map_or("-".into(), |t| format!("valid until {t}")),
        if s.certificate_renewal_due {
            " (renewal due)"
        } else {
            ""
        }
    ));
    say(format!(
        "policy:        {}",
        match (s.policy_version, &s.policy_expires_at) {
            (Some(v), Some(exp)) =>
                format!("v{v}, expires {exp}, from {}", or(&s.policy_source, "?")),
            _ => "none held".into(),
        }
    ));
    say(format!(
        "in force:      {}{}",
        match (s.in_force.as_str(), s.in_force_version) {
            ("none", _) => "nothing (enforcement refuses)".to_string(),
            (kind, Some(v)) => format!("{kind} policy v{v}"),
            (kind, None) => kind.to_string(),
        },
        s.in_force_note
            .as_ref()
            .map_or(String::new(), |n| format!(" — {n}"))
    ));
    say(format!("offline mode:  {}", s.offline_mode));
    say(format!(
        "audit:         {}{}",
        s.audit_sent_seq
            .map_or("no record sent to the server yet".into(), |seq| format!(
                "the server holds records up to {seq}"
            )),
        s.audit_forward_error
            .as_ref()
            .map_or(String::new(), |e| format!("; last send failed: {e}"))
    ));
    if let Some(siem) = &s.siem {
        say(format!(
            "siem:          {}: acknowledged up to record {}{}{}",
            siem.endpoint,
            siem.seq,
            if siem.dropped > 0 {
                format!(", {} dropped", siem.dropped)
            } else {
                String::new()
            },
            siem.last_error
                .as_ref()
                .map_or(String::new(), |e| format!("; last attempt failed: {e}"))
        ));
    }
    say(format!(
        "last sync:     {}",
        match (&s.last_sync, s.last_sync_ok) {
            (Some(at), Some(true)) => format!("{at}, ok"),
            (Some(at), _) => format!(
                "{at}, failed ({}): {}",
                or(&s.last_sync_code, "?"),
                or(&s.last_sync_result, "?")
            ),
            _ => "never".into(),
        }
    ));
    if let Some(err) = &s.last_error {
        say(format!("last error:    {err}"));
    }
    Ok(())
}

fn renew(args: CommonArgs) -> Result<(), Failure> {
    let mut agent = open(&args)?;
    let until = agent.renew(clock::now()).map_err(failure)?;
    if args.json {
        print_json(
            &serde_json::json!({"result": "renewed", "certificate_not_after": rfc3339(until)}),
        );
    } else {
        say(format!(
            "machine certificate renewed until {}",
            rfc3339(until)
        ));
    }
    Ok(())
}

//! `fleetkit audit list|stats`: the fleet's decisions, as the devices recorded them
//! and the server holds them.
//!
//! Times: `--since 7d` (that long before now) or an RFC 3339 time; `--until` the
//! same, exclusive. Values that came from devices (commands, users, reasons) are
//! shown escaped: a command full of terminal escapes or newlines cannot repaint the
//! admin's screen or forge a row, and CSV cells a spreadsheet would run as formulas
//! are neutralised.

use super::Context;
use super::fleet::{ServerArgs, admin_client, client_failure};
use super::output::{Failure, note, say};
use clap::{Args, Subcommand};
use fleetkit::protocol::{AuditEntry, AuditStats};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest matching records (decisions, policy events, registrations).
    List(ListArgs),
    /// Decisions counted by team and rule, the commands denied most, and the
    /// devices deciding under an audit-only (dry run) policy.
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub struct Window {
    /// Only this team's devices.
    #[arg(long, value_name = "TEAM")]
    team: Option<String>,
    /// From this long ago (e.g. 30d) or this RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    since: Option<i64>,
    /// Before this long ago or this RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    until: Option<i64>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    window: Window,
    /// Only this user's requests.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Only this device (dev_…).
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// Only decisions with this verdict.
    #[arg(long, value_parser = ["allow", "ask", "deny"])]
    decision: Option<String>,
    /// Only decisions by this rule (e.g. safety.blocked_patterns[0]).
    #[arg(long, value_name = "RULE")]
    rule: Option<String>,
    /// Only this event (decision, policy.installed, device.registered, …).
    #[arg(long, value_name = "EVENT")]
    event: Option<String>,
    /// At most this many records (newest first; up to 10000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// JSON (the records and whether more matched).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV with a header row.
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    window: Window,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// `30d` → now minus 30 days; an RFC 3339 time as is; in Unix milliseconds.
pub fn parse_when(s: &str) -> Result<i64, String> {
    let at = match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        Ok(t) => t,
        Err(_) => {
            let d = super::policy::parse_duration(s).map_err(|e| {
                format!("{e}; or give an RFC 3339 time such as 2026-12-01T00:00:00Z")
            })?;
            fleetkit::clock::now() - d
        }
    };
    Ok(fleetkit::clock::unix_millis(at))
}

impl Window {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(t) = &self.team {
            q.push(("team", t.clone()));
        }
        if let Some(s) = self.since {
            q.push(("since", s.to_string()));
        }
        if let Some(u) = self.until {
            q.push(("until", u.to_string()));
        }
        q
    }
}

pub fn run(ctx: &Context, cmd: AuditCommand) -> Result<(), Failure> {
    match cmd {
        AuditCommand::List(a) => list(ctx, a),
        AuditCommand::Stats(a) => stats(ctx, a),
    }
}

fn list(ctx: &Context, a: ListArgs) -> Result<(), Failure> {
    let client = admin_client(ctx, &a.server)?;
    let mut q = a.window.query();
    for (k, v) in [
        ("user", &a.user),
        ("device", &a.device),
        ("decision", &a.decision),
        ("rule", &a.rule),
        ("event", &a.event),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    q.push(("limit", a.limit.to_string()));
    let page = client.audit_list(&q).map_err(client_failure)?;
    if a.json {
        say(serde_json::to_string_pretty(&page).unwrap_or_default());
        return Ok(());
    }
    if a.csv {
        say(records_csv(&page.records));
    } else {
        say(format!(
            "{:<24} {:<22} {:<12} {:<12} {:<18} {:<6} {:<32} COMMAND",
            "TIME", "DEVICE", "TEAM", "USER", "EVENT", "VERDICT", "RULE"
        ));
        for r in &page.records {
            let shown = |v: &Option<String>| {
                v.as_deref()
                    .map_or("-".to_string(), |s| s.escape_debug().to_string())
            };
            say(format!(
                "{:<24} {:<22} {:<12} {:<12} {:<18} {:<6} {:<32} {}",
                r.time,
                r.device_id,
                r.team.escape_debug().to_string(),
                shown(&r.user),
                r.event,
                shown(&r.decision),
                shown(&r.rule),
                shown(&r.command),
            ));
        }
    }
    note(format!(
        "{} record(s){}",
        page.records.len(),
        if page.more {
            "; more match: narrow the filter, or page with --until the oldest time shown"
        } else {
            ""
        }
    ));
    Ok(())
}

/// RFC 4180 CSV of audit records.
fn records_csv(records: &[AuditEntry]) -> String {
    let header = [
        "time",
        "device_id",
        "seq",
        "team",
        "user",
        "event",
        "policy_version",
        "mode",
        "source",
        "decision",
        "applied",
        "rule",
        "reason",
        "command",
        "command_sha256",
        "cwd",
        "id",
    ];
    super::csv::table(&header, records, |r| {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            r.time.clone(),
            r.device_id.clone(),
            r.seq.to_string(),
            r.team.clone(),
            opt(&r.user),
            r.event.clone(),
            r.policy_version.map(|v| v.to_string()).unwrap_or_default(),
            opt(&r.mode),
            opt(&r.source),
            opt(&r.decision),
            opt(&r.applied),
            opt(&r.rule),
            opt(&r.reason),
            opt(&r.command),
            opt(&r.command_sha256),
            opt(&r.cwd),
            r.id.clone(),
        ]
    })
}

fn stats(ctx: &Context, a: StatsArgs) -> Result<(), Failure> {
    let client = admin_client(ctx, &a.server)?;
    let s: AuditStats = client
        .audit_stats(&a.window.query())
        .map_err(client_failure)?;
    if a.json {
        say(serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(());
    }
    say(format!("{} decision(s)", s.decisions));
    if let Some(before) = &s.pruned_before {
        say(format!(
            "the server's audit retention has removed the records before {before} ({} in all)",
            s.pruned_records
        ));
    }
    say(format!(
        "\n{:<16} {:<40} {:<6} {:>9}",
        "TEAM", "RULE", "VERDICT", "COUNT"
    ));
    for c in &s.by_team_rule {
        say(format!(
            "{:<16} {:<40} {:<6} {:>9}",
            c.team.escape_debug().to_string(),
            c.rule.escape_debug().to_string(),
            c.decision,
            c.count
        ));
    }
    say(format!(
        "\n{:>9} {:>8}  TOP DENIED COMMANDS",
        "COUNT", "DEVICES"
    ));
    for c in &s.top_denied {
        say(format!(
            "{:>9} {:>8}  {}",
            c.count,
            c.devices,
            c.command.escape_debug()
        ));
    }
    if s.audit_only_devices.is_empty() {
        say("\nno device decided under an audit-only policy in this window");
    } else {
        say(format!(
            "\n{:<24} {:<16} {:>9} {:>11}  LAST (AUDIT-ONLY DEVICES)",
            "DEVICE", "TEAM", "DECISIONS", "WOULD BLOCK"
        ));
        for d in &s.audit_only_devices {
            say(format!(
                "{:<24} {:<16} {:>9} {:>11}  {}",
                d.device_id,
                d.team.escape_debug().to_string(),
                d.decisions,
                d.would_block,
                d.last
            ));
        }
    }
    Ok(())
}

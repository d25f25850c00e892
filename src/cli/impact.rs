//! `fleetkit policy impact CANDIDATE.yaml`: what a policy change would do to the
//! fleet, measured on what the fleet really ran, before anything is signed.
//!
//! The server's recorded requests (grouped) are replayed through the candidate and
//! through the baseline — the workspace's newest signed bundle, or `--baseline
//! FILE` — with the device's own engine (see `enforce::impact`). Exit 0 when
//! nothing changes, 3 when something does (a CI job can hold a change for review).

use super::Context;
use super::fleet::{ServerArgs, admin_client, client_failure};
use super::output::{Failure, note, say};
use clap::Args;
use fleetkit::enforce::Engine;
use fleetkit::enforce::impact::{self, Impact, Recorded};
use fleetkit::policy::OrgPolicy;
use std::path::PathBuf;

/// Exit status when the candidate changes some decision.
const EXIT_CHANGES: u8 = 3;

#[derive(Debug, Args)]
pub struct ImpactArgs {
    /// The candidate policy (YAML), validated first.
    candidate: PathBuf,
    /// Compare with this policy file instead of the workspace's newest signed bundle.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Replay requests recorded since (default 30d; a duration or an RFC 3339 time).
    #[arg(long, value_name = "WHEN", value_parser = super::audit::parse_when, default_value = "30d")]
    since: i64,
    /// …and before this.
    #[arg(long, value_name = "WHEN", value_parser = super::audit::parse_when)]
    until: Option<i64>,
    /// Only this team's requests.
    #[arg(long, value_name = "TEAM")]
    team: Option<String>,
    /// The whole report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

fn compile(policy: &OrgPolicy, what: &str) -> Result<Engine, Failure> {
    Engine::compile(policy).map_err(|e| Failure::invalid(format!("the {what}: {e}"), ""))
}

/// The policy of the workspace's newest signed bundle.
fn newest_signed(ctx: &Context) -> Result<OrgPolicy, Failure> {
    let ws = ctx.open_workspace()?;
    let state = fleetkit::workspace::state::State::load(&ws.state_path())
        .map_err(|e| Failure::invalid(e.to_string(), "give --baseline FILE"))?;
    let none = || {
        Failure::invalid(
            "the workspace has no signed bundle to compare with",
            "sign one (`fleetkit policy sign`), or give --baseline FILE",
        )
    };
    if state.policy_version == 0 {
        return Err(none());
    }
    let path = ws.bundle_path(state.policy_version);
    let bytes = std::fs::read(&path).map_err(|_| none())?;
    let anchors = fleetkit::anchors::load(&ws.anchors_path())
        .map_err(|e| Failure::invalid(e.to_string(), "check anchors.json"))?;
    let verify_at = |now| {
        fleetkit::bundle::verify_bundle(
            &bytes,
            &anchors,
            &fleetkit::bundle::VerifyOptions {
                now,
                expected_org: Some(&ws.config.org),
                stored_version: None,
            },
        )
    };
    // An expired baseline is still the policy the fleet runs until a new one lands.
    let verified = match verify_at(fleetkit::clock::now()) {
        Err(fleetkit::bundle::BundleError::Expired { expires_at, .. }) => {
            verify_at(expires_at - time::Duration::seconds(1))
        }
        other => other,
    };
    match verified {
        Ok(fleetkit::bundle::Verified::Accepted { payload, .. }) => {
            serde_json::from_str(payload.policy.get()).map_err(|e| {
                Failure::invalid(format!("{}: {e}", path.display()), "give --baseline FILE")
            })
        }
        Ok(_) => Err(none()),
        Err(e) => Err(Failure::invalid(
            format!("{}: {e}", path.display()),
            "give --baseline FILE",
        )),
    }
}

pub fn run(ctx: &Context, a: ImpactArgs) -> Result<(), Failure> {
    let candidate = fleetkit::policy::load(&a.candidate).map_err(Failure::Diagnostics)?;
    for w in candidate.warnings.iter() {
        note(w.to_string());
    }
    let baseline = match &a.baseline {
        Some(path) => {
            fleetkit::policy::load(path)
                .map_err(Failure::Diagnostics)?
                .policy
        }
        None => newest_signed(ctx)?,
    };
    let client = admin_client(ctx, &a.server)?;
    let mut query = vec![("since", a.since.to_string())];
    if let Some(u) = a.until {
        query.push(("until", u.to_string()));
    }
    if let Some(t) = &a.team {
        query.push(("team", t.clone()));
    }
    let recorded = client.audit_requests(&query).map_err(client_failure)?;
    let requests: Vec<Recorded> = recorded
        .requests
        .into_iter()
        .map(|r| Recorded {
            team: r.team,
            command: r.command,
            cwd: r.cwd,
            recorded: r.decision,
            count: r.count,
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = impact::replay(
        &compile(&baseline, "baseline policy")?,
        &compile(&candidate.policy, "candidate policy")?,
        &requests,
        threads,
    );
    if a.json {
        say(serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print(&report);
    }
    if report.changed > 0 {
        Err(Failure::WithCode {
            message: String::new(),
            help: String::new(),
            code: EXIT_CHANGES,
        })
    } else {
        Ok(())
    }
}

fn print(r: &Impact) {
    say(format!(
        "replayed {} recorded request(s) ({} distinct): {} would change",
        r.requests, r.distinct, r.changed
    ));
    if r.requests > 0 && r.drift > 0 {
        say(format!(
            "note: for {} request(s) the baseline's replay differs from what the device recorded (their context: tool versions, home, files; or another policy version)",
            r.drift
        ));
    }
    if r.changed == 0 {
        return;
    }
    say("\nTRANSITION        REQUESTS");
    for (t, n) in &r.overall.transitions {
        say(format!("{t:<17} {n:>8}"));
    }
    say("\nBY TEAM");
    for (team, m) in &r.by_team {
        for (t, n) in &m.transitions {
            say(format!(
                "{:<20} {t:<17} {n:>8}",
                team.escape_debug().to_string()
            ));
        }
    }
    say("\nBY RULE (the candidate's)");
    for (rule, m) in &r.by_rule {
        for (t, n) in &m.transitions {
            say(format!(
                "{:<40} {t:<17} {n:>8}",
                rule.escape_debug().to_string()
            ));
        }
    }
    say("\nEXAMPLES");
    for (t, examples) in &r.examples {
        for e in examples {
            say(format!(
                "{t:<17} {:>6}× [{}] {} — {}",
                e.count,
                e.team.escape_debug(),
                e.command.escape_debug(),
                e.reason.escape_debug()
            ));
        }
    }
}

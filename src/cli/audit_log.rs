//! `fleetkit agent audit …`: the device's audit log, for the people who answer for
//! it: verify the chain, run the upkeep now, show recent records.
//!
//! `verify` exits 0 when the chain holds, 1 when it breaks (each break named with
//! its file and line), so a compliance check can run it as is.

use super::agent::CommonArgs;
use super::output::{Failure, say};
use clap::{Args, Subcommand};
use fleetkit::agent::Agent;
use fleetkit::agent::siem::SiemOutcome;
use fleetkit::audit::verify::{self, Report};
use fleetkit::audit::{DeviceAudit, Record};
use fleetkit::clock;
use std::io::BufRead;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and the signed checkpoints: says where a record was
    /// edited, deleted, reordered or cut off. Exit 0 intact, 1 broken.
    Verify(CommonArgs),
    /// Collect the inbox, prune by the retention period, sign a checkpoint and
    /// forward to the SIEM now (every `agent sync` does it).
    Upkeep(CommonArgs),
    /// Print the newest records (JSON lines, as stored).
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// How many of the newest records.
    #[arg(long, default_value_t = 20)]
    last: usize,
}

pub fn run(cmd: AuditCommand) -> Result<(), Failure> {
    match cmd {
        AuditCommand::Verify(args) => verify(&args),
        AuditCommand::Upkeep(args) => upkeep(&args),
        AuditCommand::Show(args) => show(&args),
    }
}

fn invalid(e: impl ToString) -> Failure {
    Failure::invalid(
        e.to_string(),
        "the audit log is under the agent's data folder and readable by the agent (root) only",
    )
}

fn verify(args: &CommonArgs) -> Result<(), Failure> {
    let agent = Agent::open_to_read(&args.root).map_err(|e| {
        let help = e.help();
        Failure::invalid(e.to_string(), help)
    })?;
    let audit = agent.audit();
    let report = verify::verify(&audit.log, Some(agent.roots())).map_err(invalid)?;
    if args.json {
        say(serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print_report(&report);
    }
    if report.ok() {
        Ok(())
    } else if args.json {
        Err(Failure::Reported)
    } else {
        Err(Failure::invalid(
            format!(
                "the audit log is broken in {} place(s)",
                report.problems.len()
            ),
            "the log was changed outside fleetkit: keep a copy for the investigation; the server holds the records and checkpoints it received",
        ))
    }
}

fn print_report(r: &Report) {
    say(format!(
        "{} record(s) in {} segment(s), seq {}..={}",
        r.records,
        r.segments,
        r.first_seq.map_or("-".into(), |s| s.to_string()),
        r.last_seq.map_or("-".into(), |s| s.to_string()),
    ));
    match &r.last_checkpoint {
        Some((seq, time)) => say(format!(
            "{} checkpoint(s); the newest is record {seq} ({time}); {} record(s) since are chained but not yet signed",
            r.checkpoints, r.unsigned
        )),
        None => say(format!(
            "no signed checkpoint yet; {} record(s) chained",
            r.unsigned
        )),
    }
    for note in &r.notes {
        say(format!("note: {note}"));
    }
    for p in &r.problems {
        say(format!(
            "BROKEN ({}) at {}: {}",
            serde_json::to_value(p.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            p.at,
            p.message
        ));
    }
    if r.ok() {
        say("the chain is intact");
    }
}

fn upkeep(args: &CommonArgs) -> Result<(), Failure> {
    let mut agent = Agent::open(&args.root).map_err(|e| {
        let help = e.help();
        Failure::invalid(e.to_string(), help)
    })?;
    let now = clock::now();
    // Verified once for both.
    let policy = agent.policy_in_force(now).map(|(_, p)| p);
    let done = agent
        .audit_upkeep_under(policy.as_ref(), now)
        .map_err(invalid)?;
    let siem = agent.siem_forward_under(policy.as_ref(), now);
    if args.json {
        say(serde_json::json!({
            "collected": done.collected,
            "refused": done.refused,
            "pruned_segments": done.pruned_segments,
            "checkpoint": done.checkpoint,
            "siem": match &siem {
                Ok(SiemOutcome::Off) => serde_json::json!("off"),
                Ok(SiemOutcome::Sent { records, duplicates, dropped, caught_up }) => serde_json::json!({
                    "sent": records, "duplicates": duplicates, "dropped": dropped, "caught_up": caught_up
                }),
                Err(e) => serde_json::json!({"error": e}),
            },
        })
        .to_string());
    } else {
        say(format!(
            "collected {} record(s) from the inbox ({} refused), pruned {} segment(s), {}",
            done.collected,
            done.refused,
            done.pruned_segments,
            done.checkpoint
                .map_or("no new checkpoint".into(), |s| format!(
                    "checkpoint at record {s}"
                ))
        ));
        if let Ok(SiemOutcome::Sent {
            records, dropped, ..
        }) = &siem
        {
            say(format!(
                "sent {records} record(s) to the SIEM{}",
                if *dropped > 0 {
                    format!(" ({dropped} dropped: see the audit.dropped record)")
                } else {
                    String::new()
                }
            ));
        }
    }
    if let Err(e) = siem {
        return Err(Failure::invalid(
            format!("audit records not sent to the SIEM: {e}"),
            "they stay in the log and are sent at the next run",
        ));
    }
    Ok(())
}

fn show(args: &ShowArgs) -> Result<(), Failure> {
    let agent = Agent::open_to_read(&args.common.root).map_err(|e| {
        let help = e.help();
        Failure::invalid(e.to_string(), help)
    })?;
    let audit: DeviceAudit = agent.audit();
    let mut lines: std::collections::VecDeque<String> = Default::default();
    for path in audit.log.segments().map_err(invalid)?.iter().rev() {
        let file = std::fs::File::open(path).map_err(invalid)?;
        let mut these: Vec<String> = std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|l| Record::from_line(l.as_bytes()).is_some())
            .collect();
        while let Some(l) = these.pop() {
            if lines.len() >= args.last {
                break;
            }
            lines.push_front(l);
        }
        if lines.len() >= args.last {
            break;
        }
    }
    for l in lines {
        say(l);
    }
    Ok(())
}

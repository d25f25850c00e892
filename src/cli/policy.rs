//! `fleetkit policy check | test | sign | verify | publish`.

use super::Context;
use super::output::{Failure, fail, note, say};
use clap::{Args, Subcommand};
use fleetkit::diag::Diagnostics;
use fleetkit::protocol::ErrorCode;
use fleetkit::server::admin_client::ClientError;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file against the whole schema; every error, located.
    ///
    /// Exit status: 0 valid, 1 invalid, 2 usage error.
    Check(CheckArgs),
    /// Run test cases (commands and the decision each must get) against a policy
    /// with the device's decision engine, before signing it. For CI.
    ///
    /// Exit status: 0 every case passed, 1 a case failed or a file is invalid.
    Test(TestArgs),
    /// Sign the workspace policy into a bundle (a DSSE envelope).
    Sign(SignArgs),
    /// Verify a signed bundle against trust anchors, saying exactly why it fails.
    Verify(VerifyArgs),
    /// Publish a signed bundle on the server (which verifies it first): devices pull
    /// it at their next sync. The workspace's key rotations (rotations/) that the
    /// server lacks are sent first, oldest first.
    Publish(PublishArgs),
    /// Replay the fleet's recorded requests through a candidate policy and the
    /// newest signed one: how many move allow→deny, deny→allow…, by team and rule,
    /// with examples. Exit: 0 nothing changes, 3 something does.
    Impact(super::impact::ImpactArgs),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The signed bundle (default: the workspace's newest, bundles/policy-v<N>.json).
    bundle: Option<PathBuf>,
    #[command(flatten)]
    server: super::fleet::ServerArgs,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The policy file.
    policy: PathBuf,
    /// The cases file (YAML: `cases: [{command, expect, rule?, context?}]`; see the
    /// README's "Decision engine" section).
    cases: PathBuf,
    /// Print every case, not only the failures.
    #[arg(long, short)]
    verbose: bool,
    /// Machine-readable results.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file (default: the workspace's policy).
    file: Option<PathBuf>,
    /// Print machine-readable findings on stdout (for CI).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Bundle version (default: the last signed version + 1; can never go down; at
    /// most 9223372036854775807).
    #[arg(long, value_name = "N", value_parser = parse_version)]
    version: Option<u64>,
    /// How long the bundle stays valid, e.g. 30d, 12h (default: policy.lifetime_days).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expires: Option<time::Duration>,
    /// Where to write the bundle (default: bundles/policy-v<N>.json in the workspace).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Sign with this enforcement mode instead of the policy file's. `audit-only`
    /// is a dry run in the field: devices decide and record every decision but
    /// block nothing; measure it with `fleetkit audit stats`, then sign again
    /// with `enforce`.
    #[arg(long, value_name = "MODE", value_parser = ["enforce", "audit-only", "permissive"])]
    mode: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signed bundle.
    bundle: PathBuf,
    /// Trust anchors to verify against (default: the workspace's anchors.json).
    #[arg(long, value_name = "FILE")]
    anchors: Option<PathBuf>,
    /// The version the device already has: equal is "nothing to do", lower a rollback.
    #[arg(long, value_name = "N")]
    stored_version: Option<u64>,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Parses a bundle version, refusing one above [`fleetkit::bundle::MAX_VERSION`]
/// before anything is read or written.
fn parse_version(s: &str) -> Result<u64, String> {
    let max = fleetkit::bundle::MAX_VERSION;
    let version: u64 = s.parse().map_err(|_| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            format!("{s} is above the highest bundle version, {max}")
        } else {
            format!("`{s}` is not a version number (a whole number from 1 to {max})")
        }
    })?;
    if version > max {
        return Err(format!(
            "{version} is above the highest bundle version, {max} (what every server store holds)"
        ));
    }
    Ok(version)
}

/// Parses `30d`, `12h`, `90m` (humantime syntax) into a positive duration.
pub fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30d, 12h or 90m"))?;
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    time::Duration::try_from(d).map_err(|_| format!("`{s}` is too long"))
}

pub fn run(ctx: &Context, cmd: PolicyCommand) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::Check(a) => check(ctx, a),
        PolicyCommand::Test(a) => test(a),
        PolicyCommand::Sign(a) => sign(ctx, a),
        PolicyCommand::Verify(a) => verify(ctx, a),
        PolicyCommand::Publish(a) => publish(ctx, a),
        PolicyCommand::Impact(a) => super::impact::run(ctx, a),
    }
}

fn check(ctx: &Context, args: CheckArgs) -> Result<(), Failure> {
    let (path, expected_org) = match args.file {
        Some(f) => (f, None),
        None => {
            let ws = ctx.open_workspace().map_err(|f| match f {
                Failure::Invalid { message, .. } => Failure::Usage(format!(
                    "no FILE given and {message}; pass a policy file or run inside a workspace"
                )),
                other => other,
            })?;
            (ws.policy_path(), Some(ws.config.org.clone()))
        }
    };
    let outcome = fleetkit::policy::load(&path);
    let (errors, warnings, summary) = match outcome {
        Ok(checked) => {
            let mut errors = Diagnostics::default();
            if let Some(org) = &expected_org
                && &checked.policy.organization != org
            {
                errors.push(fleetkit::diag::Diagnostic {
                    severity: fleetkit::diag::Severity::Error,
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                    field: "organization".into(),
                    message: format!(
                        "the policy is for `{}` but the workspace org is `{org}`",
                        checked.policy.organization
                    ),
                    help: Some(
                        "make `organization` in the policy match `org` in fleetkit.yaml".into(),
                    ),
                    snippet: String::new(),
                });
            }
            let summary = format!(
                "{}: valid: organization {}, schema {}, effective {}, {} rules",
                path.display(),
                checked.policy.organization,
                checked.policy.version,
                checked.policy.effective_date,
                checked.policy.rule_count()
            );
            (errors, checked.warnings, summary)
        }
        Err(errors) => (errors, Diagnostics::default(), String::new()),
    };
    if args.json {
        let doc = serde_json::json!({
            "file": path.display().to_string(),
            "valid": errors.is_empty(),
            "errors": errors,
            "warnings": warnings,
        });
        say(serde_json::to_string_pretty(&doc).unwrap_or_default());
        return if errors.is_empty() {
            Ok(())
        } else {
            Err(Failure::Reported)
        };
    }
    for w in warnings.iter() {
        note(w.to_string());
    }
    if errors.is_empty() {
        say(summary);
        Ok(())
    } else {
        Err(Failure::Diagnostics(errors))
    }
}

fn test(args: TestArgs) -> Result<(), Failure> {
    use fleetkit::enforce::{Engine, cases};
    let policy = fleetkit::policy::load(&args.policy)
        .map_err(Failure::Diagnostics)?
        .policy;
    let engine = Engine::compile(&policy).map_err(|e| fail(e, "fix the policy"))?;
    let bytes = fleetkit::fsutil::read_capped(&args.cases, cases::MAX_CASES_BYTES as u64)
        .map_err(|e| fail(e, "give the cases file"))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::invalid(
            format!("{}: not UTF-8 text", args.cases.display()),
            "save the cases file as UTF-8",
        )
    })?;
    let file = cases::parse(&text).map_err(|e| {
        Failure::invalid(
            format!("{}: {e}", args.cases.display()),
            "each case is {command: LINE, expect: allow|ask|deny} or {inference: {backend, model}, expect: …}",
        )
    })?;
    let outcomes = cases::run(&engine, &file);
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let file_name = args.cases.display().to_string();
    if args.json {
        let results: Vec<_> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "line": o.line,
                    "case": o.label,
                    "expected": o.expected.as_str(),
                    "expected_rule": o.expected_rule,
                    "passed": o.passed(),
                    "decision": o.decision,
                })
            })
            .collect();
        say(serde_json::to_string_pretty(&serde_json::json!({
            "policy": args.policy.display().to_string(),
            "cases": file_name,
            "total": outcomes.len(),
            "failed": failed,
            "results": results,
        }))
        .unwrap_or_default());
    } else {
        for o in &outcomes {
            if o.passed() && !args.verbose {
                continue;
            }
            let want = match &o.expected_rule {
                Some(r) => format!("{} by {r}", o.expected.as_str()),
                None => o.expected.as_str().to_string(),
            };
            say(format!(
                "{} {file_name}:{}: {}: expected {want}, got {} by {} ({})",
                if o.passed() { "ok  " } else { "FAIL" },
                o.line,
                o.label,
                o.decision.verdict.as_str(),
                o.decision.rule,
                o.decision.reason
            ));
        }
        say(format!(
            "{} cases: {} passed, {failed} failed",
            outcomes.len(),
            outcomes.len() - failed
        ));
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::Reported)
    }
}

fn sign(ctx: &Context, args: SignArgs) -> Result<(), Failure> {
    let ws = ctx.open_workspace()?;
    let opts = fleetkit::workspace::sign::SignOptions {
        version: args.version,
        lifetime: args.expires,
        out: args.out,
        mode: args.mode.as_deref().map(|m| match m {
            "audit-only" => fleetkit::policy::EnforcementMode::AuditOnly,
            "permissive" => fleetkit::policy::EnforcementMode::Permissive,
            _ => fleetkit::policy::EnforcementMode::Enforce,
        }),
    };
    let report = fleetkit::workspace::sign::sign_policy(&ws, &opts).map_err(|e| match e {
        fleetkit::workspace::sign::SignError::Policy(d) => Failure::Diagnostics(d),
        other => {
            let help = other.help();
            fail(other, help)
        }
    })?;
    for w in report.warnings.iter() {
        note(w.to_string());
    }
    say(format!(
        "signed policy bundle v{} for {} → {}\n  issued {}, expires {}\n  signed by {} key(s): {}\n  sha256:{}\n  enforcement mode: {}{}",
        report.version,
        report.org,
        report.path.display(),
        report.issued_at,
        report.expires_at,
        report.keyids.len(),
        report.keyids.join(", "),
        report.sha256,
        report.mode.as_str(),
        match report.mode {
            fleetkit::policy::EnforcementMode::AuditOnly =>
                " (devices decide and record, block nothing: a dry run)",
            fleetkit::policy::EnforcementMode::Permissive => " (devices block denials only)",
            fleetkit::policy::EnforcementMode::Enforce => "",
        }
    ));
    Ok(())
}

fn verify(ctx: &Context, args: VerifyArgs) -> Result<(), Failure> {
    use fleetkit::workspace::verify::{Outcome, verify_bundle_file};
    let anchors_path = match args.anchors {
        Some(p) => p,
        None => ctx
            .open_workspace()
            .map_err(|_| {
                Failure::Usage(
                    "no --anchors given and no workspace found; pass --anchors FILE".into(),
                )
            })?
            .anchors_path(),
    };
    let result = verify_bundle_file(&args.bundle, &anchors_path, args.stored_version);
    if args.json {
        let doc = match &result {
            Ok(o) => {
                serde_json::json!({"bundle": args.bundle.display().to_string(), "valid": true, "outcome": o})
            }
            Err(e) => {
                serde_json::json!({"bundle": args.bundle.display().to_string(), "valid": false, "reason": e.to_string(), "code": e.code()})
            }
        };
        say(serde_json::to_string_pretty(&doc).unwrap_or_default());
        return result.map(|_| ()).map_err(|_| Failure::Reported);
    }
    match result {
        Ok(Outcome::Accepted(s)) => {
            say(format!(
                "{}: valid: policy bundle v{} for {}, issued {}, expires {}, signed by {} of threshold {} ({})",
                args.bundle.display(),
                s.version,
                s.org,
                s.issued_at,
                s.expires_at,
                s.keyids.len(),
                s.threshold,
                s.keyids.join(", ")
            ));
            Ok(())
        }
        Ok(Outcome::AlreadyCurrent { version }) => {
            say(format!(
                "{}: valid, and version {version} is already installed: nothing to do",
                args.bundle.display()
            ));
            Ok(())
        }
        Err(e) => Err(Failure::invalid(
            format!("{}: rejected: {e}", args.bundle.display()),
            "",
        )),
    }
}

impl PolicyCommand {
    /// `policy check` on the workspace policy.
    pub fn check_workspace() -> Self {
        Self::Check(CheckArgs {
            file: None,
            json: false,
        })
    }
    /// `policy sign` with defaults.
    pub fn sign_default() -> Self {
        Self::Sign(SignArgs {
            version: None,
            expires: None,
            out: None,
            mode: None,
        })
    }
    /// `policy verify BUNDLE --anchors ANCHORS`.
    pub fn verify(bundle: PathBuf, anchors: PathBuf) -> Self {
        Self::Verify(VerifyArgs {
            bundle,
            anchors: Some(anchors),
            stored_version: None,
            json: false,
        })
    }
}

fn publish(ctx: &Context, args: PublishArgs) -> Result<(), Failure> {
    let ws = ctx.open_workspace()?;
    let path = match args.bundle {
        Some(p) => p,
        None => {
            let state = fleetkit::workspace::state::State::load(&ws.state_path())
                .map_err(|e| fail(e, "check state.json"))?;
            if state.policy_version == 0 {
                return Err(Failure::invalid(
                    "the workspace has no signed bundle yet",
                    "sign the policy first: `fleetkit policy sign`",
                ));
            }
            ws.bundle_path(state.policy_version)
        }
    };
    let bytes = fleetkit::fsutil::read_capped(&path, fleetkit::bundle::MAX_BUNDLE_BYTES as u64)
        .map_err(|e| fail(e, "give the path of a signed bundle"))?;
    let anchors = fleetkit::anchors::load(&ws.anchors_path())
        .map_err(|e| fail(e, "check the workspace's anchors.json"))?;
    let mut chain = fleetkit::workspace::rotate::chain_files(&ws)
        .map_err(|e| fail(e, "check the workspace's rotations/ directory"))?;
    // A step above anchors.json was left by an interrupted `keys rotate`: the server
    // would keep it for good, and a different step made later under its version
    // would then be refused at every publish.
    chain.retain(|step| {
        let above = fleetkit::workspace::rotate::above_anchors(step, anchors.version);
        if above {
            note(format!(
                "not sending {}: it is above the workspace's anchors.json (v{}), left by a `fleetkit keys rotate` that did not finish; run `fleetkit keys rotate` to finish it (or move the file out of rotations/), then publish again",
                step.path.display(),
                anchors.version
            ));
        }
        !above
    });
    let client = super::fleet::admin_client(ctx, &args.server)?;
    // The rotations first, oldest first: the server verifies the bundle against the
    // anchors they lead to, and devices follow them before verifying it.
    let mut rotated = false;
    for step in &chain {
        match client.publish_rotation(&step.envelope) {
            Ok(p) => {
                rotated = true;
                say(format!(
                    "published key rotation: anchors v{} ({})",
                    p.anchors_version,
                    step.path.display()
                ));
            }
            Err(ClientError::Refused {
                code: ErrorCode::AlreadyPublished,
                ..
            }) => {}
            Err(e) => {
                return Err(fail(
                    format!("{}: {e}", step.path.display()),
                    "the server takes only rotations that extend its anchors; see the reason above",
                ));
            }
        }
    }
    // A bundle signed only by keys that are retiring verifies today but strands
    // every device installed after the window (and every device once it ends).
    if let Some(outlived) = fleetkit::workspace::rotate::outlived_bundle(&anchors, &bytes) {
        let rotations = if rotated {
            "the key rotations above are published and stay so"
        } else if chain.is_empty() {
            "nothing was published"
        } else {
            "the server already holds the key rotations; nothing else was published"
        };
        return Err(Failure::invalid(
            format!(
                "bundle v{} is signed only by retiring keys; devices installed after {} will refuse it ({rotations})",
                outlived.version,
                fleetkit::clock::rfc3339(outlived.refused_from)
            ),
            "run `fleetkit policy sign`, then `fleetkit policy publish`",
        ));
    }
    match client.publish_bundle(&bytes) {
        Ok(published) => {
            say(format!(
                "published policy bundle v{} (expires {}, ETag {})",
                published.version, published.expires_at, published.etag
            ));
            Ok(())
        }
        // Sending a rotation was the point of this run: the bundle being already
        // there is not a failure then.
        Err(ClientError::Refused {
            code: ErrorCode::AlreadyPublished,
            message,
            ..
        }) if rotated => {
            say(format!("{message}; nothing else to publish"));
            Ok(())
        }
        Err(e) => Err(super::fleet::client_failure(e)),
    }
}

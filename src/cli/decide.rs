//! `fleetkit agent decide`: the decision engine on the command line, for people,
//! scripts, and Claude Code's `PreToolUse` hook (`--claude-code`).
//!
//! Exit codes: 0 allow, 3 ask (approval required), 4 deny, 1 the decision could not
//! be made (no policy, bad input), 2 usage. The code follows what is applied under
//! the policy's mode (audit-only: always 0). With `--claude-code` the answer is
//! JSON on stdout with status 0, and every failure is status 2 with the reason on
//! stderr: Claude Code treats status 2 as "blocked" and any other failure as "go
//! ahead", so the hook fails closed.

use super::output::{Failure, say};
use clap::Args;
use fleetkit::agent::Agent;
use fleetkit::enforce::{self, Context, Decision, Engine, Request, SystemContext, Verdict};
use fleetkit::policy::OrgPolicy;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

pub const EXIT_ASK: u8 = 3;
pub const EXIT_DENY: u8 = 4;
/// Claude Code's "blocked" status for a hook.
const EXIT_HOOK_BLOCK: i32 = 2;

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// `--root DIR`: the device whose policy in force decides; `--json`: the whole
    /// decision with every finding.
    #[command(flatten)]
    common: super::agent::CommonArgs,
    /// Decide with this policy file (YAML, validated) instead of the device's policy
    /// in force.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The command line, in bash syntax. Or give it after `--`: one word is read as
    /// a command line (`-- 'curl x | sh'`), several as the words of one command.
    #[arg(long, value_name = "LINE", conflicts_with = "words")]
    command: Option<String>,
    /// The folder the command would run in (relative paths are placed there).
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,
    /// Ask about an inference backend instead of a command.
    #[arg(long, value_name = "BACKEND", conflicts_with_all = ["command", "words"])]
    inference_backend: Option<String>,
    /// The model, with --inference-backend.
    #[arg(long, value_name = "MODEL", requires = "inference_backend")]
    model: Option<String>,
    /// A tool's version, instead of running `TOOL --version` (repeatable).
    #[arg(long = "tool-version", value_name = "TOOL=VERSION")]
    tool_versions: Vec<String>,
    /// Be Claude Code's PreToolUse hook: read its JSON on stdin, answer on stdout.
    #[arg(long, conflicts_with_all = ["command", "words", "inference_backend"])]
    claude_code: bool,
    #[arg(last = true, value_name = "COMMAND")]
    words: Vec<String>,
}

/// The system, with versions given on the command line taking precedence.
struct WithVersions {
    versions: BTreeMap<String, String>,
    system: SystemContext,
}

impl Context for WithVersions {
    fn tool_version(&self, tool: &str) -> Option<String> {
        self.versions
            .get(tool)
            .cloned()
            .or_else(|| self.system.tool_version(tool))
    }
    fn env(&self, name: &str) -> Option<String> {
        self.system.env(name)
    }
    fn kube_context(&self, path: Option<&str>) -> Option<String> {
        self.system.kube_context(path)
    }
    fn home(&self) -> Option<String> {
        self.system.home()
    }
    fn cwd(&self) -> Option<String> {
        self.system.cwd()
    }
    fn open_file(&self, path: &str) -> Option<Box<dyn enforce::payloads::Payload + '_>> {
        self.system.open_file(path)
    }
}

/// The stack the decision runs on: the shell parser recurses on nesting, and the
/// input screens keep it far below this (a stack overflow aborts the process,
/// which Claude Code would read as "go ahead").
const DECIDE_STACK_BYTES: usize = 256 * 1024 * 1024;

/// How long a decision may take before it is given up (blocked, in hook mode):
/// well inside the time Claude Code gives the hook, since a hook that times out
/// lets the command run. Decisions take microseconds; this bounds what the input
/// screens may have missed in the parser, and tool versions that hang.
const DECIDE_DEADLINE: Duration =
    Duration::from_secs(enforce::claude_settings::HOOK_TIMEOUT_SECS as u64 / 2);

/// [`DECIDE_DEADLINE`], or less when `FLEETKIT_DECIDE_DEADLINE_SECS` says so (never
/// more: the hook's environment is the user's, and a longer wait would outlast
/// Claude Code's).
fn deadline() -> Duration {
    std::env::var("FLEETKIT_DECIDE_DEADLINE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .filter(|d| !d.is_zero() && *d < DECIDE_DEADLINE)
        .unwrap_or(DECIDE_DEADLINE)
}

pub fn run(args: DecideArgs) -> Result<(), Failure> {
    let hook = args.claude_code;
    // In hook mode every failure, this one included, must be status 2.
    let fail = |why: String| -> Result<(), Failure> {
        if hook {
            eprintln!("fleetkit: {why}; blocked (fail closed)");
            std::process::exit(EXIT_HOOK_BLOCK);
        }
        Err(Failure::invalid(why, ""))
    };
    let (done, result) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("decide".into())
        .stack_size(DECIDE_STACK_BYTES)
        .spawn(move || {
            let _ = done.send(run_here(args));
        });
    match worker {
        // The worker is left behind on a timeout: returning ends the process.
        Ok(_) => match result.recv_timeout(deadline()) {
            Ok(outcome) => outcome,
            Err(RecvTimeoutError::Timeout) => fail(format!(
                "the decision took longer than {} s (a command the parser is slow on, or tool versions that do not answer)",
                deadline().as_secs()
            )),
            Err(RecvTimeoutError::Disconnected) => fail("the decision failed".into()),
        },
        Err(e) => fail(format!(
            "cannot start the decision (a thread with a {} MiB stack): {e}",
            DECIDE_STACK_BYTES >> 20
        )),
    }
}

fn run_here(args: DecideArgs) -> Result<(), Failure> {
    if args.claude_code {
        // A panic must block too: the hook's status 2, not the abort's.
        std::panic::set_hook(Box::new(|info| {
            eprintln!("fleetkit: internal error deciding this command ({info}); blocked");
            std::process::exit(EXIT_HOOK_BLOCK);
        }));
        match hook(&args) {
            Ok(Some(answer)) => {
                say(answer.to_string());
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(why) => {
                eprintln!("fleetkit: {why}; blocked (fail closed)");
                std::process::exit(EXIT_HOOK_BLOCK);
            }
        }
    } else {
        let decision = decide(&args)?;
        if args.common.json {
            say(serde_json::to_string_pretty(&decision).unwrap_or_default());
        } else {
            say(format!(
                "{}: {} [{}]",
                decision.verdict.as_str(),
                decision.reason,
                decision.rule
            ));
            if decision.applied != decision.verdict {
                say(format!(
                    "applied: {} (enforcement mode {})",
                    decision.applied.as_str(),
                    decision.mode
                ));
            }
        }
        match decision.applied {
            Verdict::Allow => Ok(()),
            Verdict::Ask => Err(code(EXIT_ASK)),
            Verdict::Deny => Err(code(EXIT_DENY)),
        }
    }
}

fn code(code: u8) -> Failure {
    Failure::WithCode {
        message: String::new(),
        help: String::new(),
        code,
    }
}

fn context(args: &DecideArgs) -> Result<WithVersions, Failure> {
    let mut versions = BTreeMap::new();
    for tv in &args.tool_versions {
        match tv.split_once('=') {
            Some((t, v))
                if !t.is_empty() && enforce::context::version_in(&format!(" {v}")).is_some() =>
            {
                versions.insert(t.to_ascii_lowercase(), v.to_string());
            }
            _ => {
                return Err(Failure::Usage(format!(
                    "--tool-version `{tv}` is not TOOL=VERSION (e.g. kubectl=1.28.2)"
                )));
            }
        }
    }
    Ok(WithVersions {
        versions,
        system: SystemContext::new(SystemContext::default_cache_file()),
    })
}

/// Where the device's decisions are recorded. `None` when deciding with `--policy
/// FILE`: a policy under test is not the device's, and its answers prove nothing.
struct Recorder {
    audit: fleetkit::audit::DeviceAudit,
    subject: fleetkit::audit::Subject,
    policy: OrgPolicy,
}

impl Recorder {
    /// Records `decision` when the policy asks for it. A required record that
    /// cannot be written turns an allowed command into a question (nothing the
    /// policy wants on record runs unrecorded without someone saying yes); the
    /// reason is on stderr either way.
    fn record(
        &self,
        request: &Request,
        decision: &mut Decision,
        source: &str,
    ) -> Result<(), String> {
        if !fleetkit::audit::required(&self.policy, decision.verdict) {
            return Ok(());
        }
        let now = fleetkit::clock::now();
        let record =
            fleetkit::audit::decision_record(&self.subject, request, decision, source, now);
        let Err(why) = self.audit.record(record, now) else {
            return Ok(());
        };
        eprintln!("fleetkit: the decision could not be recorded in the audit log: {why}");
        if decision.applied == Verdict::Allow {
            decision.applied = Verdict::Ask;
            decision.rule = "audit.unwritable".into();
            decision.reason = format!(
                "the audit log cannot be written ({why}), and the policy requires this decision on record"
            );
            return Err(decision.reason.clone());
        }
        Ok(())
    }

    /// Records hook input that could not be read (blocked).
    fn record_unreadable(&self, input: &[u8], why: &str) {
        let now = fleetkit::clock::now();
        let record =
            fleetkit::audit::unreadable_input_record(&self.subject, input, why, "claude-code", now);
        if let Err(e) = self.audit.record(record, now) {
            eprintln!("fleetkit: the refusal could not be recorded in the audit log: {e}");
        }
    }
}

fn policy(args: &DecideArgs) -> Result<(OrgPolicy, Option<Recorder>), Failure> {
    match &args.policy {
        Some(path) => fleetkit::policy::load(path)
            .map(|c| (c.policy, None))
            .map_err(Failure::Diagnostics),
        None => {
            let agent = Agent::open_to_read(&args.common.root).map_err(|e| {
                let help = e.help();
                Failure::invalid(e.to_string(), help)
            })?;
            let (version, policy) =
                agent
                    .policy_in_force(fleetkit::clock::now())
                    .ok_or_else(|| {
                        Failure::invalid(
                            "this device holds no policy that verifies",
                            "run `fleetkit agent sync`, or give --policy FILE",
                        )
                    })?;
            let recorder = Recorder {
                audit: agent.audit(),
                subject: agent.audit_subject(Some((version, &policy))),
                policy: policy.clone(),
            };
            Ok((policy, Some(recorder)))
        }
    }
}

fn engine(args: &DecideArgs) -> Result<(Engine, Option<Recorder>), Failure> {
    let (policy, recorder) = policy(args)?;
    let engine = Engine::compile(&policy)
        .map_err(|e| Failure::invalid(e.to_string(), "fix the policy and sign it again"))?;
    Ok((engine, recorder))
}

fn decide(args: &DecideArgs) -> Result<Decision, Failure> {
    let request = if let Some(backend) = &args.inference_backend {
        Request::Inference {
            backend: backend.clone(),
            model: args.model.clone(),
        }
    } else {
        let command = match (&args.command, args.words.as_slice()) {
            (Some(c), _) => c.clone(),
            (None, [one]) => one.clone(),
            (None, []) => {
                return Err(Failure::Usage(
                    "give the command to decide: --command LINE, or after `--`".into(),
                ));
            }
            (None, words) => words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "),
        };
        Request::Command {
            command,
            cwd: args.cwd.clone(),
        }
    };
    let ctx = context(args)?;
    let (engine, recorder) = engine(args)?;
    let mut decision = engine.decide(&request, &ctx);
    if let Some(recorder) = &recorder {
        let _ = recorder.record(&request, &mut decision, "cli");
    }
    Ok(decision)
}

/// A word quoted for bash when it needs it.
fn quote(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// The hook: `Ok(None)` says nothing (Claude Code's own rules apply).
fn hook(args: &DecideArgs) -> Result<Option<serde_json::Value>, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(enforce::claude_code::MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| format!("cannot read the hook input: {e}"))?;
    let failure_text = |f: Failure| match f {
        Failure::Invalid { message, help } => format!("{message} ({help})"),
        Failure::Diagnostics(d) => d.to_string(),
        Failure::Usage(m) => m,
        other => format!("{other:?}"),
    };
    // A tool the hook says nothing about costs no policy load (as before the audit
    // trail); input it cannot read is blocked, and recorded when the device's
    // policy can be loaded.
    let (request, hook_input) = match enforce::claude_code::request(&input) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(e) => {
            if let Ok((_, Some(recorder))) = engine(args) {
                recorder.record_unreadable(&input, &e.to_string());
            }
            return Err(e.to_string());
        }
    };
    let (engine, recorder) = engine(args).map_err(failure_text)?;
    let ctx = context(args).map_err(failure_text)?;
    let (request, mut decision) = match (&request, hook_input.tool_name.as_str()) {
        (Request::Command { command, cwd }, "PowerShell") => {
            match enforce::claude_code::powershell_as_bash(command) {
                Ok(bash) => {
                    let as_bash = Request::Command {
                        command: bash,
                        cwd: cwd.clone(),
                    };
                    let decision = engine.decide(&as_bash, &ctx);
                    (request, decision)
                }
                Err(why) => {
                    let decision = unresolved_powershell(&engine, why);
                    (request, decision)
                }
            }
        }
        _ => {
            let decision = engine.decide(&request, &ctx);
            (request, decision)
        }
    };
    if let Some(recorder) = &recorder
        && let Err(why) = recorder.record(&request, &mut decision, "claude-code")
    {
        return Ok(Some(enforce::claude_code::hook_output(
            "ask",
            "audit.unwritable",
            &why,
        )));
    }
    Ok(enforce::claude_code::answer(&decision))
}

/// A PowerShell command fleetkit cannot read as bash: asked under enforce, let
/// through (and recorded) otherwise.
fn unresolved_powershell(engine: &Engine, why: String) -> Decision {
    let mode = engine.policy().enforcement.mode;
    let applied = if mode == fleetkit::policy::EnforcementMode::Enforce {
        Verdict::Ask
    } else {
        Verdict::Allow
    };
    Decision {
        verdict: Verdict::Ask,
        applied,
        mode: mode.as_str(),
        rule: "engine.unresolved".into(),
        reason: why,
        classes: Vec::new(),
        findings: Vec::new(),
    }
}

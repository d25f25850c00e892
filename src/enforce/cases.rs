//! Policy test cases (`fleetkit policy test POLICY CASES`): a YAML file of requests
//! and the decision each must get, so a security engineer can unit-test a policy in
//! CI before signing it.
//!
//! ```yaml
//! context:                       # optional: facts every case sees
//!   versions: {kubectl: "1.28.2", terraform: "1.6.6"}
//!   env: {AWS_PROFILE: dev}
//!   kube_context: dev-eu
//!   home: /home/dev
//!   cwd: /home/dev/src
//! cases:
//!   - command: kubectl --context prod-eu delete ns x
//!     expect: deny
//!     rule: allowed_tools[1].blocked_contexts[0]   # optional
//!   - inference: {backend: openai, model: gpt-4o}
//!     expect: deny
//!   - command: aws s3 ls
//!     context: {env: {AWS_PROFILE: prod}}           # merged over the file's context
//!     expect: deny
//! ```

use super::{Decision, Engine, FixedContext, Request, Verdict};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// Largest cases file read.
pub const MAX_CASES_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseContext {
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub kube_context: Option<String>,
    pub home: Option<String>,
    pub cwd: Option<String>,
}

impl CaseContext {
    /// `over` on top of `self`.
    fn merged(&self, over: Option<&CaseContext>) -> FixedContext {
        let mut ctx = FixedContext {
            versions: self.versions.clone(),
            env: self.env.clone(),
            kube_context: self.kube_context.clone(),
            home: self.home.clone(),
            cwd: self.cwd.clone(),
            // Cases name no archive or patch contents: extractions ask.
            files: Default::default(),
        };
        if let Some(o) = over {
            ctx.versions.extend(o.versions.clone());
            ctx.env.extend(o.env.clone());
            ctx.kube_context = o.kube_context.clone().or(ctx.kube_context);
            ctx.home = o.home.clone().or(ctx.home);
            ctx.cwd = o.cwd.clone().or(ctx.cwd);
        }
        ctx
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceCase {
    pub backend: String,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A label for reports (default: the command).
    pub name: Option<String>,
    pub command: Option<String>,
    pub inference: Option<InferenceCase>,
    /// `allow`, `ask` or `deny`: what the policy's rules must decide.
    pub expect: String,
    /// The rule that must decide (`safety.blocked_patterns[0]`), when given.
    pub rule: Option<String>,
    pub context: Option<CaseContext>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    #[serde(default)]
    pub context: CaseContext,
    pub cases: Vec<Spanned<Case>>,
}

/// One case's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// 1-based line of the case in the file.
    pub line: usize,
    pub label: String,
    pub expected: Verdict,
    pub expected_rule: Option<String>,
    pub decision: Decision,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.decision.verdict == self.expected
            && self
                .expected_rule
                .as_ref()
                .is_none_or(|r| *r == self.decision.rule)
    }
}

/// Parses a cases file, checking every case names one request and a known verdict.
pub fn parse(text: &str) -> Result<CaseFile, String> {
    if text.len() > MAX_CASES_BYTES {
        return Err(format!(
            "the file is {} bytes; the limit is {MAX_CASES_BYTES}",
            text.len()
        ));
    }
    let file: CaseFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    for c in &file.cases {
        let line = c.referenced.line();
        let case = &c.value;
        if case.command.is_some() == case.inference.is_some() {
            return Err(format!(
                "line {line}: a case gives either `command` or `inference`, not {}",
                if case.command.is_some() {
                    "both"
                } else {
                    "neither"
                }
            ));
        }
        if Verdict::parse(&case.expect).is_none() {
            return Err(format!(
                "line {line}: `expect: {}` must be allow, ask or deny",
                case.expect
            ));
        }
    }
    Ok(file)
}

/// Runs every case.
pub fn run(engine: &Engine, file: &CaseFile) -> Vec<Outcome> {
    file.cases
        .iter()
        .map(|c| {
            let case = &c.value;
            let ctx = file.context.merged(case.context.as_ref());
            let (request, label) = match &case.inference {
                Some(i) => (
                    Request::Inference {
                        backend: i.backend.clone(),
                        model: i.model.clone(),
                    },
                    format!(
                        "inference {}{}",
                        i.backend,
                        i.model
                            .as_deref()
                            .map_or(String::new(), |m| format!(" {m}"))
                    ),
                ),
                None => {
                    let cmd = case.command.clone().unwrap_or_default();
                    (
                        Request::Command {
                            command: cmd.clone(),
                            cwd: None,
                        },
                        cmd,
                    )
                }
            };
            Outcome {
                line: c.referenced.line() as usize,
                label: case.name.clone().unwrap_or(label),
                expected: Verdict::parse(&case.expect).unwrap_or(Verdict::Deny),
                expected_rule: case.rule.clone(),
                decision: engine.decide(&request, &ctx),
            }
        })
        .collect()
}

//! fleetkit's engine and Cedar deciding the same rules, side by side: the example
//! policy's tool rules (versions, kube contexts approved and blocked, terraform's
//! required flag, aws profiles) and a generated policy with 500 more tools carrying
//! the same four kinds of rule plus 500 command patterns.
//!
//! The comparison favours Cedar: fleetkit decides from the raw command line (it
//! parses the shell, unwraps, classifies, checks paths), while Cedar gets the
//! request already taken apart (tool, version, context, flags, profile) and only
//! evaluates. Cedar has no ask, so each forbid carries `@verdict("deny")` or
//! `@verdict("ask")` and the verdict is read from the policies that decided, as an
//! engine built on Cedar would. Cedar has no regex or semver either: versions are
//! integers (major·10⁶ + minor·10³ + patch), patterns are `like` globs.
//!
//! Run: `cd benches/cedar && cargo bench`. Prints p50/p99 of single decisions for
//! both engines and their ratio, then criterion's means.

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use criterion::{Criterion, criterion_group, criterion_main};
use fleetkit::enforce::{Engine, Request as FkRequest};
use fleetkit::policy::OrgPolicy;
use serde_json::json;
use std::collections::HashSet;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

#[path = "../../fixtures/decide_policies.rs"]
mod fixtures;

/// One request both engines decide: the command line for fleetkit, its parts for
/// Cedar.
struct Case {
    command: &'static str,
    tool: &'static str,
    version: i64,
    kube_context: &'static str,
    flags: &'static [&'static str],
    profile: &'static str,
}

const CASES: &[Case] = &[
    Case {
        command: "git status",
        tool: "git",
        version: 2_039_005,
        kube_context: "",
        flags: &[],
        profile: "",
    },
    Case {
        command: "kubectl --context dev-1 get pods",
        tool: "kubectl",
        version: 1_028_002,
        kube_context: "dev-1",
        flags: &["--context"],
        profile: "",
    },
    Case {
        command: "kubectl --context=prod-eu delete ns x",
        tool: "kubectl",
        version: 1_028_002,
        kube_context: "prod-eu",
        flags: &["--context=prod-eu"],
        profile: "",
    },
    Case {
        command: "terraform apply --lock=true",
        tool: "terraform",
        version: 1_006_006,
        kube_context: "",
        flags: &["--lock=true"],
        profile: "",
    },
    Case {
        command: "terraform apply",
        tool: "terraform",
        version: 1_006_006,
        kube_context: "",
        flags: &[],
        profile: "",
    },
    Case {
        command: "aws s3 ls --profile dev",
        tool: "aws",
        version: 2_015_030,
        kube_context: "",
        flags: &["--profile"],
        profile: "dev",
    },
    Case {
        command: "aws s3 ls --profile prod",
        tool: "aws",
        version: 2_015_030,
        kube_context: "",
        flags: &["--profile"],
        profile: "prod",
    },
];

/// The example's tool rules in Cedar.
const EXAMPLE_CEDAR: &str = r#"
permit(principal, action == Action::"run", resource);
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"git")
  unless { context.version >= 2030000 };
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"kubectl")
  unless { context.version >= 1025000 && context.version < 1030000 };
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"kubectl")
  when { context.kube_context like "prod-*" };
@verdict("ask")
forbid(principal, action == Action::"run", resource == Tool::"kubectl")
  unless { context.kube_context like "dev-*" || context.kube_context like "staging-*" };
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"terraform")
  unless { context.version >= 1006000 && context.version < 1007000 };
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"terraform")
  unless { context.flags.contains("--lock=true") };
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"aws")
  unless { context.version >= 2000000 };
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"aws")
  unless { ["dev", "staging"].contains(context.profile) };
"#;

/// The example plus 500 tools with the same four kinds of rule and 500 patterns,
/// for both engines (fleetkit's from the shared fixtures).
fn big_policies() -> (OrgPolicy, String) {
    let mut cedar = String::from(EXAMPLE_CEDAR);
    for i in 0..fixtures::BIG_RULES {
        cedar.push_str(&format!(
            r#"
@verdict("deny")
forbid(principal, action == Action::"run", resource)
  when {{ context.command like "*rm -rf /data/set{i}*" }};
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"tool-{i}")
  unless {{ context.version >= {lo} && context.version < {hi} }};
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"tool-{i}")
  when {{ context.kube_context like "prod-*" }};
@verdict("ask")
forbid(principal, action == Action::"run", resource == Tool::"tool-{i}")
  unless {{ context.kube_context like "dev-*" }};
@verdict("deny")
forbid(principal, action == Action::"run", resource == Tool::"tool-{i}")
  unless {{ context.flags.contains("--dry-run") }};
"#,
            lo = 1_000_000 + i * 1000,
            hi = (i + 2) * 1_000_000,
        ));
    }
    (fixtures::big_policy(), cedar)
}

/// Cedar with the verdict annotations read once.
struct CedarEngine {
    policies: PolicySet,
    deny_ids: HashSet<String>,
    principal: EntityUid,
    action: EntityUid,
    entities: Entities,
    authorizer: Authorizer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Ask,
    Deny,
}

impl CedarEngine {
    fn new(text: &str) -> Self {
        let policies = PolicySet::from_str(text).expect("valid Cedar");
        let deny_ids = policies
            .policies()
            .filter(|p| p.annotation("verdict") == Some("deny"))
            .map(|p| p.id().to_string())
            .collect();
        Self {
            policies,
            deny_ids,
            principal: EntityUid::from_str(r#"User::"dev""#).unwrap(),
            action: EntityUid::from_str(r#"Action::"run""#).unwrap(),
            entities: Entities::empty(),
            authorizer: Authorizer::new(),
        }
    }

    /// Builds the request (as an engine on Cedar would per command) and decides.
    fn decide(&self, case: &Case) -> Verdict {
        let resource = EntityUid::from_str(&format!(r#"Tool::"{}""#, case.tool)).unwrap();
        let context = Context::from_json_value(
            json!({
                "command": case.command,
                "version": case.version,
                "kube_context": case.kube_context,
                "flags": case.flags,
                "profile": case.profile,
            }),
            None,
        )
        .unwrap();
        let request = Request::new(
            self.principal.clone(),
            self.action.clone(),
            resource,
            context,
            None,
        )
        .unwrap();
        let answer = self
            .authorizer
            .is_authorized(&request, &self.policies, &self.entities);
        match answer.decision() {
            Decision::Allow => Verdict::Allow,
            Decision::Deny => {
                if answer
                    .diagnostics()
                    .reason()
                    .any(|id| self.deny_ids.contains(&id.to_string()))
                {
                    Verdict::Deny
                } else {
                    Verdict::Ask
                }
            }
        }
    }
}

fn fleetkit_verdict(d: &fleetkit::enforce::Decision) -> Verdict {
    match d.verdict {
        fleetkit::enforce::Verdict::Allow => Verdict::Allow,
        fleetkit::enforce::Verdict::Ask => Verdict::Ask,
        fleetkit::enforce::Verdict::Deny => Verdict::Deny,
    }
}

/// p50 and p99 of single decisions, in microseconds.
fn percentiles(rounds: usize, mut decide: impl FnMut(&Case)) -> (f64, f64) {
    let mut samples = Vec::with_capacity(rounds * CASES.len());
    for _ in 0..rounds {
        for case in CASES {
            let t = Instant::now();
            decide(black_box(case));
            samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

fn bench(c: &mut Criterion) {
    let ctx = fixtures::context();
    let (big, big_cedar) = big_policies();
    for (name, policy, cedar_text) in [
        (
            "example",
            fixtures::example_policy(),
            EXAMPLE_CEDAR.to_string(),
        ),
        ("1000-rules", big, big_cedar),
    ] {
        let engine = Engine::compile(&policy).expect("compiles");
        let cedar = CedarEngine::new(&cedar_text);
        let requests: Vec<FkRequest> = CASES
            .iter()
            .map(|c| FkRequest::Command {
                command: c.command.into(),
                cwd: None,
            })
            .collect();
        // Both engines reach the same verdicts, or the comparison means nothing.
        for (case, request) in CASES.iter().zip(&requests) {
            let ours = fleetkit_verdict(&engine.decide(request, &ctx));
            assert_eq!(ours, cedar.decide(case), "{name}: `{}`", case.command);
        }
        let rounds = 5_000;
        let mut i = 0;
        let (f50, f99) = percentiles(rounds, |_| {
            black_box(engine.decide(&requests[i % requests.len()], &ctx));
            i += 1;
        });
        let (c50, c99) = percentiles(rounds, |case| {
            black_box(cedar.decide(case));
        });
        eprintln!(
            "{name}: {} decisions each over {} requests: fleetkit p50 {f50:.2} µs p99 {f99:.2} µs; cedar p50 {c50:.2} µs p99 {c99:.2} µs; cedar/fleetkit p50 {:.2}×, p99 {:.2}×",
            rounds * CASES.len(),
            CASES.len(),
            c50 / f50,
            c99 / f99,
        );
        let mut group = c.benchmark_group(format!("side-by-side/{name}"));
        group.bench_function("fleetkit: all requests", |b| {
            b.iter(|| {
                for r in &requests {
                    black_box(engine.decide(black_box(r), &ctx));
                }
            })
        });
        group.bench_function("cedar: all requests", |b| {
            b.iter(|| {
                for case in CASES {
                    black_box(cedar.decide(black_box(case)));
                }
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);

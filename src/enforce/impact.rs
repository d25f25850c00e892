//! Impact analysis: the fleet's recorded requests replayed through a candidate
//! policy and through the policy in force, with the same engine, before anything
//! is signed (`fleetkit policy impact`).
//!
//! Both policies decide every request under one fixed context (no tool versions, no
//! home folder, nothing on disk), so a difference is the policies' difference, not
//! the devices'. How far that context is from the devices' own is measured too:
//! the share of requests where the baseline's replay disagrees with what the
//! device recorded is reported as `drift`.
//!
//! Requests come grouped (one per distinct command, folder, team and recorded
//! verdict, with a count), so a fleet that runs `git status` a million times costs
//! one decision; the groups are spread over the machine's cores.

use super::{Engine, Request, Verdict, context::FixedContext};
use serde::Serialize;
use std::collections::BTreeMap;

/// One distinct recorded request and how often it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub team: String,
    pub command: String,
    pub cwd: Option<String>,
    /// What the device decided (`allow`, `ask`, `deny`).
    pub recorded: String,
    pub count: u64,
}

/// How many requests move from one verdict to another.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Moves {
    /// `allow→deny` and the like, only for requests that change.
    pub transitions: BTreeMap<String, u64>,
}

/// An example of a change.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Example {
    pub command: String,
    pub team: String,
    pub from: String,
    pub to: String,
    /// The candidate's deciding rule, and why.
    pub rule: String,
    pub reason: String,
    pub count: u64,
}

/// What the candidate would change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Impact {
    /// Recorded requests replayed (the counts summed) and distinct requests decided.
    pub requests: u64,
    pub distinct: u64,
    /// Requests whose verdict changes.
    pub changed: u64,
    pub overall: Moves,
    pub by_team: BTreeMap<String, Moves>,
    /// By the candidate's deciding rule.
    pub by_rule: BTreeMap<String, Moves>,
    /// Up to [`EXAMPLES_PER_TRANSITION`] examples of each transition, most frequent first.
    pub examples: BTreeMap<String, Vec<Example>>,
    /// Requests where the baseline's replay differs from what the device recorded
    /// (the device's context, or a policy version other than the baseline).
    pub drift: u64,
}

pub const EXAMPLES_PER_TRANSITION: usize = 5;

/// One decided group.
struct Outcome<'a> {
    rec: &'a Recorded,
    before: Verdict,
    after: Verdict,
    rule: String,
    reason: String,
}

/// Replays `requests` through `baseline` and `candidate` on `threads` threads.
pub fn replay(
    baseline: &Engine,
    candidate: &Engine,
    requests: &[Recorded],
    threads: usize,
) -> Impact {
    let threads = threads.clamp(1, 64);
    let chunk = requests.len().div_ceil(threads).max(1);
    let decided: Vec<Vec<Outcome<'_>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let ctx = FixedContext::default();
                    part.iter()
                        .map(|rec| {
                            let request = Request::Command {
                                command: rec.command.clone(),
                                cwd: rec.cwd.clone(),
                            };
                            let before = baseline.decide(&request, &ctx).verdict;
                            let d = candidate.decide(&request, &ctx);
                            Outcome {
                                rec,
                                before,
                                after: d.verdict,
                                rule: d.rule,
                                reason: d.reason,
                            }
                        })
                        .collect()
                })
            })
            .collect();
        // A decision that panicked is a bug in the engine; it is not hidden here.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut impact = Impact::default();
    for o in decided.iter().flatten() {
        let n = o.rec.count;
        impact.requests += n;
        impact.distinct += 1;
        if o.before.as_str() != o.rec.recorded {
            impact.drift += n;
        }
        if o.before == o.after {
            continue;
        }
        impact.changed += n;
        let key = format!("{}→{}", o.before.as_str(), o.after.as_str());
        for moves in [
            &mut impact.overall,
            impact.by_team.entry(o.rec.team.clone()).or_default(),
            impact.by_rule.entry(o.rule.clone()).or_default(),
        ] {
            *moves.transitions.entry(key.clone()).or_default() += n;
        }
        impact.examples.entry(key).or_default().push(Example {
            command: o.rec.command.clone(),
            team: o.rec.team.clone(),
            from: o.before.as_str().into(),
            to: o.after.as_str().into(),
            rule: o.rule.clone(),
            reason: o.reason.clone(),
            count: n,
        });
    }
    for examples in impact.examples.values_mut() {
        examples.sort_by(|a, b| b.count.cmp(&a.count).then(a.command.cmp(&b.command)));
        examples.truncate(EXAMPLES_PER_TRANSITION);
    }
    impact
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(extra_blocked: &str) -> Engine {
        let text = crate::policy::starter_policy("acme-corp", time::macros::date!(2026 - 01 - 01));
        let src = crate::diag::SourceFile::new("starter.yaml", text);
        let mut policy = crate::policy::parse(&src).unwrap().policy;
        if !extra_blocked.is_empty() {
            policy
                .safety
                .blocked_patterns
                .push(crate::policy::BlockedPattern {
                    pattern: extra_blocked.into(),
                    reason: "test".into(),
                });
        }
        Engine::compile(&policy).unwrap()
    }

    fn rec(command: &str, team: &str, recorded: &str, count: u64) -> Recorded {
        Recorded {
            team: team.into(),
            command: command.into(),
            cwd: None,
            recorded: recorded.into(),
            count,
        }
    }

    #[test]
    fn a_new_block_moves_the_recorded_requests_by_team_and_rule_with_examples() {
        let requests = vec![
            rec("git push origin main", "platform", "allow", 40),
            rec("git push --force", "data", "allow", 2),
            rec("ls", "platform", "allow", 1000),
            rec("rm -rf /", "platform", "deny", 3),
        ];
        let same = replay(&engine(""), &engine(""), &requests, 2);
        assert_eq!((same.requests, same.distinct, same.changed), (1045, 4, 0));
        let impact = replay(&engine(""), &engine("git push"), &requests, 2);
        assert_eq!(impact.changed, 42, "{impact:#?}");
        let moved: u64 = impact.overall.transitions.values().sum();
        assert_eq!(moved, 42);
        assert_eq!(
            impact.by_team["platform"].transitions.values().sum::<u64>(),
            40
        );
        assert_eq!(impact.by_team["data"].transitions.values().sum::<u64>(), 2);
        let (key, examples) = impact.examples.iter().next().unwrap();
        assert!(key.ends_with("→deny"), "{key}");
        assert_eq!(examples[0].command, "git push origin main");
        assert!(
            impact
                .by_rule
                .keys()
                .any(|r| r.starts_with("safety.blocked_patterns"))
        );
    }
}

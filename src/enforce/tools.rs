//! The conditions of `allowed_tools`: version constraints, kube contexts, required
//! flags and AWS profiles, each read from the command line first and from the
//! environment or the tool's own configuration after.

use super::shell::Invocation;
use super::{Context, Verdict};
use crate::policy::OrgPolicy;
use globset::{Glob, GlobMatcher};
use semver::{Version, VersionReq};
use std::collections::HashMap;

/// One allowed tool, compiled.
#[derive(Debug, Clone)]
struct Tool {
    versions: Vec<VersionReq>,
    approved_contexts: Vec<GlobMatcher>,
    blocked_contexts: Vec<GlobMatcher>,
    approved_profiles: Vec<GlobMatcher>,
}

#[derive(Debug, Clone)]
pub struct Tools {
    by_name: HashMap<String, usize>,
    tools: Vec<Tool>,
    policy: OrgPolicy,
}

/// Subcommands that never take a lock, a context or a profile: asking for the
/// version or for help.
fn is_information_query(args: &[&str]) -> bool {
    matches!(
        args,
        [] | [
            "--version" | "-version" | "-v" | "version" | "--help" | "-h" | "help",
            ..
        ]
    ) || args.iter().any(|a| *a == "--help" || *a == "-h")
}

/// terraform's subcommands that touch no state, so its required flags (`-lock`)
/// do not apply to them.
const TERRAFORM_STATELESS: &[&str] = &[
    "fmt",
    "validate",
    "version",
    "providers",
    "graph",
    "login",
    "logout",
    "get",
    "-install-autocomplete",
    "-uninstall-autocomplete",
    "metadata",
    "test",
];

fn globs(list: &[String]) -> Result<Vec<GlobMatcher>, String> {
    list.iter()
        .map(|g| {
            Glob::new(g)
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("`{g}`: {e}"))
        })
        .collect()
}

/// A version as a tool reports it, padded to semver (`1.6` → `1.6.0`).
fn lenient_version(text: &str) -> Option<Version> {
    let core = text.trim().trim_start_matches('v');
    Version::parse(core).ok().or_else(|| {
        let nums: Vec<&str> = core
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .next()?
            .split('.')
            .collect();
        let n = |i: usize| nums.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        (!nums.is_empty() && !nums[0].is_empty()).then(|| Version::new(n(0), n(1), n(2)))
    })
}

/// The value of `--name VALUE` or `--name=VALUE` (also with one dash).
fn option_value<'a>(args: &[&'a str], names: &[&str]) -> Option<&'a str> {
    for (i, a) in args.iter().enumerate() {
        for n in names {
            if a == n {
                return args.get(i + 1).copied();
            }
            if let Some(v) = a.strip_prefix(n).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
        }
    }
    None
}

/// Whether `args` give the required flag `flag` (`--lock=true`): as written, with
/// one dash or two, or as `--lock true`.
fn has_flag(args: &[&str], flag: &str) -> bool {
    let bare = |s: &str| s.trim_start_matches('-').to_string();
    let want = bare(flag);
    if args.iter().any(|a| a.starts_with('-') && bare(a) == want) {
        return true;
    }
    match want.split_once('=') {
        Some((name, value)) => args
            .windows(2)
            .any(|w| w[0].starts_with('-') && bare(w[0]) == name && w[1] == value),
        None => false,
    }
}

impl Tools {
    pub fn compile(policy: &OrgPolicy) -> Result<Self, String> {
        let mut tools = Vec::new();
        let mut by_name = HashMap::new();
        for (i, t) in policy.allowed_tools.iter().enumerate() {
            let versions = t
                .versions
                .iter()
                .map(|v| VersionReq::parse(v).map_err(|e| format!("`{v}`: {e}")))
                .collect::<Result<_, _>>()?;
            tools.push(Tool {
                versions,
                approved_contexts: globs(&t.approved_contexts)?,
                blocked_contexts: globs(&t.blocked_contexts)?,
                approved_profiles: globs(&t.approved_profiles)?,
            });
            by_name.entry(t.name.to_ascii_lowercase()).or_insert(i);
        }
        Ok(Self {
            by_name,
            tools,
            policy: policy.clone(),
        })
    }

    /// The `allowed_tools` index of a command name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The findings against tool `i`'s conditions (empty: all met).
    pub fn check(
        &self,
        i: usize,
        name: &str,
        inv: &Invocation,
        ctx: &dyn Context,
    ) -> Vec<(Verdict, String, String)> {
        let tool = &self.tools[i];
        let spec = &self.policy.allowed_tools[i];
        let rule = |field: &str| format!("allowed_tools[{i}].{field}");
        let because = spec
            .reason
            .as_deref()
            .map_or(String::new(), |r| format!(" ({r})"));
        let args: Vec<&str> = inv.argv.iter().skip(1).map(|w| w.text.as_str()).collect();
        let mut out = Vec::new();
        let env = |k: &str| {
            inv.assignments
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.value().map(str::to_string))
                .or_else(|| ctx.env(k))
        };
        if !tool.versions.is_empty() {
            let wanted = spec.versions.join(", ");
            match ctx.tool_version(name).as_deref().and_then(lenient_version) {
                None => out.push((
                    Verdict::Ask,
                    rule("versions"),
                    format!("the version of `{name}` could not be determined; the policy requires {wanted}"),
                )),
                Some(v) if !tool.versions.iter().all(|r| r.matches(&v)) => out.push((
                    Verdict::Deny,
                    rule("versions"),
                    format!("`{name}` {v} does not satisfy {wanted}{because}"),
                )),
                Some(_) => {}
            }
        }
        if is_information_query(&args) {
            return out;
        }
        if !tool.approved_contexts.is_empty() || !tool.blocked_contexts.is_empty() {
            let sub = super::classify::first_operand(&args);
            let switching = sub == Some("config")
                && args
                    .iter()
                    .any(|a| matches!(*a, "use-context" | "use" | "set-context"));
            let reading_config = sub == Some("config") && !switching;
            let context = if switching {
                args.iter()
                    .skip_while(|a| !matches!(**a, "use-context" | "use" | "set-context"))
                    .nth(1)
                    .map(|s| s.to_string())
            } else {
                option_value(&args, &["--context", "--kube-context"])
                    .map(str::to_string)
                    .or_else(|| {
                        let kubeconfig = option_value(&args, &["--kubeconfig"])
                            .map(str::to_string)
                            .or_else(|| env("KUBECONFIG"));
                        ctx.kube_context(kubeconfig.as_deref())
                    })
            };
            if !reading_config {
                match context {
                    None => out.push((
                        Verdict::Ask,
                        rule("approved_contexts"),
                        format!("the kube context of `{name}` could not be determined (no --context, no current-context)"),
                    )),
                    Some(c) => {
                        if let Some(j) = tool.blocked_contexts.iter().position(|g| g.is_match(&c)) {
                            out.push((
                                Verdict::Deny,
                                format!("allowed_tools[{i}].blocked_contexts[{j}]"),
                                format!("the kube context `{c}` is blocked for `{name}`"),
                            ));
                        } else if !tool.approved_contexts.is_empty()
                            && !tool.approved_contexts.iter().any(|g| g.is_match(&c))
                        {
                            out.push((
                                Verdict::Ask,
                                rule("approved_contexts"),
                                format!(
                                    "the kube context `{c}` is not one of the approved contexts ({})",
                                    spec.approved_contexts.join(", ")
                                ),
                            ));
                        }
                    }
                }
            }
        }
        if !spec.required_flags.is_empty() {
            let stateless = matches!(name, "terraform" | "tofu")
                && super::classify::first_operand(&args)
                    .is_some_and(|s| TERRAFORM_STATELESS.contains(&s));
            if !stateless {
                for (j, flag) in spec.required_flags.iter().enumerate() {
                    if !has_flag(&args, flag) {
                        out.push((
                            Verdict::Deny,
                            format!("allowed_tools[{i}].required_flags[{j}]"),
                            format!("`{name}` must be run with `{flag}`"),
                        ));
                    }
                }
            }
        }
        if !tool.approved_profiles.is_empty() {
            let (profile, source) = match option_value(&args, &["--profile"]) {
                Some(p) => (p.to_string(), "--profile"),
                None => match env("AWS_PROFILE") {
                    Some(p) => (p, "AWS_PROFILE"),
                    None => match env("AWS_DEFAULT_PROFILE") {
                        Some(p) => (p, "AWS_DEFAULT_PROFILE"),
                        None => ("default".to_string(), "no --profile or AWS_PROFILE"),
                    },
                },
            };
            if !tool.approved_profiles.iter().any(|g| g.is_match(&profile)) {
                out.push((
                    Verdict::Deny,
                    rule("approved_profiles"),
                    format!(
                        "the {name} profile `{profile}` ({source}) is not one of the approved profiles ({})",
                        spec.approved_profiles.join(", ")
                    ),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_options() {
        assert!(has_flag(&["apply", "-lock=true"], "--lock=true"));
        assert!(has_flag(&["apply", "--lock", "true"], "--lock=true"));
        assert!(!has_flag(&["apply", "-lock=false"], "--lock=true"));
        assert_eq!(
            option_value(&["--context=prod", "get"], &["--context"]),
            Some("prod")
        );
        assert_eq!(
            option_value(&["--context", "dev-1"], &["--context"]),
            Some("dev-1")
        );
        assert_eq!(lenient_version("1.6"), Some(Version::new(1, 6, 0)));
        assert_eq!(lenient_version("v1.28.2"), Some(Version::new(1, 28, 2)));
    }
}

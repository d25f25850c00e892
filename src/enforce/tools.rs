//! The conditions of `allowed_tools`: version constraints, kube contexts, required
//! flags and AWS profiles, each read from the command line first and from the
//! environment or the tool's own configuration after.

use super::shell::Invocation;
use super::{Context, Verdict};
use crate::policy::{AllowedTool, OrgPolicy};
use globset::{Glob, GlobMatcher};
use semver::{Version, VersionReq};
use std::collections::HashMap;
use std::sync::OnceLock;

/// One allowed tool, compiled.
#[derive(Debug, Clone)]
struct Tool {
    versions: Vec<VersionReq>,
    approved_contexts: Vec<LazyGlob>,
    blocked_contexts: Vec<LazyGlob>,
    approved_profiles: Vec<LazyGlob>,
}

/// A glob checked when the policy is compiled and turned into a matcher (a regex)
/// the first time a command needs it. Claude Code starts a hook process per
/// command, which judges one or two tools: building every tool's matchers up front
/// cost 43.6 of the 50.5 ms a 1,000-rule policy took to compile (benches/decide.rs).
#[derive(Debug, Clone)]
struct LazyGlob {
    glob: Glob,
    matcher: OnceLock<GlobMatcher>,
}

impl LazyGlob {
    fn is_match(&self, text: &str) -> bool {
        self.matcher
            .get_or_init(|| self.glob.compile_matcher())
            .is_match(text)
    }
}

#[derive(Debug, Clone)]
pub struct Tools {
    by_name: HashMap<String, usize>,
    tools: Vec<Tool>,
}

/// Asking for the version or for help, which takes no lock, context or profile.
/// Only as the whole command line: elsewhere `-h` may be another option's value
/// (`--cache-dir -h`).
fn is_information_query(args: &[&str]) -> bool {
    matches!(
        args,
        [] | ["--version" | "-version" | "-v" | "version" | "--help" | "-h" | "help"]
            | ["version", "--client" | "--short"]
    )
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
];

fn globs(list: &[String]) -> Result<Vec<LazyGlob>, String> {
    list.iter()
        .map(|g| {
            Glob::new(g)
                .map(|glob| LazyGlob {
                    glob,
                    matcher: OnceLock::new(),
                })
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

/// Whether `args` give the required flag `flag` (`--lock=true`): with one dash or
/// two, as `--lock=true` or `--lock true`; the last occurrence of the flag decides
/// (`-lock=true -lock=false` is unlocked).
fn has_flag(args: &[&str], flag: &str) -> bool {
    let bare = |s: &str| s.trim_start_matches('-').to_string();
    let want = bare(flag);
    let (name, value) = want
        .split_once('=')
        .map_or((want.as_str(), None), |(n, v)| (n, Some(v)));
    let mut last: Option<Option<&str>> = None;
    for (k, a) in args.iter().enumerate() {
        if !a.starts_with('-') {
            continue;
        }
        let b = a.trim_start_matches('-');
        if b == name {
            // `--lock true`, or a bare `--lock`.
            let next = args.get(k + 1).copied().filter(|n| !n.starts_with('-'));
            last = Some(next.filter(|n| matches!(*n, "true" | "false")).or(Some("")));
        } else if let Some(v) = b.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            last = Some(Some(v));
        }
    }
    match (last, value) {
        (Some(Some(got)), Some(v)) => got == v,
        (Some(_), None) => true,
        _ => false,
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
        Ok(Self { by_name, tools })
    }

    /// The kube contexts a command may act on, each checked: every `--context`
    /// given (kubectl takes the last), the kubeconfig's current context when no
    /// `--context` is given or one might be another option's value, and the target
    /// of `config use-context/set-context/rename-context/set current-context`.
    /// `--cluster`, `--server`, `--user`, `--token` and `--as` override what the
    /// context says, so they ask.
    #[allow(clippy::too_many_arguments)]
    fn check_contexts(
        &self,
        i: usize,
        spec: &AllowedTool,
        name: &str,
        args: &[&str],
        env: &dyn Fn(&str) -> Option<String>,
        ctx: &dyn Context,
        out: &mut Vec<(Verdict, String, String)>,
    ) {
        let tool = &self.tools[i];
        let rule = |field: &str| format!("allowed_tools[{i}].{field}");
        // Flags known to take no value: a `--context` right after one of them is
        // surely kubectl's own.
        const BOOLEAN: &[&str] = &[
            "-A",
            "--all-namespaces",
            "-w",
            "--watch",
            "--all",
            "-i",
            "-t",
            "-it",
            "-ti",
            "--stdin",
            "--tty",
            "--force",
            "--now",
            "--wait",
            "--overwrite",
            "-R",
            "--recursive",
            "--show-labels",
            "--no-headers",
            "--ignore-not-found",
            "-q",
            "--quiet",
        ];
        let mut contexts: Vec<String> = Vec::new();
        let mut current_too = false;
        let config = args.first() == Some(&"config");
        if config {
            let mut it = args.iter().skip(1);
            match it.next().copied() {
                Some("use-context" | "use" | "set-context" | "delete-context") => {
                    contexts.extend(it.find(|a| !a.starts_with('-')).map(|s| s.to_string()));
                }
                Some("rename-context") => {
                    contexts.extend(
                        it.filter(|a| !a.starts_with('-'))
                            .take(2)
                            .map(|s| s.to_string()),
                    );
                }
                Some("set") if args.contains(&"current-context") => {
                    contexts.extend(
                        args.iter()
                            .skip_while(|a| **a != "current-context")
                            .nth(1)
                            .map(|s| s.to_string()),
                    );
                }
                Some("set") => contexts.push(String::new()),
                // Repointing a cluster or a user changes what every context that
                // names it reaches (`set-cluster dev --server=https://prod-api`).
                Some(
                    sub @ ("set-cluster" | "set-credentials" | "unset" | "delete-cluster"
                    | "delete-user"),
                ) => {
                    out.push((
                        Verdict::Ask,
                        rule("approved_contexts"),
                        format!("`{name} config {sub}` changes what the kube contexts reach"),
                    ));
                    return;
                }
                // view, get-contexts, current-context, …: reading the configuration.
                _ => return,
            }
        } else {
            for (k, a) in args.iter().enumerate() {
                let value = if *a == "--context" || *a == "--kube-context" {
                    args.get(k + 1).copied()
                } else {
                    a.strip_prefix("--context=")
                        .or_else(|| a.strip_prefix("--kube-context="))
                };
                if let Some(v) = value {
                    contexts.push(v.to_string());
                    let prev = k.checked_sub(1).map(|p| args[p]);
                    if prev.is_some_and(|p| {
                        p.starts_with('-') && !p.contains('=') && !BOOLEAN.contains(&p)
                    }) {
                        current_too = true;
                    }
                }
            }
            if let Some(flag) = args.iter().find(|a| {
                [
                    "--cluster",
                    "--server",
                    "-s",
                    "--user",
                    "--token",
                    "--as",
                    "--as-group",
                    "--as-uid",
                ]
                .iter()
                .any(|f| *a == f || a.starts_with(&format!("{f}=")))
            }) {
                out.push((
                    Verdict::Ask,
                    rule("approved_contexts"),
                    format!("`{flag}` overrides the cluster or credentials of the kube context"),
                ));
            }
            if contexts.is_empty() {
                current_too = true;
            }
        }
        if current_too {
            let kubeconfig = option_value(args, &["--kubeconfig"])
                .map(str::to_string)
                .or_else(|| env("KUBECONFIG"));
            match ctx.kube_context(kubeconfig.as_deref()) {
                Some(c) => contexts.push(c),
                None => {
                    out.push((
                        Verdict::Ask,
                        rule("approved_contexts"),
                        format!("the kube context of `{name}` could not be determined (no --context, no current-context)"),
                    ));
                }
            }
        }
        for c in contexts {
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

    /// The `allowed_tools` index of a command name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The findings against tool `i`'s conditions (empty: all met).
    /// `spec` is `allowed_tools[i]` of the policy the tools were compiled from.
    pub fn check(
        &self,
        i: usize,
        spec: &AllowedTool,
        name: &str,
        inv: &Invocation,
        ctx: &dyn Context,
    ) -> Vec<(Verdict, String, String)> {
        let tool = &self.tools[i];
        let rule = |field: &str| format!("allowed_tools[{i}].{field}");
        let because = spec
            .reason
            .as_deref()
            .map_or(String::new(), |r| format!(" ({r})"));
        let args: Vec<&str> = inv.argv.iter().skip(1).map(|w| w.text.as_str()).collect();
        let mut out = Vec::new();
        let conditional = !tool.approved_contexts.is_empty()
            || !tool.blocked_contexts.is_empty()
            || !tool.approved_profiles.is_empty()
            || !spec.required_flags.is_empty();
        // `kubectl --context dev-1 get x $opt`: a word only the shell knows may be
        // `--context=prod-eu`, `--profile=prod` or `-lock=false`.
        if conditional && let Some(w) = inv.argv.iter().skip(1).find(|w| w.dynamic.is_some()) {
            out.push((
                Verdict::Ask,
                rule("conditions"),
                format!(
                    "`{}` is only known when the shell runs, and may change what the policy checks on `{name}` (context, profile, flags)",
                    w.text
                ),
            ));
        }
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
        // Options after `--` belong to the command the tool runs (`kubectl exec … --`).
        let own: &[&str] = match args.iter().position(|a| *a == "--") {
            Some(k) => &args[..k],
            None => &args,
        };
        if is_information_query(own) {
            return out;
        }
        if !tool.approved_contexts.is_empty() || !tool.blocked_contexts.is_empty() {
            self.check_contexts(i, spec, name, own, &env, ctx, &mut out);
        }
        if !spec.required_flags.is_empty() {
            let stateless = matches!(name, "terraform" | "tofu")
                && super::classify::first_operand(own)
                    .is_some_and(|s| TERRAFORM_STATELESS.contains(&s));
            if !stateless {
                for (j, flag) in spec.required_flags.iter().enumerate() {
                    if !has_flag(own, flag) {
                        out.push((
                            Verdict::Deny,
                            format!("allowed_tools[{i}].required_flags[{j}]"),
                            format!("`{name}` must be run with `{flag}` (and not overridden later on the line)"),
                        ));
                    }
                }
            }
        }
        if !tool.approved_profiles.is_empty() {
            // aws takes the last `--profile`, and its option parser accepts unique
            // prefixes (`--prof`): every one given must be approved.
            let mut profiles: Vec<(String, &str)> = own
                .iter()
                .enumerate()
                .filter_map(|(k, a)| {
                    let (flag, value) = a.split_once('=').map_or((*a, None), |(f, v)| (f, Some(v)));
                    (flag.len() >= 5 && "--profile".starts_with(flag))
                        .then(|| {
                            value
                                .map(str::to_string)
                                .or_else(|| own.get(k + 1).map(|v| v.to_string()))
                        })
                        .flatten()
                        .map(|v| (v, "--profile"))
                })
                .collect();
            if profiles.is_empty() {
                profiles.push(match env("AWS_PROFILE") {
                    Some(p) => (p, "AWS_PROFILE"),
                    None => match env("AWS_DEFAULT_PROFILE") {
                        Some(p) => (p, "AWS_DEFAULT_PROFILE"),
                        None => ("default".to_string(), "no --profile or AWS_PROFILE"),
                    },
                });
            }
            for (profile, source) in profiles {
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
        assert!(!has_flag(
            &["apply", "-lock=true", "-lock=false"],
            "--lock=true"
        ));
        assert!(has_flag(
            &["apply", "-lock=false", "--lock=true"],
            "--lock=true"
        ));
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

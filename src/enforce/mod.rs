//! The decision engine: for one request (a shell command, or a question about an
//! inference backend and model), allow, ask for approval, or deny, naming the rule
//! that decided. ADR-002's question, answered on the device.
//!
//! [`Engine::compile`] turns a validated policy into a ready form once (the
//! blocked patterns and dangerous paths indexed by their literals and compiled
//! when a command first needs them, parsed version requirements); [`Engine::decide`] is then a pure function of the
//! engine, the request and a [`Context`]. The README's "Decision engine" section is
//! the spec: precedence deny > ask > allow, fail closed on what cannot be analysed,
//! the three enforcement modes.

pub mod cases;
pub mod classify;
pub mod claude_code;
pub mod claude_settings;
pub mod context;
mod extractions;
mod here_docs;
pub mod impact;
mod launchers;
mod listers;
pub mod paths;
mod patterns;
pub mod payloads;
mod prefilter;
pub mod shell;
mod tools;
pub mod wrappers;

pub use context::{Context, FixedContext, SystemContext};

use crate::policy::{EnforcementMode, OrgPolicy, RiskTolerance};
use paths::{Access, PathList, PathRules};
use patterns::BlockedPatterns;
use serde::{Deserialize, Serialize};
use shell::Invocation;

/// Allow < ask < deny: the strongest finding decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Ask,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Ask => "ask",
            Self::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Self::Allow),
            "ask" => Some(Self::Ask),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A shell command line (bash syntax).
    Command {
        command: String,
        /// The folder it runs in (relative paths are placed there).
        cwd: Option<String>,
    },
    /// Using an inference backend and model.
    Inference {
        backend: String,
        model: Option<String>,
    },
}

/// One rule's opinion on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub verdict: Verdict,
    /// The rule, as a path into the policy (`safety.blocked_patterns[0]`) or a
    /// built-in rule (`builtin.secret_paths`).
    pub rule: String,
    pub reason: String,
    /// The simple command it is about, rendered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What the rules decide.
    pub verdict: Verdict,
    /// What is done about it under the policy's mode (audit-only never blocks;
    /// permissive blocks only denials).
    pub applied: Verdict,
    pub mode: &'static str,
    /// The rule that decided, and why.
    pub rule: String,
    pub reason: String,
    /// The command classes found (`destructive_commands`, …).
    pub classes: Vec<&'static str>,
    /// Every finding, strongest first.
    pub findings: Vec<Finding>,
}

/// Where a command's paths are placed.
struct Placing<'a> {
    /// Every folder the line may be in when the command runs (`cd` moves it).
    cwds: &'a [Option<String>],
    /// The request's working folder as given (not normalised), for opening files;
    /// `None` when the line may have moved (`cd x && tar xf a.tar`).
    cwd: Option<&'a str>,
    home: Option<&'a str>,
    /// Folders whose files the command receives from `xargs` (`find ~ | xargs cat`).
    listed: &'a [shell::Word],
}

/// A policy ready to decide.
#[derive(Debug, Clone)]
pub struct Engine {
    policy: OrgPolicy,
    patterns: BlockedPatterns,
    paths: PathRules,
    tools: tools::Tools,
}

/// A policy that cannot be compiled (a pattern over the device's size limit).
#[derive(Debug, thiserror::Error)]
#[error("the policy cannot be compiled: {0}")]
pub struct CompileError(String);

impl Engine {
    /// Compiles a validated policy.
    pub fn compile(policy: &OrgPolicy) -> Result<Self, CompileError> {
        let patterns = BlockedPatterns::compile(
            policy
                .safety
                .blocked_patterns
                .iter()
                .map(|p| p.pattern.as_str()),
        )
        .map_err(CompileError)?;
        let paths =
            PathRules::compile(&policy.safety.additional_dangerous_paths).map_err(CompileError)?;
        let tools = tools::Tools::compile(policy).map_err(CompileError)?;
        Ok(Self {
            policy: policy.clone(),
            patterns,
            paths,
            tools,
        })
    }

    pub fn policy(&self) -> &OrgPolicy {
        &self.policy
    }

    /// Decides `request` under this policy.
    pub fn decide(&self, request: &Request, ctx: &dyn Context) -> Decision {
        let mut findings = Vec::new();
        let mut classes = Vec::new();
        match request {
            Request::Command { command, cwd } => {
                let cwd = cwd.clone().or_else(|| ctx.cwd());
                self.command(command, cwd.as_deref(), ctx, &mut findings, &mut classes);
            }
            Request::Inference { backend, model } => {
                self.inference(backend, model.as_deref(), &mut findings);
            }
        }
        self.conclude(findings, classes)
    }

    fn conclude(&self, mut findings: Vec<Finding>, classes: Vec<&'static str>) -> Decision {
        // Stable: among equals the first found (patterns, then command by command)
        // decides.
        findings.sort_by_key(|f| std::cmp::Reverse(f.verdict));
        let (verdict, rule, reason) = match findings.first() {
            Some(f) => (f.verdict, f.rule.clone(), f.reason.clone()),
            None => (
                Verdict::Allow,
                "engine.empty".into(),
                "nothing to run".into(),
            ),
        };
        let mode = self.policy.enforcement.mode;
        let applied = match mode {
            EnforcementMode::Enforce => verdict,
            EnforcementMode::AuditOnly => Verdict::Allow,
            EnforcementMode::Permissive if verdict == Verdict::Deny => Verdict::Deny,
            EnforcementMode::Permissive => Verdict::Allow,
        };
        Decision {
            verdict,
            applied,
            mode: mode.as_str(),
            rule,
            reason,
            classes,
            findings,
        }
    }

    fn inference(&self, backend: &str, model: Option<&str>, out: &mut Vec<Finding>) {
        let inf = &self.policy.inference;
        let finding = |verdict, rule: String, reason: String| Finding {
            verdict,
            rule,
            reason,
            command: None,
        };
        if let Some(i) = inf.blocked_backends.iter().position(|b| b == backend) {
            out.push(finding(
                Verdict::Deny,
                format!("inference.blocked_backends[{i}]"),
                format!("the inference backend `{backend}` is blocked"),
            ));
        }
        if !inf.allowed_backends.is_empty() && !inf.allowed_backends.iter().any(|b| b == backend) {
            out.push(finding(
                Verdict::Deny,
                "inference.allowed_backends".into(),
                format!(
                    "the inference backend `{backend}` is not one of the allowed backends ({})",
                    inf.allowed_backends.join(", ")
                ),
            ));
        }
        if inf.require_local && crate::policy::vocab::REMOTE_BACKENDS.contains(&backend) {
            out.push(finding(
                Verdict::Deny,
                "inference.require_local".into(),
                format!(
                    "the policy requires local inference; `{backend}` sends prompts off the machine"
                ),
            ));
        }
        match model {
            Some(m)
                if !inf.model_allowlist.is_empty()
                    && !inf.model_allowlist.iter().any(|a| a == m) =>
            {
                out.push(finding(
                    Verdict::Deny,
                    "inference.model_allowlist".into(),
                    format!("the model `{m}` is not in the model allowlist"),
                ));
            }
            None if !inf.model_allowlist.is_empty() => out.push(finding(
                Verdict::Ask,
                "inference.model_allowlist".into(),
                "no model was named, and the policy allows only listed models".into(),
            )),
            _ => {}
        }
        if out.is_empty() {
            let rule = inf
                .allowed_backends
                .iter()
                .position(|b| b == backend)
                .map_or_else(
                    || "inference".to_string(),
                    |i| format!("inference.allowed_backends[{i}]"),
                );
            out.push(finding(
                Verdict::Allow,
                rule,
                format!("`{backend}` is an allowed inference backend"),
            ));
        }
    }

    fn command(
        &self,
        command: &str,
        cwd: Option<&str>,
        ctx: &dyn Context,
        out: &mut Vec<Finding>,
        classes: &mut Vec<&'static str>,
    ) {
        let expanded = wrappers::expand(command);
        for why in &expanded.unresolved {
            out.push(Finding {
                verdict: Verdict::Ask,
                rule: "engine.unresolved".into(),
                reason: format!("{why}: not allowed without approval"),
                command: None,
            });
        }
        // Blocked patterns: the line as typed (spaces collapsed), every pipeline and
        // list re-rendered without quotes, and every simple command.
        let mut haystacks: Vec<String> = expanded.renderings.clone();
        haystacks.extend(expanded.invocations.iter().map(Invocation::render));
        if !self.patterns.is_empty() {
            for h in &haystacks {
                if let Some(i) = self.patterns.first_match(h) {
                    let p = &self.policy.safety.blocked_patterns[i];
                    out.push(Finding {
                        verdict: Verdict::Deny,
                        rule: format!("safety.blocked_patterns[{i}]"),
                        reason: p.reason.clone(),
                        command: Some(h.clone()),
                    });
                    break;
                }
            }
        }
        let home = ctx.home();
        // `cd` moves the folder later relative paths are placed in (`cd / && rm -rf *`).
        // Which `cd` took effect depends on subshells, pipelines and failures, so
        // every folder the line has moved to stays a candidate and each relative
        // path is checked in all of them; a `cd` to a folder only known at run time
        // makes the folder unknown.
        let mut cwds: Vec<Option<String>> = vec![cwd.map(str::to_string)];
        let line_listers = listers::line_listers(&expanded.invocations);
        for (at, inv) in expanded.invocations.iter().enumerate() {
            // Whether the line may have moved before this command (its own `-C`
            // aside: tar and unzip open their archive where they were started).
            let moved = cwds.len() > 1;
            // `env -C DIR`, `git -C DIR`, `make -C DIR`, `tar -C DIR`: that command's folder.
            // (Kept for the rest of the line: `env -C DIR git …` is unwrapped into
            // `env -C DIR` and then `git …`.)
            for pair in inv.argv.windows(2) {
                if matches!(
                    pair[0].text.as_str(),
                    "-C" | "--chdir" | "--directory" | "--work-tree"
                ) {
                    let dir = pair[1]
                        .value()
                        .and_then(|v| paths::normalise(v, cwd, home.as_deref()));
                    if !cwds.contains(&dir) {
                        cwds.push(dir);
                    }
                }
            }
            // `find ~ | xargs cat`: the files xargs hands over are under find's folders.
            let listed = listers::listed_folders(&expanded.invocations, at, &line_listers);
            let place = Placing {
                cwds: &cwds,
                cwd: cwd.filter(|_| !moved),
                home: home.as_deref(),
                listed: &listed,
            };
            self.invocation(inv, place, ctx, out, classes);
            let name = inv.argv.first().and_then(wrappers::command_name);
            if matches!(
                name.as_deref(),
                Some("cd" | "pushd" | "chdir" | "set-location")
            ) {
                let target = inv
                    .argv
                    .iter()
                    .skip(1)
                    .find(|w| !w.text.starts_with('-') || w.text == "-");
                let last = cwds.last().cloned().flatten();
                let next = match target {
                    None => home.clone(),
                    Some(w) if w.text == "-" => None,
                    Some(w) => w
                        .value()
                        .and_then(|v| paths::normalise(v, last.as_deref(), home.as_deref())),
                };
                if !cwds.contains(&next) {
                    cwds.push(next);
                }
            }
        }
    }

    fn invocation(
        &self,
        inv: &Invocation,
        place: Placing,
        ctx: &dyn Context,
        out: &mut Vec<Finding>,
        all_classes: &mut Vec<&'static str>,
    ) {
        let Placing {
            cwds,
            cwd,
            home,
            listed,
        } = place;
        let rendered = inv.render();
        let mut push = |verdict, rule: String, reason: String| {
            out.push(Finding {
                verdict,
                rule,
                reason,
                command: Some(rendered.clone()),
            });
        };
        let name = inv.argv.first().and_then(wrappers::command_name);
        // `./ls`, `/tmp/x/git`: a program of that name, not the system's tool. It
        // gets neither the tool's allowance nor the safe and read-only classes.
        let installed = inv.argv.first().is_none_or(|w| installed_location(&w.text));
        let allowed = name
            .as_deref()
            .and_then(|n| self.tools.index(n))
            .filter(|_| installed);
        let mut classes = classify::classes(inv, allowed.is_some());
        if !installed {
            classes.retain(|c| *c != classify::SAFE && *c != classify::READ_ONLY);
        }
        let reads_only = !classes.is_empty()
            && classes
                .iter()
                .all(|c| *c == classify::READ_ONLY || *c == classify::SAFE);
        // Paths: arguments, the files options write, and redirections.
        let writes = classify::writes_its_paths(inv, &classes);
        let output_words = classify::output_arguments(inv);
        let mut path_words: Vec<(&shell::Word, bool)> = classify::path_arguments(inv)
            .map(|w| {
                (
                    w,
                    writes || output_words.iter().any(|o| std::ptr::eq(*o, w)),
                )
            })
            .collect();
        // An option's file (`--output=.bashrc`, `-o.bashrc`) even without a `/`.
        for o in &output_words {
            if !path_words.iter().any(|(w, _)| std::ptr::eq(*w, *o)) {
                path_words.push((o, true));
            }
        }
        path_words.extend(inv.redirects.iter().map(|r| (&r.target, r.write)));
        path_words.extend(listed.iter().map(|w| (w, writes)));
        // `tar xzf a.tgz`, `git apply x.patch`: the files named inside, each a
        // path written.
        let extracted = match extractions::extraction(inv) {
            Some(e) => match extracted_paths(&e, cwd, home, ctx) {
                Ok(words) => words,
                Err(why) => {
                    push(
                        Verdict::Ask,
                        "engine.unresolved".into(),
                        format!(
                            "`{}` writes the files named inside {why}: not allowed without approval",
                            e.program
                        ),
                    );
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        path_words.extend(extracted.iter().map(|w| (w, true)));
        let low = self.policy.safety.risk_tolerance == RiskTolerance::Low;
        let copy_into = classify::copy_destination(inv);
        let reads_trees = classify::reads_trees(inv);
        // The home folder as the paths a tree-reading command names are written:
        // `grep -r AKIA /home` reads it too.
        let home_folder = home
            .filter(|_| reads_trees || !listed.is_empty())
            .and_then(|h| paths::normalise(h, None, None));
        // The destination folder even when its word is an option (`-t.claude`).
        if let Some(c) = &copy_into
            && !path_words.iter().any(|(w, _)| std::ptr::eq(*w, c.dest))
        {
            path_words.push((c.dest, true));
        }
        for (word, write) in path_words {
            // `cp settings.json ~/.claude/` writes `~/.claude/settings.json`.
            let into = copy_into.as_ref().filter(|c| std::ptr::eq(c.dest, word));
            let tree = reads_trees || listed.iter().any(|l| std::ptr::eq(l, word));
            let access = match (write, into) {
                (false, _) if tree => Access::ReadTree,
                (false, _) => Access::Read,
                (true, Some(c)) if c.names_only => Access::WriteInto,
                (true, _) => Access::Write,
            };
            let sources = into.map(|c| c.names.as_slice());
            // `$HOME/.ssh/id_rsa` is `~/.ssh/id_rsa` to every shell.
            let home_word;
            let word = match home_relative(word) {
                Some(w) => {
                    home_word = w;
                    &home_word
                }
                None => word,
            };
            if word.dynamic.is_some() {
                if write {
                    push(
                        Verdict::Ask,
                        "engine.unresolved".into(),
                        format!(
                            "writes to `{}`, a path only known when the shell runs: not allowed without approval",
                            word.text
                        ),
                    );
                }
                continue;
            }
            // `{~/.ssh/id_rsa,x}`: bash expands braces before anything else.
            let expanded = if word.text.contains('{') {
                paths::brace_expand(&word.text)
            } else {
                Vec::new()
            };
            let words: Vec<&str> = if expanded.is_empty() {
                vec![word.text.as_str()]
            } else {
                expanded.iter().map(String::as_str).collect()
            };
            let mut placed: Vec<(&str, Option<String>)> = words
                .iter()
                .flat_map(|w| path_candidates(w))
                .flat_map(|c| {
                    let mut each: Vec<(&str, Option<String>)> = cwds
                        .iter()
                        .map(|cwd| (c, paths::normalise(c, cwd.as_deref(), home)))
                        .collect();
                    each.dedup_by(|a, b| a.1 == b.1);
                    each
                })
                .collect();
            // The folder itself when its word also holds an option (`-t.claude`).
            if let Some(c) = into.filter(|c| c.folder != word.text) {
                for cwd in cwds {
                    placed.push((
                        word.text.as_str(),
                        paths::normalise(&c.folder, cwd.as_deref(), home),
                    ));
                }
            }
            for name in sources.unwrap_or_default() {
                let folder = into.map_or(word.text.as_str(), |c| c.folder.as_str());
                let inside = format!("{}/{name}", folder.trim_end_matches(['/', '\\']));
                for cwd in cwds {
                    if let Some(norm) = paths::normalise(&inside, cwd.as_deref(), home) {
                        placed.push((word.text.as_str(), Some(norm)));
                    }
                }
            }
            for (candidate, norm) in placed {
                let Some(norm) = norm else {
                    if paths::has_short_name(candidate) {
                        push(
                            Verdict::Ask,
                            "engine.unresolved".into(),
                            format!(
                                "names `{}`, a Windows short (8.3) name that only the file system can compare with the dangerous paths: not allowed without approval",
                                word.text
                            ),
                        );
                    } else if write && words.contains(&candidate) {
                        push(
                            Verdict::Ask,
                            "engine.unresolved".into(),
                            format!(
                                "writes to `{}`, which cannot be placed (the working folder or user is not known): not allowed without approval",
                                word.text
                            ),
                        );
                    }
                    continue;
                };
                // `grep -r AKIA /home` reads the home folder too, which the
                // normal form writes `~`.
                let mut hits = self.paths.hits(&norm, access, word.glob);
                // Every user's home is under `/home`, `/Users` or `C:\Users`.
                let holds_homes = matches!(norm.as_str(), "/" | "/home" | "/users" | "c:/users");
                if access == Access::ReadTree
                    && (holds_homes
                        || home_folder
                            .as_ref()
                            .is_some_and(|h| h.starts_with(&format!("{norm}/"))))
                {
                    hits.extend(self.paths.hits("~", access, false));
                }
                for hit in hits {
                    let (verdict, rule, why) = match hit.list {
                        PathList::Enforcement if write => (
                            Verdict::Deny,
                            "builtin.enforcement_paths".to_string(),
                            format!(
                                "writes `{}`, which is or holds `{}`, the policy enforcement's own files; commands may not change them",
                                hit.path, hit.glob
                            ),
                        ),
                        // Only a command known to read may name them: any other may
                        // write them in its own way (`aws s3 cp s3://b/x FILE`).
                        PathList::Enforcement if !reads_only => (
                            Verdict::Deny,
                            "builtin.enforcement_paths".to_string(),
                            format!(
                                "names `{}`, the policy enforcement's own files, and is not a command known only to read",
                                hit.path
                            ),
                        ),
                        PathList::Enforcement => continue,
                        PathList::Startup if write => (
                            Verdict::Ask,
                            "builtin.startup_paths".to_string(),
                            format!(
                                "writes `{}`, whose contents other programs run later",
                                hit.path
                            ),
                        ),
                        PathList::Startup => continue,
                        PathList::Policy(i) => (
                            if write && low {
                                Verdict::Deny
                            } else {
                                Verdict::Ask
                            },
                            format!("safety.additional_dangerous_paths[{i}]"),
                            format!(
                                "{} `{}`, under the dangerous path `{}`",
                                if write { "writes" } else { "reads" },
                                hit.path,
                                self.policy.safety.additional_dangerous_paths[i]
                            ),
                        ),
                        PathList::System if write => (
                            if low { Verdict::Deny } else { Verdict::Ask },
                            "builtin.system_paths".to_string(),
                            format!("writes `{}`, a system location", hit.path),
                        ),
                        PathList::System => continue,
                        PathList::Secret => {
                            if !classes.contains(&classify::CREDENTIALS) {
                                classes.push(classify::CREDENTIALS);
                            }
                            (
                                Verdict::Ask,
                                "builtin.secret_paths".to_string(),
                                format!("touches `{}`, where credentials are kept", hit.path),
                            )
                        }
                    };
                    push(verdict, rule, why);
                }
            }
        }
        for c in &classes {
            if !all_classes.contains(c) {
                all_classes.push(c);
            }
        }
        // Variables that make programs run other code.
        let exported = matches!(
            name.as_deref(),
            Some("export" | "declare" | "typeset" | "local" | "readonly")
        );
        let mut set_vars: Vec<&str> = inv.assignments.iter().map(|(n, _)| n.as_str()).collect();
        let operands = || {
            inv.argv
                .iter()
                .skip(1)
                .map(|w| w.text.as_str())
                .filter(|t| !t.starts_with('-'))
        };
        if exported {
            // `export LESSOPEN` (set earlier, by `printf -v` or `read`) counts too,
            // and `declare -n L=LESSOPEN` makes L another name for it.
            set_vars.extend(operands().map(|t| t.split('=').next().unwrap_or(t)));
            if inv
                .argv
                .iter()
                .any(|w| w.text.starts_with('-') && w.text.contains('n'))
            {
                set_vars.extend(operands().filter_map(|t| t.split_once('=').map(|(_, v)| v)));
            }
        }
        match name.as_deref() {
            Some("printf") => set_vars.extend(
                inv.argv
                    .windows(2)
                    .filter(|p| p[0].text == "-v")
                    .map(|p| p[1].text.as_str()),
            ),
            Some("read" | "mapfile" | "readarray" | "getopts") => set_vars.extend(operands()),
            _ => {}
        }
        for var in set_vars.into_iter().filter(|v| runs_code(v)) {
            push(
                Verdict::Ask,
                "builtin.code_environment".into(),
                format!(
                    "sets `{var}`, which makes programs run other code or read other configuration"
                ),
            );
        }
        if name.as_deref() == Some("git")
            && let Some(why) = git_runs_code(inv)
        {
            push(Verdict::Ask, "builtin.code_environment".into(), why);
        }
        if let Some(n) = name.as_deref() {
            let args: Vec<&str> = inv.argv.iter().skip(1).map(|w| w.text.as_str()).collect();
            let reads_stdin = inv.piped_input
                || inv.stdin_text.is_some()
                || inv.redirects.iter().any(|r| !r.write);
            if let Some(why) = launchers::unread_code(n, &args, reads_stdin) {
                push(Verdict::Ask, "builtin.code_launchers".into(), why);
            }
            if let Some(why) = launchers::autostart(n, &args) {
                push(Verdict::Ask, "builtin.autostart".into(), why);
            }
        }
        let Some(first) = inv.argv.first() else {
            return;
        };
        let Some(name) = name else {
            push(
                Verdict::Ask,
                "engine.unresolved".into(),
                format!(
                    "the command name `{}` is only known when the shell runs: not allowed without approval",
                    first.text
                ),
            );
            return;
        };
        let safety = &self.policy.safety;
        for (i, t) in self.policy.blocked_tools.iter().enumerate() {
            if t.name.eq_ignore_ascii_case(&name) {
                push(
                    Verdict::Deny,
                    format!("blocked_tools[{i}]"),
                    format!("`{name}` is blocked: {}", t.reason),
                );
            }
        }
        let mut asked = false;
        for c in &classes {
            if let Some(i) = safety.require_approval_for.iter().position(|r| r == c) {
                push(
                    Verdict::Ask,
                    format!("safety.require_approval_for[{i}]"),
                    format!("`{name}` is in {c}, which requires approval"),
                );
                asked = true;
            }
            if let Some(i) = self
                .policy
                .approvals
                .require_manager_approval
                .iter()
                .position(|r| r == c)
            {
                push(
                    Verdict::Ask,
                    format!("approvals.require_manager_approval[{i}]"),
                    format!("`{name}` is in {c}, which requires a manager's approval"),
                );
                asked = true;
            }
        }
        if let Some(i) = allowed {
            let findings = self
                .tools
                .check(i, &self.policy.allowed_tools[i], &name, inv, ctx);
            let denied = !findings.is_empty();
            for (verdict, rule, reason) in findings {
                push(verdict, rule, reason);
            }
            if !denied {
                let why = self.policy.allowed_tools[i]
                    .reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(" ({r})"));
                push(
                    Verdict::Allow,
                    format!("allowed_tools[{i}]"),
                    format!("`{name}` is an allowed tool and meets its conditions{why}"),
                );
            }
            return;
        }
        // A tool the policy does not list: the risk tolerance decides, unless every
        // class it is in is auto-approved.
        let auto = &self.policy.approvals.auto_approve;
        let auto_rule = (!classes.is_empty())
            .then(|| {
                classes
                    .iter()
                    .map(|c| {
                        auto.iter().position(|a| {
                            a == c || (*c == classify::SAFE && a == classify::READ_ONLY)
                        })
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .flatten()
            .and_then(|v| v.first().copied());
        match (auto_rule, safety.risk_tolerance) {
            (Some(i), _) if !asked => push(
                Verdict::Allow,
                format!("approvals.auto_approve[{i}]"),
                format!("`{name}` is {}, which is auto-approved", auto[i]),
            ),
            (_, RiskTolerance::Low) => push(
                Verdict::Ask,
                "safety.risk_tolerance".into(),
                format!(
                    "`{name}` is not an allowed tool, and risk tolerance is low: approval required"
                ),
            ),
            (_, RiskTolerance::Medium) => push(
                Verdict::Allow,
                "safety.risk_tolerance".into(),
                format!("`{name}` is not listed; allowed and recorded at medium risk tolerance"),
            ),
            (_, RiskTolerance::High) => push(
                Verdict::Allow,
                "safety.risk_tolerance".into(),
                format!("`{name}` is not listed; allowed at high risk tolerance"),
            ),
        }
    }
}

/// The parts of a word that may be paths: the word, and the value of `opt=value`
/// (`of=/dev/sda`, `--output=/etc/x`).
fn path_candidates(text: &str) -> Vec<&str> {
    let mut out = vec![text];
    if let Some((_, v)) = text.split_once('=')
        && !v.is_empty()
    {
        out.push(v);
    }
    // A short option with its value attached: `-f/root/.aws/credentials`.
    if text.starts_with('-')
        && !text.starts_with("--")
        && let Some(v) = text.get(2..)
        && v.starts_with(['/', '~', '.'])
    {
        out.push(v);
    }
    out
}

/// Whether a command word names a program where the system installs programs (or
/// no folder at all, which the shell looks up in `PATH`).
fn installed_location(word: &str) -> bool {
    const DIRS: &[&str] = &[
        "/bin/",
        "/usr/bin/",
        "/usr/local/bin/",
        "/sbin/",
        "/usr/sbin/",
        "/usr/local/sbin/",
        "/opt/homebrew/bin/",
        "/opt/local/bin/",
        "/snap/bin/",
        "c:/windows/system32/",
        "c:/program files/",
    ];
    let w = word.replace('\\', "/").to_ascii_lowercase();
    match w.rfind('/') {
        None => true,
        Some(i) => {
            DIRS.contains(&&w[..=i])
                || w.starts_with("c:/program files/")
                || w.starts_with("c:/windows/")
        }
    }
}

/// A word starting with `$HOME` or `${HOME}` and otherwise static, as `~…`.
/// The paths an extraction writes (each member's name, stripped and joined to
/// its folder, and where its links point), or why they cannot be known.
/// `cwd`: the folder a relative file is opened in, when known.
fn extracted_paths(
    e: &extractions::Extraction,
    cwd: Option<&str>,
    home: Option<&str>,
    ctx: &dyn Context,
) -> Result<Vec<shell::Word>, String> {
    use extractions::{Source, Strip};
    let what = if e.archive.is_some() {
        "an archive"
    } else {
        "a patch"
    };
    let word = match &e.source {
        Source::Unknown(why) => return Err(format!("{what}, which cannot be read ({why})")),
        Source::File(w) => w,
    };
    let named = format!("`{}`", word.text);
    let Some(value) = word.value().filter(|_| !word.glob) else {
        return Err(format!("{named}, a file only known when the shell runs"));
    };
    let path = if let Some(rest) = value.strip_prefix("~/") {
        home.map(|h| format!("{}/{rest}", h.trim_end_matches('/')))
    } else if value.starts_with('/') || value.get(1..2) == Some(":") {
        Some(value.to_string())
    } else {
        cwd.map(|c| format!("{}/{value}", c.trim_end_matches('/')))
    };
    let Some(path) = path else {
        return Err(format!("{named}, whose folder is not known"));
    };
    let Some(mut file) = ctx.open_file(&path) else {
        return Err(format!("{named}, which cannot be opened as a file"));
    };
    let names: Vec<(String, Option<String>)> = if let Some(format) = e.archive {
        payloads::archive_members(&mut *file, format)
            .map_err(|why| format!("{named}, which cannot be read ({why})"))?
            .into_iter()
            .map(|m| (m.name, m.link))
            .collect()
    } else {
        payloads::patch_targets(&mut *file)
            .map_err(|why| format!("{named}, which cannot be read ({why})"))?
            .into_iter()
            .map(|n| (n, None))
            .collect()
    };
    let folder = match &e.folder {
        Some(f) => match f.value() {
            Some(v) => v.trim_end_matches('/').to_string(),
            None => {
                return Err(format!(
                    "{named}, into a folder only known when the shell runs"
                ));
            }
        },
        None => ".".to_string(),
    };
    let mut out = Vec::new();
    // Members are joined to the folder; an absolute link target stays as it is.
    let mut add = |name: &str| {
        let text = if name.starts_with('/') {
            name.to_string()
        } else {
            format!("{folder}/{name}")
        };
        let word = shell::Word::literal(&text);
        if !out.iter().any(|w: &shell::Word| w.text == word.text) {
            out.push(word);
        }
    };
    for (name, link) in &names {
        // A folder's own entry creates it empty; its files are members of their own.
        if name.ends_with('/') && link.is_none() {
            continue;
        }
        // An absolute name is written there with `tar -P` or bsdtar's `-P`, and
        // under the folder otherwise: both are judged.
        if name.starts_with('/') {
            add(name);
        }
        let stripped = match e.strip {
            Strip::Components(n) => payloads::strip_components(name, n).into_iter().collect(),
            Strip::AnySuffix => payloads::all_suffixes(name),
        };
        for n in &stripped {
            add(n);
        }
        // A link lets later members, or later commands, write where it points.
        if let Some(target) = link {
            if target.starts_with('/') {
                add(target);
            } else if let Some(n) = stripped.first() {
                let parent = n.rsplit_once('/').map_or("", |(p, _)| p);
                add(&format!("{parent}/{target}"));
            }
        }
    }
    Ok(out)
}

fn home_relative(w: &shell::Word) -> Option<shell::Word> {
    w.dynamic.as_ref()?;
    let rest = w
        .text
        .strip_prefix("${HOME}")
        .or_else(|| w.text.strip_prefix("$HOME"))?;
    if rest.contains(['$', '`']) || !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(shell::Word {
        text: format!("~{rest}"),
        dynamic: None,
        glob: w.glob,
    })
}

/// Environment variables that make the programs of a command run other code, or
/// read their configuration elsewhere: set on a command line, they are not allowed
/// silently (`LD_PRELOAD=x.so ls`, `GIT_EXTERNAL_DIFF='rm -rf ~;:' git diff`).
const CODE_ENV: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "DYLD_INSERT_LIBRARIES",
    "DYLD_LIBRARY_PATH",
    "DYLD_FRAMEWORK_PATH",
    "PATH",
    "HOME",
    "BASH_ENV",
    "ENV",
    "PROMPT_COMMAND",
    "IFS",
    "PS4",
    "SHELLOPTS",
    "BASHOPTS",
    "LESSOPEN",
    "LESSCLOSE",
    "PAGER",
    "MANPAGER",
    "EDITOR",
    "VISUAL",
    "SSH_ASKPASS",
    "PERL5OPT",
    "PERL5LIB",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PYTHONHOME",
    "NODE_OPTIONS",
    "RUBYOPT",
    "RUBYLIB",
    "KUBECTL_EXTERNAL_DIFF",
    "KUBE_EDITOR",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "SUDO_ASKPASS",
    "XDG_CONFIG_HOME",
    "CDPATH",
    "GLOBIGNORE",
    "BASH_XTRACEFD",
];
const CODE_ENV_PREFIXES: &[&str] = &["GIT_", "LD_", "DYLD_", "TF_CLI_ARGS", "BASH_FUNC_"];

fn runs_code(var: &str) -> bool {
    CODE_ENV.contains(&var) || CODE_ENV_PREFIXES.iter().any(|p| var.starts_with(p))
}

/// Why a git command may run a program given on its command line or put in its
/// configuration: any `-c`/`--config-env` (git reads hundreds of keys, dozens run
/// programs), a configuration write to a key family that runs programs, or a
/// subcommand that runs one (`rebase -x`, `bisect run`, `grep -O`, `difftool`…).
fn git_runs_code(inv: &Invocation) -> Option<String> {
    let args: Vec<&str> = inv.argv.iter().skip(1).map(|w| w.text.as_str()).collect();
    if let Some(a) = args
        .iter()
        .find(|a| **a == "-c" || a.starts_with("-c") || a.starts_with("--config-env"))
    {
        return Some(format!(
            "`git {a}` sets configuration for this run, which can make git run a program"
        ));
    }
    // `git init --template DIR`, `git clone --template=DIR`: the template's
    // hooks are installed and run at the next commit.
    if let Some(a) = args.iter().find(|a| {
        let long = a.split('=').next().unwrap_or(a);
        long.len() >= 4 && "--template".starts_with(long)
    }) {
        return Some(format!(
            "`git {a}` installs hooks from a template folder, which git then runs"
        ));
    }
    const RUNS: &[&str] = &[
        "alias.",
        "core.",
        "remote.",
        "difftool.",
        "mergetool.",
        "gpg.",
        "filter.",
        "diff.",
        "merge.",
        "credential",
        "protocol.",
        "include",
        "sequence.",
        "uploadpack.",
        "url.",
        "sendemail.",
        "pager.",
        "http.",
        "ssh.",
        "receive.",
        "submodule.",
        "interactive.",
    ];
    let sub = classify::first_operand(&args);
    let after: Vec<&str> = args
        .iter()
        .skip_while(|a| Some(**a) != sub)
        .skip(1)
        .copied()
        .collect();
    match sub {
        Some("config") => {
            let reading = after.iter().any(|a| {
                matches!(
                    *a,
                    "--get" | "--get-all" | "--get-regexp" | "-l" | "--list" | "get" | "list"
                )
            }) && !after
                .iter()
                .any(|a| matches!(*a, "set" | "--add" | "--replace-all" | "unset" | "--unset"));
            let key = after
                .iter()
                .find(|a| RUNS.iter().any(|r| a.to_ascii_lowercase().starts_with(r)));
            match key {
                Some(k) if !reading => Some(format!(
                    "`git config` sets `{k}`, a key that can make git run a program"
                )),
                _ => None,
            }
        }
        Some("rebase")
            if after
                .iter()
                .any(|a| *a == "-x" || a.starts_with("--exec") || a.starts_with("-x")) =>
        {
            Some("`git rebase --exec` runs a command given on the command line".into())
        }
        Some("bisect") if after.first() == Some(&"run") => {
            Some("`git bisect run` runs a command given on the command line".into())
        }
        Some("grep")
            if after
                .iter()
                .any(|a| a.starts_with("-O") || a.starts_with("--open-files-in-pager")) =>
        {
            Some("`git grep -O` runs the pager given on the command line".into())
        }
        Some("filter-branch" | "filter-repo" | "difftool" | "mergetool") => Some(format!(
            "`git {}` runs commands or tools given on the command line or in configuration",
            sub.unwrap_or_default()
        )),
        Some("submodule") if after.first() == Some(&"foreach") => {
            Some("`git submodule foreach` runs a command given on the command line".into())
        }
        _ => None,
    }
}

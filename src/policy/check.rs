//! Tree → [`OrgPolicy`]: every structural and semantic rule of the schema, each
//! finding located at the offending node with its field path and a fix.
//!
//! The walk never stops at the first problem: each section is checked on its own and
//! a bad item is skipped, so one run reports every error of the file.

use super::model::*;
use super::patterns;
use super::versions;
use super::vocab::*;
use crate::diag::{Diagnostic, Diagnostics, Severity, did_you_mean};
use crate::yaml::{MapView, Node, Reader, Value, index, join};
use std::collections::HashMap;

/// Supported schema versions.
pub const SCHEMA_VERSIONS: &[&str] = &["1.0"];

const TOP_KEYS: &[&str] = &[
    "version",
    "organization",
    "effective_date",
    "safety",
    "allowed_tools",
    "blocked_tools",
    "inference",
    "approvals",
    "audit",
    "compliance",
    "enforcement",
];

/// Walks a parsed policy, collecting errors in the reader and warnings aside.
pub struct Checker<'s> {
    pub r: Reader<'s>,
    pub warnings: Diagnostics,
}

impl<'s> Checker<'s> {
    pub fn new(r: Reader<'s>) -> Self {
        Self {
            r,
            warnings: Diagnostics::default(),
        }
    }

    fn warn(&mut self, node: &Node, field: &str, message: String, help: &str) {
        let mut d: Diagnostic =
            self.r
                .src
                .diagnostic(node.loc, field, message, Some(help.to_string()));
        d.severity = Severity::Warning;
        self.warnings.push(d);
    }

    /// The whole document.
    pub fn policy(&mut self, root: &Node) -> Option<OrgPolicy> {
        let top = self.r.map(root, "", TOP_KEYS)?;
        let version = top
            .required(&mut self.r, "version", "add `version: \"1.0\"`")
            .and_then(|n| self.schema_version(n));
        let organization = top
            .required(
                &mut self.r,
                "organization",
                "add `organization: \"<your org>\"`",
            )
            .and_then(|n| self.organization(n));
        let effective_date = top
            .required(
                &mut self.r,
                "effective_date",
                "add `effective_date: \"YYYY-MM-DD\"`",
            )
            .and_then(|n| self.date(n, "effective_date"));
        let safety = self.section(&top, "safety", Self::safety);
        let allowed_tools = self.section(&top, "allowed_tools", Self::allowed_tools);
        let blocked_tools = self.section(&top, "blocked_tools", Self::blocked_tools);
        let inference = self.section(&top, "inference", Self::inference);
        let approvals = self.section(&top, "approvals", Self::approvals);
        let audit = self.section(&top, "audit", Self::audit);
        let compliance = self.section(&top, "compliance", Self::compliance);
        let enforcement = self.section(&top, "enforcement", Self::enforcement);
        let policy = OrgPolicy {
            version: version?,
            organization: organization?,
            effective_date: effective_date?,
            safety: safety?,
            allowed_tools: allowed_tools?,
            blocked_tools: blocked_tools?,
            inference: inference?,
            approvals: approvals?,
            audit: audit?,
            compliance: compliance?,
            enforcement: enforcement?,
        };
        self.cross_section(&top, &policy);
        Some(policy)
    }

    /// An optional section: its default when absent.
    fn section<T: Default>(
        &mut self,
        top: &MapView<'_>,
        key: &str,
        read: fn(&mut Self, &Node) -> Option<T>,
    ) -> Option<T> {
        match top.get(key) {
            Some(n) => read(self, n),
            None => Some(T::default()),
        }
    }

    fn schema_version(&mut self, n: &Node) -> Option<String> {
        if let Value::Float(_) | Value::Int(_) = n.value {
            self.r.error(
                n,
                "version",
                format!("`version` must be a string, found {}", n.kind()),
                "quote it: `version: \"1.0\"` (unquoted, YAML reads 1.0 as a number)",
            );
            return None;
        }
        let v = self.r.non_empty_str(n, "version")?;
        if !SCHEMA_VERSIONS.contains(&v) {
            self.r.error(
                n,
                "version",
                format!("unsupported schema version `{v}`"),
                format!(
                    "this fleetkit reads schema version {}",
                    SCHEMA_VERSIONS.join(", ")
                ),
            );
            return None;
        }
        Some(v.to_string())
    }

    fn organization(&mut self, n: &Node) -> Option<String> {
        let s = self.r.non_empty_str(n, "organization")?;
        if s.chars().any(|c| c.is_control() && c != '\n') || s.chars().count() > 128 {
            self.r.error(
                n,
                "organization",
                "`organization` must be at most 128 printable characters",
                "use the org name from fleetkit.yaml",
            );
            return None;
        }
        Some(s.to_string())
    }

    fn date(&mut self, n: &Node, field: &str) -> Option<String> {
        let s = self.r.str(n, field)?;
        let format = time::macros::format_description!("[year]-[month]-[day]");
        match time::Date::parse(s, &format) {
            Ok(_) => Some(s.to_string()),
            Err(_) => {
                self.r.error(
                    n,
                    field,
                    format!("`{s}` is not a calendar date"),
                    "write a real date as YYYY-MM-DD, e.g. \"2025-12-01\"",
                );
                None
            }
        }
    }

    /// A list of distinct non-empty strings, optionally from a closed vocabulary.
    /// Bad items are reported and dropped; the list itself is usable unless it is
    /// not a list at all.
    fn names<'n>(
        &mut self,
        n: &'n Node,
        field: &str,
        vocab: Option<&[&str]>,
    ) -> Option<Vec<(String, &'n Node)>> {
        let items = self.r.str_list(n, field)?;
        let mut out: Vec<(String, &Node)> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, (s, node)) in items.into_iter().enumerate() {
            let f = index(field, i);
            if let Some(vocab) = vocab
                && !vocab.contains(&s)
            {
                let help = vocab
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(s))
                    .copied()
                    .or_else(|| did_you_mean(s, vocab))
                    .map_or_else(
                        || format!("known values: {}", vocab.join(", ")),
                        |m| format!("did you mean `{m}`?"),
                    );
                self.r
                    .error(node, &f, format!("unknown value `{s}` in `{field}`"), help);
                ok = false;
                continue;
            }
            if let Some((_, first)) = out.iter().find(|(o, _)| o == s) {
                let line = first.loc.line;
                self.r.error(
                    node,
                    &f,
                    format!("`{s}` is listed twice in `{field}` (first on line {line})"),
                    "remove the repeated entry",
                );
                ok = false;
                continue;
            }
            out.push((s.to_string(), node));
        }
        ok.then_some(out)
    }

    fn one_of(&mut self, n: &Node, field: &str, allowed: &[&str]) -> Option<String> {
        let s = self.r.str(n, field)?;
        if allowed.contains(&s) {
            return Some(s.to_string());
        }
        let help = did_you_mean(s, allowed).map_or_else(
            || format!("use one of: {}", allowed.join(", ")),
            |m| format!("did you mean `{m}`?"),
        );
        self.r
            .error(n, field, format!("`{field}` cannot be `{s}`"), help);
        None
    }

    fn safety(&mut self, n: &Node) -> Option<Safety> {
        const KEYS: &[&str] = &[
            "risk_tolerance",
            "require_approval_for",
            "blocked_patterns",
            "additional_dangerous_paths",
        ];
        let m = self.r.map(n, "safety", KEYS)?;
        let mut s = Safety::default();
        let mut ok = true;
        if let Some(v) = m.get("risk_tolerance") {
            match self
                .one_of(v, "safety.risk_tolerance", RISK_TOLERANCES)
                .as_deref()
            {
                Some("low") => s.risk_tolerance = RiskTolerance::Low,
                Some("medium") => s.risk_tolerance = RiskTolerance::Medium,
                Some("high") => s.risk_tolerance = RiskTolerance::High,
                _ => ok = false,
            }
        }
        if let Some(v) = m.get("require_approval_for") {
            match self.names(v, "safety.require_approval_for", Some(APPROVAL_CLASSES)) {
                Some(list) => s.require_approval_for = list.into_iter().map(|(s, _)| s).collect(),
                None => ok = false,
            }
        }
        if let Some(v) = m.get("blocked_patterns") {
            match self.blocked_patterns(v) {
                Some(p) => s.blocked_patterns = p,
                None => ok = false,
            }
        }
        if let Some(v) = m.get("additional_dangerous_paths") {
            let field = "safety.additional_dangerous_paths";
            match self.names(v, field, None) {
                Some(list) => {
                    for (i, (p, node)) in list.iter().enumerate() {
                        if let Err(why) = patterns::check_path_glob(p) {
                            self.r.error(node, &index(field, i), why, "write an absolute path or glob: /data/*, ~/secrets/**, C:\\Data\\*");
                            ok = false;
                        }
                    }
                    s.additional_dangerous_paths = list.into_iter().map(|(s, _)| s).collect();
                }
                None => ok = false,
            }
        }
        ok.then_some(s)
    }

    fn blocked_patterns(&mut self, n: &Node) -> Option<Vec<BlockedPattern>> {
        let field = "safety.blocked_patterns";
        let items = self.r.seq(n, field)?;
        let mut out: Vec<(BlockedPattern, &Node)> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let f = index(field, i);
            let Some(m) = self.r.map(item, &f, &["pattern", "reason"]) else {
                ok = false;
                continue;
            };
            let pattern = m
                .required(
                    &mut self.r,
                    "pattern",
                    "give the regular expression to block",
                )
                .and_then(|p| {
                    self.r
                        .non_empty_str(p, &join(&f, "pattern"))
                        .map(|s| (s, p))
                });
            let reason = m
                .required(
                    &mut self.r,
                    "reason",
                    "say why it is blocked: users see the reason",
                )
                .and_then(|p| self.r.non_empty_str(p, &join(&f, "reason")));
            let (Some((pattern, pnode)), Some(reason)) = (pattern, reason) else {
                ok = false;
                continue;
            };
            let pf = join(&f, "pattern");
            if let Err(why) = patterns::check(pattern) {
                self.r.error(pnode, &pf, format!("`{pattern}` is not a valid regular expression: {why}"), "fix the pattern (Rust regex syntax; escape metacharacters such as \\| \\. \\*)");
                ok = false;
                continue;
            }
            if patterns::has_spaced_alternation(pattern) {
                self.warn(pnode, &pf, format!("`{pattern}` contains ` | `, which in a regular expression means OR, not a shell pipe"), "to match a pipe write `\\|`; to mean OR, drop the spaces");
            }
            if let Some((_, first)) = out.iter().find(|(b, _)| b.pattern == pattern) {
                let line = first.loc.line;
                self.r.error(
                    pnode,
                    &pf,
                    format!("pattern `{pattern}` is listed twice (first on line {line})"),
                    "remove the repeated entry",
                );
                ok = false;
                continue;
            }
            out.push((
                BlockedPattern {
                    pattern: pattern.to_string(),
                    reason: reason.to_string(),
                },
                pnode,
            ));
        }
        ok.then(|| out.into_iter().map(|(b, _)| b).collect())
    }

    fn tool_name(&mut self, n: &Node, field: &str) -> Option<String> {
        let s = self.r.non_empty_str(n, field)?;
        if s.chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '\\' || c.is_control())
        {
            self.r.error(
                n,
                field,
                format!("tool name `{s}` contains a space or path separator"),
                "give the program name only, e.g. `kubectl`",
            );
            return None;
        }
        Some(s.to_string())
    }

    fn allowed_tools(&mut self, n: &Node) -> Option<Vec<AllowedTool>> {
        const KEYS: &[&str] = &[
            "name",
            "versions",
            "reason",
            "approved_contexts",
            "blocked_contexts",
            "required_flags",
            "approved_profiles",
        ];
        let items = self.r.seq(n, "allowed_tools")?;
        let mut out: Vec<AllowedTool> = Vec::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let f = index("allowed_tools", i);
            let Some(m) = self.r.map(item, &f, KEYS) else {
                ok = false;
                continue;
            };
            let name_node = m.required(&mut self.r, "name", "name the program, e.g. `name: git`");
            let name = name_node.and_then(|nn| self.tool_name(nn, &join(&f, "name")));
            if let (Some(name), Some(nn)) = (&name, name_node) {
                if let Some(line) = first_line.get(name) {
                    self.r.error(
                        nn,
                        &join(&f, "name"),
                        format!("tool `{name}` is listed twice (first on line {line})"),
                        "merge the two entries into one",
                    );
                    ok = false;
                    continue;
                }
                first_line.insert(name.clone(), nn.loc.line);
            }
            let mut tool = AllowedTool::default();
            let mut item_ok = name.is_some();
            if let Some(v) = m.get("versions") {
                let vf = join(&f, "versions");
                match self.names(v, &vf, None) {
                    Some(list) => {
                        let mut reqs = Vec::new();
                        for (j, (c, node)) in list.iter().enumerate() {
                            match versions::parse(c) {
                                Ok(req) => reqs.push(req),
                                Err(why) => {
                                    self.r.error(node, &index(&vf, j), format!("`{c}` is not a version constraint: {why}"), "write constraints such as >=2.30.0, <1.30.0, ~1.6.0, ^2.1, =1.2.3");
                                    item_ok = false;
                                }
                            }
                        }
                        if item_ok && !reqs.is_empty() && !versions::satisfiable(&reqs) {
                            self.r.error(
                                v,
                                &vf,
                                format!(
                                    "no version satisfies all of {}",
                                    list.iter()
                                        .map(|(c, _)| c.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                                "the constraints must all hold at once: check the bounds",
                            );
                            item_ok = false;
                        }
                        tool.versions = list.into_iter().map(|(s, _)| s).collect();
                    }
                    None => item_ok = false,
                }
            }
            if let Some(v) = m.get("reason") {
                match self.r.non_empty_str(v, &join(&f, "reason")) {
                    Some(s) => tool.reason = Some(s.to_string()),
                    None => item_ok = false,
                }
            }
            let mut lists: [Vec<(String, &Node)>; 4] = Default::default();
            for (k, key) in [
                "approved_contexts",
                "blocked_contexts",
                "required_flags",
                "approved_profiles",
            ]
            .iter()
            .enumerate()
            {
                if let Some(v) = m.get(key) {
                    match self.names(v, &join(&f, key), None) {
                        Some(list) => lists[k] = list,
                        None => item_ok = false,
                    }
                }
            }
            for (j, (b, node)) in lists[1].iter().enumerate() {
                if lists[0].iter().any(|(a, _)| a == b) {
                    self.r.error(
                        node,
                        &index(&join(&f, "blocked_contexts"), j),
                        format!("context `{b}` is both approved and blocked"),
                        "remove it from one of the two lists",
                    );
                    item_ok = false;
                }
            }
            for (j, (flag, node)) in lists[2].iter().enumerate() {
                if !flag.starts_with('-') {
                    self.r.error(
                        node,
                        &index(&join(&f, "required_flags"), j),
                        format!("required flag `{flag}` does not start with `-`"),
                        "write the flag as typed on the command line, e.g. --lock=true",
                    );
                    item_ok = false;
                }
            }
            let [approved, blocked, flags, profiles] = lists;
            let plain = |l: Vec<(String, &Node)>| l.into_iter().map(|(s, _)| s).collect();
            tool.approved_contexts = plain(approved);
            tool.blocked_contexts = plain(blocked);
            tool.required_flags = plain(flags);
            tool.approved_profiles = plain(profiles);
            match (item_ok, name) {
                (true, Some(name)) => {
                    tool.name = name;
                    out.push(tool);
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn blocked_tools(&mut self, n: &Node) -> Option<Vec<BlockedTool>> {
        let items = self.r.seq(n, "blocked_tools")?;
        let mut out: Vec<(BlockedTool, usize)> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let f = index("blocked_tools", i);
            let Some(m) = self.r.map(item, &f, &["name", "reason"]) else {
                ok = false;
                continue;
            };
            let name_node = m.required(&mut self.r, "name", "name the program to block");
            let name = name_node.and_then(|nn| self.tool_name(nn, &join(&f, "name")));
            let reason = m
                .required(&mut self.r, "reason", "say why it is blocked")
                .and_then(|r| self.r.non_empty_str(r, &join(&f, "reason")));
            let (Some(name), Some(reason), Some(nn)) = (name, reason, name_node) else {
                ok = false;
                continue;
            };
            if let Some((_, line)) = out.iter().find(|(b, _)| b.name == name) {
                self.r.error(
                    nn,
                    &join(&f, "name"),
                    format!("tool `{name}` is listed twice (first on line {line})"),
                    "remove the repeated entry",
                );
                ok = false;
                continue;
            }
            out.push((
                BlockedTool {
                    name,
                    reason: reason.to_string(),
                },
                nn.loc.line,
            ));
        }
        ok.then(|| out.into_iter().map(|(b, _)| b).collect())
    }

    fn inference(&mut self, n: &Node) -> Option<Inference> {
        const KEYS: &[&str] = &[
            "allowed_backends",
            "blocked_backends",
            "model_allowlist",
            "require_local",
        ];
        let m = self.r.map(n, "inference", KEYS)?;
        let mut ok = true;
        let mut list = |c: &mut Self, key: &str| match m.get(key) {
            Some(v) => c
                .names(v, &join("inference", key), None)
                .unwrap_or_else(|| {
                    ok = false;
                    Vec::new()
                }),
            None => Vec::new(),
        };
        let allowed = list(self, "allowed_backends");
        let blocked = list(self, "blocked_backends");
        let models = list(self, "model_allowlist");
        let require_local = match m.get("require_local") {
            Some(v) => self
                .r
                .bool(v, "inference.require_local")
                .unwrap_or_else(|| {
                    ok = false;
                    false
                }),
            None => false,
        };
        for (j, (b, node)) in blocked.iter().enumerate() {
            if allowed.iter().any(|(a, _)| a == b) {
                self.r.error(
                    node,
                    &index("inference.blocked_backends", j),
                    format!("backend `{b}` is both allowed and blocked"),
                    "remove it from one of the two lists",
                );
                ok = false;
            }
        }
        if require_local {
            for (j, (a, node)) in allowed.iter().enumerate() {
                if REMOTE_BACKENDS.contains(&a.as_str()) {
                    self.r.error(node, &index("inference.allowed_backends", j), format!("backend `{a}` sends prompts off the machine, but `require_local` is true"), "remove the backend, or set require_local: false");
                    ok = false;
                }
            }
        }
        let plain = |l: Vec<(String, &Node)>| l.into_iter().map(|(s, _)| s).collect();
        ok.then(|| Inference {
            allowed_backends: plain(allowed),
            blocked_backends: plain(blocked),
            model_allowlist: plain(models),
            require_local,
        })
    }

    fn approvals(&mut self, n: &Node) -> Option<Approvals> {
        let m = self.r.map(
            n,
            "approvals",
            &["require_manager_approval", "auto_approve"],
        )?;
        let mut ok = true;
        let mut list = |c: &mut Self, key: &str| match m.get(key) {
            Some(v) => c
                .names(v, &join("approvals", key), Some(APPROVAL_CLASSES))
                .unwrap_or_else(|| {
                    ok = false;
                    Vec::new()
                }),
            None => Vec::new(),
        };
        let manager = list(self, "require_manager_approval");
        let auto = list(self, "auto_approve");
        for (j, (a, node)) in auto.iter().enumerate() {
            if manager.iter().any(|(m, _)| m == a) {
                self.r.error(
                    node,
                    &index("approvals.auto_approve", j),
                    format!("`{a}` is both auto-approved and requires manager approval"),
                    "remove it from one of the two lists",
                );
                ok = false;
            }
        }
        let plain = |l: Vec<(String, &Node)>| l.into_iter().map(|(s, _)| s).collect();
        ok.then(|| Approvals {
            require_manager_approval: plain(manager),
            auto_approve: plain(auto),
        })
    }

    fn audit(&mut self, n: &Node) -> Option<Audit> {
        const KEYS: &[&str] = &[
            "log_all_commands",
            "log_retention_days",
            "send_to_siem",
            "siem_endpoint",
        ];
        let m = self.r.map(n, "audit", KEYS)?;
        let mut a = Audit::default();
        let mut ok = true;
        if let Some(v) = m.get("log_all_commands") {
            match self.r.bool(v, "audit.log_all_commands") {
                Some(b) => a.log_all_commands = b,
                None => ok = false,
            }
        }
        if let Some(v) = m.get("log_retention_days") {
            match self.r.uint(v, "audit.log_retention_days") {
                Some(0) => {
                    self.r.error(
                        v,
                        "audit.log_retention_days",
                        "`audit.log_retention_days` must be greater than 0",
                        "keep logs for at least one day; auditors usually ask for 365",
                    );
                    ok = false;
                }
                Some(d) if d > 36_500 => {
                    self.r.error(
                        v,
                        "audit.log_retention_days",
                        format!("{d} days is more than 100 years"),
                        "give a retention of at most 36500 days",
                    );
                    ok = false;
                }
                Some(d) => a.log_retention_days = d,
                None => ok = false,
            }
        }
        if let Some(v) = m.get("send_to_siem") {
            match self.r.bool(v, "audit.send_to_siem") {
                Some(b) => a.send_to_siem = b,
                None => ok = false,
            }
        }
        match m.get("siem_endpoint") {
            Some(v) => match self.r.non_empty_str(v, "audit.siem_endpoint") {
                Some(s) => match crate::workspace::config::check_https_url(s) {
                    Ok(_) => a.siem_endpoint = Some(s.to_string()),
                    Err(why) => {
                        self.r.error(
                            v,
                            "audit.siem_endpoint",
                            why,
                            "give an https:// URL, e.g. https://siem.example.com/events",
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            },
            None if a.send_to_siem => {
                self.r.error(
                    n,
                    "audit.siem_endpoint",
                    "`send_to_siem` is true but no `siem_endpoint` is given",
                    "add `siem_endpoint: https://…` or set send_to_siem: false",
                );
                ok = false;
            }
            None => {}
        }
        ok.then_some(a)
    }

    fn compliance(&mut self, n: &Node) -> Option<Compliance> {
        let m = self.r.map(
            n,
            "compliance",
            &["frameworks", "data_classification", "require_mfa"],
        )?;
        let mut c = Compliance::default();
        let mut ok = true;
        if let Some(v) = m.get("frameworks") {
            match self.names(v, "compliance.frameworks", Some(FRAMEWORKS)) {
                Some(list) => c.frameworks = list.into_iter().map(|(s, _)| s).collect(),
                None => ok = false,
            }
        }
        if let Some(v) = m.get("data_classification") {
            match self
                .one_of(v, "compliance.data_classification", DATA_CLASSIFICATIONS)
                .as_deref()
            {
                Some("public") => c.data_classification = DataClassification::Public,
                Some("internal") => c.data_classification = DataClassification::Internal,
                Some("confidential") => c.data_classification = DataClassification::Confidential,
                Some("restricted") => c.data_classification = DataClassification::Restricted,
                _ => ok = false,
            }
        }
        if let Some(v) = m.get("require_mfa") {
            match self.r.bool(v, "compliance.require_mfa") {
                Some(b) => c.require_mfa = b,
                None => ok = false,
            }
        }
        ok.then_some(c)
    }

    fn enforcement(&mut self, n: &Node) -> Option<Enforcement> {
        let m = self.r.map(n, "enforcement", &["mode"])?;
        let mode = match m.get("mode") {
            None => EnforcementMode::default(),
            Some(v) => match self
                .one_of(v, "enforcement.mode", ENFORCEMENT_MODES)
                .as_deref()
            {
                Some("enforce") => EnforcementMode::Enforce,
                Some("audit-only") => EnforcementMode::AuditOnly,
                Some("permissive") => EnforcementMode::Permissive,
                _ => return None,
            },
        };
        Some(Enforcement { mode })
    }

    /// Rules that span sections; run only when every section was valid on its own.
    fn cross_section(&mut self, top: &MapView<'_>, p: &OrgPolicy) {
        if let Some(blocked) = top.get("blocked_tools")
            && let Value::Seq(items) = &blocked.value
        {
            for (i, (tool, item)) in p.blocked_tools.iter().zip(items).enumerate() {
                if p.allowed_tools.iter().any(|a| a.name == tool.name) {
                    self.r.error(
                        item,
                        &index("blocked_tools", i),
                        format!("tool `{}` is both allowed and blocked", tool.name),
                        "remove it from allowed_tools or from blocked_tools",
                    );
                }
            }
        }
        if let Some(approvals) = top.get("approvals")
            && let Value::Map(pairs) = &approvals.value
            && let Some((_, auto)) = pairs
                .iter()
                .find(|(k, _)| k.value == Value::Str("auto_approve".into()))
            && let Value::Seq(items) = &auto.value
        {
            for (i, (class, item)) in p.approvals.auto_approve.iter().zip(items).enumerate() {
                if p.safety.require_approval_for.contains(class) {
                    self.r.error(item, &index("approvals.auto_approve", i), format!("`{class}` is auto-approved, but safety.require_approval_for requires approval for it"), "remove it from one of the two lists");
                }
            }
        }
    }
}

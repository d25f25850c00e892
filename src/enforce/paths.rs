//! Dangerous paths: the policy's `additional_dangerous_paths` and the built-in lists
//! (system folders, secrets, fleetkit's and Claude Code's own enforcement files).
//!
//! A path is compared in one normal form: absolute (relative paths joined to the
//! request's working folder), `.` and `..` removed, `\` turned into `/`, lower case
//! (macOS and Windows file systems ignore case; matching more is the safe side), and
//! the home folder written `~`. A command that writes is also caught on an ancestor
//! of a dangerous path (`rm -rf /data` deletes `/data/production/*`) and on the
//! folder a glob argument expands in (`rm -rf /data/*`).

use super::prefilter::LiteralIndex;
use globset::{Glob, GlobBuilder, GlobMatcher};
use std::borrow::Cow;
use std::sync::OnceLock;

/// Folders whose contents a command must not write without approval (and the home
/// folder itself: `rm -rf ~`).
pub const SYSTEM_PATHS: &[&str] = &[
    "~",
    "/etc/**",
    "/usr/**",
    "/bin/**",
    "/sbin/**",
    "/lib/**",
    "/lib64/**",
    "/boot/**",
    "/dev/**",
    "/sys/**",
    "/proc/**",
    "/System/**",
    "/private/etc/**",
    "/var/db/**",
    "/Library/LaunchDaemons/**",
    "/Library/LaunchAgents/**",
    "C:/Windows/**",
    "C:/Program Files/**",
    "C:/Program Files (x86)/**",
];

/// Files that say what is enforced: no command may write them.
pub const ENFORCEMENT_PATHS: &[&str] = &[
    "/etc/fleetkit/**",
    "/var/lib/fleetkit/**",
    "/etc/claude-code/**",
    "/Library/Application Support/ClaudeCode/**",
    "/Library/Application Support/fleetkit/**",
    "C:/Program Files/ClaudeCode/**",
    // Where Claude Code before 2.1.75 read its managed settings on Windows.
    "C:/ProgramData/ClaudeCode/**",
    "C:/ProgramData/fleetkit/**",
];

/// Devices that are written every day and harm nothing. Not `/dev/stdin` nor
/// `/dev/fd/N`: Linux reopens the file behind them, so `echo x < FILE > /dev/stdin`
/// truncates FILE.
const HARMLESS: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/stdout",
    "/dev/stderr",
    "/dev/tty",
    "/dev/random",
    "/dev/urandom",
    "nul",
];

/// Whether a path is one of the devices written every day to no harm
/// (`/dev/null`, `NUL`…).
pub fn is_harmless(path: &str) -> bool {
    HARMLESS.iter().any(|h| {
        path.get(..h.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(h))
            && matches!(path.as_bytes().get(h.len()), None | Some(b'/'))
    })
}

/// Which list a dangerous path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathList {
    /// `safety.additional_dangerous_paths[i]`.
    Policy(usize),
    System,
    Secret,
    Enforcement,
    /// Files that make programs run code later: shell startup files, git's
    /// configuration and hooks.
    Startup,
}

/// Files whose contents run later, in another program's name: writing them is
/// not allowed silently (`>> ~/.bashrc`, `>> .git/config`).
pub const STARTUP_PATHS: &[&str] = &[
    "**/.bashrc",
    "**/.bash_profile",
    "**/.bash_login",
    "**/.profile",
    "**/.zshrc",
    "**/.zshenv",
    "**/.zprofile",
    "**/.zlogin",
    "**/.config/fish/**",
    "**/.gitconfig",
    "**/.config/git/**",
    "**/.ssh/rc",
    "**/.ssh/authorized_keys",
    "**/.git/config",
    "**/.git/hooks/**",
    "**/.gitattributes",
    "**/.envrc",
    // Red-team round 7: submodules' hooks, git hook managers, editor tasks that
    // run when a folder opens, cargo's configuration (runners, wrappers), and the
    // home folder's other files that start programs.
    "**/.git/modules/**/hooks/**",
    "**/.git/modules/**/config",
    "**/.husky/**",
    "**/.vscode/tasks.json",
    "**/.cargo/config.toml",
    "**/.cargo/config",
    "**/.bash_logout",
    "**/.vimrc",
    "**/.gdbinit",
    "**/.pam_environment",
    "~/.local/bin/**",
    "~/.local/share/systemd/user/**",
    "~/.ipython/**/startup/**",
    "**/site-packages/*.pth",
    "~/.npmrc",
    "~/.config/autostart/**",
    "~/.config/systemd/**",
    // Claude Code's own user and project settings (`apiKeyHelper`, `statusLine`
    // and MCP servers run programs) and the scripts their hooks run.
    "**/.claude/settings.json",
    "**/.claude/settings.local.json",
    "**/.claude/hooks/**",
    "~/.claude.json",
    "**/.mcp.json",
    // PowerShell profiles and auto-loaded modules, and the Startup folder.
    "**/documents/windowspowershell/**",
    "**/documents/powershell/**",
    "**/start menu/programs/startup/**",
    "~/Library/LaunchAgents/**",
    "/etc/profile",
    "/etc/profile.d/**",
    "/etc/bash.bashrc",
    "/etc/zshrc",
    "/etc/cron*/**",
    "/var/spool/cron/**",
];

/// A compiled list of path globs.
///
/// A hook process judges one command, so building a matcher for each of the ~150
/// globs up front (0.7 ms, most of the example policy's compile) is wasted: each
/// glob's longest literal run (`.ssh/`, `/etc/`, `login data`) goes into one
/// Aho-Corasick automaton, a path is compared only with the globs whose literal it
/// contains (and the few without one), and a glob's matcher is built the first
/// time a path reaches it. Every glob is still parsed when the policy compiles, so
/// a bad one is reported then.
#[derive(Debug, Clone)]
pub struct PathRules {
    /// Per glob: its list, the folder before its first wildcard
    /// (`/data/production`), whether it ends in `/*` or `/**`, and its matcher.
    entries: Vec<Entry>,
    /// The globs' literal runs (globs without one, `*`, meet every path).
    literals: LiteralIndex,
}

#[derive(Debug, Clone)]
struct Entry {
    list: PathList,
    prefix: String,
    trailing: bool,
    /// The glob, normalised; parsed and compiled the first time a path reaches it
    /// (the policy's own globs are also parsed when the policy compiles).
    glob: String,
    matcher: OnceLock<Option<GlobMatcher>>,
    /// For a glob anchored anywhere (`**/.claude/settings.json`): the folders its
    /// matches lie in (`.claude`), since a command that puts files of its own
    /// choosing in such a folder (`tar -C .claude`, `mv evil .claude`) may write
    /// a match.
    folders: Vec<Head>,
}

/// A folder an anywhere-anchored glob's matches lie in, without the `**/`.
#[derive(Debug, Clone)]
struct Head {
    text: String,
    /// For a head with a wildcard (`.config/*`), built on first use.
    matcher: Option<OnceLock<Option<GlobMatcher>>>,
}

impl Head {
    /// The heads of `glob` (normalised): `**/a/b/c` has `a` and `a/b`.
    fn of(glob: &str) -> Vec<Head> {
        let Some(rest) = glob.strip_prefix("**/") else {
            return Vec::new();
        };
        let parts: Vec<&str> = rest.split('/').collect();
        (1..parts.len())
            .map(|k| parts[..k].join("/"))
            .filter(|h| !h.ends_with("**"))
            .map(|text| Head {
                matcher: text.contains(['*', '?', '[', '{']).then(OnceLock::new),
                text,
            })
            .collect()
    }

    fn is_match(&self, path: &str) -> bool {
        match &self.matcher {
            None => {
                path == self.text
                    || path
                        .strip_suffix(self.text.as_str())
                        .is_some_and(|p| p.ends_with('/'))
            }
            Some(m) => m
                .get_or_init(|| {
                    parse_glob(&format!("**/{}", self.text))
                        .ok()
                        .map(|g| g.compile_matcher())
                })
                .as_ref()
                .is_some_and(|m| m.is_match(path)),
        }
    }
}

impl Entry {
    fn is_match(&self, path: &str) -> bool {
        self.matcher
            .get_or_init(|| parse_glob(&self.glob).ok().map(|g| g.compile_matcher()))
            .as_ref()
            .is_some_and(|m| m.is_match(path))
    }
}

fn parse_glob(normalised: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(normalised)
        .literal_separator(false)
        .backslash_escape(false)
        .build()
}

/// What a command does with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Writes it, or, for a folder, may put anything in it (`tar -C DIR`, `mv
    /// SRC DIR`).
    Write,
    /// Writes files of known names into it (`cp a b DIR/`): those are judged
    /// as paths of their own, and the folder only as a write of its own.
    WriteInto,
    /// Reads it and, for a folder, everything under it (`grep -r`, `zip -r`):
    /// the secrets and the policy's paths below it count.
    ReadTree,
}

/// One match of a path against the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathHit {
    pub list: PathList,
    /// The path as normalised.
    pub path: String,
    /// The rule's glob.
    pub glob: String,
}

impl PathRules {
    /// Compiles the policy's globs and the built-in lists.
    pub fn compile(policy_globs: &[String]) -> Result<Self, String> {
        let mut entries = Vec::new();
        let mut literals = Vec::new();
        // In this order the first hit of a kind decides among equal verdicts: the
        // enforcement files, then the policy's own paths, then the built-in lists.
        let lists = ENFORCEMENT_PATHS
            .iter()
            .map(|g| (PathList::Enforcement, *g))
            .chain(
                policy_globs
                    .iter()
                    .enumerate()
                    .map(|(i, g)| (PathList::Policy(i), g.as_str())),
            )
            .chain(
                super::classify::SECRET_PATHS
                    .iter()
                    .map(|g| (PathList::Secret, *g)),
            )
            .chain(STARTUP_PATHS.iter().map(|g| (PathList::Startup, *g)))
            .chain(SYSTEM_PATHS.iter().map(|g| (PathList::System, *g)));
        for (list, glob) in lists {
            let norm = normalise_glob(glob);
            // The built-in globs are known to parse (a test holds them to it).
            if let PathList::Policy(_) = list {
                parse_glob(&norm).map_err(|e| format!("`{glob}`: {e}"))?;
            }
            literals.push(longest_literal(&norm));
            entries.push(Entry {
                list,
                prefix: literal_dir(&norm),
                trailing: norm.ends_with("/*") || norm.ends_with("/**"),
                folders: Head::of(&norm),
                glob: norm,
                matcher: OnceLock::new(),
            });
        }
        let literals = LiteralIndex::new(literals)?;
        Ok(Self { entries, literals })
    }

    /// Marks in `seen` the globs that match `path`.
    fn matches_into(&self, path: &str, seen: &mut [bool]) {
        let candidates = self.literals.candidates(path);
        for i in candidates {
            if !seen[i] && self.entries[i].is_match(path) {
                seen[i] = true;
            }
        }
    }

    /// Marks in `seen` the globs that a file the shell pattern `pattern` expands
    /// to may match (`~/.mozilla/firefox/*/logins.json`, `/home/*/.ssh/id_rsa`,
    /// `~/.kube/co*`): the pattern with its wildcards standing for one name, or
    /// for nothing, and each rule's example file (its own wildcards standing for
    /// one name) tried against the pattern as bash reads it.
    fn glob_matches_into(&self, pattern: &str, seen: &mut [bool]) {
        // Extended globs (`@(kube)`, `!(x)`, `+(a|b)`) as `*`: they match no more.
        let pattern = without_extended_globs(pattern);
        for stand_in in ["x", ""] {
            let one = pattern
                .replace("**", stand_in)
                .replace(['*', '?'], stand_in);
            self.matches_into(&one, seen);
        }
        let as_bash_reads = |p: &str| {
            GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(false)
                .build()
                .ok()
                .map(|g| g.compile_matcher())
        };
        let Some(word) = as_bash_reads(&pattern) else {
            return;
        };
        // The pattern's last components, for rules anchored anywhere: its last
        // `n` components may name the rule's file (`*/Login?Data` names `login
        // data`), unless its last name is wildcards alone (`src/*`).
        let parts: Vec<&str> = pattern.split('/').collect();
        let literal_name = parts
            .last()
            .is_some_and(|p| p.chars().any(|c| !"*?".contains(c)));
        // A folder's name partly spelled with wildcards (`.gnup?`) says something
        // too: `/home/*/.gnup?/private-keys-v1.d/*` is compared name by name with
        // the rules for whole folders (`**/.gnupg/**`), not with those for files
        // (`*` meets `*.pem` in any folder, as `cat src/*` does).
        let partial_folder = parts[..parts.len().saturating_sub(1)]
            .iter()
            .any(|p| p.contains(['*', '?', '[']) && p.chars().any(|c| !"*?[]!".contains(c)));
        let mut tails: Vec<Option<Option<GlobMatcher>>> = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let Some(example) = example_of(&e.glob) else {
                continue;
            };
            let anywhere = example
                .strip_prefix("~/")
                .filter(|_| e.glob.starts_with("**/"));
            let tail_hit = anywhere.is_some_and(|tail| {
                let n = tail.split('/').count();
                if tails.len() < n {
                    tails.resize(n, None);
                }
                tails[n - 1]
                    .get_or_insert_with(|| {
                        (literal_name && n <= parts.len())
                            .then(|| as_bash_reads(&parts[parts.len() - n..].join("/")))
                            .flatten()
                    })
                    .as_ref()
                    .is_some_and(|t| t.is_match(tail))
            });
            seen[i] |= tail_hit || word.is_match(&example);
            // Name by name (a wildcard in a secret folder's own name:
            // `/home/*/.a?s/credentials`), when the last name says something.
            if !seen[i] && (literal_name || (partial_folder && e.glob.ends_with("/**"))) {
                let rule: Vec<&str> = e.glob.split('/').collect();
                seen[i] = names_meet(&parts, &rule);
            }
        }
    }

    /// The rules `path` falls under. `access`: whether the command reads or
    /// writes there (a write also counts on an ancestor of a dangerous path).
    /// `glob`: the word was a pattern the shell expands, so the folder it expands
    /// in counts as written.
    ///
    /// A path in another home folder (`/home/bob/.config/gh/hosts.yml`,
    /// `/home/*/…`, which may be the user's own) also meets the rules written
    /// for the home folder (`~/.config/gh/**`): a secret is one in any home.
    pub fn hits(&self, path: &str, access: Access, glob: bool) -> Vec<PathHit> {
        let mut out = self.hits_at(path, access, glob);
        if let Some(home_form) = in_a_home(path) {
            for hit in self.hits_at(&home_form, access, glob) {
                if !out.iter().any(|h| h.list == hit.list) {
                    out.push(PathHit {
                        path: path.to_string(),
                        ..hit
                    });
                }
            }
        }
        out
    }

    fn hits_at(&self, path: &str, access: Access, glob: bool) -> Vec<PathHit> {
        let write = matches!(access, Access::Write | Access::WriteInto);
        let tree = access == Access::ReadTree;
        let mut out = Vec::new();
        let folder;
        let pattern = path;
        let path = if glob {
            folder = literal_dir(path);
            folder.as_str()
        } else {
            path
        };
        if is_harmless(path) {
            return out;
        }
        let mut seen = vec![false; self.entries.len()];
        self.matches_into(path, &mut seen);
        if glob {
            self.glob_matches_into(pattern, &mut seen);
        }
        if write {
            // Writing a folder may write anything in it: a glob for every file under
            // a folder (`**/start menu/programs/startup/**`) counts for the folder.
            self.matches_into(&format!("{path}/\u{1}"), &mut seen);
        }
        for (i, e) in self.entries.iter().enumerate() {
            let folder_itself = e.trailing && path == e.prefix;
            // A folder read whole counts for what is read below it: secrets and
            // the policy's own paths, not the system and startup lists.
            let below = access == Access::Write
                || (tree && matches!(e.list, PathList::Secret | PathList::Policy(_)));
            let ancestor = ((write || glob) && is_ancestor(path, &e.prefix))
                || (below && is_ancestor(path, &e.prefix))
                || (below && e.folders.iter().any(|h| h.is_match(path)));
            if (seen[i] || folder_itself || ancestor)
                && !out.iter().any(|h: &PathHit| h.list == e.list)
            {
                out.push(PathHit {
                    list: e.list,
                    path: path.to_string(),
                    glob: e.prefix.clone(),
                });
            }
        }
        out
    }
}

/// A path (normalised) in a home folder other than the user's, written from
/// that home: `/home/bob/.ssh` and `/home/*/.ssh` are `~/.ssh`. Linux's and
/// macOS's homes, root's, and Windows' profiles.
fn in_a_home(path: &str) -> Option<String> {
    let rest = ["/root", "/var/root"]
        .iter()
        .find_map(|h| path.strip_prefix(h))
        .or_else(|| {
            ["/home/", "/users/", "c:/users/"]
                .iter()
                .find_map(|h| path.strip_prefix(h))
                .map(|user_on| user_on.find('/').map_or("", |k| &user_on[k..]))
        })?;
    match rest {
        "" => Some("~".into()),
        r if r.starts_with('/') => Some(format!("~{r}")),
        _ => None,
    }
}

/// Whether some path matches both the pattern `a` and the rule `b` (lists of names;
/// the rule's `**` stands for any number of names): name by name, two literal names
/// must be equal, a pattern must match the other's literal name, and two
/// patterns are taken to meet.
fn names_meet(a: &[&str], b: &[&str]) -> bool {
    fn wild(s: &str) -> bool {
        s.contains(['*', '?', '['])
    }
    fn one(x: &str, y: &str) -> bool {
        match (wild(x), wild(y)) {
            (false, false) => x == y,
            (true, false) => name_matches(x, y),
            (false, true) => name_matches(y, x),
            // Two patterns: their fixed starts and ends must agree (`*.rs`
            // never meets `*.p12`).
            (true, true) => {
                let head = |s: &str| s[..s.find(['*', '?', '[']).unwrap_or(s.len())].to_string();
                let tail = |s: &str| s[s.rfind(['*', '?', ']']).map_or(0, |k| k + 1)..].to_string();
                let (hx, hy, tx, ty) = (head(x), head(y), tail(x), tail(y));
                (hx.starts_with(&hy) || hy.starts_with(&hx))
                    && (tx.ends_with(&ty) || ty.ends_with(&tx))
            }
        }
    }
    fn go(a: &[&str], b: &[&str], budget: &mut u32) -> bool {
        if *budget == 0 {
            return true; // too many ways to try: take them to meet
        }
        *budget -= 1;
        match (a.first(), b.first()) {
            (None, None) => true,
            // The rule's `**` is any number of names; the pattern's is one
            // name, as bash reads it without globstar.
            (_, Some(&"**")) => go(a, &b[1..], budget) || (!a.is_empty() && go(&a[1..], b, budget)),
            (Some(x), Some(y)) => one(x, y) && go(&a[1..], &b[1..], budget),
            _ => false,
        }
    }
    go(a, b, &mut 10_000)
}

/// Whether the shell pattern `pattern` (`*`, `?`, `[…]` taken as any one
/// character) matches the name `name`; as bash does, a wildcard does not match
/// a leading `.`.
fn name_matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let mut p: Vec<char> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '[' {
            for d in chars.by_ref() {
                if d == ']' {
                    break;
                }
            }
            p.push('?');
        } else {
            p.push(c);
        }
    }
    let t: Vec<char> = name.chars().collect();
    // Classic wildcard matching with one star backtrack point.
    let (mut i, mut j, mut star, mut mark) = (0usize, 0usize, None, 0usize);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

/// `pattern` with bash's extended globs (`@(…)`, `?(…)`, `+(…)`, `*(…)`, `!(…)`)
/// written `*`, which matches at least what each does within one name.
fn without_extended_globs(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains('(') {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if "@?+*!".contains(c) && chars.peek() == Some(&'(') {
            let mut depth = 0;
            for d in chars.by_ref() {
                match d {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            out.push('*');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A file a rule's glob matches, its wildcards standing for one name `x`
/// (`**/.kube/config` → `~/.kube/config`); `None` for classes and alternatives.
fn example_of(glob: &str) -> Option<String> {
    if glob.contains(['[', '{']) {
        return None;
    }
    let rooted = match glob.strip_prefix("**/") {
        Some(rest) => format!("~/{rest}"),
        None => glob.to_string(),
    };
    Some(rooted.replace("**", "x").replace(['*', '?'], "x"))
}

/// The words bash's brace expansion makes of `word` (`{~/.ssh/id_rsa,x}` is
/// `~/.ssh/id_rsa` and `x`, tilde expanded after), at most 64; the word itself
/// when it holds no `{…,…}`. Sequences (`{1..9}`) are left as written.
pub fn brace_expand(word: &str) -> Vec<String> {
    const MAX: usize = 64;
    let mut done = Vec::new();
    let mut todo = vec![word.to_string()];
    while let Some(w) = todo.pop() {
        match brace_alternatives(&w) {
            Some(alts) if done.len() + todo.len() + alts.len() <= MAX => todo.extend(alts),
            _ => done.push(w),
        }
    }
    done
}

/// The first `{a,b}` of `word` expanded one level, or `None`.
fn brace_alternatives(word: &str) -> Option<Vec<String>> {
    let bytes = word.as_bytes();
    for open in (0..bytes.len()).filter(|&i| bytes[i] == b'{') {
        let mut depth = 0;
        let mut commas = Vec::new();
        for (k, &b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        if commas.is_empty() {
                            break;
                        }
                        let (head, tail) = (&word[..open], &word[k + 1..]);
                        let mut cuts = vec![open];
                        cuts.extend(&commas);
                        cuts.push(k);
                        return Some(
                            cuts.windows(2)
                                .map(|c| format!("{head}{}{tail}", &word[c[0] + 1..c[1]]))
                                .collect(),
                        );
                    }
                }
                b',' if depth == 1 => commas.push(k),
                _ => {}
            }
        }
    }
    None
}

/// The longest run of a (normalised) glob that every matching path contains:
/// text outside `*`, `?`, `[…]` and `{…}`. `None` when there is none.
fn longest_literal(glob: &str) -> Option<String> {
    let mut best = "";
    let mut start = 0;
    let mut chars = glob.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let close = match c {
            '*' | '?' => None,
            '[' => Some(']'),
            '{' => Some('}'),
            _ => continue,
        };
        let run = run_at(glob, start, i);
        if run.len() > best.len() {
            best = run;
        }
        if let Some(close) = close {
            // A class may hold its closing bracket first (`[]a]`).
            let mut first = true;
            for (_, c) in chars.by_ref() {
                if c == close && !first {
                    break;
                }
                first = false;
            }
        }
        start = chars.peek().map_or(glob.len(), |(j, _)| *j);
    }
    let run = run_at(glob, start, glob.len());
    if run.len() > best.len() {
        best = run;
    }
    (!best.is_empty()).then(|| best.to_string())
}

/// `glob[start..end]`, without the `/` that follows a wildcard: `**/` also matches
/// nothing, so `**/.env` matches `.env`, which has no `/`.
fn run_at(glob: &str, start: usize, end: usize) -> &str {
    let run = &glob[start..end];
    if start > 0 {
        run.strip_prefix('/').unwrap_or(run)
    } else {
        run
    }
}

/// The normal form of a path word. `None` when it cannot be placed (relative with
/// no working folder known, or `~user`).
pub fn normalise(word: &str, cwd: Option<&str>, home: Option<&str>) -> Option<String> {
    // Each step allocates only when it changes something: a hook judges a command
    // in microseconds, and most words are plain relative names.
    let is_windows =
        |p: &str| p.len() >= 2 && p.as_bytes()[1] == b':' && p.as_bytes()[0].is_ascii_alphabetic();
    let mut p = slashes(word);
    // Win32's namespace prefixes: `\\?\C:\x` and `\\.\C:\x` name `C:\x`.
    if let Some(rest) = ["//?/", "//./", "/??/"]
        .iter()
        .find_map(|pre| p.strip_prefix(*pre))
        .filter(|rest| is_windows(rest))
    {
        p = Cow::Owned(rest.to_string());
    }
    // Relative paths first (the working folder may itself be `~/…`), then `~`.
    if !p.starts_with('/') && !p.starts_with('~') && !is_windows(&p) {
        let cwd = slashes(cwd?);
        p = Cow::Owned(format!("{}/{p}", cwd.trim_end_matches('/')));
    }
    if p == "~" || p.starts_with("~/") {
        let home = home?;
        p = Cow::Owned(format!(
            "{}{}",
            slashes(home.trim_end_matches(['/', '\\'])),
            &p[1..]
        ));
    } else if let Some(user) = p.strip_prefix('~') {
        // Another user's home: where Linux keeps it (the secret paths match any
        // home by their `**/` form).
        p = Cow::Owned(format!("/home/{user}"));
    }
    let mut windows = is_windows(&p);
    if !p.starts_with('/') && !windows {
        return None;
    }
    let drive: String;
    let mut parts: Vec<&str> = Vec::new();
    // `/proc/self/root/etc/shadow` is `/etc/shadow`.
    let mut rest = p.split('/');
    let head: Vec<&str> = rest.by_ref().take(4).collect();
    let skip = head.len() == 4 && head[1] == "proc" && head[3] == "root";
    let all = (if skip { &head[..0] } else { &head[..] })
        .iter()
        .copied()
        .chain(rest);
    for part in all {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    // Git Bash's `/c/…`, WSL's `/mnt/c/…` and Cygwin's `/cygdrive/c/…` are `C:/…`.
    if !windows && let Some(k) = msys_drive(&parts) {
        drive = format!("{}:", parts[k]);
        parts.drain(..=k);
        parts.insert(0, &drive);
        windows = true;
    }
    if windows && !windows_components(&mut parts) {
        return None;
    }
    let mut out = String::with_capacity(p.len() + 1);
    if !windows {
        out.push('/');
    }
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(part);
    }
    let mut out = if out.is_ascii() {
        out.make_ascii_lowercase();
        out
    } else {
        out.to_lowercase()
    };
    if windows && parts.len() == 1 {
        out.push('/');
    }
    if let Some(home) = home {
        let h = normalise_plain(home);
        if out == h {
            return Some("~".into());
        }
        if let Some(rest) = out
            .strip_prefix(h.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            return Some(format!("~/{rest}"));
        }
    }
    Some(out)
}

/// Where a drive letter stands in a POSIX spelling of a Windows path: `/c/…` (Git
/// Bash), `/mnt/c/…` (WSL), `/cygdrive/c/…` (Cygwin).
fn msys_drive(parts: &[&str]) -> Option<usize> {
    let letter = |p: &str| p.len() == 1 && p.as_bytes()[0].is_ascii_alphabetic();
    match parts {
        ["mnt" | "cygdrive", d, ..] if letter(d) => Some(1),
        [d, ..] if letter(d) => Some(0),
        _ => None,
    }
}

/// Windows reads a path's components after the drive as the file they name:
/// trailing dots and spaces are dropped (`ProgramData.` is `ProgramData`) and
/// `name:stream` or `name::$DATA` is a stream of `name`. `false` when a component
/// cannot be compared: a short (8.3) name such as `PROGRA~3`, which only the file
/// system can map to its long name, or one made only of dots and spaces.
fn windows_components(parts: &mut [&str]) -> bool {
    for part in parts.iter_mut().skip(1) {
        let base = part.split(':').next().unwrap_or(part);
        let trimmed = base.trim_end_matches(['.', ' ']);
        if trimmed.is_empty() || is_short_name(trimmed) {
            return false;
        }
        *part = trimmed;
    }
    true
}

/// A Windows short (8.3) name: up to six characters, `~`, a digit (`PROGRA~3`,
/// `DOCUME~1.TXT`).
fn is_short_name(component: &str) -> bool {
    component.split_once('~').is_some_and(|(head, tail)| {
        !head.is_empty() && head.len() <= 6 && tail.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// Whether a word holds a Windows short (8.3) name, which no
/// dangerous-path rule can be compared with (`C:\PROGRA~3\ClaudeCode`).
pub fn has_short_name(word: &str) -> bool {
    slashes(word).split('/').any(is_short_name)
}

/// `s` with `\\` written `/`, allocating only when there is one.
fn slashes(s: &str) -> Cow<'_, str> {
    if s.contains('\\') {
        Cow::Owned(s.replace('\\', "/"))
    } else {
        Cow::Borrowed(s)
    }
}

fn normalise_plain(p: &str) -> String {
    p.replace('\\', "/").trim_end_matches('/').to_lowercase()
}

fn normalise_glob(g: &str) -> String {
    g.replace('\\', "/").to_lowercase()
}

/// The folder part of a glob before its first wildcard.
fn literal_dir(glob: &str) -> String {
    let cut = glob.find(['*', '?', '[', '{']).unwrap_or(glob.len());
    let head = &glob[..cut];
    let dir = if cut < glob.len() {
        head.rsplit_once('/').map_or("", |(d, _)| d)
    } else {
        head
    };
    if dir.is_empty() && glob.starts_with('/') {
        "/".into()
    } else {
        dir.trim_end_matches('/').to_string()
    }
}

fn is_ancestor(path: &str, of: &str) -> bool {
    if of.is_empty() || path.is_empty() || path == of {
        return path == of && !path.is_empty();
    }
    if path == "/" {
        return of.starts_with('/');
    }
    of.starts_with(path) && of.as_bytes().get(path.len()) == Some(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefilter and lazy matchers answer exactly as one GlobSet of every glob
    /// did, on paths made from each glob and on ordinary ones.
    #[test]
    fn the_literal_prefilter_loses_no_match() {
        let policy = [
            "/data/production/*".to_string(),
            "*".into(),
            "~/secrets/**".into(),
            "c:/finance/[a-z]?x.{xls,csv}".into(),
        ];
        let rules = PathRules::compile(&policy).unwrap();
        let mut set = globset::GlobSetBuilder::new();
        for e in &rules.entries {
            set.add(parse_glob(&e.glob).expect("every glob parses"));
        }
        let set = set.build().unwrap();
        let mut paths: Vec<String> = Vec::new();
        for e in &rules.entries {
            let g = e.glob.as_str();
            for (dirs, one) in [("a/b", "x"), ("", ""), ("q", "login data")] {
                let p = g.replace("**", dirs).replace('*', one).replace('?', "z");
                paths.push(p.clone());
                paths.push(format!("/home/dev/{p}"));
                paths.push(format!("~/{p}"));
            }
        }
        paths.extend(
            [
                "/",
                "~",
                "~/src/status",
                "/etc/passwd",
                "/tmp/x",
                "c:/",
                "/data/production",
                "c:/finance/ab.xls",
            ]
            .map(String::from),
        );
        for p in &paths {
            let mut seen = vec![false; rules.entries.len()];
            rules.matches_into(p, &mut seen);
            let want: Vec<usize> = set.matches(p.as_str());
            let got: Vec<usize> = (0..seen.len()).filter(|i| seen[*i]).collect();
            assert_eq!(got, want, "{p}");
        }
        assert!(paths.len() > 500);
    }

    #[test]
    fn normal_form() {
        let n = |p| normalise(p, Some("/home/al/src"), Some("/home/al"));
        assert_eq!(n("../.ssh/id_rsa").as_deref(), Some("~/.ssh/id_rsa"));
        assert_eq!(
            n("/data//Production/./x").as_deref(),
            Some("/data/production/x")
        );
        assert_eq!(n("~").as_deref(), Some("~"));
        assert_eq!(n("C:\\Data\\X").as_deref(), Some("c:/data/x"));
        assert_eq!(n("~bob/x").as_deref(), Some("/home/bob/x"));
        assert_eq!(
            normalise("credentials", Some("~/.aws"), Some("/home/al")).as_deref(),
            Some("~/.aws/credentials")
        );
        assert_eq!(normalise("x", None, None), None);
        // Windows paths as other shells and APIs spell them.
        for spelling in [
            "/c/ProgramData/ClaudeCode/x",
            "//c/ProgramData/ClaudeCode/x",
            "/mnt/c/ProgramData/ClaudeCode/x",
            "/cygdrive/C/ProgramData/ClaudeCode/x",
            r"\\?\C:\ProgramData\ClaudeCode\x",
            r"\\.\C:\ProgramData\ClaudeCode\x",
            r"C:\ProgramData.\ClaudeCode \x",
            r"C:\ProgramData\ClaudeCode\x::$DATA",
            r"C:\ProgramData\ClaudeCode\x:hidden",
        ] {
            assert_eq!(
                n(spelling).as_deref(),
                Some("c:/programdata/claudecode/x"),
                "{spelling}"
            );
        }
        // A short name cannot be compared: the word is not placed.
        assert_eq!(n(r"C:\PROGRA~3\ClaudeCode\x"), None);
        assert!(has_short_name(r"C:\PROGRA~3\ClaudeCode\x"));
        // Outside Windows paths `~1` is an ordinary name.
        assert_eq!(n("~/src/x~1").as_deref(), Some("~/src/x~1"));
        assert_eq!(n(r"C:\x\. .\y"), None);
    }

    #[test]
    fn braces_expand_as_bash_does() {
        let mut got = brace_expand("{~/.ssh/id_rsa,/dev/null}");
        got.sort();
        assert_eq!(got, ["/dev/null", "~/.ssh/id_rsa"]);
        let mut got = brace_expand("a{b,c{d,e}}f");
        got.sort();
        assert_eq!(got, ["abf", "acdf", "acef"]);
        assert_eq!(brace_expand("{1..9}"), ["{1..9}"]);
        assert_eq!(brace_expand("x"), ["x"]);
        // At most 64 words: the rest stays as written.
        assert!(brace_expand(&"{a,b}".repeat(10)).len() <= 64);
    }

    #[test]
    fn globs_and_folders_reach_the_rules_they_may_touch() {
        let r = PathRules::compile(&[]).unwrap();
        let lists = |p, a, g| r.hits(p, a, g).iter().map(|h| h.list).collect::<Vec<_>>();
        for pattern in [
            "~/.mozilla/firefox/*/logins.json",
            "/home/*/.ssh/id_rsa",
            "~/.kube/co*",
            "~/.ssh/id_*",
        ] {
            assert!(
                lists(pattern, Access::Read, true).contains(&PathList::Secret),
                "{pattern}"
            );
        }
        assert!(lists("~/src/*.rs", Access::Read, true).is_empty());
        // A wildcard in a secret folder's own name (red-team round 6); `**` in
        // a pattern is one name, and does not reach into dot folders.
        for pattern in [
            "/home/*/.a?s/credentials",
            "/proc/self/envir?n",
            "/root/.ss?/id_*",
            // A bare wildcard last, in a folder spelled with one; a rule of the
            // home folder reached from any home (round 6's leftovers).
            "/home/*/.gnup?/private-keys-v1.d/*",
            "/home/*/.config/gh/hosts.y?l",
            "/users/*/.config/gh/*",
        ] {
            assert!(
                lists(pattern, Access::Read, true).contains(&PathList::Secret),
                "{pattern}"
            );
        }
        for pattern in [
            "/w/app/src/**/*.ts",
            "/w/a/**/b",
            "/w/x/[n]ginx",
            "/w/src/*.json",
            "/w/src/*",
            "/home/al/projects/a?c/*",
            "/home/bob/src/*.md",
        ] {
            assert!(
                !lists(pattern, Access::Read, true).contains(&PathList::Secret),
                "{pattern}"
            );
        }
        // A folder written with contents of the command's choosing may receive a
        // startup file; one given only named files does not.
        assert!(lists("/w/app/.claude", Access::Write, false).contains(&PathList::Startup));
        assert!(lists("/w/app/.git", Access::Write, false).contains(&PathList::Startup));
        assert!(lists("/w/app/.claude", Access::WriteInto, false).is_empty());
        assert!(lists("/w/app/build", Access::Write, false).is_empty());
    }

    #[test]
    fn other_homes_are_written_from_the_home_folder() {
        assert_eq!(
            in_a_home("/home/bob/.ssh/id_rsa").as_deref(),
            Some("~/.ssh/id_rsa")
        );
        assert_eq!(in_a_home("/home/*/.config").as_deref(), Some("~/.config"));
        assert_eq!(in_a_home("c:/users/bob/.aws").as_deref(), Some("~/.aws"));
        assert_eq!(in_a_home("/root").as_deref(), Some("~"));
        assert_eq!(in_a_home("/home/bob").as_deref(), Some("~"));
        assert_eq!(in_a_home("/rootfs/x"), None);
        assert_eq!(in_a_home("/etc/passwd"), None);
        let r = PathRules::compile(&[]).unwrap();
        let hit = r.hits("/home/bob/.config/gh/hosts.yml", Access::Read, false);
        assert_eq!(hit[0].list, PathList::Secret);
        // The path is reported as written, not as the home form compared.
        assert_eq!(hit[0].path, "/home/bob/.config/gh/hosts.yml");
    }

    #[test]
    fn hits_follow_writes_and_ancestors() {
        let r = PathRules::compile(&["/data/production/*".into()]).unwrap();
        let lists = |p, w, g| {
            let w = if w { Access::Write } else { Access::Read };
            r.hits(p, w, g).iter().map(|h| h.list).collect::<Vec<_>>()
        };
        assert_eq!(
            lists("/data/production/a/b", false, false),
            [PathList::Policy(0)]
        );
        assert_eq!(
            lists("/data/production", false, false),
            [PathList::Policy(0)]
        );
        assert!(lists("/data", false, false).is_empty());
        assert!(lists("/data", true, false).contains(&PathList::Policy(0)));
        assert!(lists("/data/*", false, true).contains(&PathList::Policy(0)));
        assert!(lists("/", true, false).contains(&PathList::System));
        assert!(lists("/dev/null", true, false).is_empty());
        assert_eq!(lists("~/.ssh/id_rsa", false, false), [PathList::Secret]);
        assert!(
            lists("/etc/claude-code/managed-settings.json", true, false)
                .contains(&PathList::Enforcement)
        );
        assert!(lists("/tmp/x", true, false).is_empty());
    }
}

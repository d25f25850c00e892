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

    /// The rules `path` falls under. `write`: the command writes there, so an
    /// ancestor of a dangerous path counts too. `glob`: the word was a pattern the
    /// shell expands, so the folder it expands in counts as written.
    pub fn hits(&self, path: &str, write: bool, glob: bool) -> Vec<PathHit> {
        let mut out = Vec::new();
        let folder;
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
        if write {
            // Writing a folder may write anything in it: a glob for every file under
            // a folder (`**/start menu/programs/startup/**`) counts for the folder.
            self.matches_into(&format!("{path}/\u{1}"), &mut seen);
        }
        for (i, e) in self.entries.iter().enumerate() {
            let folder_itself = e.trailing && path == e.prefix;
            let ancestor = (write || glob) && is_ancestor(path, &e.prefix);
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
    let windows = is_windows(&p);
    if !p.starts_with('/') && !windows {
        return None;
    }
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
    }

    #[test]
    fn hits_follow_writes_and_ancestors() {
        let r = PathRules::compile(&["/data/production/*".into()]).unwrap();
        let lists = |p, w, g| r.hits(p, w, g).iter().map(|h| h.list).collect::<Vec<_>>();
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

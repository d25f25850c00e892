//! Dangerous paths: the policy's `additional_dangerous_paths` and the built-in lists
//! (system folders, secrets, fleetkit's and Claude Code's own enforcement files).
//!
//! A path is compared in one normal form: absolute (relative paths joined to the
//! request's working folder), `.` and `..` removed, `\` turned into `/`, lower case
//! (macOS and Windows file systems ignore case; matching more is the safe side), and
//! the home folder written `~`. A command that writes is also caught on an ancestor
//! of a dangerous path (`rm -rf /data` deletes `/data/production/*`) and on the
//! folder a glob argument expands in (`rm -rf /data/*`).

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

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
    let p = path.to_ascii_lowercase();
    HARMLESS
        .iter()
        .any(|h| p == *h || p.starts_with(&format!("{h}/")))
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
#[derive(Debug, Clone)]
pub struct PathRules {
    set: GlobSet,
    /// Per glob: its list, and the folder before its first wildcard (`/data/production`).
    entries: Vec<(PathList, String, bool)>,
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
        let mut b = GlobSetBuilder::new();
        let mut entries = Vec::new();
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
            let g = GlobBuilder::new(&norm)
                .literal_separator(false)
                .backslash_escape(false)
                .build()
                .map_err(|e| format!("`{glob}`: {e}"))?;
            b.add(g);
            let prefix = literal_dir(&norm);
            let trailing = norm.ends_with("/*") || norm.ends_with("/**");
            entries.push((list, prefix, trailing));
        }
        let set = b.build().map_err(|e| e.to_string())?;
        Ok(Self { set, entries })
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
        for i in self.set.matches(path) {
            seen[i] = true;
        }
        if write {
            // Writing a folder may write anything in it: a glob for every file under
            // a folder (`**/start menu/programs/startup/**`) counts for the folder.
            for i in self.set.matches(format!("{path}/\u{1}")) {
                seen[i] = true;
            }
        }
        for (i, (list, prefix, trailing)) in self.entries.iter().enumerate() {
            let folder_itself = *trailing && path == prefix;
            let ancestor = (write || glob) && is_ancestor(path, prefix);
            if (seen[i] || folder_itself || ancestor)
                && !out.iter().any(|h: &PathHit| h.list == *list)
            {
                out.push(PathHit {
                    list: *list,
                    path: path.to_string(),
                    glob: prefix.clone(),
                });
            }
        }
        out
    }
}

/// The normal form of a path word. `None` when it cannot be placed (relative with
/// no working folder known, or `~user`).
pub fn normalise(word: &str, cwd: Option<&str>, home: Option<&str>) -> Option<String> {
    let mut p = word.replace('\\', "/");
    let is_windows =
        |p: &str| p.len() >= 2 && p.as_bytes()[1] == b':' && p.as_bytes()[0].is_ascii_alphabetic();
    // Relative paths first (the working folder may itself be `~/…`), then `~`.
    if !p.starts_with('/') && !p.starts_with('~') && !is_windows(&p) {
        let cwd = cwd?.replace('\\', "/");
        p = format!("{}/{p}", cwd.trim_end_matches('/'));
    }
    if p == "~" || p.starts_with("~/") {
        let home = home?;
        p = format!(
            "{}{}",
            home.trim_end_matches(['/', '\\']).replace('\\', "/"),
            &p[1..]
        );
    } else if let Some(user) = p.strip_prefix('~') {
        // Another user's home: where Linux keeps it (the secret paths match any
        // home by their `**/` form).
        p = format!("/home/{user}");
    }
    let windows = is_windows(&p);
    if !p.starts_with('/') && !windows {
        return None;
    }
    // `/proc/self/root/etc/shadow` is `/etc/shadow`.
    let parts_in: Vec<&str> = p.split('/').collect();
    if parts_in.len() > 3 && parts_in[1] == "proc" && parts_in[3] == "root" {
        p = format!("/{}", parts_in[4..].join("/"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let lead = if windows { "" } else { "/" };
    let mut out = format!("{lead}{}", parts.join("/")).to_lowercase();
    if windows && parts.len() == 1 {
        out.push('/');
    }
    if let Some(home) = home {
        let h = normalise_plain(home);
        if out == h {
            return Some("~".into());
        }
        if let Some(rest) = out.strip_prefix(&format!("{h}/")) {
            return Some(format!("~/{rest}"));
        }
    }
    Some(out)
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

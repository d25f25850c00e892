//! What a decision needs to know about the machine besides the command: tool
//! versions, the environment, the kubeconfig's current context, the home and working
//! folders. A trait, so that tests and `fleetkit policy test` give fixed answers and
//! the device asks the system.
//!
//! [`SystemContext`] finds a tool's version by running `<tool> --version` once (with
//! a time limit) and caching the answer in a file keyed by the executable's path,
//! size and modification time, so the hook does not start `kubectl` on every call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use super::payloads::Payload;

/// The facts a decision may read.
pub trait Context {
    /// The version a tool reports (`"1.27.3"`), `None` when it is not installed or
    /// says nothing recognisable.
    fn tool_version(&self, tool: &str) -> Option<String>;
    /// An environment variable of the process that would run the command.
    fn env(&self, name: &str) -> Option<String>;
    /// The `current-context` of the kubeconfig (`path`, or `$KUBECONFIG`'s first
    /// file, or `~/.kube/config`).
    fn kube_context(&self, path: Option<&str>) -> Option<String>;
    /// The user's home folder.
    fn home(&self) -> Option<String>;
    /// The working folder commands run in, when the request does not say.
    fn cwd(&self) -> Option<String>;
    /// An archive or patch a command extracts or applies (`path` as the command
    /// names it, absolute), read for the names it writes. `None` when it is not a
    /// regular file that can be opened.
    fn open_file(&self, path: &str) -> Option<Box<dyn Payload + '_>>;
}

/// Fixed answers (tests, `fleetkit policy test` cases).
#[derive(Debug, Clone, Default)]
pub struct FixedContext {
    pub versions: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub kube_context: Option<String>,
    pub home: Option<String>,
    pub cwd: Option<String>,
    /// Files by path: the archives and patches a command may name.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Context for FixedContext {
    fn tool_version(&self, tool: &str) -> Option<String> {
        self.versions.get(tool).cloned()
    }
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn kube_context(&self, _path: Option<&str>) -> Option<String> {
        self.kube_context.clone()
    }
    fn home(&self) -> Option<String> {
        self.home.clone()
    }
    fn cwd(&self) -> Option<String> {
        self.cwd.clone()
    }
    fn open_file(&self, path: &str) -> Option<Box<dyn Payload + '_>> {
        let bytes = self.files.get(path)?;
        Some(Box::new(std::io::Cursor::new(bytes.as_slice())))
    }
}

/// How long a tool may take to print its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest version cache file read back.
const MAX_CACHE_BYTES: u64 = 256 * 1024;

/// The running system's answers.
#[derive(Debug)]
pub struct SystemContext {
    /// Where tool versions are cached (`None`: not cached).
    cache_file: Option<PathBuf>,
    cache: Mutex<BTreeMap<String, String>>,
}

impl SystemContext {
    /// Caches versions in `cache_file` (made 0600 by its writer; its folder must exist
    /// or be creatable).
    pub fn new(cache_file: Option<PathBuf>) -> Self {
        let cache = cache_file
            .as_deref()
            .and_then(|p| crate::fsutil::read_capped(p, MAX_CACHE_BYTES).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            cache_file,
            cache: Mutex::new(cache),
        }
    }

    /// The per-user cache file: `$XDG_CACHE_HOME` or `~/.cache` (Unix),
    /// `%LOCALAPPDATA%` (Windows), `/fleetkit/tool-versions.json`.
    pub fn default_cache_file() -> Option<PathBuf> {
        let base = if cfg!(windows) {
            std::env::var_os("LOCALAPPDATA").map(PathBuf::from)
        } else {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        };
        base.map(|b| b.join("fleetkit").join("tool-versions.json"))
    }

    fn remember(&self, key: String, version: String) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        cache.insert(key, version);
        if let Some(path) = &self.cache_file
            && let Ok(bytes) = serde_json::to_vec(&*cache)
        {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // A cache: losing a write costs one more `--version` run, nothing else.
            let _ = crate::fsutil::write_atomic(path, &bytes, crate::fsutil::SECRET_MODE);
        }
    }
}

/// Finds `tool` on `PATH` as the shell would.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let exts: &[&str] = if cfg!(windows) {
        &[".exe", ".cmd", ".bat", ""]
    } else {
        &[""]
    };
    std::env::split_paths(&path).find_map(|dir| {
        exts.iter().find_map(|ext| {
            let p = dir.join(format!("{tool}{ext}"));
            p.is_file().then_some(p)
        })
    })
}

/// The first `N.N[.N]` in a tool's output (`git version 2.39.5`,
/// `Terraform v1.6.6`, `aws-cli/2.15.30 Python/3.11`), as semver text.
pub fn version_in(text: &str) -> Option<String> {
    let re = version_regex();
    let caps = re.captures(text)?;
    let part = |i| caps.get(i).map_or("0", |m: regex::Match<'_>| m.as_str());
    Some(format!("{}.{}.{}", part(1), part(2), part(3)))
}

fn version_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"(?:^|[^0-9.])(\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?")
            .unwrap_or_else(|_| unreachable!())
    })
}

/// The arguments that make each tool print its own version.
fn version_args(tool: &str) -> &'static [&'static str] {
    match tool {
        "kubectl" => &["version", "--client"],
        "terraform" | "tofu" => &["-version"],
        "go" => &["version"],
        "helm" => &["version", "--short"],
        _ => &["--version"],
    }
}

fn run_for_version(exe: &Path, tool: &str) -> Option<String> {
    let mut child = Command::new(exe)
        .args(version_args(tool))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("CHECKPOINT_DISABLE", "1")
        .spawn()
        .ok()?;
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < VERSION_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    version_in(&text.chars().take(4096).collect::<String>())
}

impl Context for SystemContext {
    fn tool_version(&self, tool: &str) -> Option<String> {
        let exe = which(tool)?;
        let meta = std::fs::metadata(&exe).ok()?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = format!("{}|{}|{mtime}", exe.display(), meta.len());
        if let Some(v) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Some(v);
        }
        let v = run_for_version(&exe, tool)?;
        self.remember(key, v.clone());
        Some(v)
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn kube_context(&self, path: Option<&str>) -> Option<String> {
        let file = match path {
            Some(p) => PathBuf::from(p),
            None => match std::env::var_os("KUBECONFIG") {
                Some(k) => std::env::split_paths(&k).next()?,
                None => Path::new(&self.home()?).join(".kube").join("config"),
            },
        };
        let bytes = crate::fsutil::read_capped(&file, 4 * 1024 * 1024).ok()?;
        current_context(&String::from_utf8_lossy(&bytes))
    }

    fn home(&self) -> Option<String> {
        let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
        std::env::var(var).ok()
    }

    fn cwd(&self) -> Option<String> {
        std::env::current_dir()
            .ok()
            .map(|p| p.display().to_string())
    }

    fn open_file(&self, path: &str) -> Option<Box<dyn Payload + '_>> {
        // A regular file only: opening a FIFO (`mkfifo a.tar`) or a device would
        // block the decision until the deadline.
        if !std::fs::metadata(path).ok()?.is_file() {
            return None;
        }
        let file = std::fs::File::open(path).ok()?;
        Some(Box::new(file))
    }
}

/// `current-context:` of a kubeconfig (YAML), read without a YAML library: the key
/// is always a top-level scalar line.
pub fn current_context(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("current-context:")?.trim();
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_tool_output() {
        assert_eq!(version_in("git version 2.39.5").as_deref(), Some("2.39.5"));
        assert_eq!(
            version_in("Terraform v1.6.6\non linux_amd64").as_deref(),
            Some("1.6.6")
        );
        assert_eq!(
            version_in("aws-cli/2.15.30 Python/3.11.8").as_deref(),
            Some("2.15.30")
        );
        assert_eq!(
            version_in("Client Version: v1.28.2\nKustomize Version: v5.0.4").as_deref(),
            Some("1.28.2")
        );
        assert_eq!(version_in("jq-1.6").as_deref(), Some("1.6.0"));
        assert_eq!(version_in("no version"), None);
    }

    #[test]
    fn kubeconfig_current_context() {
        let k = "apiVersion: v1\nclusters: []\ncurrent-context: \"prod-eu\"\nkind: Config\n";
        assert_eq!(current_context(k).as_deref(), Some("prod-eu"));
        assert_eq!(current_context("kind: Config\n"), None);
    }
}

//! A Windows machine for the tests: a private Wine prefix, with Windows Installer
//! (`msiexec`), the registry (`reg export`) and, for the real agent, the test-only
//! stand-in for the DLL Rust programs need that Debian 12's Wine lacks.

use super::tool;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn wine() -> PathBuf {
    let debian = PathBuf::from("/usr/lib/wine/wine64");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("wine")
    }
}

/// A Wine prefix of its own (a fresh "machine").
pub struct Machine {
    prefix: tempfile::TempDir,
}

impl Machine {
    pub fn new() -> Self {
        let m = Self {
            prefix: tempfile::tempdir().unwrap(),
        };
        m.run(&["wineboot", "--init"]);
        m
    }

    /// A fresh Wine prefix that can run Rust programs: [`Machine::new`] plus the
    /// test-only `ProcessPrng` stand-in (tests/fixtures/wine/bcryptprimitives.c) in
    /// its system32, because Debian 12's Wine lacks bcryptprimitives.dll.
    pub fn with_rust_runtime() -> Self {
        let m = Self::new();
        let dll = process_prng_shim();
        std::fs::copy(dll, m.c_drive("windows/system32/bcryptprimitives.dll")).unwrap();
        m
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(wine());
        c.env("WINEPREFIX", self.prefix.path())
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        tool(self.command().args(args))
    }

    pub fn c_drive(&self, path: &str) -> PathBuf {
        self.prefix.path().join("drive_c").join(path)
    }

    /// `msiexec /i` or `/x`, quiet, with a verbose log; the log on failure.
    pub fn msiexec(&self, op: &str, msi: &Path, properties: &[String]) {
        let dir = msi.parent().unwrap();
        let log = dir.join(format!("{op}.log"));
        let out = self
            .command()
            .arg("msiexec")
            .arg(op)
            .arg(format!("Z:{}", msi.display()).replace('/', "\\"))
            .arg("/qn")
            .arg("/l*v")
            .arg(format!("Z:{}", log.display()).replace('/', "\\"))
            .args(properties)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "msiexec {op} failed ({:?}):\n{}",
            out.status,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The values of a registry key, by name (`reg export`, UTF-16, unescaped);
    /// `None` when the key does not exist.
    pub fn registry(&self, key: &str) -> Option<BTreeMap<String, String>> {
        let file = self.prefix.path().join("export.reg");
        let _ = std::fs::remove_file(&file);
        let out = self
            .command()
            .args(["reg", "export", key])
            .arg(format!("Z:{}", file.display()).replace('/', "\\"))
            .arg("/y")
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        let bytes = std::fs::read(&file).unwrap();
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let text = String::from_utf16(&units).unwrap();
        let header = format!("[{key}]");
        let mut in_key = false;
        let mut values = BTreeMap::new();
        for line in text.lines().map(|l| l.trim_start_matches('\u{feff}')) {
            if line.starts_with('[') {
                in_key = line.eq_ignore_ascii_case(&header);
            } else if in_key && let Some((name, value)) = line.split_once("\"=\"") {
                let value = value.strip_suffix('"').unwrap();
                values.insert(
                    name.trim_start_matches('"').to_string(),
                    value.replace("\\\"", "\"").replace("\\\\", "\\"),
                );
            }
        }
        Some(values)
    }
}

/// `Z:\…`: how Windows programs under Wine name a Linux path.
pub fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// The ProcessPrng stand-in DLL, compiled once per test process with mingw-w64.
fn process_prng_shim() -> &'static Path {
    static DLL: OnceLock<PathBuf> = OnceLock::new();
    DLL.get_or_init(|| {
        let dll = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("bcryptprimitives-{}.dll", std::process::id()));
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wine/bcryptprimitives.c");
        tool(
            Command::new("x86_64-w64-mingw32-gcc")
                .args(["-O2", "-shared", "-s", "-o"])
                .arg(&dll)
                .arg(source)
                .arg("-ladvapi32"),
        );
        dll
    })
}

//! The MSI installed for real by Windows Installer as Wine implements it (msiexec in
//! a private Wine prefix): files from the cabinet, registry values, the enrollment
//! values from public properties (hostile ones included), a major upgrade, and an
//! uninstall that keeps the device's manifest.
//!
//! The custom actions run a stand-in agent, which cannot start under Wine; their
//! exit codes are ignored by design (a pending registration must not fail the
//! install), so the install still succeeds, as it would on Windows with no server.

mod support;

use fleetkit::agent::windows::parse_installer_values;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const TEAM: &str = "Plat\"form 'ü' $x `y` #1";
const DEPARTMENT: &str = "Dépt ü $x #1 %PATH%";
const TOKEN: &str = "#tok$en`x`'ü";

fn wine() -> PathBuf {
    let debian = PathBuf::from("/usr/lib/wine/wine64");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("wine")
    }
}

/// A Wine prefix of its own (a fresh "machine").
struct Machine {
    prefix: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let m = Self {
            prefix: tempfile::tempdir().unwrap(),
        };
        m.run(&["wineboot", "--init"]);
        m
    }

    fn command(&self) -> Command {
        let mut c = Command::new(wine());
        c.env("WINEPREFIX", self.prefix.path())
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        c
    }

    fn run(&self, args: &[&str]) -> String {
        tool(self.command().args(args))
    }

    fn c_drive(&self, path: &str) -> PathBuf {
        self.prefix.path().join("drive_c").join(path)
    }

    /// `msiexec /i` or `/x`, quiet, with a verbose log; the log on failure.
    fn msiexec(&self, op: &str, msi: &Path, properties: &[String]) {
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
    fn registry(&self, key: &str) -> Option<BTreeMap<String, String>> {
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

fn build(org: &Org, dir: &Path, out: &str, agent: &Path) -> PathBuf {
    org.build(
        &dir.join(out),
        &["--target", "msi", "--team", TEAM],
        &[("windows-x86_64", agent)],
    );
    std::fs::read_dir(dir.join(out).join("windows"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "msi"))
        .unwrap()
}

fn product_code(msi: &Path) -> String {
    let props = tool(
        Command::new("msiinfo")
            .arg("export")
            .arg(msi)
            .arg("Property"),
    );
    props
        .lines()
        .find_map(|l| l.strip_prefix("ProductCode\t"))
        .unwrap()
        .to_string()
}

#[test]
fn windows_installer_installs_upgrades_and_uninstalls_the_msi() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    // A stand-in agent of several cabinet blocks.
    let agent_bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let agent = dir.path().join("fleetkit.exe");
    std::fs::write(&agent, &agent_bytes).unwrap();
    let v1 = build(&org, dir.path(), "v1", &agent);
    let machine = Machine::new();

    // Install: the team comes from the MSI's Property table (built with --team), the
    // department and token from the command line.
    machine.msiexec(
        "/i",
        &v1,
        &[
            format!("FLEETKIT_DEPARTMENT={DEPARTMENT}"),
            format!("FLEETKIT_ENROLL_TOKEN={TOKEN}"),
        ],
    );
    let data = machine.c_drive("ProgramData/fleetkit");
    assert_eq!(
        std::fs::read(machine.c_drive("Program Files/fleetkit/fleetkit.exe")).unwrap(),
        agent_bytes,
        "the agent, out of the cabinet"
    );
    assert_eq!(
        std::fs::read(data.join("bundle.json")).unwrap(),
        std::fs::read(org.path().join("bundles/policy-v1.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(data.join("anchors.json")).unwrap(),
        std::fs::read(org.path().join("anchors.json")).unwrap()
    );
    let product = machine
        .registry(r"HKEY_LOCAL_MACHINE\SOFTWARE\fleetkit")
        .unwrap();
    assert_eq!(product["Version"], "1.0.1");
    assert_eq!(product["ProductCode"], product_code(&v1));
    assert_eq!(product["PolicyVersion"], "1");

    // The agent reads back exactly what was given.
    let enrollment = machine
        .registry(r"HKEY_LOCAL_MACHINE\SOFTWARE\fleetkit\Enrollment")
        .unwrap();
    let given = parse_installer_values(|name| enrollment.get(name).cloned()).unwrap();
    assert_eq!(given.assignment.team.as_deref(), Some(TEAM));
    assert_eq!(given.assignment.department.as_deref(), Some(DEPARTMENT));
    assert_eq!(given.assignment.environment, None, "not given: empty");
    assert_eq!(given.token.as_deref().map(String::as_str), Some(TOKEN));

    // What the agent would have written at registration.
    std::fs::create_dir_all(data.join("data")).unwrap();
    std::fs::write(data.join("data/manifest.yaml"), "machine_id: pc-1\n").unwrap();

    // A new policy version: a major upgrade replaces the old product.
    org.sign_next();
    let v2 = build(&org, dir.path(), "v2", &agent);
    assert_ne!(product_code(&v1), product_code(&v2));
    machine.msiexec("/i", &v2, &[]);
    let product = machine
        .registry(r"HKEY_LOCAL_MACHINE\SOFTWARE\fleetkit")
        .unwrap();
    assert_eq!(product["Version"], "1.0.2");
    assert_eq!(product["ProductCode"], product_code(&v2));
    assert_eq!(
        std::fs::read(data.join("bundle.json")).unwrap(),
        std::fs::read(org.path().join("bundles/policy-v2.json")).unwrap()
    );
    let uninstall = r"HKEY_LOCAL_MACHINE\Software\Microsoft\Windows\CurrentVersion\Uninstall";
    assert!(
        machine
            .registry(&format!("{uninstall}\\{}", product_code(&v1)))
            .is_none(),
        "the old version is no longer installed"
    );
    assert!(
        machine
            .registry(&format!("{uninstall}\\{}", product_code(&v2)))
            .is_some()
    );

    // Uninstall: what the MSI installed goes, the manifest stays.
    machine.msiexec("/x", &v2, &[]);
    assert!(
        !machine
            .c_drive("Program Files/fleetkit/fleetkit.exe")
            .exists()
    );
    for f in ["agent.yaml", "anchors.json", "bundle.json"] {
        assert!(!data.join(f).exists(), "{f} left behind");
    }
    assert!(
        data.join("data/manifest.yaml").exists(),
        "the manifest stays"
    );
    let left = machine
        .registry(r"HKEY_LOCAL_MACHINE\SOFTWARE\fleetkit")
        .unwrap_or_default();
    assert!(!left.contains_key("Version"), "{left:?}");
    assert!(
        machine
            .registry(r"HKEY_LOCAL_MACHINE\SOFTWARE\fleetkit\Enrollment")
            .unwrap_or_default()
            .is_empty()
    );
}

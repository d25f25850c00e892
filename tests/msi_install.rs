//! The MSI installed for real by Windows Installer as Wine implements it (msiexec in
//! a private Wine prefix): files from the cabinet, registry values, the enrollment
//! values from public properties (hostile ones included), a major upgrade, and an
//! uninstall that keeps the device's manifest.
//!
//! The custom actions run a stand-in agent (a minimal PE whose entry point returns
//! 1, tests/support/executables.rs); their exit codes are ignored by design (a
//! pending registration must not fail the install), so the install still succeeds,
//! as it would on Windows with no server.

mod support;

use fleetkit::agent::windows::parse_installer_values;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::wine::Machine;
use support::*;

const TEAM: &str = "Plat\"form 'ü' $x `y` #1";
const DEPARTMENT: &str = "Dépt ü $x #1 %PATH%";
const TOKEN: &str = "#tok$en`x`'ü";

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
    let agent_bytes = executables::executable("windows-x86_64", 200_000);
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

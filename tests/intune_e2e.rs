//! The Intune channel end to end, with the real Windows agent cross-built by
//! scripts/build-agents.sh: the MSI `fleetkit build` makes, installed by Wine's
//! Windows Installer as Intune would run it (`msiexec /i … /qn` with the enrollment
//! properties, hostile values included), registers the device against `fleetkit
//! serve` on loopback through its deferred custom action; a newly published policy
//! reaches the device; uninstalling keeps the device's identity.
//!
//! Wine needs the test-only ProcessPrng stand-in (tests/support/wine.rs); what Wine
//! cannot show (scheduled tasks, ACLs, the Root store) is listed in mdm/intune.md.

mod support;

use fleetkit::protocol::DeviceRecord;
use std::path::{Path, PathBuf};
use support::wine::Machine;
use support::*;

// Hostile to every layer: msiexec's command line, cmd, PowerShell, the registry, YAML.
// No `"` and no trailing `\`: Wine turns the Linux argument list into a Windows
// command line by escaping those with `\`, which msiexec does not read, so they could
// not arrive as typed (a quote in a value reaches the agent through the MSI's
// Property table instead: tests/msi_install.rs builds with such a --team).
const TEAM: &str = "Plat-form 'ü' $x `y` #1 %TEMP% & ^ | <a> \\srv";
const DEPARTMENT: &str = "Dépt ü $x #1 %PATH% [ProgramFilesFolder] {x} ; \\ end";

/// Points the workspace at the test server, as an admin sets `server.url`.
fn use_server(org: &Org, url: &str) {
    let path = org.path().join("fleetkit.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (before, after) = text.split_once("\n  url: ").unwrap();
    let rest = after.split_once('\n').unwrap().1;
    std::fs::write(&path, format!("{before}\n  url: {url}\n{rest}")).unwrap();
}

fn build_msi(org: &Org, out: &Path, agent: &Path) -> PathBuf {
    org.build(out, &["--target", "msi"], &[("windows-x86_64", agent)]);
    std::fs::read_dir(out.join("windows"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "msi"))
        .unwrap()
}

/// Claude Code's managed settings for the MSI's agent, as the `claude-code` target
/// builds them from the org's current policy.
fn windows_claude_settings(org: &Org, out: &Path) -> String {
    org.build(out, &["--target", "claude-code"], &[]);
    std::fs::read_to_string(out.join("claude-code/windows/managed-settings.json")).unwrap()
}

fn devices(org: &Org) -> Vec<DeviceRecord> {
    let json = fleetkit(&["--workspace", &org.ws(), "devices", "list", "--json"]);
    serde_json::from_str(&json).unwrap()
}

#[test]
fn the_msi_installed_by_windows_installer_registers_the_real_agent_and_keeps_it_current() {
    let Some(agent) = real_agent("windows-x86_64") else {
        return;
    };
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    use_server(&org, &server.url());
    let dir = tempfile::tempdir().unwrap();
    let msi = build_msi(&org, &dir.path().join("out"), &agent);
    let token = create_token(&server, &org, TEAM, 1, 3600).token;

    let machine = Machine::with_rust_runtime();
    machine.msiexec(
        "/i",
        &msi,
        &[
            format!("FLEETKIT_ENROLL_TOKEN={token}"),
            format!("FLEETKIT_TEAM={TEAM}"),
            format!("FLEETKIT_DEPARTMENT={DEPARTMENT}"),
        ],
    );

    // The deferred custom action ran the real agent, which registered.
    let listed = devices(&org);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let device = &listed[0];
    assert_eq!(device.platform, "windows-x86_64");
    assert_eq!(device.team, TEAM);
    assert_eq!(device.department.as_deref(), Some(DEPARTMENT));
    assert_eq!(
        device.policy_version, None,
        "reported at the first check-in"
    );

    // The token is gone from the registry; the device's identity is recorded.
    let enrollment = machine
        .registry(r"HKEY_LOCAL_MACHINE\SOFTWARE\fleetkit\Enrollment")
        .unwrap_or_default();
    assert!(!enrollment.contains_key("Token"), "{enrollment:?}");
    assert!(
        !enrollment.values().any(|v| v == &token),
        "the token stays nowhere in the Enrollment key"
    );
    let recorded = machine
        .registry(r"HKEY_LOCAL_MACHINE\SOFTWARE\fleetkit\Device")
        .unwrap();
    assert_eq!(recorded["DeviceId"], device.device_id);
    assert_eq!(recorded["MachineId"], device.machine_id);
    let data = machine.c_drive("ProgramData/fleetkit/data");
    let identity = std::fs::read_to_string(data.join("identity.pem")).unwrap();
    assert!(
        identity.contains("PRIVATE KEY") && identity.contains("CERTIFICATE"),
        "the device's own key and its machine certificate are on the device"
    );
    // Claude Code's managed settings, written by the agent's custom action: what
    // the claude-code target builds for Windows, the hook naming the installed agent.
    let claude = machine.c_drive("Program Files/ClaudeCode/managed-settings.json");
    assert_eq!(
        std::fs::read_to_string(&claude).unwrap(),
        windows_claude_settings(&org, &dir.path().join("cc1"))
    );

    // A newly published policy reaches the device.
    org.sign_next();
    fleetkit(&["--workspace", &org.ws(), "policy", "publish"]);
    let exe = r"C:\Program Files\fleetkit\fleetkit.exe";
    machine.run(&[exe, "agent", "sync"]);
    let status: serde_json::Value =
        serde_json::from_str(&machine.run(&[exe, "agent", "status", "--json"])).unwrap();
    assert_eq!(status["policy_version"], 2, "{status}");
    assert_eq!(devices(&org)[0].policy_version, Some(2));

    // A user's hook hands its record over through the inbox (a user's process may
    // not write the chain on Windows): the agent attributes it by the file's owner
    // SID, never by what the record claims nor by the file's name.
    let record = {
        use fleetkit::audit::record::{Event, Record, RecordedRequest};
        let mut r = Record::new(Event::Decision, fleetkit::clock::now());
        r.user = Some("alice".into());
        r.source = Some("claude-code".into());
        r.request = Some(RecordedRequest::new("command", b"rm -rf /", None));
        r.decision = Some("deny".into());
        r.applied = Some("deny".into());
        r.rule = Some("safety.blocked_patterns[0]".into());
        r
    };
    let inbox = data.join("audit-inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("mallory.jsonl"), record.to_line() + "\n").unwrap();
    machine.run(&[exe, "agent", "sync"]);
    assert!(
        std::fs::read_dir(&inbox).unwrap().next().is_none(),
        "the inbox is emptied"
    );
    let listed: serde_json::Value = serde_json::from_str(&fleetkit(&[
        "--workspace",
        &org.ws(),
        "audit",
        "list",
        "--json",
        "--event",
        "decision",
    ]))
    .unwrap();
    let held = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == record.id.as_str())
        .unwrap_or_else(|| panic!("collected and sent to the server: {listed:#}"));
    let user = held["user"].as_str().unwrap_or_default();
    eprintln!("the inbox file's owner, as the Windows agent read it: {user}");
    assert!(
        user.contains('\\') && !user.contains("alice") && !user.contains("mallory"),
        "attributed by the owner's account (DOMAIN\\user), not the claim or the name: {held}"
    );

    // The upgrade to the next version, installed by Intune with its command line,
    // token included: the device stays the same, the new token is not spent and
    // not kept in the registry.
    let upgrade = build_msi(&org, &dir.path().join("v2"), &agent);
    let again = create_token(&server, &org, TEAM, 1, 3600);
    machine.msiexec(
        "/i",
        &upgrade,
        &[
            format!("FLEETKIT_ENROLL_TOKEN={}", again.token),
            format!("FLEETKIT_TEAM={TEAM}"),
        ],
    );
    let listed = devices(&org);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].device_id, device.device_id);
    let enrollment = machine
        .registry(r"HKEY_LOCAL_MACHINE\SOFTWARE\fleetkit\Enrollment")
        .unwrap_or_default();
    assert!(!enrollment.contains_key("Token"), "{enrollment:?}");
    let tokens = server.admin(&org).list_tokens().unwrap();
    let unspent = tokens.iter().find(|t| t.id == again.info.id).unwrap();
    assert_eq!(unspent.uses, 0, "an installed device spends no token");
    assert_eq!(
        std::fs::read_to_string(&claude).unwrap(),
        windows_claude_settings(&org, &dir.path().join("cc2")),
        "the upgrade keeps Claude Code's settings"
    );

    // Uninstall removes the program and keeps the device's identity.
    machine.msiexec("/x", &upgrade, &[]);
    assert!(
        !machine
            .c_drive("Program Files/fleetkit/fleetkit.exe")
            .exists()
    );
    assert!(data.join("manifest.yaml").exists(), "the manifest stays");
    assert!(
        !claude.exists(),
        "Claude Code's settings go with the agent their hook names"
    );
    let recorded = machine
        .registry(r"HKEY_LOCAL_MACHINE\SOFTWARE\fleetkit\Device")
        .unwrap();
    assert_eq!(recorded["DeviceId"], device.device_id);
}

//! Issue 12: `fleetkit build` finds the agents without flags (the running binary for
//! the host's platform as a last resort, then `<workspace>/agents/`, then `agents:`
//! in fleetkit.yaml, then `--agent`), and checks each one before it ships: a file
//! that is not an executable of its platform is refused, naming the file, what it is
//! and what was expected. Through the CLI, as a user meets it.

mod support;

use fleetkit::build::agent_check::{Found, identify};
use fleetkit::build::payload::{AgentBinary, AgentOrigin};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::executables::{self, executable, write_executable};
use support::*;

/// What scripts/build-agents.sh builds.
const SCRIPT_PLATFORMS: [&str; 5] = [
    "linux-x86_64",
    "linux-arm64",
    "windows-x86_64",
    "darwin-arm64",
    "darwin-x86_64",
];

/// A finished `fleetkit` run: exit code and stderr.
struct Ran {
    code: Option<i32>,
    stderr: String,
}

fn run(cmd: &mut Command) -> Ran {
    let out = cmd.output().unwrap();
    Ran {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `fleetkit build --target TARGET` into `out` with these `--agent`s.
fn build(org: &Org, out: &Path, targets: &[&str], agents: &[(&str, &Path)]) -> Ran {
    let args: Vec<&str> = targets.iter().flat_map(|t| ["--target", t]).collect();
    run(&mut org.build_command(out, &args, agents))
}

/// `fleetkit inspect OUT`: exit code and stdout.
fn inspect(out: &Path) -> (Option<i32>, String) {
    let r = Command::new(BIN).arg("inspect").arg(out).output().unwrap();
    (
        r.status.code(),
        String::from_utf8_lossy(&r.stdout).into_owned(),
    )
}

/// build.json's record of one platform's agent.
fn recorded_agent(out: &Path, platform: &str) -> serde_json::Value {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("build.json")).unwrap()).unwrap();
    record["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["platform"] == platform)
        .unwrap_or_else(|| panic!("no {platform} agent in {record}"))
        .clone()
}

/// A universal Mach-O made the way the pkg target makes one.
fn fat_mach_o() -> Vec<u8> {
    let slice = |p: &str| {
        let platform = fleetkit::platform::Platform::parse(p).unwrap();
        AgentBinary::new(platform, executable(p, 0), p.into(), AgentOrigin::Flag).unwrap()
    };
    fleetkit::targets::pkg::fat_binary(&[&slice("darwin-arm64"), &slice("darwin-x86_64")])
}

#[test]
fn every_stand_in_is_the_agent_of_its_own_platform_only() {
    for platform in fleetkit::platform::Platform::ALL {
        let found = identify(&executable(platform.name(), 1000));
        assert_eq!(found.platform(), Some(platform), "{found}");
    }
    assert_eq!(
        identify(&executables::elf(
            executables::EM_AARCH64,
            executables::ET_DYN
        ))
        .to_string(),
        "an ELF shared library for aarch64"
    );
    assert_eq!(identify(&fat_mach_o()).platform(), None);
}

/// The example and its neighbours: each wrong pairing is refused before
/// anything is built, naming the file, what it is and what was expected, with
/// what to do.
#[test]
fn a_file_that_is_not_the_platforms_executable_is_refused() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    // (platform, a target shipping it, the file, what it is, what was expected, a
    // piece of the help)
    type Case = (
        &'static str,
        &'static str,
        Vec<u8>,
        &'static str,
        &'static str,
        &'static str,
    );
    let cases: [Case; 9] = [
        (
            "darwin-arm64",
            "pkg",
            executable("linux-x86_64", 0),
            "an ELF executable for x86_64",
            "a Mach-O executable for arm64",
            "this is the linux-x86_64 agent: give it as linux-x86_64",
        ),
        (
            "darwin-arm64",
            "pkg",
            executable("darwin-x86_64", 0),
            "a Mach-O executable for x86_64",
            "a Mach-O executable for arm64",
            "this is the darwin-x86_64 agent",
        ),
        (
            "windows-x86_64",
            "msi",
            executables::pe(executables::MACHINE_AMD64, executables::PE_DLL),
            "a PE DLL for AMD64",
            "a PE executable for AMD64",
            "scripts/build-agents.sh windows-x86_64",
        ),
        (
            "darwin-arm64",
            "pkg",
            fat_mach_o(),
            "a universal (fat) Mach-O of arm64 and x86_64",
            "a Mach-O executable for arm64",
            "lipo",
        ),
        (
            "linux-x86_64",
            "ansible",
            b"#!/bin/sh\necho 'not really a linux-x86_64 binary'\n".to_vec(),
            "not an executable: starts with bytes 23 21 2f 62",
            "an ELF executable for x86_64",
            "scripts/build-agents.sh linux-x86_64",
        ),
        (
            "linux-x86_64",
            "chef",
            Vec::new(),
            "an empty file",
            "an ELF executable for x86_64",
            "scripts/build-agents.sh linux-x86_64",
        ),
        (
            "windows-arm64",
            "intunewin",
            executable("windows-x86_64", 0),
            "a PE executable for AMD64",
            "a PE executable for ARM64",
            "this is the windows-x86_64 agent",
        ),
        (
            "linux-arm64",
            "puppet",
            executables::elf(executables::EM_AARCH64, executables::ET_DYN),
            "an ELF shared library for aarch64",
            "an ELF executable for aarch64",
            "scripts/build-agents.sh linux-arm64",
        ),
        (
            "darwin-x86_64",
            "pkg",
            executables::mach_o(executables::CPU_TYPE_X86_64, executables::MH_DYLIB),
            "a Mach-O dylib for x86_64",
            "a Mach-O executable for x86_64",
            "scripts/build-agents.sh darwin-x86_64",
        ),
    ];
    for (i, (platform, target, bytes, what, expected, help)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("given-{i}"));
        std::fs::write(&file, bytes).unwrap();
        let out = dir.path().join(format!("out-{i}"));
        let r = build(&org, &out, &[target], &[(platform, &file)]);
        assert_eq!(r.code, Some(1), "{platform}: {}", r.stderr);
        let said = format!(
            "error: {}: given as the {platform} agent, but it is {what} (expected: {expected})",
            file.display()
        );
        assert!(r.stderr.contains(&said), "want {said:?} in:\n{}", r.stderr);
        assert!(r.stderr.contains("= help: "), "{}", r.stderr);
        assert!(r.stderr.contains(help), "want {help:?} in:\n{}", r.stderr);
        assert!(!out.exists(), "{platform}: a refused agent left output");
    }
}

/// Issue 12's new user: ran scripts/build-agents.sh and copied target/agents into the
/// workspace as agents/; `fleetkit build --target all` then needs no flag.
#[test]
fn the_workspace_agents_folder_is_found_without_flags() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agents = org.path().join("agents");
    let written: Vec<(&str, PathBuf)> = SCRIPT_PLATFORMS
        .iter()
        .map(|p| (*p, write_executable(&agents, p, 5000)))
        .collect();
    // A misnamed file is pointed out, other files are left alone.
    std::fs::write(agents.join("fleetkit-windows-arm64"), b"no .exe").unwrap();
    std::fs::write(
        agents.join("README.md"),
        b"built by scripts/build-agents.sh\n",
    )
    .unwrap();
    let out = dir.path().join("dist");
    let r = build(&org, &out, &["all"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for (platform, path) in &written {
        let a = recorded_agent(&out, platform);
        assert_eq!(a["origin"], "workspace-agents", "{a}");
        assert_eq!(
            a["from"],
            path.file_name().unwrap().to_str().unwrap(),
            "{a}"
        );
        assert_eq!(a["size"], 5000);
    }
    for built in [
        "macos/acme-corp-fleetkit-1.pkg",
        "windows/acme-corp-fleetkit-1.0.1-x64.msi",
        "windows/acme-corp-fleetkit-1.0.1-x64.intunewin",
        "ansible/roles/fleetkit/files/fleetkit-linux-arm64",
    ] {
        assert!(out.join(built).is_file(), "{built} not built");
    }
    // The folder's agent, not the running fleetkit, is the linux-x86_64 agent.
    assert_eq!(
        std::fs::read(out.join("ansible/roles/fleetkit/files/fleetkit-linux-x86_64")).unwrap(),
        executable("linux-x86_64", 5000)
    );
    assert!(!r.stderr.contains("full admin build"), "{}", r.stderr);
    assert!(
        r.stderr.contains("fleetkit-windows-arm64 is not read") && !r.stderr.contains("README.md"),
        "{}",
        r.stderr
    );
    // inspect says where each agent came from.
    let (code, text) = inspect(&out);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("agent linux-arm64: 5000 bytes")
            && text.contains("from the workspace's agents/ folder"),
        "{text}"
    );
}

/// `agents:` in fleetkit.yaml wins over the folder, `--agent` over both.
#[test]
fn agents_in_fleetkit_yaml_and_agent_flags_override_the_folder() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    write_executable(&org.path().join("agents"), "darwin-arm64", 1000);
    write_executable(&org.path().join("elsewhere"), "darwin-arm64", 2000);
    let config = org.path().join("fleetkit.yaml");
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str("agents:\n  darwin-arm64: elsewhere/fleetkit-darwin-arm64\n");
    std::fs::write(&config, yaml).unwrap();

    let out = dir.path().join("config");
    let r = build(&org, &out, &["pkg"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let a = recorded_agent(&out, "darwin-arm64");
    assert_eq!(
        (a["origin"].as_str(), a["size"].as_u64()),
        (Some("config"), Some(2000))
    );

    let flag = write_executable(&dir.path().join("flag"), "darwin-arm64", 3000);
    let out = dir.path().join("flag-out");
    let r = build(&org, &out, &["pkg"], &[("darwin-arm64", &flag)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let a = recorded_agent(&out, "darwin-arm64");
    assert_eq!(
        (a["origin"].as_str(), a["size"].as_u64()),
        (Some("flag"), Some(3000))
    );

    // What overrides the folder is checked like the rest: a bad entry in
    // fleetkit.yaml is refused even though the folder holds a good agent.
    std::fs::write(org.path().join("elsewhere/fleetkit-darwin-arm64"), b"").unwrap();
    let r = build(&org, &dir.path().join("bad"), &["pkg"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("elsewhere/fleetkit-darwin-arm64: given as the darwin-arm64 agent, but it is an empty file"), "{}", r.stderr);
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn the_real_host_binary_is_accepted_as_linux_x86_64_and_the_fallback_says_what_it_is() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flag");
    let r = build(
        &org,
        &out,
        &["ansible"],
        &[("linux-x86_64", Path::new(BIN))],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(recorded_agent(&out, "linux-x86_64")["origin"], "flag");
    assert!(!r.stderr.contains("full admin build"), "{}", r.stderr);

    // With no agents/ folder, the running fleetkit is the last resort, and the
    // build says that it is the full admin build and how to build the lean one.
    let out = dir.path().join("fallback");
    let r = build(&org, &out, &["ansible"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        recorded_agent(&out, "linux-x86_64")["origin"],
        "host-binary"
    );
    assert!(
        r.stderr
            .contains("note: the linux-x86_64 agent is this fleetkit (")
            && r.stderr.contains("the full admin build")
            && r.stderr.contains("scripts/build-agents.sh linux-x86_64"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_missing_agent_points_at_the_agents_folder_and_the_script_first() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let r = build(&org, &dir.path().join("out"), &["msi"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let help = r
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("= help: "))
        .unwrap_or_else(|| panic!("no help in:\n{}", r.stderr));
    assert!(
        help.starts_with(
            "put it in <workspace>/agents/ as fleetkit-windows-x86_64.exe or fleetkit-windows-arm64.exe: `scripts/build-agents.sh` builds them"
        ) && help.contains("--agent windows-x86_64=PATH"),
        "{help}"
    );
}

/// inspect checks the agents it re-reads, not only their hashes.
#[test]
fn inspect_reports_a_shipped_agent_that_is_not_an_executable() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    write_executable(&org.path().join("agents"), "linux-x86_64", 1000);
    let out = dir.path().join("dist");
    let r = build(&org, &out, &["puppet"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // Swap the agent for a script and make the description agree with it.
    let files = out.join("puppet/fleetkit/files");
    let old = std::fs::read(files.join("fleetkit-linux-x86_64")).unwrap();
    let script = b"#!/bin/sh\nexit 0\n";
    std::fs::write(files.join("fleetkit-linux-x86_64"), script).unwrap();
    let description = std::fs::read_to_string(files.join("fleetkit.json"))
        .unwrap()
        .replace(
            &fleetkit::build::payload::sha256(&old),
            &fleetkit::build::payload::sha256(script),
        );
    std::fs::write(files.join("fleetkit.json"), description).unwrap();
    let (code, text) = inspect(&out);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("fleetkit-linux-x86_64: given as the linux-x86_64 agent, but it is not an executable: starts with bytes 23 21 2f 62"),
        "{text}"
    );
    assert!(matches!(identify(script), Found::Unknown(_)));
}

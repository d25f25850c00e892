//! `fleetkit build` of the three configuration-management targets (Ansible, Chef,
//! Puppet) for the example org (issue 4 goal: under 100 ms), with a 16 MB agent
//! binary (the size of the release build) as the Linux agent: assembling the
//! payload (reading, verifying and hashing once), rendering every target, and
//! writing the staged output with SHA256SUMS and build.json.
//!
//! And the macOS pkg alone with a 10 MB agent, code-signed ad hoc (issue 5 goal:
//! under 300 ms).
//!
//! Run: `cargo bench --bench build`.

use criterion::{Criterion, criterion_group, criterion_main};
use fleetkit::build::payload::{Payload, PayloadOptions};
use fleetkit::platform::Platform;
use fleetkit::targets::Target;
use fleetkit::workspace::Workspace;
use std::collections::BTreeMap;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fleetkit");

#[path = "../tests/support/executables.rs"]
mod executables;

fn bench_build(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ws_dir = dir.path().join("acme");
    let demo = Command::new(BIN)
        .args(["demo", "--out"])
        .arg(&ws_dir)
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    // Stand-in agents of a release build's size, whatever profile built BIN.
    let agent = executables::write_executable(dir.path(), "linux-x86_64", 16 * 1024 * 1024);
    let ws = Workspace::open(&ws_dir).unwrap();
    let options = PayloadOptions {
        team: Some("platform".into()),
        host_agent: None,
        agents: BTreeMap::from([(Platform::LINUX_X86_64, agent)]),
        installer_identity: None,
        installer_identity_password: Default::default(),
        codesign_identity: None,
        codesign_identity_password: Default::default(),
        scep_challenge_file: None,
        agent_oses: None,
        ..Default::default()
    };
    let out = dir.path().join("dist");
    let targets = [Target::Ansible, Target::Chef, Target::Puppet];
    let mut group = c.benchmark_group("build");
    group.sample_size(30);
    group.bench_function("ansible+chef+puppet, example org, 16 MB agent", |b| {
        b.iter(|| {
            let payload = Payload::assemble(&ws, &options).unwrap();
            fleetkit::build::build(&payload, &targets, &out, &mut |_| {}).unwrap()
        })
    });
    // The pkg alone with a 10 MB macOS agent, code-signed ad hoc as the real one would
    // be (issue 5 goal: under 300 ms).
    let mac_agent = executables::write_executable(dir.path(), "darwin-arm64", 10 * 1024 * 1024);
    let pkg_options = PayloadOptions {
        team: Some("platform".into()),
        host_agent: None,
        agents: BTreeMap::from([(Platform::DARWIN_ARM64, mac_agent)]),
        installer_identity: None,
        installer_identity_password: Default::default(),
        codesign_identity: None,
        codesign_identity_password: Default::default(),
        scep_challenge_file: None,
        agent_oses: None,
        ..Default::default()
    };
    let pkg_out = dir.path().join("dist-pkg");
    group.bench_function("pkg, example org, 10 MB agent", |b| {
        b.iter(|| {
            let payload = Payload::assemble(&ws, &pkg_options).unwrap();
            fleetkit::build::build(&payload, &[Target::Pkg], &pkg_out, &mut |_| {}).unwrap()
        })
    });
    // The MSI alone with a 10 MB Windows agent (issue 6; the comparison with wixl is
    // benches/msi-vs-wixl.sh).
    let win_agent = executables::write_executable(dir.path(), "windows-x86_64", 10 * 1024 * 1024);
    let msi_options = PayloadOptions {
        team: Some("platform".into()),
        agents: BTreeMap::from([(Platform::WINDOWS_X86_64, win_agent)]),
        ..Default::default()
    };
    let msi_out = dir.path().join("dist-msi");
    group.bench_function("msi, example org, 10 MB agent", |b| {
        b.iter(|| {
            let payload = Payload::assemble(&ws, &msi_options).unwrap();
            fleetkit::build::build(&payload, &[Target::Msi], &msi_out, &mut |_| {}).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_build);
criterion_main!(benches);

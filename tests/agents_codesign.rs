//! Issue 12: Apple silicon runs no unsigned code, so the pkg ships the darwin agent
//! code-signed. Read back with apple-codesign's own verifier (`verify_macho_data`,
//! what `rcodesign verify` runs): every slice of the universal binary is signed,
//! ad hoc by default and with a Developer ID identity (made here by openssl) and the
//! hardened runtime when one is given; the page hashes hold (a changed byte breaks
//! them); and the signatures are as reproducible as the rest of the package.
//!
//! The real agents come from FLEETKIT_TEST_AGENTS (`support::real_agent`: skipped
//! with a note when unset, a failure when FLEETKIT_TEST_AGENTS_REQUIRED=1); the
//! stand-in agents (tests/support/executables.rs) run always.

mod support;

use apple_codesign::{CodeSignatureFlags, MachFile, VerificationProblemType, verify_macho_data};
use std::io::Read;
use std::path::{Path, PathBuf};
use support::*;

const SOURCE_DATE_EPOCH: i64 = 1764547200;
const IDENTIFIER: &str = "com.acme-corp.fleetkit.agent";

/// Builds the pkg into `out` with `agents` and `extra` arguments; the pkg's path.
fn build(org: &Org, out: &Path, agents: &[(&str, &Path)], extra: &[&str]) -> PathBuf {
    let r = org
        .build_command(out, &["--target", "pkg"], agents)
        .args(extra)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    out.join("macos/acme-corp-fleetkit-1.pkg")
}

/// Builds the pkg twice (same inputs, same SOURCE_DATE_EPOCH) into `dir`/a and
/// `dir`/b, checks that the two are byte-identical and returns the agent it ships.
fn build_twice(org: &Org, dir: &Path, agents: &[(&str, &Path)], extra: &[&str]) -> Vec<u8> {
    let pkg = build(org, &dir.join("a"), agents, extra);
    let again = build(org, &dir.join("b"), agents, extra);
    assert!(
        std::fs::read(&pkg).unwrap() == std::fs::read(&again).unwrap(),
        "two builds of the same inputs differ"
    );
    shipped_agent(&pkg)
}

/// `usr/local/bin/fleetkit` out of the pkg's Payload, read with apple-flat-package.
fn shipped_agent(pkg: &Path) -> Vec<u8> {
    let mut reader = apple_flat_package::PkgReader::new(std::fs::File::open(pkg).unwrap()).unwrap();
    let component = reader.component_packages().unwrap().remove(0);
    let mut payload = component.payload_reader().unwrap().expect("a Payload");
    while let Some(entry) = payload.read_next().unwrap() {
        if entry.name() == "./usr/local/bin/fleetkit" {
            let mut data = Vec::new();
            payload.read_to_end(&mut data).unwrap();
            return data;
        }
    }
    panic!("the pkg holds no usr/local/bin/fleetkit");
}

/// Verifies every slice of `binary`; `developer_id` says whether a CMS signature must
/// be there (and verify) or must not (ad hoc). Returns the number of slices.
fn assert_signed(binary: &[u8], developer_id: bool) -> usize {
    let problems = verify_macho_data(binary);
    for p in &problems {
        // Ad hoc: no CMS signature, which the verifier reports as such (or as the
        // empty CMS blob it is); everything else is a real problem.
        let expected_for_ad_hoc = matches!(
            p.problem,
            VerificationProblemType::NoCryptographicSignature
                | VerificationProblemType::CmsError(_)
        );
        assert!(!developer_id && expected_for_ad_hoc, "{p}");
    }
    let mach = MachFile::parse(binary).unwrap();
    let mut slices = 0;
    for macho in mach.iter_macho() {
        slices += 1;
        let signature = macho.code_signature().unwrap().expect("a code signature");
        let cd = signature
            .code_directory()
            .unwrap()
            .expect("a CodeDirectory");
        assert_eq!(cd.ident, IDENTIFIER);
        assert!(!cd.code_digests.is_empty());
        let cms = signature.signed_data().unwrap();
        if developer_id {
            assert!(
                cd.flags.contains(CodeSignatureFlags::RUNTIME),
                "{:?}",
                cd.flags
            );
            assert!(!cd.flags.contains(CodeSignatureFlags::ADHOC));
            // The team id (the certificate's OU) is set only for a certificate Apple
            // issued, as codesign does; this test CA is not Apple's.
            assert_eq!(cd.team_name, None);
            let cms = cms.expect("a CMS signature");
            let signer = cms.signers().next().expect("a signer");
            // The signing time is the build time (SOURCE_DATE_EPOCH), or the start of
            // the certificate's validity when that is later (this one is made now).
            let leaf = cms
                .certificates()
                .find(|c| {
                    c.subject_common_name()
                        .is_some_and(|cn| cn.contains("Application"))
                })
                .expect("the signing certificate");
            let not_before = leaf.validity_not_before().timestamp();
            assert_eq!(
                signer
                    .signed_attributes()
                    .and_then(|a| a.signing_time())
                    .map(|t| t.timestamp()),
                Some(SOURCE_DATE_EPOCH.max(not_before))
            );
        } else {
            assert!(
                cd.flags.contains(CodeSignatureFlags::ADHOC),
                "{:?}",
                cd.flags
            );
            assert!(cms.is_none(), "an ad hoc signature carries no CMS");
        }
    }
    slices
}

/// A Developer ID Application test identity (openssl): (PEM path, PKCS#12 path).
fn developer_id(dir: &Path) -> (PathBuf, PathBuf) {
    let (pem, _) = openssl_identity(
        dir,
        "/CN=Developer ID Application: Acme Corp (TEAM123456)/OU=TEAM123456/O=Acme Corp",
    );
    tool(
        std::process::Command::new("openssl")
            .args(["pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem"])
            .args([
                "-certfile",
                "ca.pem",
                "-out",
                "id.p12",
                "-passout",
                "pass:p12 $'\"",
            ])
            .current_dir(dir),
    );
    (pem, dir.join("id.p12"))
}

#[test]
fn stand_in_agents_are_signed_ad_hoc_slice_by_slice_and_a_changed_byte_fails() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let arm = executables::write_executable(dir.path(), "darwin-arm64", 40_000);
    let intel = executables::write_executable(dir.path(), "darwin-x86_64", 9_000);
    let agents = [
        ("darwin-arm64", arm.as_path()),
        ("darwin-x86_64", intel.as_path()),
    ];
    let fat = build_twice(&org, dir.path(), &agents, &[]);
    assert_eq!(assert_signed(&fat, false), 2);
    // One changed code byte in the x86_64 slice: its page hash no longer holds.
    let mut bad = fat.clone();
    let x86_slice = u32::from_be_bytes(bad[8 + 20 + 8..8 + 20 + 12].try_into().unwrap()) as usize;
    bad[x86_slice + executables::MACH_O_CODE_OFFSET + 10] ^= 1;
    let problems = verify_macho_data(&bad);
    assert!(
        problems
            .iter()
            .any(|p| matches!(p.problem, VerificationProblemType::CodeDigestMismatch(..))),
        "{problems:?}"
    );
}

#[test]
fn a_stand_in_agent_is_signed_with_a_developer_id_pem_or_pkcs12_alike() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (pem, p12) = developer_id(dir.path());
    let arm = executables::write_executable(dir.path(), "darwin-arm64", 20_000);
    let agents = [("darwin-arm64", arm.as_path())];
    let with_pem = build(
        &org,
        &dir.path().join("pem"),
        &agents,
        &["--codesign-identity", pem.to_str().unwrap()],
    );
    let thin = shipped_agent(&with_pem);
    assert_eq!(assert_signed(&thin, true), 1);
    let with_p12 = |out: &str, password: &str| {
        org.build_command(&dir.path().join(out), &["--target", "pkg"], &agents)
            .arg("--codesign-identity")
            .arg(&p12)
            .env("FLEETKIT_CODESIGN_IDENTITY_PASSWORD", password)
            .output()
            .unwrap()
    };
    let r = with_p12("p12", "p12 $'\"");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let note = String::from_utf8_lossy(&r.stderr);
    assert!(
        note.contains("code-signed by Developer ID Application: Acme Corp"),
        "{note}"
    );
    // The same key, chain and build time: the same signed bytes.
    assert!(
        std::fs::read(&with_pem).unwrap()
            == std::fs::read(dir.path().join("p12/macos/acme-corp-fleetkit-1.pkg")).unwrap()
    );
    // A wrong password names the variable to set.
    let r = with_p12("bad", "wrong");
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("FLEETKIT_CODESIGN_IDENTITY_PASSWORD"), "{err}");
}

#[test]
fn a_mach_o_executable_that_cannot_be_signed_is_refused_naming_it() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    // A Mach-O executable for arm64 (what the agent check asks) with no load
    // command at all, so no __LINKEDIT segment for a signature.
    let bare = dir.path().join("bare");
    let mut bytes = Vec::new();
    for v in [
        0xfeed_facfu32,
        executables::CPU_TYPE_ARM64,
        0,
        executables::MH_EXECUTE,
        0,
        0,
        0,
        0,
    ] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.resize(4096, 0);
    std::fs::write(&bare, bytes).unwrap();
    let r = org
        .build_command(
            &dir.path().join("out"),
            &["--target", "pkg"],
            &[("darwin-arm64", &bare)],
        )
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("cannot code-sign the darwin-arm64 agent") && err.contains("bare"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists());
}

/// The real agents (tests/support), or None when the test is skipped.
fn real_agents() -> Option<[(&'static str, PathBuf); 2]> {
    Some([
        ("darwin-arm64", real_agent("darwin-arm64")?),
        ("darwin-x86_64", real_agent("darwin-x86_64")?),
    ])
}

#[test]
fn real_agents_ship_signed_ad_hoc_in_both_slices_reproducibly() {
    let Some(real) = real_agents() else { return };
    let agents = real.each_ref().map(|(p, path)| (*p, path.as_path()));
    let dir = tempfile::tempdir().unwrap();
    let fat = build_twice(&Org::new(), dir.path(), &agents, &[]);
    assert_eq!(&fat[..4], &[0xca, 0xfe, 0xba, 0xbe]);
    assert_eq!(assert_signed(&fat, false), 2);
}

#[test]
fn real_agents_ship_signed_with_a_developer_id_reproducibly() {
    let Some(real) = real_agents() else { return };
    let agents = real.each_ref().map(|(p, path)| (*p, path.as_path()));
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = developer_id(dir.path());
    let args = ["--codesign-identity", pem.to_str().unwrap()];
    let fat = build_twice(&Org::new(), dir.path(), &agents, &args);
    assert_eq!(assert_signed(&fat, true), 2);
}

//! The `.rpm` target, read by rpm itself: `rpm -qip`, `rpm -qlvp`, `--scripts`,
//! `--qf` read the package; `rpmkeys -K` checks its digests and its OpenPGP
//! signature (OK with the org's public key imported, NOKEY without it, BAD after one
//! changed byte); `rpmlint` judges it; `sh -n` parses the scriptlets. Signing keys
//! are made by gpg as an admin would, and keys rpm cannot use are refused before
//! anything is written. Also: byte-identical rebuilds (signed too), hostile org and
//! team values read back by `rpm -q --qf` and kept out of the scriptlets' code.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const HOSTILE: &str = "Ac'me \"Corp\" $(touch /tmp/pwned) `id` ${HOME} ü漢\\ end";

fn linux_agent(dir: &Path) -> PathBuf {
    real_agent("linux-x86_64")
        .unwrap_or_else(|| executables::write_executable(dir, "linux-x86_64", 64 * 1024))
}

/// `fleetkit build --target rpm` with `extra` arguments and environment.
fn build_rpm(
    org: &Org,
    out: &Path,
    agent: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    org.build_command(out, &["--target", "rpm"], &[("linux-x86_64", agent)])
        .args(extra)
        .envs(env.iter().copied())
        .env_remove("FLEETKIT_PACKAGE_SIGNING_KEY")
        .output()
        .unwrap()
}

fn must_build(org: &Org, out: &Path, agent: &Path, extra: &[&str], env: &[(&str, &str)]) {
    let r = build_rpm(org, out, agent, extra, env);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

fn the_rpm(out: &Path) -> PathBuf {
    built_package(out, "rpm")
}

fn rpm_q(rpm: &Path, args: &[&str]) -> String {
    tool(Command::new("rpm").arg("-qp").args(args).arg(rpm))
}

/// `rpmkeys -Kv` of `rpm` against a keyring holding `keys`: (exit code, output).
fn check_signature(dir: &Path, rpm: &Path, keys: &[&Path]) -> (i32, String) {
    let db = tempfile::tempdir_in(dir).unwrap();
    for key in keys {
        tool(
            Command::new("rpmkeys")
                .arg("--dbpath")
                .arg(db.path())
                .arg("--import")
                .arg(key),
        );
    }
    let out = Command::new("rpmkeys")
        .arg("--dbpath")
        .arg(db.path())
        .args(["-Kv", "--define", "_pkgverify_level all"])
        .arg(rpm)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn rpm_reads_it() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let out = dir.path().join("out");
    must_build(&org, &out, &agent, &[], &[]);
    let rpm = the_rpm(&out);
    assert_eq!(
        rpm.file_name().unwrap().to_str().unwrap(),
        "acme-corp-fleetkit-1.0.1.0-1.x86_64.rpm"
    );

    let info = rpm_q(&rpm, &["-i"]);
    for line in [
        "Name        : acme-corp-fleetkit",
        "Version     : 1.0.1.0",
        "Release     : 1",
        "Architecture: x86_64",
        "License     : Apache-2.0",
        "Signature   : (none)",
        "Build Host  : fleetkit",
        "Packager    : fleetkit <fleetkit@fleetkit.invalid>",
    ] {
        assert!(info.contains(line), "{line} not in:\n{info}");
    }
    let list = rpm_q(&rpm, &["-lv"]);
    for (mode, path) in [
        ("-rwxr-xr-x    1 root     root", "/usr/bin/fleetkit"),
        ("drwxr-xr-x    2 root     root", "/etc/fleetkit"),
        ("-rw-r--r--    1 root     root", "/etc/fleetkit/agent.yaml"),
        ("-rw-r--r--    1 root     root", "/etc/fleetkit/bundle.json"),
        (
            "-rw-r--r--    1 root     root",
            "/usr/lib/systemd/system/fleetkit-sync.timer",
        ),
        (
            "-rw-r--r--    1 root     root",
            "/usr/share/pki/ca-trust-source/anchors/fleetkit-acme_corp.pem",
        ),
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{mode} {path} not in:\n{list}"
        );
    }
    // Only the settings are %config(noreplace); the trust anchors and the policy
    // are replaced by every new package.
    assert_eq!(rpm_q(&rpm, &["-c"]), "/etc/fleetkit/agent.yaml\n");
    assert_eq!(
        rpm_q(&rpm, &["--qf", "%{BUILDTIME} %{FILEMTIMES}\n"]),
        "1764547200 1764547200\n"
    );
    let scripts = rpm_q(&rpm, &["--scripts"]);
    for part in [
        "postinstall scriptlet (using /bin/sh):",
        "preuninstall scriptlet (using /bin/sh):",
        "postuninstall scriptlet (using /bin/sh):",
    ] {
        assert!(scripts.contains(part), "{part} not in:\n{scripts}");
    }
    for tag in ["POSTIN", "PREUN", "POSTUN"] {
        let script = dir.path().join(tag);
        std::fs::write(&script, rpm_q(&rpm, &["--qf", &format!("%{{{tag}}}")])).unwrap();
        tool(Command::new("sh").arg("-n").arg(&script));
    }
}

/// rpmlint: no error, and each warning one this package means to have. It checks
/// the signature against rpm's keyring: a private one holding `key`.
fn rpmlint_finds_no_error(rpm: &Path, key: &Path) {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("rpmdb");
    tool(
        Command::new("rpmkeys")
            .arg("--dbpath")
            .arg(&db)
            .arg("--import")
            .arg(key),
    );
    std::fs::write(
        home.path().join(".rpmmacros"),
        format!("%_dbpath {}\n", db.display()),
    )
    .unwrap();
    let rpmlint = Command::new("rpmlint")
        .arg(rpm)
        .env("HOME", home.path())
        .output()
        .expect("rpmlint (the test command installs it)");
    let said = String::from_utf8_lossy(&rpmlint.stdout).into_owned()
        + &String::from_utf8_lossy(&rpmlint.stderr);
    assert!(said.contains(" 0 errors"), "rpmlint found errors:\n{said}");
    // Why each warning stays:
    let expected = [
        // The systemd units are in /usr/lib as on every Red Hat system; the package
        // is arch-specific for its agent in /usr/bin, which rpmlint does not see.
        "W: only-non-binary-in-usr-lib",
        // anchors.json and bundle.json are the policy's trust and the policy: each
        // new package must replace them, edited or not, so they are not %config.
        "W: non-conffile-in-etc /etc/fleetkit/anchors.json",
        "W: non-conffile-in-etc /etc/fleetkit/bundle.json",
        // The agent's manual is `fleetkit agent --help` and the README.
        "W: no-manual-page-for-binary fleetkit",
        "W: no-documentation",
        // The test org's server is on localhost.
        "W: invalid-url URL https://localhost",
        // Debian's rpmlint 2.4 knows Fedora's old short names, not SPDX ids.
        "W: invalid-license Apache-2.0",
    ];
    for line in said.lines().filter(|l| l.contains(": W: ")) {
        assert!(
            expected.iter().any(|e| line.contains(e)),
            "an unexpected rpmlint warning: {line}\n{said}"
        );
    }
}

#[test]
fn a_signed_rpm_verifies_with_the_org_key_and_not_after_one_changed_byte() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let (secret, public) = gpg_key(dir.path(), "rsa3072", "pass 'phrase' $(x)");
    let env = [(
        "FLEETKIT_PACKAGE_SIGNING_KEY_PASSPHRASE",
        "pass 'phrase' $(x)",
    )];
    let key = ["--package-signing-key", secret.to_str().unwrap()];
    let out = dir.path().join("out");
    must_build(&org, &out, &agent, &key, &env);
    let rpm = the_rpm(&out);

    // The public key written beside the package is the org's key.
    let written = out.join("linux/RPM-GPG-KEY-acme-corp-fleetkit");
    let (code, said) = check_signature(dir.path(), &rpm, &[&written]);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("Header V4 RSA/SHA256 Signature, key ID")
            && said.contains("OK")
            && !said.contains("NOT OK"),
        "{said}"
    );
    let (code, said) = check_signature(dir.path(), &rpm, &[&public]);
    assert_eq!(code, 0, "the key gpg exported verifies it too:\n{said}");
    // Built "on" 2025-12-01 with a key made today: the signature is dated at the
    // key's creation, never before it (gpgv and sqv refuse that).
    let info = rpm_q(&rpm, &["-i"]);
    assert!(info.contains("Signature   : RSA/SHA256, "), "{info}");
    assert!(
        !info.contains("Signature   : RSA/SHA256, Mon Dec  1 00:00:00 2025"),
        "{info}"
    );

    rpmlint_finds_no_error(&rpm, &written);

    // Without the key: not trusted.
    let (code, said) = check_signature(dir.path(), &rpm, &[]);
    assert_ne!(code, 0, "{said}");
    assert!(said.contains("NOKEY"), "{said}");

    // One changed byte in the payload (the end of the file): the digests and the
    // signature over header and payload fail.
    let mut bytes = std::fs::read(&rpm).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0x01;
    let tampered = dir.path().join("tampered.rpm");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, said) = check_signature(dir.path(), &tampered, &[&written]);
    assert_ne!(code, 0, "{said}");
    assert!(said.contains("BAD") || said.contains("NOT OK"), "{said}");

    // Signed twice, the same bytes.
    let again = dir.path().join("again");
    must_build(&org, &again, &agent, &key, &env);
    assert_eq!(
        std::fs::read(&rpm).unwrap(),
        std::fs::read(the_rpm(&again)).unwrap()
    );
}

#[test]
fn an_ed25519_key_signs_too() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let (secret, public) = gpg_key(dir.path(), "ed25519", "");
    let out = dir.path().join("out");
    must_build(
        &org,
        &out,
        &agent,
        &["--package-signing-key", secret.to_str().unwrap()],
        &[],
    );
    let (code, said) = check_signature(dir.path(), &the_rpm(&out), &[&public]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("EdDSA/SHA256 Signature"), "{said}");
}

#[test]
fn a_signing_subkey_signs_and_its_key_id_is_the_one_rpm_reports() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    // The usual shape of an org key: a certification-only primary key and a
    // signing subkey (here two: an older one, then the one gpg would use).
    let gpg = Gpg::new(dir.path(), "subkeys", "");
    gpg.run(&[
        "--quick-gen-key",
        "Acme packages <it@acme.example>",
        "rsa3072",
        "cert",
        "2y",
    ]);
    let fpr = gpg.fingerprint();
    gpg.run(&["--quick-add-key", &fpr, "rsa3072", "sign", "2y"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    gpg.run(&["--quick-add-key", &fpr, "ed25519", "sign", "2y"]);
    let newest_subkey = gpg
        .run(&["--with-colons", "--list-secret-keys"])
        .lines()
        .rfind(|l| l.starts_with("ssb:"))
        .and_then(|l| l.split(':').nth(4))
        .unwrap()
        .to_lowercase();
    let (secret, public) = gpg.export(dir.path(), "subkeys");
    let out = dir.path().join("out");
    must_build(
        &org,
        &out,
        &agent,
        &["--package-signing-key", secret.to_str().unwrap()],
        &[],
    );
    let rpm = the_rpm(&out);
    let (code, said) = check_signature(dir.path(), &rpm, &[&public]);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains(&format!(
            "EdDSA/SHA256 Signature, key ID {}: OK",
            &newest_subkey[8..]
        )),
        "signed by the newest subkey {newest_subkey}:\n{said}"
    );
}

#[test]
fn expired_and_revoked_keys_are_refused() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let expired = Gpg::new(dir.path(), "expired", "");
    expired.run(&[
        "--quick-gen-key",
        "Old <old@acme.example>",
        "rsa2048",
        "sign",
        "seconds=1",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (expired, _) = expired.export(dir.path(), "expired");
    // Revoked with the revocation certificate gpg made with the key.
    let revoked = Gpg::new(dir.path(), "revoked", "");
    revoked.run(&[
        "--quick-gen-key",
        "Gone <gone@acme.example>",
        "rsa2048",
        "sign",
        "2y",
    ]);
    let fpr = revoked.fingerprint();
    let certificate = std::fs::read_to_string(
        revoked
            .home
            .join("openpgp-revocs.d")
            .join(format!("{fpr}.rev")),
    )
    .unwrap()
    .replace(":-----BEGIN", "-----BEGIN");
    let rev = dir.path().join("revocation.asc");
    std::fs::write(&rev, certificate).unwrap();
    revoked.run(&["--import", rev.to_str().unwrap()]);
    let (revoked, _) = revoked.export(dir.path(), "revoked");
    for (key, expected) in [
        (&expired, "apt and rpm refuse signatures of an expired key"),
        (&revoked, "the key is revoked"),
    ] {
        let out = dir.path().join("out");
        let r = build_rpm(
            &org,
            &out,
            &agent,
            &["--package-signing-key", key.to_str().unwrap()],
            &[],
        );
        let said = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{key:?} was accepted");
        assert!(said.contains(expected), "{expected} not in:\n{said}");
        assert!(!out.exists(), "nothing is written");
    }
}

#[test]
fn keys_rpm_cannot_use_are_refused_before_anything_is_written() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let (rsa, rsa_public) = gpg_key(dir.path(), "rsa3072", "right");
    let (ecdsa, _) = gpg_key(dir.path(), "nistp256", "");
    let (small, _) = gpg_key(dir.path(), "rsa1024", "");
    let garbage = dir.path().join("garbage.asc");
    std::fs::write(&garbage, "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnope\n").unwrap();
    for (key, passphrase, expected) in [
        (&rsa, "wrong", "wrong passphrase?"),
        (&rsa, "", "wrong passphrase?"),
        (&rsa_public, "", "this is a public key"),
        (&ecdsa, "", "rpm and apt verify RSA and Ed25519 signatures"),
        (&small, "", "at least 2048 are needed"),
        (&garbage, "", "not a readable OpenPGP secret key"),
        (&dir.path().join("missing.asc"), "", "missing.asc"),
    ] {
        let out = dir.path().join("out");
        let r = build_rpm(
            &org,
            &out,
            &agent,
            &["--package-signing-key", key.to_str().unwrap()],
            &[("FLEETKIT_PACKAGE_SIGNING_KEY_PASSPHRASE", passphrase)],
        );
        let said = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{key:?} was accepted");
        assert!(
            said.contains("--package-signing-key") && said.contains(expected),
            "{key:?}: {expected} not in:\n{said}"
        );
        assert!(!said.contains("PRIVATE KEY"), "{said}");
        assert!(!out.exists(), "nothing is written");
    }
}

#[test]
fn hostile_org_and_team_values_stay_data() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("hostile");
    let org_name = format!("{HOSTILE}\nsecond line");
    fleetkit(&["init", ws.to_str().unwrap(), "--org", &org_name]);
    fleetkit(&["--workspace", ws.to_str().unwrap(), "policy", "sign"]);
    let agent = linux_agent(dir.path());
    let out = dir.path().join("out");
    let r = Command::new(BIN)
        .args(["--workspace", ws.to_str().unwrap(), "build"])
        .args(["--target", "rpm", "--team", HOSTILE, "--out"])
        .arg(&out)
        .arg("--agent")
        .arg(format!("linux-x86_64={}", agent.display()))
        .env("SOURCE_DATE_EPOCH", "1764547200")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rpm = the_rpm(&out);

    let name = rpm_q(&rpm, &["--qf", "%{NAME}"]);
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c)),
        "{name}"
    );
    // The org's name, on one line, in the vendor, summary and description.
    let one_line = format!("{HOSTILE} second line");
    assert_eq!(rpm_q(&rpm, &["--qf", "%{VENDOR}"]), one_line);
    // (The description is wrapped at 79 columns, between words.)
    assert!(
        rpm_q(&rpm, &["--qf", "%{DESCRIPTION}"])
            .replace('\n', " ")
            .contains(&one_line)
    );
    assert!(
        rpm_q(&rpm, &["--qf", "%{SUMMARY}"])
            .starts_with("Fleetkit device agent and policy for Ac'me")
    );
    // The team is data in agent.yaml, read back by the agent's own YAML reader.
    let extracted = extract(&rpm, &dir.path().join("extracted"));
    let settings =
        fleetkit::agent::settings::AgentSettings::load(&extracted.join("etc/fleetkit/agent.yaml"))
            .unwrap();
    assert_eq!(settings.assignment.team.as_deref(), Some(HOSTILE));
    // In the scriptlets the org appears only in comments: their code is the
    // same as a plain org's, and it parses.
    let plain = Org::new();
    let plain_out = dir.path().join("plain");
    must_build(&plain, &plain_out, &agent, &[], &[]);
    let plain_rpm = the_rpm(&plain_out);
    let code = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    for tag in ["POSTIN", "PREUN", "POSTUN"] {
        let qf = format!("%{{{tag}}}");
        let script = rpm_q(&rpm, &["--qf", &qf]);
        assert_eq!(
            code(&script),
            code(&rpm_q(&plain_rpm, &["--qf", &qf])),
            "{tag}"
        );
        let file = dir.path().join(tag);
        std::fs::write(&file, &script).unwrap();
        tool(Command::new("sh").arg("-n").arg(&file));
    }
}

#[test]
fn no_token_and_no_private_key_in_the_package() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let (secret, _) = gpg_key(dir.path(), "ed25519", "");
    // A token file in the workspace where an admin might leave one.
    std::fs::write(org.path().join("enroll-token"), "fkt_secret_token_value").unwrap();
    let out = dir.path().join("out");
    must_build(
        &org,
        &out,
        &agent,
        &["--package-signing-key", secret.to_str().unwrap()],
        &[],
    );
    let extracted = extract(&the_rpm(&out), &dir.path().join("extracted"));
    for file in walk(&extracted) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        // The agent's code names the PEM label it writes its own key under; no
        // other file may carry one.
        if !file.ends_with("usr/bin/fleetkit") {
            assert!(!text.contains("PRIVATE KEY"), "{}", file.display());
        }
        assert!(!text.contains("fkt_secret"), "{}", file.display());
        assert!(!file.ends_with("enroll-token"), "{}", file.display());
    }
    let public = std::fs::read_to_string(out.join("linux/RPM-GPG-KEY-acme-corp-fleetkit")).unwrap();
    assert!(
        public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{public}"
    );
    assert!(!public.contains("PRIVATE"), "{public}");
}

/// The package's files, unpacked by rpm2cpio and cpio into `dir`.
fn extract(rpm: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let cpio = Command::new("sh")
        .arg("-c")
        .arg("rpm2cpio \"$1\" | cpio -idm --quiet")
        .arg("sh")
        .arg(rpm)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        cpio.status.success(),
        "{}",
        String::from_utf8_lossy(&cpio.stderr)
    );
    dir.to_path_buf()
}

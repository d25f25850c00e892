//! The `fleetkit` binary end to end: init, check, sign, verify, rotate, accept, demo —
//! exit codes, messages, file modes, and that no private key is ever printed.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fleetkit() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleetkit"));
    c.env_remove("FLEETKIT_WORKSPACE")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run fleetkit");
    let r = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    // Whatever the command, no private key material reaches the terminal.
    assert!(
        !r.stdout.contains("PRIVATE KEY") && !r.stderr.contains("PRIVATE KEY"),
        "private key printed:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    r
}

fn init_workspace(dir: &Path, org: &str) -> PathBuf {
    let ws = dir.join("ws");
    let r = run(fleetkit().args(["init"]).arg(&ws).args([
        "--org",
        org,
        "--server",
        "https://fleet.example.com:8443",
    ]));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    ws
}

fn in_ws(ws: &Path) -> Command {
    let mut c = fleetkit();
    c.arg("--workspace").arg(ws);
    c
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_a_complete_workspace_with_private_keys_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = init_workspace(tmp.path(), "acme-corp");
    for f in [
        "fleetkit.yaml",
        "policy.yaml",
        "anchors.json",
        "keys/root-ca.pem",
        "keys/issuing-ca.pem",
    ] {
        assert!(ws.join(f).is_file(), "{f} missing");
    }
    let keys: Vec<PathBuf> = fs::read_dir(ws.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    assert_eq!(
        keys.len(),
        3,
        "policy key, root CA key, issuing CA key: {keys:?}"
    );
    #[cfg(unix)]
    for k in &keys {
        assert_eq!(mode(k), 0o600, "{}", k.display());
    }
    let anchors = fs::read_to_string(ws.join("anchors.json")).unwrap();
    assert!(
        !anchors.contains("PRIVATE"),
        "anchors.json must be public only"
    );
    // The starting policy is valid as written.
    let r = run(in_ws(&ws).args(["policy", "check"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn init_refuses_to_replace_keys_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = init_workspace(tmp.path(), "acme-corp");
    let before = fs::read(ws.join("keys/root-ca.key")).unwrap();
    let r = run(fleetkit().arg("init").arg(&ws).args(["--org", "acme-corp"]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("key material already exists"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(fs::read(ws.join("keys/root-ca.key")).unwrap(), before);
    let r = run(fleetkit().arg("init").arg(&ws).arg("--force"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_ne!(fs::read(ws.join("keys/root-ca.key")).unwrap(), before);
}

#[test]
fn init_rejects_a_plain_http_server_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let r = run(fleetkit().arg("init").arg(&ws).args([
        "--org",
        "acme",
        "--server",
        "http://fleet.example.com",
    ]));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("https://"), "{}", r.stderr);
    assert!(!ws.exists());
}

#[test]
fn check_exit_codes_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    fs::write(
        &bad,
        "version: \"1.0\"\norganization: acme\neffective_date: \"2025-12-01\"\nsaftey: {}\n",
    )
    .unwrap();
    let r = run(fleetkit().args(["policy", "check"]).arg(&bad));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad.yaml:4:1"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `safety`?"), "{}", r.stderr);

    let r = run(fleetkit().args(["policy", "check", "--json"]).arg(&bad));
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 4);
    assert_eq!(v["errors"][0]["field"], "saftey");

    // Usage errors: no file and no workspace; an unknown flag.
    let r = run(fleetkit().current_dir(tmp.path()).args(["policy", "check"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(fleetkit().args(["policy", "check", "--no-such-flag"]));
    assert_eq!(r.code, 2);

    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme-corp/policy.yaml");
    let r = run(fleetkit().args(["policy", "check", "--json"]).arg(&good));
    assert_eq!(r.code, 0, "{}", r.stdout);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], true);
}

#[test]
fn workspace_is_found_from_a_subdirectory() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = init_workspace(tmp.path(), "acme-corp");
    let sub = ws.join("keys");
    let r = run(fleetkit().current_dir(&sub).args(["policy", "check"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn sign_increments_versions_and_never_goes_down() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = init_workspace(tmp.path(), "acme-corp");
    let r = run(in_ws(&ws).args(["policy", "sign"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(ws.join("bundles/policy-v1.json").is_file());
    let r = run(in_ws(&ws).args(["policy", "sign", "--expires", "7d"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(ws.join("bundles/policy-v2.json").is_file());
    let r = run(in_ws(&ws).args(["policy", "sign", "--version", "2"]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("not above the last signed version 2"),
        "{}",
        r.stderr
    );
    let r = run(in_ws(&ws).args(["policy", "sign", "--version", "10"]));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let b1 = ws.join("bundles/policy-v1.json");
    let r = run(in_ws(&ws).args(["policy", "verify"]).arg(&b1));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("valid: policy bundle v1 for acme-corp"),
        "{}",
        r.stdout
    );
    // A device that already has v10 refuses v1 as a rollback.
    let r = run(in_ws(&ws)
        .args(["policy", "verify", "--stored-version", "10"])
        .arg(&b1));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("rollback"), "{}", r.stderr);
    let r = run(in_ws(&ws)
        .args(["policy", "verify", "--json", "--stored-version", "10"])
        .arg(&b1));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], false);
}

/// Issue 11: `--version 9223372036854775808` was signed, published as 2^63 − 1 by the
/// server, and blocked every later release. Versions now stop at i64::MAX everywhere.
#[test]
fn versions_above_i64_max_are_refused_not_clamped() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = init_workspace(tmp.path(), "acme-corp");
    let r = run(in_ws(&ws).args(["policy", "sign"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v1 = fs::read(ws.join("bundles/policy-v1.json")).unwrap();
    let state_before = fs::read(ws.join("state.json")).unwrap();

    // Refused at the flag, naming it and the limit; nothing written.
    let out = tmp.path().join("huge.json");
    let r = run(in_ws(&ws)
        .args([
            "policy",
            "sign",
            "--version",
            "9223372036854775808",
            "--out",
        ])
        .arg(&out));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--version"), "{}", r.stderr);
    assert!(r.stderr.contains("9223372036854775807"), "{}", r.stderr);
    assert!(!out.exists());
    assert_eq!(fs::read(ws.join("state.json")).unwrap(), state_before);
    assert_eq!(fs::read_dir(ws.join("bundles")).unwrap().count(), 1);
    let r = run(in_ws(&ws).args(["policy", "sign", "--version", "18446744073709551616"]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("9223372036854775807"), "{}", r.stderr);

    // The same bundle made and signed with the org key anyway: verify refuses it.
    let crafted = tmp.path().join("crafted.json");
    fs::write(
        &crafted,
        support::resign_with_version(&ws, &v1, 9_223_372_036_854_775_808),
    )
    .unwrap();
    let r = run(in_ws(&ws).args(["policy", "verify"]).arg(&crafted));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("above the highest version, 9223372036854775807"),
        "{}",
        r.stderr
    );
    let r = run(in_ws(&ws)
        .args(["policy", "verify", "--json"])
        .arg(&crafted));
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("version-out-of-range"), "{}", r.stdout);
    // Its twin at a normal version verifies: only the version was wrong.
    fs::write(&crafted, support::resign_with_version(&ws, &v1, 5)).unwrap();
    let r = run(in_ws(&ws).args(["policy", "verify"]).arg(&crafted));
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The edge itself is a version; nothing can follow it, and that is said plainly.
    let r = run(in_ws(&ws).args(["policy", "sign", "--version", "9223372036854775807"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let top = ws.join("bundles/policy-v9223372036854775807.json");
    let r = run(in_ws(&ws).args(["policy", "verify"]).arg(&top));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(in_ws(&ws).args(["policy", "sign"]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("version 9223372036854775808 is above the highest bundle version"),
        "{}",
        r.stderr
    );
}

#[test]
fn sign_refuses_an_invalid_policy_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = init_workspace(tmp.path(), "acme-corp");
    let policy = ws.join("policy.yaml");
    let text = fs::read_to_string(&policy).unwrap();
    fs::write(&policy, format!("{text}\nbogus_section: 1\n")).unwrap();
    let r = run(in_ws(&ws).args(["policy", "sign"]));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bogus_section"), "{}", r.stderr);
    assert!(!ws.join("bundles").exists());
    assert!(!ws.join("state.json").exists());
}

#[test]
fn same_inputs_and_source_date_epoch_give_identical_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = init_workspace(tmp.path(), "acme-corp");
    let copy = tmp.path().join("copy");
    copy_dir(&ws, &copy);
    let epoch = fleetkit::clock::now().unix_timestamp().to_string();
    for w in [&ws, &copy] {
        let r = run(in_ws(w)
            .env("SOURCE_DATE_EPOCH", &epoch)
            .args(["policy", "sign"]));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(
        fs::read(ws.join("bundles/policy-v1.json")).unwrap(),
        fs::read(copy.join("bundles/policy-v1.json")).unwrap()
    );
    let r = run(in_ws(&ws)
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .args(["policy", "sign"]));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("SOURCE_DATE_EPOCH"), "{}", r.stderr);
}

#[test]
fn rotation_chain_is_accepted_and_a_forged_one_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = init_workspace(tmp.path(), "acme-corp");
    let old = tmp.path().join("old-anchors.json");
    fs::copy(ws.join("anchors.json"), &old).unwrap();
    let r = run(in_ws(&ws).args(["keys", "rotate", "--retire-after", "7d"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let env = ws.join("rotations/anchors-v2.json");
    assert!(env.is_file());
    let out = tmp.path().join("accepted.json");
    let r = run(fleetkit()
        .args(["keys", "accept", "--trusted"])
        .arg(&old)
        .arg(&env)
        .arg("--out")
        .arg(&out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let accepted: serde_json::Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    let current: serde_json::Value =
        serde_json::from_slice(&fs::read(ws.join("anchors.json")).unwrap()).unwrap();
    assert_eq!(accepted, current);

    // A second, unrelated workspace's rotation does not chain from our anchors.
    let other = init_workspace(&tmp.path().join("o"), "acme-corp");
    let r = run(in_ws(&other).args(["keys", "rotate"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(fleetkit()
        .args(["keys", "accept", "--trusted"])
        .arg(&old)
        .arg(other.join("rotations/anchors-v2.json")));
    assert_eq!(r.code, 1, "{}", r.stdout);

    // After rotation, new bundles verify with both the old anchors (during the
    // window) and the new ones.
    let r = run(in_ws(&ws).args(["policy", "sign"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for anchors in [&old, &ws.join("anchors.json")] {
        let r = run(fleetkit()
            .args(["policy", "verify", "--anchors"])
            .arg(anchors)
            .arg(ws.join("bundles/policy-v1.json")));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = run(in_ws(&ws).args(["keys", "list"]));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("retiring") && r.stdout.contains("active"),
        "{}",
        r.stdout
    );
}

#[test]
fn demo_runs_the_whole_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let r = run(fleetkit().args(["demo", "--out"]).arg(&out));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(out.join("bundles/policy-v2.json").is_file());
    // The fleet part: two devices registered and brought to v3 through the server.
    for device in ["laptop-1", "laptop-2"] {
        let manifest = std::fs::read_to_string(
            out.join("devices")
                .join(device)
                .join("var/lib/fleetkit/manifest.yaml"),
        )
        .unwrap();
        assert!(
            manifest.contains("enrollment: \"registered\""),
            "{manifest}"
        );
        assert!(manifest.contains("policy_version: 3\n"), "{manifest}");
    }
    assert_eq!(
        r.stdout.matches("policy v2 → v3").count(),
        2,
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("2 device(s)"), "{}", r.stderr);
    let r = run(fleetkit().args(["demo", "--out"]).arg(&out));
    assert_eq!(r.code, 1, "refuses an existing directory");
}

#[test]
fn help_and_version_everywhere() {
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["init", "--help"],
        vec!["policy", "--help"],
        vec!["policy", "check", "--help"],
        vec!["policy", "sign", "--help"],
        vec!["policy", "verify", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "accept", "--help"],
        vec!["keys", "list", "--help"],
        vec!["demo", "--help"],
        vec!["serve", "--help"],
        vec!["token", "create", "--help"],
        vec!["token", "list", "--help"],
        vec!["token", "revoke", "--help"],
        vec!["devices", "list", "--help"],
        vec!["devices", "remove", "--help"],
        vec!["policy", "publish", "--help"],
        vec!["agent", "--help"],
        vec!["agent", "register", "--help"],
        vec!["agent", "sync", "--help"],
        vec!["agent", "status", "--help"],
        vec!["agent", "renew", "--help"],
    ] {
        let r = run(fleetkit().args(&args));
        assert_eq!(r.code, 0, "{args:?}");
        assert!(!r.stdout.is_empty());
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

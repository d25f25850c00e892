//! The `.deb` target, read by Debian's own tools: `dpkg-deb --info/--contents/-f`
//! read the package, `lintian` judges it (no error, no warning: each remaining tag
//! is an override with its reason, shipped in the package), `sh -n` parses the
//! maintainer scripts. Also: byte-identical rebuilds in two processes, hostile org
//! and team values read back from the control fields and kept out of the scripts'
//! code, and no token or private key in the package.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const HOSTILE: &str = "Ac'me \"Corp\" $(touch /tmp/pwned) `id` ${HOME} ü漢\\ end";

/// The linux agent to package: the real lean one when the test command built it,
/// else a stand-in ELF of the right architecture.
fn linux_agent(dir: &Path) -> PathBuf {
    real_agent("linux-x86_64")
        .unwrap_or_else(|| executables::write_executable(dir, "linux-x86_64", 64 * 1024))
}

fn build_deb(org: &Org, out: &Path, agent: &Path, extra: &[&str]) {
    let r = org
        .build_command(out, &["--target", "deb"], &[("linux-x86_64", agent)])
        .args(extra)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

fn the_deb(out: &Path) -> PathBuf {
    built_package(out, "deb")
}

fn field(deb: &Path, name: &str) -> String {
    tool(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim_end()
        .to_string()
}

#[test]
fn dpkg_deb_reads_it_and_lintian_finds_nothing_to_say() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let out = dir.path().join("out");
    build_deb(&org, &out, &agent, &[]);
    let deb = the_deb(&out);
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        "acme-corp-fleetkit_1.0.1.0_amd64.deb"
    );

    let info = tool(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for line in [
        "Package: acme-corp-fleetkit",
        "Version: 1.0.1.0",
        "Architecture: amd64",
        "Depends: libc6 (>= 2.17)",
        "Maintainer: fleetkit <fleetkit@fleetkit.invalid>",
    ] {
        assert!(info.contains(line), "{line} not in:\n{info}");
    }
    let contents = tool(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for (mode, path) in [
        ("-rwxr-xr-x root/root", "usr/bin/fleetkit"),
        ("-rw-r--r-- root/root", "etc/fleetkit/agent.yaml"),
        ("-rw-r--r-- root/root", "etc/fleetkit/anchors.json"),
        ("-rw-r--r-- root/root", "etc/fleetkit/bundle.json"),
        (
            "-rw-r--r-- root/root",
            "lib/systemd/system/fleetkit-sync.timer",
        ),
        (
            "-rw-r--r-- root/root",
            "usr/share/ca-certificates/fleetkit/acme_corp.crt",
        ),
        (
            "-rw-r--r-- root/root",
            "usr/share/doc/acme-corp-fleetkit/copyright",
        ),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{mode} {path} not in:\n{contents}"
        );
    }
    assert!(
        contents.lines().all(|l| l.contains(" 2025-12-01 00:00 ")),
        "every mtime is SOURCE_DATE_EPOCH:\n{contents}"
    );

    // The control members: conffiles are every file under /etc, md5sums the rest.
    let control = dir.path().join("control");
    tool(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(
        conffiles,
        "/etc/fleetkit/agent.yaml\n/etc/fleetkit/anchors.json\n/etc/fleetkit/bundle.json\n"
    );
    let sums = std::fs::read_to_string(control.join("md5sums")).unwrap();
    assert!(
        sums.contains("  usr/bin/fleetkit\n") && !sums.contains("etc/"),
        "{sums}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        tool(Command::new("sh").arg("-n").arg(control.join(script)));
    }

    let lintian = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .expect("lintian (the test command installs it)");
    let said = String::from_utf8_lossy(&lintian.stdout).into_owned()
        + &String::from_utf8_lossy(&lintian.stderr);
    assert!(lintian.status.success(), "lintian:\n{said}");
    assert!(
        !said
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian:\n{said}"
    );
}

#[test]
fn two_builds_in_two_processes_are_byte_identical() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    build_deb(&org, &a, &agent, &[]);
    build_deb(&org, &b, &agent, &[]);
    let (da, db) = (the_deb(&a), the_deb(&b));
    assert_eq!(std::fs::read(&da).unwrap(), std::fs::read(&db).unwrap());
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
        .args([
            "--workspace",
            ws.to_str().unwrap(),
            "build",
            "--target",
            "deb",
        ])
        .args(["--team", HOSTILE, "--out"])
        .arg(&out)
        .arg("--agent")
        .arg(format!("linux-x86_64={}", agent.display()))
        .env("SOURCE_DATE_EPOCH", "1764547200")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let deb = the_deb(&out);

    // The name is the org slug; the org's own text is one line of the description.
    let package = field(&deb, "Package");
    assert!(
        package
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c)),
        "{package}"
    );
    // The synopsis is cut to Debian's 80 columns; the whole org name, on one line,
    // is in the extended description, whose lines all continue the field.
    let description = field(&deb, "Description");
    let synopsis = description.lines().next().unwrap();
    assert!(
        synopsis.starts_with("Fleetkit device agent and policy for Ac'me")
            && synopsis.chars().count() < 80,
        "{synopsis}"
    );
    assert!(
        description.lines().skip(1).all(|l| l.starts_with(' ')),
        "{description}"
    );
    assert!(
        description
            .replace("\n ", " ")
            .contains(&format!("{HOSTILE} second line")),
        "{description}"
    );

    // The scripts parse, and running the postinst's values through a shell
    // changes nothing on this machine: the org's text is only in comments.
    let control = dir.path().join("control");
    tool(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    for script in ["postinst", "prerm", "postrm"] {
        let text = std::fs::read_to_string(control.join(script)).unwrap();
        tool(Command::new("sh").arg("-n").arg(control.join(script)));
        for line in text.lines().filter(|l| l.contains("$(touch")) {
            assert!(line.starts_with('#'), "{script}: {line}");
        }
    }
    // The team is in agent.yaml as a YAML string, read back by the agent's reader.
    let data = dir.path().join("data");
    tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&data));
    let settings =
        fleetkit::agent::settings::AgentSettings::load(&data.join("etc/fleetkit/agent.yaml"))
            .unwrap();
    assert_eq!(settings.assignment.team.as_deref(), Some(HOSTILE));

    // Lintian accepts it too.
    let lintian = Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        lintian.status.success(),
        "{}",
        String::from_utf8_lossy(&lintian.stdout)
    );
}

#[test]
fn the_package_carries_no_token_and_no_private_key() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let out = dir.path().join("out");
    // A token file in the workspace where an admin might leave one.
    std::fs::write(org.path().join("enroll-token"), "fkt_secret_token_value").unwrap();
    build_deb(&org, &out, &agent, &[]);
    let deb = the_deb(&out);
    let data = dir.path().join("data");
    tool(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&data));
    for file in walk(&data) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        // The agent's code names the PEM label it writes its own key under; no
        // other file may carry one.
        if !file.ends_with("usr/bin/fleetkit") {
            assert!(!text.contains("PRIVATE KEY"), "{}", file.display());
        }
        assert!(!text.contains("fkt_secret"), "{}", file.display());
        assert!(!file.ends_with("enroll-token"), "{}", file.display());
    }
}

#[test]
fn the_apt_repository_is_signed_reproducible_and_asked_for_properly() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = linux_agent(dir.path());
    let (key, _) = gpg_key(dir.path(), "ed25519", "");
    let repo = ["--apt-repo", "--package-signing-key", key.to_str().unwrap()];
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    build_deb(&org, &a, &agent, &repo);
    build_deb(&org, &b, &agent, &repo);
    for file in [
        "Packages",
        "Packages.gz",
        "Release",
        "InRelease",
        "Release.gpg",
        "acme-corp-fleetkit-archive-keyring.gpg",
    ] {
        let bytes = std::fs::read(a.join("linux").join(file)).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(b.join("linux").join(file)).unwrap(),
            "{file} differs between two builds"
        );
    }
    // The index's stanza is the package's own control file, plus where and what.
    let deb = the_deb(&a);
    let packages = std::fs::read_to_string(a.join("linux/Packages")).unwrap();
    let control = tool(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert!(packages.starts_with(&control), "{packages}\n---\n{control}");
    let size = std::fs::metadata(&deb).unwrap().len();
    assert!(
        packages.contains(&format!(
            "Filename: ./{}\nSize: {size}\n",
            deb.file_name().unwrap().to_str().unwrap()
        )),
        "{packages}"
    );

    // Refused: a repository without a key (apt would need trusted=yes), and
    // --apt-repo without the deb target. Nothing is written.
    for (args, expected) in [
        (
            &["--target", "deb", "--apt-repo"][..],
            "--apt-repo: an apt repository must be signed",
        ),
        (
            &["--target", "rpm", "--apt-repo"][..],
            "--apt-repo makes the deb target's output an apt repository",
        ),
    ] {
        let out = dir.path().join("refused");
        let r = org
            .build_command(&out, args, &[("linux-x86_64", &agent)])
            .env_remove("FLEETKIT_PACKAGE_SIGNING_KEY")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} was accepted");
        assert!(said.contains(expected), "{expected} not in:\n{said}");
        assert!(!out.exists(), "nothing is written");
    }
}

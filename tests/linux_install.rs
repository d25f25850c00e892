//! The `.deb` and the `.rpm` installed for real, in a minimal Debian bookworm root
//! (scripts/debian-root.sh, debootstrap once, cached as a tarball), with the real
//! lean agent, against `fleetkit serve` on loopback. The whole life of a machine:
//! install (the scripts trust the CA, enable the timer, register with the token
//! file, which is then gone), upgrade to the next policy (same identity, one device
//! in the inventory), remove (state kept), reinstall (the same device, no second
//! registration), purge (state gone). Files, the package manager's database and the
//! server's inventory are checked at each step.
//!
//! dpkg runs chrooted in the root. The rpm is installed by the host's rpm with
//! `--root` (its scriptlets run chrooted there) and `--nodeps`: no RPM distribution
//! root can be made on this machine, so the root has no rpm-world packages to
//! satisfy its requirements, and no `update-ca-trust` (the CA file's place is
//! checked instead).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// The cached root's tarball, or `None` (said on stderr) when the test command did
/// not make one; with FLEETKIT_TEST_DEBIAN_ROOT_REQUIRED=1 its absence fails.
fn debian_root_tarball() -> Option<PathBuf> {
    let found = std::env::var_os("FLEETKIT_TEST_DEBIAN_ROOT")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("FLEETKIT_TEST_DEBIAN_ROOT_REQUIRED").as_deref() != Ok("1"),
            "FLEETKIT_TEST_DEBIAN_ROOT_REQUIRED=1 but FLEETKIT_TEST_DEBIAN_ROOT names no tarball; run scripts/debian-root.sh"
        );
        eprintln!("skipped: no Debian root (FLEETKIT_TEST_DEBIAN_ROOT=$(scripts/debian-root.sh))");
    }
    found
}

/// A fresh copy of the root in `dir`.
fn unpack_root(tarball: &Path, dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    tool(
        Command::new("tar")
            .args(["--numeric-owner", "-xf"])
            .arg(tarball)
            .arg("-C")
            .arg(&root),
    );
    root
}

/// `chroot ROOT ARGS…`: its exit code and what it said.
fn chroot(root: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("chroot")
        .arg(root)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env_remove("FLEETKIT_ENROLL_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn must_chroot(root: &Path, args: &[&str]) -> String {
    let (code, said) = chroot(root, args);
    assert_eq!(code, 0, "chroot {args:?}:\n{said}");
    said
}

/// `dpkg -i` of `deb`, copied into the root's /tmp.
fn dpkg_install(root: &Path, deb: &Path) -> String {
    let name = deb.file_name().unwrap().to_str().unwrap();
    std::fs::copy(deb, root.join("tmp").join(name)).unwrap();
    must_chroot(root, &["dpkg", "-i", &format!("/tmp/{name}")])
}

fn status(root: &Path, package: &str) -> String {
    let (_, said) = chroot(
        root,
        &["dpkg-query", "-W", "-f=${Status} ${Version}", package],
    );
    said
}

/// Points the workspace's fleetkit.yaml at the running server.
fn serve_from(org: &Org, server: &Server) {
    let path = org.path().join("fleetkit.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("url:") {
                format!("  url: \"{}\"", server.url())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(path, text).unwrap();
}

/// Builds `target` (deb or rpm) and returns the package file.
fn build_package(org: &Org, out: &Path, agent: &Path, target: &str) -> PathBuf {
    org.build(out, &["--target", target], &[("linux-x86_64", agent)]);
    built_package(out, target)
}

fn build_deb(org: &Org, out: &Path, agent: &Path) -> PathBuf {
    build_package(org, out, agent, "deb")
}

/// Claude Code's managed settings for the packages' agent (`/usr/bin/fleetkit`), as
/// the `claude-code` target builds them from the org's current policy: what the
/// installed agent must write, byte for byte.
fn package_claude_settings(org: &Org, out: &Path) -> String {
    org.build(out, &["--target", "claude-code"], &[]);
    std::fs::read_to_string(out.join("claude-code/linux-package/managed-settings.json")).unwrap()
}

const CLAUDE_SETTINGS: &str = "etc/claude-code/managed-settings.json";

/// A settings file an admin wrote by hand, before fleetkit came.
const SOMEONE_ELSES_SETTINGS: &str = "{\"permissions\":{\"deny\":[\"Bash(rm:*)\"]}}\n";

/// A machine about to get the package: a fresh root with a machine id, an
/// /etc/hosts (debootstrap leaves none; the server is localhost) and the enrollment
/// token where cloud-init's write_files leaves it.
fn machine(tarball: &Path, dir: &Path, token: &str) -> PathBuf {
    let root = unpack_root(tarball, dir);
    std::fs::write(
        root.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )
    .unwrap();
    let etc = root.join("etc/fleetkit");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("enroll-token"), format!("{token}\n")).unwrap();
    set_mode(&etc.join("enroll-token"), 0o600);
    root
}

#[test]
fn install_upgrade_remove_reinstall_and_purge_in_a_debian_root() {
    let Some(tarball) = debian_root_tarball() else {
        return;
    };
    let Some(agent) = real_agent("linux-x86_64") else {
        return;
    };
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    serve_from(&org, &server);
    let token = create_token(&server, &org, "linux", 1, 3600);
    let dir = tempfile::tempdir().unwrap();
    let v1 = build_deb(&org, &dir.path().join("v1"), &agent);

    let root = machine(&tarball, dir.path(), &token.token);
    let etc = root.join("etc/fleetkit");

    // Install: registered, token used and gone, CA trusted, timer enabled.
    let said = dpkg_install(&root, &v1);
    assert!(said.contains("fleetkit: registered"), "{said}");
    let package = "acme-corp-fleetkit";
    assert!(
        status(&root, package).starts_with("install ok installed 1."),
        "{}",
        status(&root, package)
    );
    let identity = root.join("var/lib/fleetkit/identity.pem");
    let identity_v1 = std::fs::read(&identity).unwrap();
    assert!(root.join("var/lib/fleetkit/manifest.yaml").is_file());
    assert!(
        !etc.join("enroll-token").exists(),
        "the token was used and deleted"
    );
    let conf = std::fs::read_to_string(root.join("etc/ca-certificates.conf")).unwrap();
    assert!(
        conf.lines().any(|l| l == "fleetkit/acme_corp.crt"),
        "{conf}"
    );
    let bundle = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(
        bundle.contains(org.root_ca_pem().trim()),
        "the org root CA is in the system bundle"
    );
    assert!(
        root.join("etc/systemd/system/timers.target.wants/fleetkit-sync.timer")
            .symlink_metadata()
            .is_ok(),
        "the timer is enabled"
    );
    let devices = inventory(&server, &org);
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].team, "linux");
    // Claude Code's managed settings: what the claude-code target builds, 0644.
    let claude = root.join(CLAUDE_SETTINGS);
    assert_eq!(
        std::fs::read_to_string(&claude).unwrap(),
        package_claude_settings(&org, &dir.path().join("cc1"))
    );
    assert_eq!(mode_of(&claude), 0o644);

    // Upgrade to the next policy: same identity, still one device, the new bundle.
    org.sign_next();
    let v2 = build_deb(&org, &dir.path().join("v2"), &agent);
    // Lost in the meantime: the upgrade puts the settings back.
    std::fs::remove_file(&claude).unwrap();
    let said = dpkg_install(&root, &v2);
    assert!(
        !said.contains("fleetkit: registered"),
        "an upgrade does not register again:\n{said}"
    );
    assert!(
        status(&root, package).starts_with("install ok installed 2."),
        "{}",
        status(&root, package)
    );
    assert_eq!(std::fs::read(&identity).unwrap(), identity_v1);
    assert_eq!(
        std::fs::read(root.join("etc/fleetkit/bundle.json")).unwrap(),
        std::fs::read(org.path().join("bundles/policy-v2.json")).unwrap()
    );
    assert_eq!(inventory(&server, &org).len(), 1);
    assert_eq!(
        std::fs::read_to_string(&claude).unwrap(),
        package_claude_settings(&org, &dir.path().join("cc2"))
    );

    // Remove: the agent, the CA and Claude Code's settings (their hook would name
    // the removed agent) go, the device's state and the conffiles stay.
    must_chroot(&root, &["dpkg", "-r", package]);
    assert!(!claude.exists(), "the settings went with the agent");
    assert!(
        !root.join("etc/claude-code").exists(),
        "and their empty folder"
    );
    assert!(
        status(&root, package).starts_with("deinstall ok config-files"),
        "{}",
        status(&root, package)
    );
    assert!(!root.join("usr/bin/fleetkit").exists());
    assert_eq!(std::fs::read(&identity).unwrap(), identity_v1);
    assert!(root.join("var/lib/fleetkit/manifest.yaml").is_file());
    assert!(root.join("etc/fleetkit/agent.yaml").is_file());
    let conf = std::fs::read_to_string(root.join("etc/ca-certificates.conf")).unwrap();
    assert!(!conf.contains("fleetkit/acme_corp.crt"), "{conf}");
    let bundle = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(
        !bundle.contains(org.root_ca_pem().trim()),
        "the org root CA left the bundle"
    );

    // Reinstall: the same device (no token is needed, none is used). An admin's
    // own settings file is there now: the agent leaves it and says so.
    std::fs::create_dir_all(claude.parent().unwrap()).unwrap();
    std::fs::write(&claude, SOMEONE_ELSES_SETTINGS).unwrap();
    let said = dpkg_install(&root, &v2);
    assert!(!said.contains("fleetkit: registered"), "{said}");
    assert!(said.contains("not written by fleetkit"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&claude).unwrap(),
        SOMEONE_ELSES_SETTINGS
    );
    assert_eq!(std::fs::read(&identity).unwrap(), identity_v1);
    assert_eq!(inventory(&server, &org).len(), 1);

    // Purge: everything of fleetkit's is gone from the machine.
    must_chroot(&root, &["dpkg", "-P", package]);
    assert!(
        !status(&root, package).contains("installed"),
        "{}",
        status(&root, package)
    );
    assert!(!root.join("var/lib/fleetkit").exists());
    assert!(!root.join("etc/fleetkit").exists());
    assert_eq!(
        std::fs::read_to_string(&claude).unwrap(),
        SOMEONE_ELSES_SETTINGS,
        "someone else's settings outlive fleetkit"
    );
    assert!(
        root.join("etc/systemd/system/timers.target.wants/fleetkit-sync.timer")
            .symlink_metadata()
            .is_err()
    );
}

/// `rpm --root ROOT ARGS…` with the root's own database, as the host's rpm runs it
/// (Debian's rpm wants --force-debian to change a root dpkg also manages).
fn rpm(root: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"])
        .args(args)
        .env_remove("FLEETKIT_ENROLL_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn must_rpm(root: &Path, args: &[&str]) -> String {
    let (code, said) = rpm(root, args);
    assert_eq!(code, 0, "rpm {args:?}:\n{said}");
    said
}

#[test]
fn rpm_install_upgrade_erase_and_reinstall_in_a_root() {
    let Some(tarball) = debian_root_tarball() else {
        return;
    };
    let Some(agent) = real_agent("linux-x86_64") else {
        return;
    };
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    serve_from(&org, &server);
    let token = create_token(&server, &org, "linux", 1, 3600);
    let dir = tempfile::tempdir().unwrap();
    let v1 = build_package(&org, &dir.path().join("v1"), &agent, "rpm");
    let root = machine(&tarball, dir.path(), &token.token);
    let etc = root.join("etc/fleetkit");
    must_rpm(&root, &["--initdb"]);
    let install = ["--nodeps", "--force-debian"];
    let package = "acme-corp-fleetkit";
    let timer_link = root.join("etc/systemd/system/timers.target.wants/fleetkit-sync.timer");

    // Install: %post registers with the token file (then gone) and enables the timer.
    let said = must_rpm(
        &root,
        &[&["-i"][..], &install, &[v1.to_str().unwrap()]].concat(),
    );
    assert!(said.contains("fleetkit: registered"), "{said}");
    assert!(must_rpm(&root, &["-q", package]).starts_with("acme-corp-fleetkit-1."));
    let identity = root.join("var/lib/fleetkit/identity.pem");
    let identity_v1 = std::fs::read(&identity).unwrap();
    assert!(root.join("var/lib/fleetkit/manifest.yaml").is_file());
    assert!(
        !etc.join("enroll-token").exists(),
        "the token was used and deleted"
    );
    assert!(
        root.join("usr/share/pki/ca-trust-source/anchors/fleetkit-acme_corp.pem")
            .is_file()
    );
    assert!(
        timer_link.symlink_metadata().is_ok(),
        "the timer is enabled"
    );
    let devices = inventory(&server, &org);
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].team, "linux");
    let claude = root.join(CLAUDE_SETTINGS);
    assert_eq!(
        std::fs::read_to_string(&claude).unwrap(),
        package_claude_settings(&org, &dir.path().join("cc1"))
    );

    // An admin edits the settings: the upgrade keeps the edit (noreplace).
    let settings = etc.join("agent.yaml");
    let edited = std::fs::read_to_string(&settings).unwrap() + "# edited by an admin\n";
    std::fs::write(&settings, &edited).unwrap();

    // Upgrade (%post with $1=2, the old %preun/%postun with $1=1): same identity,
    // one device, the new policy, the timer still enabled. The new package's
    // settings differ (another team): the admin's edited file stays, the package's
    // lands beside it as agent.yaml.rpmnew.
    org.sign_next();
    let v2_out = dir.path().join("v2");
    org.build(
        &v2_out,
        &["--target", "rpm", "--team", "servers"],
        &[("linux-x86_64", &agent)],
    );
    let v2 = built_package(&v2_out, "rpm");
    let said = must_rpm(
        &root,
        &[&["-U"][..], &install, &[v2.to_str().unwrap()]].concat(),
    );
    assert!(!said.contains("fleetkit: registered"), "{said}");
    assert!(must_rpm(&root, &["-q", package]).starts_with("acme-corp-fleetkit-2."));
    assert_eq!(std::fs::read(&identity).unwrap(), identity_v1);
    assert_eq!(
        std::fs::read(etc.join("bundle.json")).unwrap(),
        std::fs::read(org.path().join("bundles/policy-v2.json")).unwrap()
    );
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), edited);
    assert!(
        timer_link.symlink_metadata().is_ok(),
        "still enabled after the upgrade"
    );
    assert_eq!(inventory(&server, &org).len(), 1);

    // Erase (%preun and %postun with $1=0): the package's files and the timer's
    // enablement go; the device's identity and manifest stay, and so does the
    // edited settings file, as agent.yaml.rpmsave.
    must_rpm(&root, &["-e", "--nodeps", package]);
    let (code, _) = rpm(&root, &["-q", package]);
    assert_ne!(code, 0, "not installed any more");
    assert!(!root.join("usr/bin/fleetkit").exists());
    assert!(!etc.join("bundle.json").exists());
    assert!(etc.join("agent.yaml.rpmsave").is_file());
    assert!(
        !claude.exists(),
        "Claude Code's settings went with the agent"
    );
    assert!(
        timer_link.symlink_metadata().is_err(),
        "the timer is disabled"
    );
    assert!(
        !root
            .join("usr/share/pki/ca-trust-source/anchors/fleetkit-acme_corp.pem")
            .exists()
    );
    assert_eq!(std::fs::read(&identity).unwrap(), identity_v1);
    assert!(root.join("var/lib/fleetkit/manifest.yaml").is_file());

    // Reinstall: the same device, no second registration, the settings back.
    let said = must_rpm(
        &root,
        &[&["-i"][..], &install, &[v2.to_str().unwrap()]].concat(),
    );
    assert!(!said.contains("fleetkit: registered"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&claude).unwrap(),
        package_claude_settings(&org, &dir.path().join("cc2"))
    );
    assert_eq!(std::fs::read(&identity).unwrap(), identity_v1);
    assert_eq!(inventory(&server, &org).len(), 1);
}

#[test]
fn apt_installs_from_the_signed_repository_and_refuses_a_tampered_one() {
    let Some(tarball) = debian_root_tarball() else {
        return;
    };
    let Some(agent) = real_agent("linux-x86_64") else {
        return;
    };
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = gpg_key(dir.path(), "rsa3072", "");
    let out = dir.path().join("out");
    org.build(
        &out,
        &[
            "--target",
            "deb",
            "--apt-repo",
            "--package-signing-key",
            key.to_str().unwrap(),
        ],
        &[("linux-x86_64", &agent)],
    );
    let repo = out.join("linux");
    let keyring = "acme-corp-fleetkit-archive-keyring.gpg";

    // A machine whose only apt source is the org's repository, pinned to its key.
    let root = unpack_root(&tarball, dir.path());
    std::fs::remove_file(root.join("etc/apt/sources.list")).ok();
    let served = root.join("srv/fleetkit");
    std::fs::create_dir_all(&served).unwrap();
    for e in std::fs::read_dir(&repo).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, served.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        repo.join(keyring),
        root.join("usr/share/keyrings").join(keyring),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/apt/sources.list.d/fleetkit.list"),
        format!("deb [signed-by=/usr/share/keyrings/{keyring}] file:/srv/fleetkit ./\n"),
    )
    .unwrap();

    let said = must_chroot(&root, &["apt-get", "update"]);
    assert!(
        !said.contains("W: GPG") && !said.contains("NO_PUBKEY"),
        "{said}"
    );
    let policy = must_chroot(&root, &["apt-cache", "policy", "acme-corp-fleetkit"]);
    assert!(policy.contains("Candidate: 1.0.1.0"), "{policy}");
    must_chroot(
        &root,
        &[
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "acme-corp-fleetkit",
        ],
    );
    assert!(
        status(&root, "acme-corp-fleetkit").starts_with("install ok installed 1."),
        "{}",
        status(&root, "acme-corp-fleetkit")
    );

    // One changed byte in the signed Release: apt refuses the repository.
    let lists = root.join("var/lib/apt/lists");
    std::fs::remove_dir_all(&lists).unwrap();
    std::fs::create_dir_all(lists.join("partial")).unwrap();
    let in_release = served.join("InRelease");
    let text = std::fs::read_to_string(&in_release).unwrap();
    std::fs::write(
        &in_release,
        text.replacen("Suite: fleetkit", "Suite: fleetkiT", 1),
    )
    .unwrap();
    std::fs::remove_file(served.join("Release.gpg")).unwrap();
    let (code, said) = chroot(&root, &["apt-get", "update"]);
    assert!(
        code != 0 || said.contains("W: GPG error") || said.contains("E: The repository"),
        "{said}"
    );
    assert!(
        said.contains("BADSIG") || said.contains("signatures were invalid"),
        "{said}"
    );
    let policy = must_chroot(&root, &["apt-cache", "policy", "acme-corp-fleetkit"]);
    assert!(!policy.contains("file:/srv/fleetkit"), "{policy}");

    // The signed Release put back, but one changed byte in Packages: its digest no
    // longer matches the signed one, and apt refuses the index.
    std::fs::write(&in_release, &text).unwrap();
    let packages = served.join("Packages");
    let index = std::fs::read_to_string(&packages).unwrap();
    std::fs::write(
        &packages,
        index.replacen("Priority: optional", "Priority: extra", 1),
    )
    .unwrap();
    std::fs::remove_file(served.join("Packages.gz")).unwrap();
    std::fs::remove_dir_all(&lists).unwrap();
    std::fs::create_dir_all(lists.join("partial")).unwrap();
    let (_, said) = chroot(&root, &["apt-get", "update"]);
    assert!(
        said.contains("Hash Sum mismatch") || said.contains("File has unexpected size"),
        "{said}"
    );
    let policy = must_chroot(&root, &["apt-cache", "policy", "acme-corp-fleetkit"]);
    assert!(!policy.contains("file:/srv/fleetkit"), "{policy}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

//! The `.deb` installed for real: dpkg in a minimal Debian bookworm root
//! (scripts/debian-root.sh, debootstrap once, cached as a tarball), chrooted, with
//! the real lean agent, against `fleetkit serve` on loopback. The whole life of a
//! machine: install (the postinst trusts the CA, enables the timer, registers with
//! the token file, which is then gone), upgrade to the next policy (same identity,
//! one device in the inventory), remove (state kept), reinstall (the same device, no
//! second registration), purge (state gone). Files, dpkg's status and the server's
//! inventory are checked at each step.

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

fn build_deb(org: &Org, out: &Path, agent: &Path) -> PathBuf {
    org.build(out, &["--target", "deb"], &[("linux-x86_64", agent)]);
    std::fs::read_dir(out.join("linux"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap()
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

    let root = unpack_root(&tarball, dir.path());
    std::fs::write(
        root.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    // debootstrap leaves no /etc/hosts; a machine has one (the server is localhost).
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )
    .unwrap();
    // What cloud-init's write_files leaves before the package is installed.
    let etc = root.join("etc/fleetkit");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("enroll-token"), format!("{}\n", token.token)).unwrap();
    set_mode(&etc.join("enroll-token"), 0o600);

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

    // Upgrade to the next policy: same identity, still one device, the new bundle.
    org.sign_next();
    let v2 = build_deb(&org, &dir.path().join("v2"), &agent);
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

    // Remove: the agent and the CA go, the device's state and the conffiles stay.
    must_chroot(&root, &["dpkg", "-r", package]);
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

    // Reinstall: the same device (no token is needed, none is used).
    let said = dpkg_install(&root, &v2);
    assert!(!said.contains("fleetkit: registered"), "{said}");
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
    assert!(
        root.join("etc/systemd/system/timers.target.wants/fleetkit-sync.timer")
            .symlink_metadata()
            .is_err()
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

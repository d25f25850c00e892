//! The `.pkg` target, read by independent tools: 7z and bsdtar list and extract
//! the product archive, `cpio -t` reads its Payload, the apple-flat-package crate
//! parses the package and apple-bom's reader the Bom, which lists every payload
//! file with its mode and owner (root:wheel).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// Unpacks a gzip'd cpio archive into `dest` with gzip and cpio themselves.
fn unpack_cpio_gz(archive: &Path, dest: &Path) -> PathBuf {
    std::fs::create_dir_all(dest).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' | cpio -idm --quiet",
            archive.display()
        ))
        .current_dir(dest)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cpio could not unpack {}",
        archive.display()
    );
    dest.to_path_buf()
}

/// Builds the pkg with stand-in arm64 and x86_64 agents; returns the pkg path and
/// the two agents' bytes.
fn build_pkg(org: &Org, dir: &Path) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let arm = executables::executable("darwin-arm64", 36_000);
    let intel = executables::executable("darwin-x86_64", 26_000);
    std::fs::write(dir.join("arm"), &arm).unwrap();
    std::fs::write(dir.join("intel"), &intel).unwrap();
    let out = dir.join("dist");
    let r = org
        .build_command(
            &out,
            &["--target", "pkg"],
            &[
                ("darwin-arm64", &dir.join("arm")),
                ("darwin-x86_64", &dir.join("intel")),
            ],
        )
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("unsigned"),
        "an unsigned build must say so: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    (out.join("macos/acme-corp-fleetkit-1.pkg"), arm, intel)
}

const PAYLOAD: [&str; 5] = [
    "./usr/local/bin/fleetkit",
    "./Library/Application Support/fleetkit/agent.yaml",
    "./Library/Application Support/fleetkit/anchors.json",
    "./Library/Application Support/fleetkit/bundle.json",
    "./Library/LaunchDaemons/com.acme-corp.fleetkit.sync.plist",
];

#[test]
fn seven_zip_bsdtar_and_cpio_read_the_package() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (pkg, arm, intel) = build_pkg(&org, dir.path());
    let members = [
        "Distribution",
        "fleetkit.pkg/PackageInfo",
        "fleetkit.pkg/Bom",
        "fleetkit.pkg/Payload",
        "fleetkit.pkg/Scripts",
    ];
    let listed = tool(Command::new("bsdtar").arg("-tf").arg(&pkg));
    for m in members {
        assert!(
            listed.lines().any(|l| l == m),
            "bsdtar: {m} missing:\n{listed}"
        );
    }
    let listed = tool(Command::new("7z").arg("l").arg(&pkg));
    assert!(
        listed.contains("Payload") && listed.contains("Distribution"),
        "{listed}"
    );
    let x = dir.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    tool(
        Command::new("bsdtar")
            .arg("-xf")
            .arg(&pkg)
            .arg("-C")
            .arg(&x),
    );
    let x7 = dir.path().join("x7");
    tool(
        Command::new("7z")
            .args(["x", "-y"])
            .arg(format!("-o{}", x7.display()))
            .arg(&pkg),
    );
    assert_eq!(
        std::fs::read(x.join("fleetkit.pkg/Payload")).unwrap(),
        std::fs::read(x7.join("fleetkit.pkg/Payload")).unwrap()
    );

    // The Payload: gzip'd odc cpio, root:wheel, the right modes.
    let cpio = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc Payload | cpio -itv --quiet")
        .current_dir(x.join("fleetkit.pkg"))
        .output()
        .unwrap();
    assert!(
        cpio.status.success(),
        "{}",
        String::from_utf8_lossy(&cpio.stderr)
    );
    let listing = String::from_utf8_lossy(&cpio.stdout).into_owned();
    for path in PAYLOAD {
        let line = listing
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("cpio does not list {path}:\n{listing}"));
        let mode = if path.ends_with("/fleetkit") {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert!(line.starts_with(mode), "{line}");
        assert!(line.contains(" root ") || line.contains(" 0 "), "{line}");
    }
    // Extract it for real and check the files.
    let root = unpack_cpio_gz(&x.join("fleetkit.pkg/Payload"), &dir.path().join("root"));
    let settings =
        std::fs::read_to_string(root.join("Library/Application Support/fleetkit/agent.yaml"))
            .unwrap();
    let parsed = fleetkit::agent::settings::AgentSettings::parse(&settings).unwrap();
    assert_eq!(parsed.org, "acme-corp");
    assert_eq!(
        std::fs::read(root.join("Library/Application Support/fleetkit/bundle.json")).unwrap(),
        std::fs::read(org.path().join("bundles/policy-v1.json")).unwrap()
    );
    // A universal binary holding both agents at 16 KiB boundaries.
    let fat = std::fs::read(root.join("usr/local/bin/fleetkit")).unwrap();
    assert_eq!(&fat[..4], &[0xca, 0xfe, 0xba, 0xbe]);
    assert_eq!(u32::from_be_bytes(fat[4..8].try_into().unwrap()), 2);
    let slice = |i: usize| {
        let at = 8 + i * 20;
        let off = u32::from_be_bytes(fat[at + 8..at + 12].try_into().unwrap()) as usize;
        let len = u32::from_be_bytes(fat[at + 12..at + 16].try_into().unwrap()) as usize;
        assert_eq!(off % 16384, 0);
        fat[off..off + len].to_vec()
    };
    // Each slice is its agent, code-signed (tests/agents_codesign.rs verifies the
    // signatures): the same code, then the signature at the end.
    for (i, agent) in [(0, &arm), (1, &intel)] {
        let signed = slice(i);
        let code = executables::MACH_O_CODE_OFFSET..agent.len() - 16;
        assert_eq!(signed[code.clone()], agent[code], "slice {i}");
        assert!(signed.len() > agent.len(), "slice {i} carries no signature");
    }

    // The scripts: gzip'd cpio with an executable postinstall that sh accepts.
    let scripts = unpack_cpio_gz(&x.join("fleetkit.pkg/Scripts"), &dir.path().join("scripts"));
    use std::os::unix::fs::PermissionsExt;
    let post = scripts.join("postinstall");
    assert_eq!(
        std::fs::metadata(&post).unwrap().permissions().mode() & 0o777,
        0o755
    );
    tool(Command::new("sh").arg("-n").arg(&post));
    // Run as Installer runs it ($3: the target volume), with a stand-in agent that
    // records its arguments: Claude Code's settings first, then registration.
    let volume = dir.path().join("volume");
    let bin = volume.join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.path().join("calls");
    std::fs::write(
        bin.join("fleetkit"),
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("fleetkit"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let v = volume.display().to_string();
    tool(
        Command::new("sh")
            .arg(&post)
            .args([pkg.to_str().unwrap(), &v, &v]),
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!("agent claude-settings --root={v}\nagent register --root={v}\n")
    );
    tool(
        Command::new("sh")
            .arg("-n")
            .arg(pkg.with_file_name("jamf-register.sh")),
    );
}

#[test]
fn apple_flat_package_and_apple_bom_parse_the_package() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (pkg, _, _) = build_pkg(&org, dir.path());
    let file = std::fs::File::open(&pkg).unwrap();
    let mut reader = apple_flat_package::PkgReader::new(file).unwrap();
    let distribution = reader.distribution().unwrap().expect("a Distribution");
    let text = format!("{distribution:?}");
    assert!(text.contains("com.acme-corp.fleetkit"), "{text}");
    let components = reader.component_packages().unwrap();
    assert_eq!(components.len(), 1);
    let component = &components[0];
    let info = component.package_info().expect("PackageInfo");
    assert_eq!(info.identifier, "com.acme-corp.fleetkit");
    assert_eq!(info.install_location.as_deref(), Some("/"));
    assert_eq!(info.auth, "root");
    // The payload through the crate's own cpio reader.
    let mut payload = component.payload_reader().unwrap().expect("a Payload");
    let mut names = Vec::new();
    while let Some(entry) = payload.read_next().unwrap() {
        names.push(entry.name().to_string());
    }
    for path in PAYLOAD {
        assert!(names.iter().any(|n| n == path), "{path} not in {names:?}");
    }
    // The Bom lists every payload file, root:wheel, with its mode.
    let bom = apple_bom::ParsedBom::parse(component.bom().expect("a Bom")).unwrap();
    let paths = bom.paths().unwrap();
    for path in PAYLOAD {
        let p = paths
            .iter()
            .find(|p| p.path() == path)
            .unwrap_or_else(|| panic!("the Bom does not list {path}"));
        assert_eq!((p.user_id(), p.group_id()), (0, 0), "{path}");
        let mode = if path.ends_with("/fleetkit") {
            0o755
        } else {
            0o644
        };
        assert_eq!(p.file_mode() & 0o7777, mode, "{path}");
    }
    // The TOC checksum holds; a changed byte breaks it.
    let bytes = std::fs::read(&pkg).unwrap();
    let mut x = apple_xar::reader::XarReader::new(std::io::Cursor::new(bytes.clone())).unwrap();
    assert!(x.verify_table_of_contents_checksum().unwrap());
}

#[test]
fn without_a_macos_agent_the_pkg_names_the_setting() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let r = org
        .build_command(&dir.path().join("dist"), &["--target", "pkg"], &[])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("darwin") && err.contains("agents:"), "{err}");
    assert!(!dir.path().join("dist").exists());
}

/// A test installer identity made by openssl (tests/support): a root CA and a
/// "Developer ID Installer" leaf; returns (identity PEM path, CA certificate path).
fn identity(dir: &Path) -> (PathBuf, PathBuf) {
    openssl_identity(dir, "/CN=Developer ID Installer: Acme Corp (TEAM123456)")
}

fn build_signed(org: &Org, dir: &Path, identity: &Path, out: &str) -> PathBuf {
    std::fs::write(dir.join("arm"), executables::executable("darwin-arm64", 0)).unwrap();
    let r = org
        .build_command(
            &dir.join(out),
            &["--target", "pkg", "--target", "mobileconfig"],
            &[("darwin-arm64", &dir.join("arm"))],
        )
        .arg("--installer-identity")
        .arg(identity)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("signed by Developer ID Installer: Acme Corp")
    );
    dir.join(out)
}

/// The TOC checksum and the CMS signature bytes of a signed archive.
fn checksum_and_cms(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut reader =
        apple_xar::reader::XarReader::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let toc = String::from_utf8(reader.table_of_contents_decoded_data().unwrap()).unwrap();
    let cms = toc.split("<x-signature style=\"CMS\">").nth(1).unwrap();
    let field = |name: &str| -> usize {
        cms.split(&format!("<{name}>"))
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let heap = reader.heap_start_offset() as usize;
    let (offset, size) = (field("offset"), field("size"));
    (
        reader.checksum_data().unwrap(),
        bytes[heap + offset..heap + offset + size].to_vec(),
    )
}

#[test]
fn a_signed_package_verifies_with_apple_xar_and_openssl_and_a_changed_byte_fails() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (identity, ca) = identity(dir.path());
    let out = build_signed(&org, dir.path(), &identity, "dist");
    let pkg = out.join("macos/acme-corp-fleetkit-1.pkg");
    let bytes = std::fs::read(&pkg).unwrap();

    let mut reader =
        apple_xar::reader::XarReader::new(std::io::Cursor::new(bytes.clone())).unwrap();
    assert!(reader.verify_table_of_contents_checksum().unwrap());
    assert!(
        reader.verify_rsa_checksum_signature().unwrap(),
        "apple-xar: RSA signature"
    );
    assert!(
        reader.verify_cms_signature().unwrap(),
        "apple-xar: CMS signature"
    );
    let (_, certs) = reader.rsa_signature().unwrap().unwrap();
    assert_eq!(certs.len(), 2, "the chain is named in the TOC");

    // openssl checks the CMS signature over the TOC checksum, up to our CA.
    let (checksum, cms) = checksum_and_cms(&bytes);
    std::fs::write(dir.path().join("checksum.bin"), &checksum).unwrap();
    std::fs::write(dir.path().join("cms.der"), &cms).unwrap();
    let verify = |content: &str| {
        Command::new("openssl")
            .args([
                "cms",
                "-verify",
                "-inform",
                "DER",
                "-in",
                "cms.der",
                "-binary",
                "-purpose",
                "any",
                "-out",
                "/dev/null",
                "-content",
                content,
                "-CAfile",
            ])
            .arg(&ca)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let ok = verify("checksum.bin");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("Verification successful"));

    // One byte changed in the table of contents: the checksum, and so both
    // signatures, no longer hold.
    let mut tampered = bytes.clone();
    tampered[60] ^= 0x01;
    let verdict = apple_xar::reader::XarReader::new(std::io::Cursor::new(tampered.clone()))
        .and_then(|mut r| r.verify_table_of_contents_checksum());
    assert!(!matches!(verdict, Ok(true)), "a changed TOC still verified");
    use sha1::Digest;
    let header_len = 28;
    let toc_len = u64::from_be_bytes(tampered[8..16].try_into().unwrap()) as usize;
    let recomputed = sha1::Sha1::digest(&tampered[header_len..header_len + toc_len]).to_vec();
    std::fs::write(dir.path().join("tampered.bin"), recomputed).unwrap();
    let bad = verify("tampered.bin");
    assert!(!bad.status.success(), "openssl accepted a changed package");
    // One byte changed in the signature itself.
    let mut bad_sig = cms.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    std::fs::write(dir.path().join("cms.der"), &bad_sig).unwrap();
    assert!(!verify("checksum.bin").status.success());
    // One byte changed in the payload: the file's archived checksum catches it.
    let payload_at = bytes
        .windows(6)
        .rposition(|w| w == [0x1f, 0x8b, 0x08, 0, 0, 0])
        .unwrap();
    let mut bad_payload = bytes.clone();
    bad_payload[payload_at + 40] ^= 0x01;
    std::fs::write(dir.path().join("bad.pkg"), &bad_payload).unwrap();
    let t = Command::new("7z")
        .args(["t", "bad.pkg"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        !t.status.success(),
        "7z accepted a changed payload: {}",
        String::from_utf8_lossy(&t.stdout)
    );

    // Signed builds are reproducible too.
    let again = build_signed(&org, dir.path(), &identity, "again");
    assert_eq!(
        bytes,
        std::fs::read(again.join("macos/acme-corp-fleetkit-1.pkg")).unwrap()
    );
}

#[test]
fn a_signed_profile_verifies_with_openssl_and_holds_the_profile() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (identity, ca) = identity(dir.path());
    let out = build_signed(&org, dir.path(), &identity, "dist");
    let profile = out.join("macos/com.acme-corp.fleetkit.mobileconfig");
    let content = dir.path().join("content.xml");
    let r = Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-purpose", "any", "-in"])
        .arg(&profile)
        .arg("-CAfile")
        .arg(&ca)
        .arg("-out")
        .arg(&content)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let xml = std::fs::read_to_string(&content).unwrap();
    assert!(
        xml.contains("<key>PayloadScope</key>") && xml.contains("com.apple.security.root"),
        "{xml}"
    );
    // With one byte changed, openssl refuses it.
    let mut bytes = std::fs::read(&profile).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(dir.path().join("bad.mobileconfig"), bytes).unwrap();
    let bad = Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-purpose",
            "any",
            "-in",
            "bad.mobileconfig",
            "-out",
            "/dev/null",
            "-CAfile",
        ])
        .arg(&ca)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn a_bad_identity_is_refused_with_a_reason() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (identity, _) = identity(dir.path());
    // Key of one certificate, certificate of another.
    let mut mixed = std::fs::read_to_string(dir.path().join("ca.key")).unwrap();
    mixed.push_str(&std::fs::read_to_string(dir.path().join("leaf.pem")).unwrap());
    std::fs::write(dir.path().join("mixed.pem"), mixed).unwrap();
    std::fs::write(
        dir.path().join("arm"),
        executables::executable("darwin-arm64", 0),
    )
    .unwrap();
    for (file, reason) in [
        ("mixed.pem", "does not match"),
        ("leaf.pem", "PRIVATE KEY"),
        ("leaf.key", "CERTIFICATE"),
    ] {
        let r = org
            .build_command(
                &dir.path().join("out"),
                &["--target", "pkg"],
                &[("darwin-arm64", &dir.path().join("arm"))],
            )
            .arg("--installer-identity")
            .arg(dir.path().join(file))
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(1), "{file}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(reason), "{file}: {err}");
    }
    let _ = identity;
}

#[test]
fn a_pkcs12_identity_signs_the_same_way() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = identity(dir.path());
    tool(
        Command::new("openssl")
            .args([
                "pkcs12",
                "-export",
                "-inkey",
                "leaf.key",
                "-in",
                "leaf.pem",
                "-certfile",
                "ca.pem",
                "-out",
                "id.p12",
                "-passout",
                "pass:s3cret $`\"'",
            ])
            .current_dir(dir.path()),
    );
    std::fs::write(
        dir.path().join("arm"),
        executables::executable("darwin-arm64", 0),
    )
    .unwrap();
    let build = |identity: &Path, password: &str, out: &str| {
        org.build_command(
            &dir.path().join(out),
            &["--target", "pkg"],
            &[("darwin-arm64", &dir.path().join("arm"))],
        )
        .arg("--installer-identity")
        .arg(identity)
        .env("FLEETKIT_INSTALLER_IDENTITY_PASSWORD", password)
        .output()
        .unwrap()
    };
    let r = build(&dir.path().join("id.p12"), "s3cret $`\"'", "p12");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = build(&pem, "", "pem");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // The same key and chain: the same signed bytes.
    let name = "macos/acme-corp-fleetkit-1.pkg";
    assert_eq!(
        std::fs::read(dir.path().join("p12").join(name)).unwrap(),
        std::fs::read(dir.path().join("pem").join(name)).unwrap()
    );
    let r = build(&dir.path().join("id.p12"), "wrong", "bad");
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("FLEETKIT_INSTALLER_IDENTITY_PASSWORD"));
    assert!(!dir.path().join("bad").exists());
}

/// Issue 11: the Jamf policy script passed `--environment "$6"`, so a parameter
/// starting with `-` was parsed by the agent as an option (`-x` an unknown flag,
/// `--force` a real one, `--token=evil` a token) and registration broke. Run the
/// generated script with sh and bash and the real agent (under a root prefix,
/// registering with a real server): every value arrives as that flag's value, in the
/// manifest and in the server's inventory.
#[test]
fn jamf_parameters_starting_with_a_dash_stay_values() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (pkg, _, _) = build_pkg(&org, dir.path());
    let script = std::fs::read_to_string(pkg.with_file_name("jamf-register.sh")).unwrap();
    // Point the script at the agent under test instead of /usr/local/bin.
    let installed = "bin=\"/usr/local/bin/fleetkit\"";
    assert!(
        script.contains(installed),
        "the script no longer sets {installed}:\n{script}"
    );
    let script_path = dir.path().join("jamf-register.sh");
    std::fs::write(
        &script_path,
        script.replace(installed, &format!("bin='{BIN}'")),
    )
    .unwrap();

    let server = Server::start(&org, Db::Sqlite);
    for (i, shell) in ["sh", "bash"].iter().enumerate() {
        let (team, department, environment) = ("-x", "--force", "--token=evil");
        let token = create_token(&server, &org, team, 1, 3600).token;
        let device = support::agent::DeviceRoot::install(
            &org,
            dir.path(),
            &format!("mac-{shell}"),
            &server.url(),
            "",
        );
        // Jamf passes: mount point, computer name, user, then parameters 4–7.
        let run = Command::new(shell)
            .arg(&script_path)
            .args(["/", "mac", "alice", team, department, environment, &token])
            .env("FLEETKIT_AGENT_ROOT", &device.root)
            .env_remove("FLEETKIT_ENROLL_TOKEN")
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{shell}: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let m = device.manifest();
        assert_eq!(m["enrollment"], "registered", "{shell}: {m}");
        assert_eq!(m["team"], team, "{shell}");
        assert_eq!(m["department"], department, "{shell}");
        assert_eq!(m["environment"], environment, "{shell}");
        let listed = inventory(&server, &org);
        assert_eq!(listed.len(), i + 1);
        let id = m["machine_id"].as_str().unwrap();
        let row = listed.iter().find(|r| r.machine_id == id).unwrap();
        assert_eq!(row.team, team);
        assert_eq!(row.department.as_deref(), Some(department));
        assert_eq!(row.environment.as_deref(), Some(environment));
    }
}

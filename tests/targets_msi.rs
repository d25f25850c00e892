//! The `.msi` target, read by msitools (msiinfo, msiextract) and signed and
//! verified by osslsigncode.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const TEAM: &str = "Plat\"form 'ü' $x `y`";

fn build_msi(org: &Org, dir: &Path, out: &str, team: &str) -> PathBuf {
    let agent = dir.join("fleetkit.exe");
    std::fs::write(&agent, executables::executable("windows-x86_64", 0)).unwrap();
    org.build(
        &dir.join(out),
        &["--target", "msi", "--team", team],
        &[("windows-x86_64", &agent)],
    );
    dir.join(out)
        .join("windows/acme-corp-fleetkit-1.0.1-x64.msi")
}

/// `msiinfo export` of one table, as rows of tab-separated fields (after the three
/// header lines).
fn export(msi: &Path, table: &str) -> Vec<Vec<String>> {
    let out = tool(Command::new("msiinfo").arg("export").arg(msi).arg(table));
    out.lines()
        .skip(3)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Python unpacks the zips, reads Detection.xml, checks the HMAC and the digest;
/// openssl decrypts. Writes the MSI to argv[2]; prints ProductCode, UpgradeCode
/// and ProductVersion from the MsiInfo block.
const UNWRAP: &str = r#"
import base64, hashlib, hmac, io, subprocess, sys, zipfile
import xml.etree.ElementTree as ET
outer = zipfile.ZipFile(sys.argv[1])
names = sorted(outer.namelist())
assert names == ['IntuneWinPackage/Contents/IntunePackage.intunewin', 'IntuneWinPackage/Metadata/Detection.xml'], names
info = ET.fromstring(outer.read('IntuneWinPackage/Metadata/Detection.xml'))
enc = info.find('EncryptionInfo')
key = base64.b64decode(enc.find('EncryptionKey').text)
mac_key = base64.b64decode(enc.find('MacKey').text)
iv = base64.b64decode(enc.find('InitializationVector').text)
mac = base64.b64decode(enc.find('Mac').text)
blob = outer.read('IntuneWinPackage/Contents/IntunePackage.intunewin')
assert blob[:32] == mac, 'stored MAC differs from Detection.xml'
assert blob[32:48] == iv, 'stored IV differs from Detection.xml'
assert hmac.new(mac_key, blob[32:], hashlib.sha256).digest() == mac, 'HMAC does not verify'
plain = subprocess.run(['openssl', 'enc', '-d', '-aes-256-cbc', '-K', key.hex(), '-iv', iv.hex()],
                       input=blob[48:], capture_output=True, check=True).stdout
assert hashlib.sha256(plain).digest() == base64.b64decode(enc.find('FileDigest').text), 'digest'
assert int(info.find('UnencryptedContentSize').text) == len(plain)
inner = zipfile.ZipFile(io.BytesIO(plain))
setup = info.find('SetupFile').text
open(sys.argv[2], 'wb').write(inner.read(setup))
msi = info.find('MsiInfo')
print(msi.find('MsiProductCode').text, msi.find('MsiUpgradeCode').text, msi.find('MsiProductVersion').text)
"#;

fn unwrap_intunewin(wrapped: &Path, out: &Path) -> String {
    tool(
        Command::new("python3")
            .args(["-c", UNWRAP])
            .arg(wrapped)
            .arg(out),
    )
}

#[test]
fn msitools_read_the_summary_tables_and_files() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let msi = build_msi(&org, dir.path(), "a", TEAM);

    let summary = tool(Command::new("msiinfo").arg("suminfo").arg(&msi));
    for expected in [
        "Template: x64;1033",
        "Version: 500",
        "Source: 2",
        "Subject: acme-corp fleetkit",
    ] {
        assert!(summary.contains(expected), "{expected} not in:\n{summary}");
    }
    let tables = tool(Command::new("msiinfo").arg("tables").arg(&msi));
    for t in [
        "Property",
        "Directory",
        "Component",
        "Feature",
        "File",
        "Media",
        "Registry",
        "CustomAction",
        "InstallExecuteSequence",
        "Upgrade",
        "MsiLockPermissionsEx",
    ] {
        assert!(tables.lines().any(|l| l == t), "{t} missing:\n{tables}");
    }
    let property = |name: &str| {
        export(&msi, "Property")
            .into_iter()
            .find(|r| r[0] == name)
            .map(|r| r[1].clone())
            .unwrap_or_else(|| panic!("no property {name}"))
    };
    assert_eq!(property("ALLUSERS"), "1");
    assert_eq!(
        property("FLEETKIT_TEAM"),
        TEAM,
        "a value with quotes and non-ASCII survives"
    );
    assert!(property("SecureCustomProperties").contains("FLEETKIT_ENROLL_TOKEN"));
    assert_eq!(property("MsiHiddenProperties"), "FLEETKIT_ENROLL_TOKEN");
    let upgrade_code = property("UpgradeCode");
    let product_code = property("ProductCode");
    assert!(upgrade_code.starts_with('{') && upgrade_code.len() == 38);

    let files = export(&msi, "File");
    assert_eq!(files.len(), 4);
    let media = export(&msi, "Media");
    assert_eq!(media[0][3], "#fleetkit.cab");
    let registry = export(&msi, "Registry");
    assert!(
        registry
            .iter()
            .any(|r| r[2] == "SOFTWARE\\fleetkit" && r[3] == "Version"),
        "{registry:?}"
    );
    // The enrollment values go through the registry, never a command line: every
    // value is written behind the prefix that keeps it a string.
    for (name, property) in [
        ("Team", "FLEETKIT_TEAM"),
        ("Department", "FLEETKIT_DEPARTMENT"),
        ("Environment", "FLEETKIT_ENVIRONMENT"),
        ("Token", "FLEETKIT_ENROLL_TOKEN"),
    ] {
        assert!(
            registry
                .iter()
                .any(|r| r[2] == "SOFTWARE\\fleetkit\\Enrollment"
                    && r[3] == name
                    && r[4] == format!("v=[{property}]")),
            "{name}: {registry:?}"
        );
    }
    let locks = export(&msi, "MsiLockPermissionsEx");
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0][2], "Registry");
    assert_eq!(locks[0][3], "D:PAI(A;;KA;;;SY)(A;;KA;;;BA)");
    assert!(registry.iter().any(|r| r[0] == locks[0][1]));
    let actions = export(&msi, "CustomAction");
    let register = actions.iter().find(|r| r[0] == "FleetkitRegister").unwrap();
    assert_eq!(register[3], "\"[INSTALLDIR]fleetkit.exe\" agent register");
    assert!(
        actions.iter().all(|r| !r[3].contains("[FLEETKIT_")),
        "no property in a command line: {actions:?}"
    );
    let sequence = export(&msi, "InstallExecuteSequence");
    let at = |a: &str| {
        sequence
            .iter()
            .find(|r| r[0] == a)
            .map(|r| r[2].parse::<i32>().unwrap())
    };
    assert!(at("RemoveExistingProducts") < at("InstallInitialize"));
    assert!(at("InstallFiles") < at("FleetkitRegister"));
    assert!(at("FleetkitRegister") < at("InstallFinalize"));
    // Claude Code's managed settings: written once the agent is in place, removed
    // while it still is (not by the uninstall inside a major upgrade).
    let command = |name: &str| actions.iter().find(|r| r[0] == name).unwrap()[3].clone();
    assert_eq!(
        command("FleetkitClaudeSettings"),
        "\"[INSTALLDIR]fleetkit.exe\" agent claude-settings"
    );
    assert_eq!(
        command("FleetkitRemoveClaudeSettings"),
        "\"[INSTALLDIR]fleetkit.exe\" agent claude-settings --remove"
    );
    assert!(at("InstallFiles") < at("FleetkitClaudeSettings"));
    assert!(at("FleetkitClaudeSettings") < at("InstallFinalize"));
    assert!(at("InstallInitialize") < at("FleetkitRemoveClaudeSettings"));
    assert!(at("FleetkitRemoveClaudeSettings") < at("RemoveFiles"));
    let condition = |a: &str| sequence.iter().find(|r| r[0] == a).unwrap()[1].clone();
    assert_eq!(
        condition("FleetkitRemoveClaudeSettings"),
        "REMOVE=\"ALL\" AND NOT UPGRADINGPRODUCTCODE"
    );
    let upgrade = export(&msi, "Upgrade");
    assert_eq!(upgrade[0][0], upgrade_code);

    // msiextract gives back exactly the payload.
    let x = dir.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    tool(Command::new("msiextract").arg("-C").arg(&x).arg(&msi));
    let mut names: Vec<String> = std::fs::read_dir(x.join("fleetkit"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["agent.yaml", "anchors.json", "bundle.json", "fleetkit.exe"]
    );
    assert_eq!(
        std::fs::read(x.join("fleetkit/bundle.json")).unwrap(),
        std::fs::read(org.path().join("bundles/policy-v1.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(x.join("fleetkit/fleetkit.exe")).unwrap(),
        executables::executable("windows-x86_64", 0)
    );
    let settings = std::fs::read_to_string(x.join("fleetkit/agent.yaml")).unwrap();
    let parsed = fleetkit::agent::settings::AgentSettings::parse(&settings).unwrap();
    assert_eq!(parsed.assignment.team.as_deref(), Some(TEAM));

    // The same inputs give the same bytes; a new version keeps the UpgradeCode and
    // gets a new ProductCode.
    let again = build_msi(&org, dir.path(), "b", TEAM);
    assert_eq!(std::fs::read(&msi).unwrap(), std::fs::read(&again).unwrap());
    fleetkit(&["--workspace", &org.ws(), "policy", "sign"]);
    let agent = dir.path().join("fleetkit.exe");
    org.build(
        &dir.path().join("v2"),
        &["--target", "msi"],
        &[("windows-x86_64", &agent)],
    );
    let v2 = dir
        .path()
        .join("v2/windows/acme-corp-fleetkit-1.0.2-x64.msi");
    let v2_props = export(&v2, "Property");
    let get = |name: &str| v2_props.iter().find(|r| r[0] == name).unwrap()[1].clone();
    assert_eq!(get("UpgradeCode"), upgrade_code);
    assert_ne!(get("ProductCode"), product_code);
}

#[test]
fn osslsigncode_signs_the_msi_and_verifies_the_signed_file() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let msi = build_msi(&org, dir.path(), "a", "platform");
    // Compound file version 3: 512-byte sectors.
    let bytes = std::fs::read(&msi).unwrap();
    assert_eq!(
        &bytes[..8],
        &[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]
    );
    assert_eq!(u16::from_le_bytes([bytes[0x1a], bytes[0x1b]]), 3);

    let run = |args: &[&str]| tool(Command::new("openssl").args(args).current_dir(dir.path()));
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=Test Code Signing Root",
        "-days",
        "30",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "cs.key",
        "-out",
        "cs.csr",
        "-subj",
        "/CN=Acme Corp",
    ]);
    std::fs::write(dir.path().join("ext.cnf"), "extendedKeyUsage=codeSigning\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "cs.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cs.pem",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        "ext.cnf",
    ]);
    let signed = dir.path().join("signed.msi");
    tool(
        Command::new("osslsigncode")
            .args([
                "sign", "-certs", "cs.pem", "-key", "cs.key", "-h", "sha256", "-n", "fleetkit",
                "-in",
            ])
            .arg(&msi)
            .arg("-out")
            .arg(&signed)
            .current_dir(dir.path()),
    );
    let verified = Command::new("osslsigncode")
        .args(["verify", "-CAfile", "ca.pem", "-in"])
        .arg(&signed)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verified.stdout).into_owned()
        + &String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{text}");
    assert!(text.contains("Signature verification: ok"), "{text}");
    // The signed MSI is still a database msiinfo reads.
    tool(Command::new("msiinfo").arg("tables").arg(&signed));

    // Wrapped after signing: the .intunewin holds the signed MSI, with its codes.
    let printed = fleetkit(&["intunewin", &signed.display().to_string()]);
    let wrapped = dir.path().join("signed.intunewin");
    assert!(printed.contains("signed.intunewin"), "{printed}");
    let back = dir.path().join("back.msi");
    let codes = unwrap_intunewin(&wrapped, &back);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&signed).unwrap()
    );
    let props = export(&msi, "Property");
    let get = |name: &str| props.iter().find(|r| r[0] == name).unwrap()[1].clone();
    assert_eq!(
        codes.split_whitespace().collect::<Vec<_>>(),
        [
            get("ProductCode"),
            get("UpgradeCode"),
            get("ProductVersion")
        ]
    );

    // Something that is not an MSI is refused, naming the file; nothing is written.
    let fake = dir.path().join("fake.msi");
    std::fs::write(&fake, b"not a compound file").unwrap();
    let r = Command::new(BIN)
        .arg("intunewin")
        .arg(&fake)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(r.status.code(), Some(1), "{said}");
    assert!(
        said.contains("fake.msi") && said.contains("not a Windows Installer package"),
        "{said}"
    );
    assert!(!dir.path().join("fake.intunewin").exists());
}

#[test]
fn the_intunewin_decrypts_with_its_detection_xml_back_to_the_msi() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("fleetkit.exe");
    std::fs::write(&agent, executables::executable("windows-x86_64", 0)).unwrap();
    org.build(
        &dir.path().join("out"),
        &["--target", "msi", "--target", "intunewin"],
        &[("windows-x86_64", &agent)],
    );
    let msi = dir
        .path()
        .join("out/windows/acme-corp-fleetkit-1.0.1-x64.msi");
    let wrapped = dir
        .path()
        .join("out/windows/acme-corp-fleetkit-1.0.1-x64.intunewin");
    let out = dir.path().join("decrypted.msi");
    let printed = unwrap_intunewin(&wrapped, &out);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&msi).unwrap(),
        "decrypts to the MSI"
    );
    let codes: Vec<&str> = printed.split_whitespace().collect();
    let props = export(&msi, "Property");
    let get = |name: &str| props.iter().find(|r| r[0] == name).unwrap()[1].clone();
    assert_eq!(
        codes,
        [
            get("ProductCode"),
            get("UpgradeCode"),
            get("ProductVersion")
        ]
    );
    // A flipped ciphertext byte no longer passes the HMAC.
    let mut bytes = std::fs::read(&wrapped).unwrap();
    let at = bytes.windows(4).position(|w| w == b"PK\x03\x04").unwrap() + 200;
    bytes[at] ^= 0x01;
    std::fs::write(dir.path().join("bad.intunewin"), bytes).unwrap();
    let bad = Command::new("python3")
        .args(["-c", UNWRAP])
        .arg(dir.path().join("bad.intunewin"))
        .arg(dir.path().join("bad.msi"))
        .output()
        .unwrap();
    assert!(!bad.status.success(), "a changed package still verified");
}

#[test]
fn an_arm64_agent_gets_its_own_arm64_msi_and_intunewin() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let x64 = dir.path().join("fleetkit-x64.exe");
    let arm64 = dir.path().join("fleetkit-arm64.exe");
    std::fs::write(&x64, executables::executable("windows-x86_64", 0)).unwrap();
    std::fs::write(&arm64, executables::executable("windows-arm64", 0)).unwrap();
    org.build(
        &dir.path().join("out"),
        &["--target", "msi", "--target", "intunewin"],
        &[("windows-x86_64", &x64), ("windows-arm64", &arm64)],
    );
    let out = dir.path().join("out/windows");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "acme-corp-fleetkit-1.0.1-arm64.intunewin",
            "acme-corp-fleetkit-1.0.1-arm64.msi",
            "acme-corp-fleetkit-1.0.1-x64.intunewin",
            "acme-corp-fleetkit-1.0.1-x64.msi",
        ]
    );
    let msi = |arch: &str| out.join(format!("acme-corp-fleetkit-1.0.1-{arch}.msi"));
    let summary = tool(Command::new("msiinfo").arg("suminfo").arg(msi("arm64")));
    assert!(summary.contains("Template: Arm64;1033"), "{summary}");
    let props = |arch: &str| export(&msi(arch), "Property");
    let get =
        |rows: &[Vec<String>], name: &str| rows.iter().find(|r| r[0] == name).unwrap()[1].clone();
    let (a, b) = (props("x64"), props("arm64"));
    assert_eq!(get(&a, "UpgradeCode"), get(&b, "UpgradeCode"));
    assert_ne!(get(&a, "ProductCode"), get(&b, "ProductCode"));
    let components = |arch: &str| -> Vec<String> {
        export(&msi(arch), "Component")
            .into_iter()
            .map(|r| r[1].clone())
            .collect()
    };
    let (ca, cb) = (components("x64"), components("arm64"));
    assert!(ca.iter().all(|g| !cb.contains(g)), "component GUIDs shared");
    let x = dir.path().join("x");
    tool(
        Command::new("msiextract")
            .arg("-C")
            .arg(&x)
            .arg(msi("arm64")),
    );
    assert_eq!(
        std::fs::read(x.join("fleetkit/fleetkit.exe")).unwrap(),
        executables::executable("windows-arm64", 0)
    );
}

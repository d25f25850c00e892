//! The `.mobileconfig` target, read by Python's plistlib and validated against
//! Apple's own payload schema (the device-management YAML in
//! tests/fixtures/apple-device-management, copied from Apple's repository with its
//! licence): every key known, required keys present, types right.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// The profile as JSON, as plistlib reads it (data as {"$data": base64}).
fn read_plist(file: &Path) -> Value {
    let script = "import base64, json, plistlib, sys\n\
        def conv(v):\n\
        \x20   if isinstance(v, bytes): return {'$data': base64.b64encode(v).decode()}\n\
        \x20   if isinstance(v, dict): return {k: conv(x) for k, x in v.items()}\n\
        \x20   if isinstance(v, list): return [conv(x) for x in v]\n\
        \x20   return v\n\
        print(json.dumps(conv(plistlib.load(open(sys.argv[1], 'rb')))))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Apple's schema files, by payload type.
fn schemas() -> BTreeMap<String, Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apple-device-management");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let v: Value =
                serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let kind = v["payload"]["payloadtype"].as_str().unwrap().to_string();
            out.insert(kind, v);
        }
    }
    out
}

fn type_ok(schema_type: &str, v: &Value) -> bool {
    match schema_type {
        "<string>" => v.is_string(),
        "<integer>" => v.is_i64() || v.is_u64(),
        "<boolean>" => v.is_boolean(),
        "<data>" => v.get("$data").is_some(),
        "<array>" => v.is_array(),
        "<dictionary>" => v.is_object() && v.get("$data").is_none(),
        "<real>" => v.is_number(),
        "<any>" => true,
        other => panic!("schema type {other} unknown to this validator"),
    }
}

/// Checks `value` (a dictionary) against schema `keys`; records every problem.
fn check_dict(path: &str, value: &Value, keys: &[Value], problems: &mut Vec<String>) {
    let Some(obj) = value.as_object() else {
        problems.push(format!("{path}: not a dictionary"));
        return;
    };
    let any = keys.iter().find(|k| k["key"] == "ANY");
    for k in keys {
        let name = k["key"].as_str().unwrap();
        if name != "ANY" && k["presence"] == "required" && !obj.contains_key(name) {
            problems.push(format!("{path}: required key {name} is missing"));
        }
    }
    for (name, v) in obj {
        let spec = keys.iter().find(|k| k["key"] == name.as_str()).or(any);
        let Some(spec) = spec else {
            problems.push(format!("{path}: key {name} is not in Apple's schema"));
            continue;
        };
        check_value(&format!("{path}.{name}"), v, spec, problems);
    }
}

fn check_value(path: &str, v: &Value, spec: &Value, problems: &mut Vec<String>) {
    let t = spec["type"].as_str().unwrap();
    if !type_ok(t, v) {
        problems.push(format!("{path}: expected {t}, found {v}"));
        return;
    }
    if let Some(range) = spec.get("rangelist").and_then(Value::as_array)
        && !range.contains(v)
    {
        problems.push(format!("{path}: {v} is not one of {range:?}"));
    }
    let Some(sub) = spec.get("subkeys").and_then(Value::as_array) else {
        return;
    };
    match t {
        "<dictionary>" => check_dict(path, v, sub, problems),
        "<array>" => {
            for (i, item) in v.as_array().unwrap().iter().enumerate() {
                check_value(&format!("{path}[{i}]"), item, &sub[0], problems);
            }
        }
        _ => {}
    }
}

fn validate(profile: &Value) -> Vec<String> {
    let schemas = schemas();
    let mut problems = Vec::new();
    let top = schemas["TopLevel"]["payloadkeys"].as_array().unwrap();
    // The top level: its own keys; PayloadContent items are checked per type below.
    let mut shallow = profile.clone();
    shallow["PayloadContent"] = Value::Array(vec![]);
    check_dict("profile", &shallow, top, &mut problems);
    let common = schemas["CommonPayloadKeys"]["payloadkeys"]
        .as_array()
        .unwrap();
    for (i, item) in profile["PayloadContent"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let kind = item["PayloadType"].as_str().unwrap_or_default();
        let Some(schema) = schemas.get(kind) else {
            problems.push(format!("payload {i}: type {kind} has no schema"));
            continue;
        };
        let mut keys: Vec<Value> = common.clone();
        keys.extend(schema["payloadkeys"].as_array().unwrap().iter().cloned());
        let macos = &schema["payload"]["supportedOS"]["macOS"];
        if macos.is_null() || macos.get("devicechannel") == Some(&Value::Bool(false)) {
            problems.push(format!(
                "payload {i}: {kind} is not for the macOS device channel"
            ));
        }
        check_dict(&format!("payload[{i}] {kind}"), item, &keys, &mut problems);
    }
    problems
}

const PROFILE: &str = "macos/com.acme-corp.fleetkit.mobileconfig";

/// A challenge as `fleetkit token create --scep` would print it, in a file with
/// the trailing newline `echo` leaves.
const CHALLENGE: &str = "scep-challenge-7f3a9c41d2e8b605";

fn challenge_file(dir: &Path) -> PathBuf {
    let path = dir.join("challenge.txt");
    std::fs::write(&path, format!("{CHALLENGE}\n")).unwrap();
    path
}

/// `fleetkit build --target mobileconfig --team platform EXTRA…` into `out`, which
/// must succeed; returns what it said on stderr.
fn build_profile_with(org: &Org, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--target", "mobileconfig", "--team", "platform"];
    args.extend_from_slice(extra);
    let r = org
        .build_command(out, &args, &[])
        .env_remove("FLEETKIT_SCEP_CHALLENGE_FILE")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    String::from_utf8(r.stderr).unwrap()
}

/// The profile built without a SCEP challenge.
fn build_profile(org: &Org, out: &Path) -> Value {
    build_profile_with(org, out, &[]);
    read_plist(&out.join(PROFILE))
}

/// The profile built with [`CHALLENGE`].
fn build_scep_profile(org: &Org, out: &Path) -> Value {
    let file = challenge_file(out.parent().unwrap());
    build_profile_with(org, out, &["--scep-challenge-file", file.to_str().unwrap()]);
    read_plist(&out.join(PROFILE))
}

fn payload_types(profile: &Value) -> Vec<&str> {
    profile["PayloadContent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["PayloadType"].as_str().unwrap())
        .collect()
}

fn payload_of<'a>(profile: &'a Value, kind: &str) -> &'a Value {
    profile["PayloadContent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["PayloadType"] == kind)
        .unwrap_or_else(|| panic!("no {kind} payload"))
}

fn set_macos_method(org: &Org, method: &str) {
    let config = org.path().join("fleetkit.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("macos_method: scep"), "{text}");
    std::fs::write(
        &config,
        text.replace("macos_method: scep", &format!("macos_method: {method}")),
    )
    .unwrap();
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The SHA-1 fingerprint of a PEM certificate, as openssl computes it.
fn openssl_sha1(cert: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    // `SHA1 Fingerprint=AB:CD:…`
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().split('=').nth(1).unwrap();
    hex.split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn data(v: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v["$data"].as_str().unwrap())
        .unwrap()
}

#[test]
fn the_scep_profile_validates_against_apples_schema_and_pins_the_issuing_ca() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let profile = build_scep_profile(&org, &dir.path().join("a"));
    let problems = validate(&profile);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(profile["PayloadScope"], "System");
    assert_eq!(
        payload_types(&profile),
        [
            "com.apple.security.root",
            "com.apple.security.scep",
            "com.apple.ManagedClient.preferences"
        ]
    );
    // Every identifier under the org's prefix; UUIDs distinct.
    let mut uuids = vec![profile["PayloadUUID"].as_str().unwrap().to_string()];
    for p in profile["PayloadContent"].as_array().unwrap() {
        assert!(
            p["PayloadIdentifier"]
                .as_str()
                .unwrap()
                .starts_with("com.acme-corp.fleetkit.")
        );
        uuids.push(p["PayloadUUID"].as_str().unwrap().to_string());
    }
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 4);
    // The root payload is the org root CA's DER.
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(org.path().join("keys/root-ca.pem"))
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        data(&payload_of(&profile, "com.apple.security.root")["PayloadContent"]),
        der
    );
    // The agent's managed preferences.
    let prefs = &payload_of(&profile, "com.apple.ManagedClient.preferences")["PayloadContent"]["com.acme-corp.fleetkit"]
        ["Forced"][0]["mcx_preference_settings"];
    assert_eq!(prefs["Team"], "platform");
    assert_eq!(prefs["Org"], "acme-corp");

    // The SCEP payload: the server's /scep, the challenge given, an RSA 2048 key
    // for signing and encryption that cannot be exported, the issuing CA pinned by
    // its SHA-1 (computed here by openssl, not by fleetkit); no retry settings.
    let scep = &payload_of(&profile, "com.apple.security.scep")["PayloadContent"];
    let mut keys: Vec<&str> = scep
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "CAFingerprint",
            "Challenge",
            "Key Type",
            "Key Usage",
            "KeyIsExtractable",
            "Keysize",
            "Name",
            "Subject",
            "URL",
        ]
    );
    assert_eq!(
        scep["URL"],
        format!("{}/scep", prefs["ServerURL"].as_str().unwrap())
    );
    assert_eq!(scep["Name"], "acme-corp");
    assert_eq!(scep["Challenge"], CHALLENGE);
    assert_eq!(scep["Keysize"], 2048);
    assert_eq!(scep["Key Type"], "RSA");
    assert_eq!(scep["Key Usage"], 5);
    assert_eq!(scep["KeyIsExtractable"], false);
    assert_eq!(
        scep["Subject"],
        serde_json::json!([[["O", "acme-corp"]], [["CN", "$SERIALNUMBER"]]])
    );
    let pinned = data(&scep["CAFingerprint"]);
    assert_eq!(pinned.len(), 20);
    assert_eq!(
        pinned,
        openssl_sha1(&org.path().join("keys/issuing-ca.pem"))
    );
    assert_ne!(pinned, openssl_sha1(&org.path().join("keys/root-ca.pem")));
    assert!(
        profile["PayloadDescription"]
            .as_str()
            .unwrap()
            .contains("enrolls this Mac's machine certificate")
    );
    // It holds the challenge: readable by its owner only. The extension attribute
    // is no secret.
    assert_eq!(mode(&dir.path().join("a").join(PROFILE)), 0o600);
    assert_eq!(
        mode(&dir.path().join("a/macos/jamf-extension-attribute.sh")),
        0o755
    );

    // Rebuilt: byte-identical (stable UUIDs).
    build_scep_profile(&org, &dir.path().join("b"));
    assert_eq!(
        std::fs::read(dir.path().join("a").join(PROFILE)).unwrap(),
        std::fs::read(dir.path().join("b").join(PROFILE)).unwrap()
    );
}

#[test]
fn without_a_challenge_the_profile_has_no_certificate_payload_and_the_build_says_how_to_add_one() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    let said = build_profile_with(&org, &out, &[]);
    let profile = read_plist(&out.join(PROFILE));
    let problems = validate(&profile);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        payload_types(&profile),
        [
            "com.apple.security.root",
            "com.apple.ManagedClient.preferences"
        ]
    );
    assert!(
        !profile["PayloadDescription"]
            .as_str()
            .unwrap()
            .contains("machine certificate")
    );
    assert!(
        said.contains("note: the profile has no machine-certificate payload")
            && said.contains("fleetkit token create --scep --team TEAM --uses N > FILE")
            && said.contains("fleetkit build --target mobileconfig --scep-challenge-file FILE"),
        "{said}"
    );
    assert_eq!(mode(&out.join(PROFILE)), 0o644);
}

#[test]
fn macos_method_none_leaves_the_certificate_to_the_orgs_own_pki() {
    let org = Org::new();
    set_macos_method(&org, "none");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    let file = challenge_file(dir.path());
    let said = build_profile_with(
        &org,
        &out,
        &["--scep-challenge-file", file.to_str().unwrap()],
    );
    let profile = read_plist(&out.join(PROFILE));
    assert!(validate(&profile).is_empty());
    assert_eq!(
        payload_types(&profile),
        [
            "com.apple.security.root",
            "com.apple.ManagedClient.preferences"
        ]
    );
    // Deliberate: no advice to add a payload, but the unused challenge is named.
    assert!(!said.contains("no machine-certificate payload"), "{said}");
    assert!(
        said.contains(
            "the SCEP challenge is not used: fleetkit.yaml's enrollment.macos_method is `none`"
        ),
        "{said}"
    );
    assert!(
        !std::fs::read_to_string(out.join(PROFILE))
            .unwrap()
            .contains(CHALLENGE)
    );
}

#[test]
fn macos_method_acme_fails_a_build_with_the_profile_before_anything_is_built() {
    let org = Org::new();
    set_macos_method(&org, "acme");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    let r = org
        .build_command(
            &out,
            &["--target", "ansible", "--target", "mobileconfig"],
            &[],
        )
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(
            "fleetkit.yaml: enrollment.macos_method: `acme` cannot be built: the fleetkit server does not offer ACME yet"
        ) && err.contains("set `macos_method: scep` under `enrollment:` in fleetkit.yaml"),
        "{err}"
    );
    assert!(!err.contains("built ansible"), "{err}");
    assert!(!out.exists());
    // Targets without a profile do not care.
    let r = org
        .build_command(&out, &["--target", "ansible"], &[])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn the_scep_challenge_is_never_printed_nor_written_outside_the_profile() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    let file = challenge_file(dir.path());
    // From the environment variable, as a CI job would give it.
    let r = org
        .build_command(&out, &["--target", "mobileconfig"], &[])
        .env("FLEETKIT_SCEP_CHALLENGE_FILE", &file)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(!said.contains(CHALLENGE), "{said}");
    assert!(
        said.contains("the profile carries the SCEP challenge"),
        "{said}"
    );
    let profile = read_plist(&out.join(PROFILE));
    assert_eq!(
        payload_of(&profile, "com.apple.security.scep")["PayloadContent"]["Challenge"],
        CHALLENGE
    );
    // build.json, SHA256SUMS, the extension attribute: none holds it.
    let holders: Vec<String> = walk(&out)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(CHALLENGE.len())
                .any(|w| w == CHALLENGE.as_bytes())
        })
        .map(|p| p.strip_prefix(&out).unwrap().display().to_string())
        .collect();
    assert_eq!(holders, [PROFILE]);
    assert!(out.join("build.json").is_file() && out.join("SHA256SUMS").is_file());
}

#[test]
fn a_bad_challenge_file_is_refused_with_its_location_and_never_quoted() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    let long = "s".repeat(256);
    let cases: [(&str, &[u8], &str); 5] = [
        ("empty", b"\n", ": the SCEP challenge is empty"),
        (
            "bell",
            b"secret-xyz\x07\n",
            ":1:11: the SCEP challenge has a control character",
        ),
        (
            "two-lines",
            b"secret-xyz\nsecret-abc\n",
            ":2:1: the SCEP challenge file holds more than one line",
        ),
        (
            "long",
            long.as_bytes(),
            ": the SCEP challenge is 256 bytes; at most 255 are allowed",
        ),
        ("missing", b"", ""),
    ];
    for (name, bytes, message) in cases {
        let file = dir.path().join(name);
        if name != "missing" {
            std::fs::write(&file, bytes).unwrap();
        }
        let r = org
            .build_command(
                &out,
                &[
                    "--target",
                    "mobileconfig",
                    "--scep-challenge-file",
                    file.to_str().unwrap(),
                ],
                &[],
            )
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            err.contains(&format!(
                "--scep-challenge-file: {}{message}",
                file.display()
            )) || name == "missing" && err.contains(&format!("cannot read {}", file.display())),
            "{name}: {err}"
        );
        assert!(
            !err.contains("secret-") && !err.contains(&long),
            "{name}: {err}"
        );
        assert!(!out.exists(), "{name}");
    }
}

#[test]
fn the_validator_catches_what_apple_would_refuse() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let good = build_scep_profile(&org, &dir.path().join("dist"));
    assert!(validate(&good).is_empty());
    let mut bad = good.clone();
    bad["PayloadContent"][1]["PayloadContent"]["Keysize"] = 3000.into();
    bad["PayloadContent"][1]["PayloadContent"]["Colour"] = "blue".into();
    bad["PayloadContent"][0]
        .as_object_mut()
        .unwrap()
        .remove("PayloadContent");
    let problems = validate(&bad);
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

/// Runs the extension attribute with the Mac's paths under `root`.
fn run_ea(script: &Path, root: &Path) -> String {
    let out = Command::new("/bin/sh")
        .arg(script)
        .env("FLEETKIT_ROOT", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_jamf_extension_attribute_reports_the_manifest() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let token = create_token(&server, &org, "platform", 1, 3600).token;
    let dir = tempfile::tempdir().unwrap();
    build_profile(&org, &dir.path().join("dist"));
    let script = dir.path().join("dist/macos/jamf-extension-attribute.sh");
    let syntax = Command::new("sh").arg("-n").arg(&script).status().unwrap();
    assert!(syntax.success());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
        0o755
    );

    let mac = dir.path().join("mac");
    assert_eq!(run_ea(&script, &mac), "<result>not installed</result>\n");

    // A real agent's manifest, placed where the agent keeps it on macOS.
    let device = support::agent::DeviceRoot::install(&org, dir.path(), "device", &server.url(), "");
    let place = |d: &support::agent::DeviceRoot| {
        let target = mac.join("Library/Application Support/fleetkit/data");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(d.data("manifest.yaml"), target.join("manifest.yaml")).unwrap();
    };
    let pending = device.agent(&["register"], &[]);
    assert_eq!(pending.code, 1, "{pending:?}"); // no token
    place(&device);
    let machine = device.manifest()["machine_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        run_ea(&script, &mac),
        format!("<result>pending; machine={machine}; policy=v1; sync=none</result>\n")
    );
    assert_eq!(device.register(&token).code, 0);
    assert_eq!(device.agent(&["sync"], &[]).code, 0);
    place(&device);
    assert_eq!(
        run_ea(&script, &mac),
        format!("<result>registered; machine={machine}; policy=v1; sync=ok</result>\n")
    );
}

#[test]
fn the_agent_on_a_mac_reads_the_profiles_managed_preferences() {
    use fleetkit::agent::paths::{AgentPaths, Platform};
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    build_profile(&org, &dir.path().join("dist"));
    let profile = dir
        .path()
        .join("dist/macos/com.acme-corp.fleetkit.mobileconfig");
    // What macOS writes for the profile's managed preferences: the forced settings
    // of the domain, as a plist of its own.
    let root = dir.path().join("mac");
    let prefs_dir = root.join("Library/Managed Preferences");
    std::fs::create_dir_all(&prefs_dir).unwrap();
    let script = "import plistlib, sys\n\
        p = plistlib.load(open(sys.argv[1], 'rb'))\n\
        prefs = [x for x in p['PayloadContent'] if x['PayloadType'] == 'com.apple.ManagedClient.preferences']\n\
        d = prefs[0]['PayloadContent']['com.acme-corp.fleetkit']['Forced'][0]['mcx_preference_settings']\n\
        plistlib.dump(d, open(sys.argv[2], 'wb'), fmt=plistlib.FMT_BINARY)\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&profile)
        .arg(prefs_dir.join("com.acme-corp.fleetkit.plist"))
        .status()
        .unwrap();
    assert!(status.success());
    // agent.yaml as the pkg installs it, with other values than the profile's.
    let support = root.join("Library/Application Support/fleetkit");
    std::fs::create_dir_all(&support).unwrap();
    std::fs::copy(
        org.path().join("anchors.json"),
        support.join("anchors.json"),
    )
    .unwrap();
    std::fs::write(
        support.join("agent.yaml"),
        "org: acme-corp\nserver_url: https://old.example\nteam: old-team\nmanaged_preferences_domain: com.acme-corp.fleetkit\n",
    )
    .unwrap();
    let agent = fleetkit::agent::Agent::open_with(AgentPaths::new(&root, Platform::Macos)).unwrap();
    assert_eq!(agent.settings.server_url, "https://localhost:8443");
    assert_eq!(agent.settings.assignment.team.as_deref(), Some("platform"));

    // Managed preferences naming another org are refused, not half applied.
    let mut bad = plist::Dictionary::new();
    bad.insert("Org".into(), "globex".into());
    plist::Value::Dictionary(bad)
        .to_file_xml(prefs_dir.join("com.acme-corp.fleetkit.plist"))
        .unwrap();
    let err = fleetkit::agent::Agent::open_with(AgentPaths::new(&root, Platform::Macos))
        .err()
        .expect("another org's preferences must be refused");
    assert!(err.to_string().contains("globex"), "{err}");
}

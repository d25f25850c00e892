//! The `.mobileconfig` target, read by Python's plistlib and validated against
//! Apple's own payload schema (the device-management YAML in
//! tests/fixtures/apple-device-management, copied from Apple's repository with its
//! licence): every key known, required keys present, types right.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
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

fn build_profile(org: &Org, out: &Path) -> Value {
    org.build(
        out,
        &["--target", "mobileconfig", "--team", "platform"],
        &[],
    );
    read_plist(&out.join("macos/com.acme-corp.fleetkit.mobileconfig"))
}

#[test]
fn the_profile_validates_against_apples_schema_with_acme_and_with_scep() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let profile = build_profile(&org, &dir.path().join("a"));
    let problems = validate(&profile);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(profile["PayloadScope"], "System");
    let kinds: Vec<&str> = profile["PayloadContent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["PayloadType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "com.apple.security.root",
            "com.apple.security.acme",
            "com.apple.ManagedClient.preferences"
        ]
    );
    let acme = &profile["PayloadContent"][1];
    assert_eq!(acme["HardwareBound"], true);
    assert_eq!(acme["Attest"], true);
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
    use base64::Engine;
    let embedded = base64::engine::general_purpose::STANDARD
        .decode(
            profile["PayloadContent"][0]["PayloadContent"]["$data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(embedded, der);
    // The agent's managed preferences.
    let prefs = &profile["PayloadContent"][2]["PayloadContent"]["com.acme-corp.fleetkit"]["Forced"]
        [0]["mcx_preference_settings"];
    assert_eq!(prefs["Team"], "platform");
    assert_eq!(prefs["Org"], "acme-corp");

    // Rebuilt: byte-identical (stable UUIDs).
    build_profile(&org, &dir.path().join("b"));
    let name = "macos/com.acme-corp.fleetkit.mobileconfig";
    assert_eq!(
        std::fs::read(dir.path().join("a").join(name)).unwrap(),
        std::fs::read(dir.path().join("b").join(name)).unwrap()
    );

    // SCEP instead of ACME, as fleetkit.yaml says.
    let config = org.path().join("fleetkit.yaml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("macos_method: acme", "macos_method: scep");
    std::fs::write(&config, text).unwrap();
    let profile = build_profile(&org, &dir.path().join("c"));
    let problems = validate(&profile);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        profile["PayloadContent"][1]["PayloadType"],
        "com.apple.security.scep"
    );
}

#[test]
fn the_validator_catches_what_apple_would_refuse() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let good = build_profile(&org, dir.path());
    let mut bad = good.clone();
    bad["PayloadContent"][1]["HardwareBound"] = "yes".into();
    bad["PayloadContent"][1]["Colour"] = "blue".into();
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
        d = p['PayloadContent'][2]['PayloadContent']['com.acme-corp.fleetkit']['Forced'][0]['mcx_preference_settings']\n\
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

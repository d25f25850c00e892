//! Shared by the SCEP suites (tests/scep.rs, tests/scep_probes.rs): the macOS-shaped
//! client (tests/scep/macos_client.py) and the openssl checks of what it got.

use super::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn python() -> String {
    std::env::var("FLEETKIT_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

pub fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scep/macos_client.py")
}

/// The hex fingerprint (`-sha1`, `-sha256`) of a PEM certificate, upper case.
pub fn fingerprint(cert: &Path, digest: &str) -> String {
    let (ok, out) = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        digest,
    ]);
    assert!(ok, "{out}");
    out.trim().split_once('=').unwrap().1.replace(':', "")
}

/// The SHA-1 of the issuing CA certificate, as the profile's CAFingerprint.
pub fn issuing_sha1(org: &Org) -> String {
    fingerprint(&org.path().join("keys/issuing-ca.pem"), "-sha1")
}

/// Runs the macOS-shaped client; its JSON report.
pub fn mac(server: &Server, org: &Org, args: &[&str]) -> Value {
    let root = org.path().join("keys/root-ca.pem");
    let out = Command::new(python())
        .arg(client_script())
        .args(["--url", &format!("{}/scep", server.url())])
        .args(["--ca-file", root.to_str().unwrap()])
        .args(["--cafingerprint-sha1", &issuing_sha1(org)])
        .arg("--json")
        .args(args)
        .output()
        .expect("run the SCEP test client (python3 with cryptography and asn1crypto)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn status(v: &Value) -> (&str, Option<&str>) {
    (
        v["status"].as_str().unwrap_or_default(),
        v["fail_info_name"].as_str(),
    )
}

pub fn succeeded(v: &Value) -> bool {
    v["status"] == "SUCCESS"
}

/// `openssl verify` of a certificate up to the org root.
pub fn verify(org: &Org, cert: &Path) {
    let keys = org.path().join("keys");
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        keys.join("root-ca.pem").to_str().unwrap(),
        "-untrusted",
        keys.join("issuing-ca.pem").to_str().unwrap(),
        "-purpose",
        "sslclient",
        cert.to_str().unwrap(),
    ]);
    assert!(ok && out.contains(": OK"), "{out}");
}

pub fn token_uses(server: &Server, org: &Org, id: &str) -> u32 {
    server
        .admin(org)
        .list_tokens()
        .unwrap()
        .into_iter()
        .find(|t| t.id == id)
        .unwrap()
        .uses
}

pub fn tmp(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_string_lossy().into_owned()
}

/// A hex serial as the inventory and the client write it, compared loosely.
pub fn same_serial(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .trim_start_matches("serial=")
            .to_lowercase()
            .trim_start_matches('0')
            .to_string()
    };
    norm(a) == norm(b)
}

/// The subjectAltName extension of a PEM certificate, as openssl prints it.
pub fn san_text(cert: &Path) -> String {
    let (ok, out) = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(ok, "{out}");
    out
}

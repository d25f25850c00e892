//! Independent checks with the `openssl` command-line tool: our Ed25519 keys and
//! DSSE signatures, and our CA certificates, as OpenSSL sees them.
//!
//! These tests need the `openssl` binary (scripts/test.sh installs it). Without it
//! they fail with a message saying so: a skipped interop test proves nothing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fleetkit::anchors::{AnchorKey, TrustAnchors};
use fleetkit::bundle::dsse::{Envelope, Signature, pae};
use fleetkit::bundle::{
    BundlePayload, POLICY_PAYLOAD_TYPE, Verified, VerifyOptions, sign_bundle, verify_bundle,
};
use fleetkit::pki::{OrgCa, PolicyKey};
use std::path::Path;
use std::process::{Command, Output};
use time::Duration;
use time::macros::datetime;

/// Runs `openssl args…`, failing the test clearly if the binary is missing.
fn openssl(args: &[&str]) -> Output {
    match Command::new("openssl").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run `openssl` ({e}): these interop tests need the OpenSSL command-line \
             tool; install it (Debian: apt-get install openssl, or run scripts/test.sh)"
        ),
    }
}

/// Runs openssl and asserts success; returns stdout.
fn openssl_ok(args: &[&str]) -> String {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn openssl_reads_our_policy_key_and_verifies_our_dsse_signature() {
    let dir = tempfile::tempdir().unwrap();
    let key = PolicyKey::generate().unwrap();
    let key_path = dir.path().join("policy.key");
    key.save(&key_path).unwrap();

    // The private key is a PKCS#8 Ed25519 key OpenSSL can read, and OpenSSL derives
    // the same public key from it.
    let text = openssl_ok(&["pkey", "-in", p(&key_path), "-noout", "-text"]);
    assert!(text.contains("ED25519 Private-Key"), "{text}");
    let derived_pub = openssl_ok(&["pkey", "-in", p(&key_path), "-pubout"]);
    assert_eq!(derived_pub, key.public_key_pem().unwrap());

    // The key id is the SHA-256 of the raw key: the last 32 bytes of the SPKI DER.
    let pub_path = dir.path().join("pub.pem");
    std::fs::write(&pub_path, key.public_key_pem().unwrap()).unwrap();
    let der_path = dir.path().join("pub.der");
    openssl_ok(&[
        "pkey",
        "-pubin",
        "-in",
        p(&pub_path),
        "-outform",
        "DER",
        "-out",
        p(&der_path),
    ]);
    let der = std::fs::read(&der_path).unwrap();
    assert_eq!(der.len(), 44);
    let raw_path = dir.path().join("raw.bin");
    std::fs::write(&raw_path, &der[12..]).unwrap();
    let digest = openssl_ok(&["dgst", "-sha256", "-r", p(&raw_path)]);
    assert_eq!(digest.split_whitespace().next(), Some(key.keyid().as_str()));

    // A signed bundle: OpenSSL verifies the signature over the PAE it rebuilds from
    // the envelope's own fields.
    let payload = BundlePayload {
        org: "acme-corp".into(),
        version: 1,
        issued_at: datetime!(2025-12-01 00:00 UTC),
        expires_at: datetime!(2026-01-01 00:00 UTC),
        policy: serde_json::value::to_raw_value(&serde_json::json!({"organization": "acme-corp"}))
            .unwrap(),
    };
    let bytes = sign_bundle(&payload, &[&key]).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let payload_type = json["payloadType"].as_str().unwrap();
    let body = STANDARD.decode(json["payload"].as_str().unwrap()).unwrap();
    let sig = STANDARD
        .decode(json["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    // PAE built by hand here, not with our `pae`.
    let mut pae_bytes = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    pae_bytes.extend_from_slice(&body);
    assert_eq!(pae_bytes, pae(payload_type, &body));

    let pae_path = dir.path().join("pae.bin");
    let sig_path = dir.path().join("sig.bin");
    std::fs::write(&pae_path, &pae_bytes).unwrap();
    std::fs::write(&sig_path, &sig).unwrap();
    let verify = |pae_file: &Path| {
        openssl(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            p(&pub_path),
            "-rawin",
            "-in",
            p(pae_file),
            "-sigfile",
            p(&sig_path),
        ])
    };
    let out = verify(&pae_path);
    assert!(
        out.status.success(),
        "openssl rejected our signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"));

    // And OpenSSL refuses the same signature over a modified payload.
    let mut tampered = pae_bytes.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 1;
    let tampered_path = dir.path().join("tampered.bin");
    std::fs::write(&tampered_path, &tampered).unwrap();
    assert!(!verify(&tampered_path).status.success());
}

#[test]
fn we_load_openssl_keys_and_accept_openssl_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("ossl.key");
    openssl_ok(&["genpkey", "-algorithm", "ed25519", "-out", p(&key_path)]);
    let key = PolicyKey::load(&key_path).unwrap();

    let now = datetime!(2025-12-02 00:00 UTC);
    let payload = br#"{"org":"acme-corp","version":3,"issued_at":"2025-12-01T00:00:00Z","expires_at":"2026-01-01T00:00:00Z","policy":{}}"#;
    let pae_path = dir.path().join("pae.bin");
    std::fs::write(&pae_path, pae(POLICY_PAYLOAD_TYPE, payload)).unwrap();
    let sig_path = dir.path().join("sig.bin");
    openssl_ok(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        p(&key_path),
        "-rawin",
        "-in",
        p(&pae_path),
        "-out",
        p(&sig_path),
    ]);
    let envelope = Envelope {
        payload_type: POLICY_PAYLOAD_TYPE.into(),
        payload: STANDARD.encode(payload),
        signatures: vec![Signature {
            keyid: key.keyid(),
            sig: STANDARD.encode(std::fs::read(&sig_path).unwrap()),
        }],
    };
    let anchors = TrustAnchors {
        org: "acme-corp".into(),
        version: 1,
        threshold: 1,
        keys: vec![AnchorKey::new(&key, now - Duration::days(1), None)],
        root_ca: vec![],
    };
    let verified = verify_bundle(
        &envelope.to_json().unwrap(),
        &anchors,
        &VerifyOptions {
            now,
            expected_org: Some("acme-corp"),
            stored_version: Some(2),
        },
    )
    .unwrap();
    assert!(matches!(verified, Verified::Accepted { payload, .. } if payload.version == 3));
    // Ed25519 is deterministic: our signature equals OpenSSL's.
    assert_eq!(
        key.sign(&pae(POLICY_PAYLOAD_TYPE, payload)).to_vec(),
        std::fs::read(&sig_path).unwrap()
    );
}

#[test]
fn openssl_accepts_our_ca_chain() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OrgCa::generate("acme-corp", fleetkit::clock::now()).unwrap();
    ca.write(dir.path(), false).unwrap();
    let root = dir.path().join("root-ca.pem");
    let issuing = dir.path().join("issuing-ca.pem");

    let out = openssl_ok(&["verify", "-CAfile", p(&root), p(&issuing)]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");

    let root_text = openssl_ok(&["x509", "-in", p(&root), "-text", "-noout"]);
    let issuing_text = openssl_ok(&["x509", "-in", p(&issuing), "-text", "-noout"]);
    for (text, path_len, cn) in [
        (&root_text, "pathlen:1", "CN = acme-corp Root CA"),
        (&issuing_text, "pathlen:0", "CN = acme-corp Issuing CA"),
    ] {
        assert!(
            text.contains("X509v3 Basic Constraints: critical"),
            "{text}"
        );
        assert!(text.contains(&format!("CA:TRUE, {path_len}")), "{text}");
        assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
        assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
        assert!(!text.contains("Digital Signature"), "{text}");
        assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
        assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
        assert!(text.contains("ecdsa-with-SHA256"), "{text}");
        assert!(text.contains("NIST CURVE: P-256"), "{text}");
        assert!(
            text.contains(&format!("Subject: {cn}, O = acme-corp")),
            "{text}"
        );
        assert!(
            text.contains("Issuer: CN = acme-corp Root CA, O = acme-corp"),
            "{text}"
        );
    }

    // The private keys are PEM OpenSSL reads, and each matches its certificate.
    for (cert, key) in [
        ("root-ca.pem", "root-ca.key"),
        ("issuing-ca.pem", "issuing-ca.key"),
    ] {
        let cert_pub = openssl_ok(&[
            "x509",
            "-in",
            p(&dir.path().join(cert)),
            "-noout",
            "-pubkey",
        ]);
        let key_pub = openssl_ok(&["pkey", "-in", p(&dir.path().join(key)), "-pubout"]);
        assert_eq!(cert_pub, key_pub, "{key} does not match {cert}");
    }

    // Fingerprints agree with OpenSSL's.
    let fp = openssl_ok(&["x509", "-in", p(&root), "-noout", "-fingerprint", "-sha256"]);
    let hex: String = fp
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(ca.root_fingerprint(), format!("sha256:{hex}"));
}

#[test]
fn loaded_issuing_ca_signs_certificates_openssl_accepts() {
    let dir = tempfile::tempdir().unwrap();
    OrgCa::generate("acme-corp", fleetkit::clock::now())
        .unwrap()
        .write(dir.path(), false)
        .unwrap();
    // The server's view: no root key.
    std::fs::remove_file(dir.path().join("root-ca.key")).unwrap();
    let issuing = fleetkit::pki::IssuingCa::load(dir.path()).unwrap();
    let issuer = issuing.issuer().unwrap();

    let machine_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "machine-0001");
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let now = fleetkit::clock::now();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(90);
    let leaf = params.signed_by(&machine_key, &issuer).unwrap();

    let leaf_path = dir.path().join("machine.pem");
    std::fs::write(&leaf_path, leaf.pem()).unwrap();
    let out = openssl_ok(&[
        "verify",
        "-CAfile",
        p(&dir.path().join("root-ca.pem")),
        "-untrusted",
        p(&dir.path().join("issuing-ca.pem")),
        "-purpose",
        "sslclient",
        p(&leaf_path),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");
}

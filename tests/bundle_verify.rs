//! Policy bundle verification (DESIGN.md security rule 2): a good bundle is accepted,
//! and every way a bundle can be wrong is refused with its own error variant.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fleetkit::anchors::{self, AnchorKey, TrustAnchors};
use fleetkit::bundle::dsse::{Envelope, Signature};
use fleetkit::bundle::{
    BundleError, BundlePayload, MAX_BUNDLE_BYTES, MAX_VERSION, POLICY_PAYLOAD_TYPE, Verified,
    VerifyOptions, sign_bundle, verify_bundle,
};
use fleetkit::pki::{OrgCa, PolicyKey};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const ORG: &str = "acme-corp";

fn t0() -> OffsetDateTime {
    datetime!(2025-12-01 00:00 UTC)
}

/// The verification time of most tests: a day after issue.
fn now() -> OffsetDateTime {
    t0() + Duration::days(1)
}

fn key() -> PolicyKey {
    PolicyKey::generate().expect("generate key")
}

fn anchors_for(keys: &[&PolicyKey], threshold: u32) -> TrustAnchors {
    let ca = OrgCa::generate(ORG, t0()).expect("generate CA");
    let anchors = TrustAnchors {
        org: ORG.into(),
        version: 1,
        threshold,
        keys: keys
            .iter()
            .map(|k| AnchorKey::new(k, t0() - Duration::days(30), None))
            .collect(),
        root_ca: vec![ca.root_cert_pem()],
    };
    anchors.validate().expect("valid anchors");
    anchors
}

fn payload(org: &str, version: u64) -> BundlePayload {
    BundlePayload {
        org: org.into(),
        version,
        issued_at: t0(),
        expires_at: t0() + Duration::days(30),
        policy: serde_json::value::to_raw_value(
            &serde_json::json!({"version": "1.0", "organization": org, "safety": {"risk_tolerance": "low"}}),
        )
        .unwrap(),
    }
}

fn opts() -> VerifyOptions<'static> {
    VerifyOptions {
        now: now(),
        expected_org: None,
        stored_version: None,
    }
}

fn verify(bytes: &[u8], anchors: &TrustAnchors) -> Result<Verified, BundleError> {
    verify_bundle(bytes, anchors, &opts())
}

/// Re-signs arbitrary payload bytes as a policy bundle.
fn envelope_of(payload_bytes: &[u8], signers: &[&PolicyKey]) -> Vec<u8> {
    Envelope::sign(POLICY_PAYLOAD_TYPE, payload_bytes, signers)
        .to_json()
        .unwrap()
}

#[test]
fn good_bundle_is_accepted() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let p = payload(ORG, 3);
    let bytes = sign_bundle(&p, &[&k]).unwrap();
    match verify(&bytes, &a).unwrap() {
        Verified::Accepted { payload, keyids } => {
            assert_eq!(payload, p);
            assert_eq!(keyids, vec![k.keyid()]);
        }
        other => panic!("expected Accepted, got {other:?}"),
    }
    // With an expected org and an older installed version, too.
    let o = VerifyOptions {
        now: now(),
        expected_org: Some(ORG),
        stored_version: Some(2),
    };
    assert!(matches!(
        verify_bundle(&bytes, &a, &o),
        Ok(Verified::Accepted { .. })
    ));
}

#[test]
fn envelope_has_the_dsse_shape() {
    let k = key();
    let bytes = sign_bundle(&payload(ORG, 1), &[&k]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["payloadType"], POLICY_PAYLOAD_TYPE);
    assert_eq!(v["signatures"][0]["keyid"], k.keyid().as_str());
    let body = STANDARD.decode(v["payload"].as_str().unwrap()).unwrap();
    let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(p["org"], ORG);
    assert_eq!(p["version"], 1);
    assert_eq!(p["issued_at"], "2025-12-01T00:00:00Z");
    assert_eq!(p["expires_at"], "2025-12-31T00:00:00Z");
    // Field order is fixed.
    let text = String::from_utf8(body).unwrap();
    let pos = |f: &str| text.find(&format!("\"{f}\"")).unwrap();
    assert!(pos("org") < pos("version") && pos("version") < pos("issued_at"));
    assert!(pos("expires_at") < pos("policy"));
}

#[test]
fn signing_is_deterministic() {
    let k = key();
    let p = payload(ORG, 5);
    assert_eq!(
        sign_bundle(&p, &[&k]).unwrap(),
        sign_bundle(&p, &[&k]).unwrap()
    );
    // A non-UTC offset is normalised, so the same instant gives the same bytes.
    let mut shifted = p.clone();
    shifted.issued_at = p.issued_at.to_offset(time::macros::offset!(+2));
    assert_eq!(
        sign_bundle(&shifted, &[&k]).unwrap(),
        sign_bundle(&p, &[&k]).unwrap()
    );
}

#[test]
fn tampered_payload_is_refused() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let bytes = sign_bundle(&payload(ORG, 3), &[&k]).unwrap();
    let mut env = Envelope::from_json(&bytes).unwrap();
    let mut body = STANDARD.decode(&env.payload).unwrap();
    // "version":3 → "version":9
    let at = body
        .windows(11)
        .position(|w| w == b"\"version\":3")
        .expect("version field");
    body[at + 10] = b'9';
    env.payload = STANDARD.encode(&body);
    let err = verify(&env.to_json().unwrap(), &a).unwrap_err();
    assert!(
        matches!(&err, BundleError::BadSignature { keyid, .. } if *keyid == k.keyid()),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("payload was modified after signing (signature by key ")
    );
    assert_eq!(err.code(), "bad-signature");
}

#[test]
fn signature_moved_to_another_known_key_is_refused() {
    let (k1, k2) = (key(), key());
    let a = anchors_for(&[&k1, &k2], 1);
    let bytes = sign_bundle(&payload(ORG, 1), &[&k1]).unwrap();
    let mut env = Envelope::from_json(&bytes).unwrap();
    env.signatures[0].keyid = k2.keyid();
    assert!(matches!(
        verify(&env.to_json().unwrap(), &a),
        Err(BundleError::BadSignature { .. })
    ));
}

#[test]
fn expired_bundle_is_refused() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let bytes = sign_bundle(&payload(ORG, 1), &[&k]).unwrap();
    let late = VerifyOptions {
        now: t0() + Duration::days(30),
        ..opts()
    };
    let err = verify_bundle(&bytes, &a, &late).unwrap_err();
    assert!(matches!(err, BundleError::Expired { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "bundle expired at 2025-12-31T00:00:00Z (now is 2025-12-31T00:00:00Z)"
    );
}

#[test]
fn bundle_issued_in_the_future_is_refused() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let mut p = payload(ORG, 1);
    p.issued_at = now() + Duration::hours(1);
    let bytes = sign_bundle(&p, &[&k]).unwrap();
    assert!(matches!(
        verify(&bytes, &a),
        Err(BundleError::IssuedInFuture { .. })
    ));
    // A few minutes of clock skew are tolerated.
    p.issued_at = now() + Duration::minutes(2);
    let bytes = sign_bundle(&p, &[&k]).unwrap();
    assert!(verify(&bytes, &a).is_ok());
}

#[test]
fn bundle_for_another_org_is_refused() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let bytes = sign_bundle(&payload("globex", 1), &[&k]).unwrap();
    let err = verify(&bytes, &a).unwrap_err();
    assert!(matches!(err, BundleError::OrgMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "bundle is for org globex, anchors are for acme-corp"
    );

    // The caller's expected org is checked too.
    let bytes = sign_bundle(&payload(ORG, 1), &[&k]).unwrap();
    let o = VerifyOptions {
        expected_org: Some("initech"),
        ..opts()
    };
    assert!(matches!(
        verify_bundle(&bytes, &a, &o),
        Err(BundleError::UnexpectedOrg { .. })
    ));
}

#[test]
fn bundle_signed_by_unknown_key_is_refused() {
    let (trusted, stranger) = (key(), key());
    let a = anchors_for(&[&trusted], 1);
    let bytes = sign_bundle(&payload(ORG, 1), &[&stranger]).unwrap();
    let err = verify(&bytes, &a).unwrap_err();
    assert!(
        matches!(&err, BundleError::UnknownKey { keyid, valid: 0, threshold: 1 } if *keyid == stranger.keyid()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with(&format!(
        "key {}… is not in the trust anchors",
        &stranger.keyid()[..16]
    )));
}

#[test]
fn bundle_below_threshold_is_refused() {
    let (k1, k2) = (key(), key());
    let a = anchors_for(&[&k1, &k2], 2);
    let bytes = sign_bundle(&payload(ORG, 1), &[&k1]).unwrap();
    let err = verify(&bytes, &a).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::BelowThreshold {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "signed by 1 valid key(s), threshold is 2");
    // Both keys: accepted.
    let bytes = sign_bundle(&payload(ORG, 1), &[&k1, &k2]).unwrap();
    assert!(
        matches!(verify(&bytes, &a), Ok(Verified::Accepted { keyids, .. }) if keyids.len() == 2)
    );
}

#[test]
fn same_key_signing_twice_counts_once() {
    let (k1, k2) = (key(), key());
    let a = anchors_for(&[&k1, &k2], 2);
    let bytes = sign_bundle(&payload(ORG, 1), &[&k1]).unwrap();
    let mut env = Envelope::from_json(&bytes).unwrap();
    let first: Signature = env.signatures[0].clone();
    env.signatures.push(first);
    assert_eq!(env.signatures.len(), 2);
    let err = verify(&env.to_json().unwrap(), &a).unwrap_err();
    match &err {
        BundleError::BelowThreshold {
            valid: 1,
            threshold: 2,
            repeated,
        } => assert_eq!(repeated, &vec![k1.keyid()]),
        other => panic!("expected BelowThreshold, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("signed more than once; a key counts once")
    );
}

#[test]
fn rollback_is_refused_and_equal_version_is_already_current() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let installed = |v| VerifyOptions {
        stored_version: Some(v),
        ..opts()
    };
    let v4 = sign_bundle(&payload(ORG, 4), &[&k]).unwrap();
    let err = verify_bundle(&v4, &a, &installed(7)).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::Rollback {
                version: 4,
                installed: 7
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "bundle version 4 is older than the installed version 7: rollback refused"
    );
    assert_eq!(
        verify_bundle(&v4, &a, &installed(4)).unwrap(),
        Verified::AlreadyCurrent { version: 4 }
    );
    assert!(matches!(
        verify_bundle(&v4, &a, &installed(3)),
        Ok(Verified::Accepted { .. })
    ));
}

#[test]
fn key_outside_its_validity_window_is_refused() {
    let k = key();
    // Retired before `now`.
    let mut a = anchors_for(&[&k], 1);
    a.keys[0].valid_until = Some(now() - Duration::seconds(1));
    let bytes = sign_bundle(&payload(ORG, 1), &[&k]).unwrap();
    let err = verify(&bytes, &a).unwrap_err();
    assert!(matches!(err, BundleError::KeyNotValid { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("is in the trust anchors but valid from")
    );
    // Retiring exactly at `now`: already invalid (valid_until is exclusive).
    a.keys[0].valid_until = Some(now());
    assert!(matches!(
        verify(&bytes, &a),
        Err(BundleError::KeyNotValid { .. })
    ));
    // Not yet valid.
    let mut a = anchors_for(&[&k], 1);
    a.keys[0].valid_from = now() + Duration::seconds(1);
    assert!(matches!(
        verify(&bytes, &a),
        Err(BundleError::KeyNotValid { .. })
    ));
}

#[test]
fn oversized_bundle_is_refused_before_parsing() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let mut bytes = sign_bundle(&payload(ORG, 1), &[&k]).unwrap();
    // Still valid JSON (trailing whitespace), just too big.
    bytes.resize(MAX_BUNDLE_BYTES + 1, b' ');
    assert!(matches!(
        verify(&bytes, &a),
        Err(BundleError::TooLarge { size, max }) if size == MAX_BUNDLE_BYTES + 1 && max == MAX_BUNDLE_BYTES
    ));
    // Garbage that is too big is also refused as too big, not as garbage.
    let garbage = vec![b'{'; MAX_BUNDLE_BYTES + 1];
    assert!(matches!(
        verify(&garbage, &a),
        Err(BundleError::TooLarge { .. })
    ));
}

#[test]
fn malformed_envelopes_are_refused() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    for bad in [
        &b""[..],
        b"not json",
        b"{}",
        b"[]",
        br#"{"payloadType": 1, "payload": "", "signatures": []}"#,
        b"\xff\xfe",
    ] {
        let err = verify(bad, &a).unwrap_err();
        assert!(matches!(err, BundleError::MalformedEnvelope(_)), "{err:?}");
    }

    let good = sign_bundle(&payload(ORG, 1), &[&k]).unwrap();
    let mut env = Envelope::from_json(&good).unwrap();
    env.payload.insert(3, '*');
    assert!(matches!(
        verify(&env.to_json().unwrap(), &a),
        Err(BundleError::MalformedBase64 { field }) if field == "payload"
    ));

    let mut env = Envelope::from_json(&good).unwrap();
    env.signatures[0].sig = "not base64!".into();
    assert!(matches!(
        verify(&env.to_json().unwrap(), &a),
        Err(BundleError::MalformedBase64 { field }) if field == "signatures[0].sig"
    ));

    // Valid base64, but not 64 bytes: a signature that does not verify.
    let mut env = Envelope::from_json(&good).unwrap();
    env.signatures[0].sig = STANDARD.encode([1u8; 10]);
    assert!(matches!(
        verify(&env.to_json().unwrap(), &a),
        Err(BundleError::BadSignature { .. })
    ));
}

#[test]
fn wrong_payload_type_is_refused() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let body = serde_json::to_vec(&payload(ORG, 1)).unwrap();
    let env = Envelope::sign(fleetkit::anchors::ANCHORS_PAYLOAD_TYPE, &body, &[&k]);
    assert!(matches!(
        verify(&env.to_json().unwrap(), &a),
        Err(BundleError::WrongPayloadType { .. })
    ));
}

#[test]
fn unsigned_bundle_is_refused() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let good = sign_bundle(&payload(ORG, 1), &[&k]).unwrap();
    let mut env = Envelope::from_json(&good).unwrap();
    env.signatures.clear();
    assert!(matches!(
        verify(&env.to_json().unwrap(), &a),
        Err(BundleError::NoSignatures { threshold: 1 })
    ));
}

#[test]
fn signed_garbage_payload_is_refused_after_signature_check() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    for body in [
        &b"not json"[..],
        br#"{"org":"acme-corp","version":1}"#,
        br#"{"org":"acme-corp","version":-1,"issued_at":"2025-12-01T00:00:00Z","expires_at":"2025-12-31T00:00:00Z","policy":{}}"#,
        br#"{"org":"acme-corp","version":1,"issued_at":"yesterday","expires_at":"2025-12-31T00:00:00Z","policy":{}}"#,
        br#"{"org":"acme-corp","version":1,"issued_at":"2025-12-01T00:00:00Z","expires_at":"2025-12-31T00:00:00Z","policy":{},"extra":true}"#,
    ] {
        let err = verify(&envelope_of(body, &[&k]), &a).unwrap_err();
        assert!(matches!(err, BundleError::MalformedPayload(_)), "{err:?}");
    }
    // The same garbage signed by a stranger fails on the signature, first.
    let stranger = key();
    assert!(matches!(
        verify(&envelope_of(b"not json", &[&stranger]), &a),
        Err(BundleError::UnknownKey { .. })
    ));
}

#[test]
fn unusable_anchors_are_refused() {
    let k = key();
    let mut a = anchors_for(&[&k], 1);
    let bytes = sign_bundle(&payload(ORG, 1), &[&k]).unwrap();
    a.threshold = 0;
    assert!(matches!(
        verify(&bytes, &a),
        Err(BundleError::BadAnchors(_))
    ));
}

#[test]
fn signing_refuses_nonsense() {
    let k = key();
    assert!(matches!(
        sign_bundle(&payload(ORG, 1), &[]),
        Err(BundleError::NoSigners)
    ));
    let mut p = payload(ORG, 1);
    p.expires_at = p.issued_at;
    assert!(matches!(
        sign_bundle(&p, &[&k]),
        Err(BundleError::BadLifetime { .. })
    ));
}

#[test]
fn anchors_file_round_trip_then_verify() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let a = anchors_for(&[&k], 1);
    let path = dir.path().join("anchors.json");
    anchors::save(&a, &path).unwrap();
    let loaded = anchors::load(&path).unwrap();
    assert_eq!(loaded, a);
    let bytes = sign_bundle(&payload(ORG, 1), &[&k]).unwrap();
    assert!(verify(&bytes, &loaded).is_ok());

    // A hand-edited anchors file whose key id does not match is refused on load.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&k.keyid(), &"0".repeat(64));
    std::fs::write(&path, text).unwrap();
    let err = anchors::load(&path).unwrap_err();
    assert!(
        err.to_string().contains("does not match its public key"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn private_keys_are_written_0600_and_certificates_0644() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();

    let k = key();
    let key_path = dir.path().join("policy.key");
    k.save(&key_path).unwrap();
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(PolicyKey::load(&key_path).unwrap().keyid(), k.keyid());

    let ca = OrgCa::generate(ORG, t0()).unwrap();
    let written = ca.write(dir.path(), false).unwrap();
    for p in &written {
        let expected = if p.extension().is_some_and(|e| e == "key") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(p), expected, "{}", p.display());
    }
    // Replacing with force keeps the modes.
    OrgCa::generate(ORG, t0())
        .unwrap()
        .write(dir.path(), true)
        .unwrap();
    assert_eq!(mode(&dir.path().join("root-ca.key")), 0o600);
}

/// Issue 11: versions above i64::MAX could not be stored and were clamped by the
/// server. They are now refused by the signer and, when crafted, by the verifier.
#[test]
fn a_version_above_i64_max_is_neither_signed_nor_verified() {
    let k = key();
    let a = anchors_for(&[&k], 1);
    let top = sign_bundle(&payload(ORG, MAX_VERSION), &[&k]).unwrap();
    assert!(matches!(verify(&top, &a), Ok(Verified::Accepted { .. })));
    for version in [MAX_VERSION + 1, u64::MAX] {
        assert!(matches!(
            sign_bundle(&payload(ORG, version), &[&k]),
            Err(BundleError::VersionOutOfRange { .. })
        ));
        let crafted = envelope_of(&serde_json::to_vec(&payload(ORG, version)).unwrap(), &[&k]);
        let err = verify(&crafted, &a).unwrap_err();
        assert_eq!(err.code(), "version-out-of-range", "{err}");
        // Whatever the device holds: out of range is never "already current".
        let err = verify_bundle(
            &crafted,
            &a,
            &VerifyOptions {
                stored_version: Some(version),
                ..opts()
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "version-out-of-range", "{err}");
    }
}

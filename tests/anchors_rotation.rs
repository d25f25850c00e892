//! Trust-anchor rotation: a holder of the current anchors accepts a new anchors
//! document only when a threshold of the current keys and of the new document's own
//! keys signed it, every added key signed it, the org is the same and the version
//! goes up (DESIGN.md "Trust anchors", security rule 1).

use fleetkit::anchors::{
    ANCHORS_PAYLOAD_TYPE, AnchorKey, AnchorsError, TrustAnchors, accept_chain, accept_rotation,
    rotate,
};
use fleetkit::bundle::dsse::Envelope;
use fleetkit::bundle::{
    BundleError, BundlePayload, Verified, VerifyOptions, sign_bundle, verify_bundle,
};
use fleetkit::pki::{OrgCa, PolicyKey};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const ORG: &str = "acme-corp";

fn t0() -> OffsetDateTime {
    datetime!(2025-12-01 00:00 UTC)
}

fn key() -> PolicyKey {
    PolicyKey::generate().expect("generate key")
}

fn anchors_for(keys: &[&PolicyKey], threshold: u32) -> TrustAnchors {
    let ca = OrgCa::generate(ORG, t0()).expect("generate CA");
    TrustAnchors {
        org: ORG.into(),
        version: 1,
        threshold,
        keys: keys.iter().map(|k| AnchorKey::new(k, t0(), None)).collect(),
        root_ca: vec![ca.root_cert_pem()],
    }
}

/// Signs an arbitrary anchors document as a rotation envelope.
fn sign_anchors(doc: &TrustAnchors, signers: &[&PolicyKey]) -> Vec<u8> {
    Envelope::sign(ANCHORS_PAYLOAD_TYPE, &doc.to_json().unwrap(), signers)
        .to_json()
        .unwrap()
}

/// `current` + `new_key`, version + 1, as `rotate` would make it (unsigned).
fn successor(current: &TrustAnchors, new_key: &PolicyKey, now: OffsetDateTime) -> TrustAnchors {
    let mut next = current.clone();
    next.version += 1;
    next.keys.push(AnchorKey::new(new_key, now, None));
    next
}

fn bundle(version: u64, signers: &[&PolicyKey]) -> Vec<u8> {
    let p = BundlePayload {
        org: ORG.into(),
        version,
        issued_at: t0(),
        expires_at: t0() + Duration::days(365),
        policy: serde_json::value::to_raw_value(&serde_json::json!({})).unwrap(),
    };
    sign_bundle(&p, signers).unwrap()
}

fn verify_at(bytes: &[u8], a: &TrustAnchors, now: OffsetDateTime) -> Result<Verified, BundleError> {
    verify_bundle(
        bytes,
        a,
        &VerifyOptions {
            now,
            expected_org: None,
            stored_version: None,
        },
    )
}

#[test]
fn rotation_is_accepted_and_moves_trust_to_the_new_key() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let new = key();
    let now = t0() + Duration::days(10);
    let (v2, envelope) = rotate(&v1, &[&old], &[&new], Duration::days(30), now).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.threshold, 1);
    assert_eq!(v2.root_ca, v1.root_ca);
    assert_eq!(v2.keys.len(), 2);
    assert_eq!(v2.keys[0].valid_until, Some(now + Duration::days(30)));

    let accepted = accept_rotation(&v1, &envelope, now).unwrap();
    assert_eq!(accepted, v2);
    // Deterministic: the envelope payload is exactly the document's JSON.
    let payload = Envelope::from_json(&envelope)
        .unwrap()
        .decode()
        .unwrap()
        .payload;
    assert_eq!(payload, v2.to_json().unwrap());

    let by_new = bundle(1, &[&new]);
    let by_old = bundle(1, &[&old]);
    let later = now + Duration::days(1);
    // The old anchors do not know the new key; the new anchors do.
    assert!(matches!(
        verify_at(&by_new, &v1, later),
        Err(BundleError::UnknownKey { .. })
    ));
    assert!(verify_at(&by_new, &v2, later).is_ok());
    // During the retirement window the old key still signs...
    assert!(verify_at(&by_old, &v2, later).is_ok());
    // ...and after it, no longer.
    assert!(matches!(
        verify_at(&by_old, &v2, now + Duration::days(30)),
        Err(BundleError::KeyNotValid { .. })
    ));
}

#[test]
fn new_anchors_signed_only_by_the_new_key_are_refused() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let new = key();
    let now = t0() + Duration::days(1);
    let forged = sign_anchors(&successor(&v1, &new, now), &[&new]);
    let err = accept_rotation(&v1, &forged, now).unwrap_err();
    assert!(
        matches!(
            err,
            AnchorsError::NotSignedByCurrent {
                valid: 0,
                threshold: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("is not in the trusted anchors"),
        "{err}"
    );
}

#[test]
fn new_anchors_signed_by_a_stranger_are_refused() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let (stranger, new) = (key(), key());
    let now = t0() + Duration::days(1);
    // The stranger makes anchors in which it is the only key.
    let mut takeover = v1.clone();
    takeover.version = 2;
    takeover.keys = vec![AnchorKey::new(&stranger, now, None)];
    let forged = sign_anchors(&takeover, &[&stranger]);
    assert!(matches!(
        accept_rotation(&v1, &forged, now),
        Err(AnchorsError::NotSignedByCurrent { valid: 0, .. })
    ));
    // Also with the new key's signature added.
    let forged = sign_anchors(&successor(&v1, &new, now), &[&stranger, &new]);
    assert!(matches!(
        accept_rotation(&v1, &forged, now),
        Err(AnchorsError::NotSignedByCurrent { valid: 0, .. })
    ));
}

#[test]
fn tampered_rotation_is_refused() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let (new, attacker) = (key(), key());
    let now = t0() + Duration::days(1);
    let (_, envelope) = rotate(&v1, &[&old], &[&new], Duration::days(30), now).unwrap();
    // Swap the new key for the attacker's key inside the signed payload.
    let mut env = Envelope::from_json(&envelope).unwrap();
    let decoded = env.decode().unwrap();
    let mut doc: TrustAnchors = serde_json::from_slice(&decoded.payload).unwrap();
    doc.keys[1] = AnchorKey::new(&attacker, now, None);
    use base64::Engine;
    env.payload = base64::engine::general_purpose::STANDARD.encode(doc.to_json().unwrap());
    let err = accept_rotation(&v1, &env.to_json().unwrap(), now).unwrap_err();
    assert!(
        matches!(err, AnchorsError::NotSignedByCurrent { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not verify"), "{err}");
}

#[test]
fn version_must_increase() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let new = key();
    let now = t0() + Duration::days(1);
    let mut same = successor(&v1, &new, now);
    same.version = v1.version;
    let err = accept_rotation(&v1, &sign_anchors(&same, &[&old, &new]), now).unwrap_err();
    assert!(
        matches!(
            err,
            AnchorsError::VersionNotIncreasing {
                version: 1,
                current: 1
            }
        ),
        "{err:?}"
    );
    same.version = 0;
    assert!(matches!(
        accept_rotation(&v1, &sign_anchors(&same, &[&old, &new]), now),
        Err(AnchorsError::VersionNotIncreasing { .. })
    ));

    // Replaying an old rotation to a holder of newer anchors.
    let (v2, e2) = rotate(&v1, &[&old], &[&new], Duration::days(30), now).unwrap();
    let newer = key();
    let (v3, _) = rotate(&v2, &[&old, &new], &[&newer], Duration::days(30), now).unwrap();
    // Refused before its version is even read: its signers all retire in v3, and a
    // retiring key never counts toward a rotation.
    assert!(matches!(
        accept_rotation(&v3, &e2, now),
        Err(AnchorsError::NotSignedByCurrent { valid: 0, .. })
    ));
    // Signed by v3's lasting key, an old version is still refused as such.
    let mut old_again = v2.clone();
    old_again.keys.push(AnchorKey::new(&newer, now, None));
    assert!(matches!(
        accept_rotation(&v3, &sign_anchors(&old_again, &[&newer]), now),
        Err(AnchorsError::VersionNotIncreasing {
            version: 2,
            current: 3
        })
    ));
}

#[test]
fn other_org_is_refused() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let new = key();
    let now = t0() + Duration::days(1);
    let mut other = successor(&v1, &new, now);
    other.org = "globex".into();
    let err = accept_rotation(&v1, &sign_anchors(&other, &[&old, &new]), now).unwrap_err();
    assert!(matches!(err, AnchorsError::OrgMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "new anchors are for org globex, trusted anchors are for acme-corp"
    );
}

#[test]
fn added_key_must_prove_possession() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    // The old key alone meets both thresholds, but the added key never signed: its
    // holder may not exist (or the key may be someone else's).
    let new = key();
    let now = t0() + Duration::days(1);
    let err =
        accept_rotation(&v1, &sign_anchors(&successor(&v1, &new, now), &[&old]), now).unwrap_err();
    assert!(
        matches!(&err, AnchorsError::MissingProofOfPossession { keyid } if *keyid == new.keyid()),
        "{err:?}"
    );
}

#[test]
fn new_document_needs_its_own_threshold() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let (n1, n2) = (key(), key());
    let now = t0() + Duration::days(1);
    // Drops the old key, asks for 2 of {n1, n2}, but only n1 signed.
    let mut next = v1.clone();
    next.version = 2;
    next.threshold = 2;
    next.keys = vec![
        AnchorKey::new(&n1, now, None),
        AnchorKey::new(&n2, now, None),
    ];
    let err = accept_rotation(&v1, &sign_anchors(&next, &[&old, &n1]), now).unwrap_err();
    assert!(
        matches!(
            err,
            AnchorsError::NotSignedByNew {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(accept_rotation(&v1, &sign_anchors(&next, &[&old, &n1, &n2]), now).is_ok());
}

#[test]
fn invalid_new_document_is_refused() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let new = key();
    let now = t0() + Duration::days(1);
    let mut next = successor(&v1, &new, now);
    next.threshold = 0;
    assert!(matches!(
        accept_rotation(&v1, &sign_anchors(&next, &[&old, &new]), now),
        Err(AnchorsError::InvalidNewAnchors(_))
    ));
    let garbage = Envelope::sign(ANCHORS_PAYLOAD_TYPE, b"{\"org\":1}", &[&old])
        .to_json()
        .unwrap();
    assert!(matches!(
        accept_rotation(&v1, &garbage, now),
        Err(AnchorsError::MalformedPayload(_))
    ));
}

#[test]
fn policy_bundle_is_not_a_rotation() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let now = t0() + Duration::days(1);
    assert!(matches!(
        accept_rotation(&v1, &bundle(1, &[&old]), now),
        Err(AnchorsError::WrongPayloadType { .. })
    ));
    assert!(matches!(
        accept_rotation(&v1, b"{", now),
        Err(AnchorsError::MalformedEnvelope(_))
    ));
    let huge = vec![b' '; fleetkit::anchors::MAX_ANCHORS_BYTES + 1];
    assert!(matches!(
        accept_rotation(&v1, &huge, now),
        Err(AnchorsError::TooLarge { .. })
    ));
}

#[test]
fn retired_current_key_cannot_sign_a_rotation() {
    let old = key();
    let mut v1 = anchors_for(&[&old], 1);
    let now = t0() + Duration::days(40);
    v1.keys[0].valid_until = Some(t0() + Duration::days(30));
    let new = key();
    let forged = sign_anchors(&successor(&v1, &new, now), &[&old, &new]);
    let err = accept_rotation(&v1, &forged, now).unwrap_err();
    assert!(
        matches!(err, AnchorsError::NotSignedByCurrent { valid: 0, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("outside its validity window"),
        "{err}"
    );
    assert!(matches!(
        rotate(&v1, &[&old], &[&new], Duration::days(30), now),
        Err(AnchorsError::SignerNotCurrent { .. })
    ));
}

#[test]
fn threshold_two_rotation() {
    let (a, b) = (key(), key());
    let v1 = anchors_for(&[&a, &b], 2);
    let (n1, n2) = (key(), key());
    let now = t0() + Duration::days(1);
    assert!(matches!(
        rotate(&v1, &[&a], &[&n1, &n2], Duration::days(30), now),
        Err(AnchorsError::NotEnoughSigners {
            have: 1,
            threshold: 2
        })
    ));
    // Issue 12: one new key for a 2-of-2 org left it, once the old keys retired,
    // with one valid key and threshold 2.
    let err = rotate(&v1, &[&a, &b], &[&n1], Duration::days(30), now).unwrap_err();
    assert!(
        matches!(
            err,
            AnchorsError::NotEnoughNewKeys {
                have: 1,
                threshold: 2
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("at least a threshold of new ones"),
        "{err}"
    );
    let (v2, envelope) = rotate(&v1, &[&a, &b], &[&n1, &n2], Duration::days(30), now).unwrap();
    assert_eq!(accept_rotation(&v1, &envelope, now).unwrap(), v2);
    assert_eq!(v2.threshold, 2);
    assert_eq!(v2.keys.len(), 4);
    // Every added key signed (proof of possession).
    let signers: Vec<String> = Envelope::from_json(&envelope)
        .unwrap()
        .signatures
        .into_iter()
        .map(|s| s.keyid)
        .collect();
    for k in [&a, &b, &n1, &n2] {
        assert!(signers.contains(&k.keyid()), "{signers:?}");
    }
    // One current key plus the new keys is not a threshold of the current keys.
    let mut forged = successor(&v1, &n1, now);
    forged.keys.push(AnchorKey::new(&n2, now, None));
    let forged = sign_anchors(&forged, &[&a, &n1, &n2]);
    assert!(matches!(
        accept_rotation(&v1, &forged, now),
        Err(AnchorsError::NotSignedByCurrent {
            valid: 1,
            threshold: 2,
            ..
        })
    ));
}

/// Issue 12: `rotate` retired every current key, added one and kept the threshold,
/// so a 2-of-2 org could neither sign a bundle nor rotate again after the window.
#[test]
fn threshold_two_org_can_sign_and_rotate_after_retirement() {
    let (a, b) = (key(), key());
    let v1 = anchors_for(&[&a, &b], 2);
    let (n1, n2) = (key(), key());
    let at = t0() + Duration::days(1);
    let (v2, e2) = rotate(&v1, &[&a, &b], &[&n1, &n2], Duration::days(30), at).unwrap();
    let later = at + Duration::days(31);
    assert_eq!(v2.keys_valid_at(later).count(), 2);
    // A bundle by the new keys verifies after the old ones retired...
    let by_new = bundle(2, &[&n1, &n2]);
    assert!(verify_at(&by_new, &v2, later).is_ok());
    assert!(verify_at(&bundle(2, &[&a, &b]), &v2, later).is_err());
    // ...and the org rotates again, with the new keys only.
    let (m1, m2) = (key(), key());
    let (v3, e3) = rotate(&v2, &[&n1, &n2], &[&m1, &m2], Duration::days(30), later).unwrap();
    assert_eq!(v3.version, 3);
    // A device that held v1 throughout follows both steps.
    assert_eq!(accept_chain(&v1, &[&e2, &e3], later).unwrap(), v3);
}

#[test]
fn chain_is_walked_in_order() {
    let k1 = key();
    let v1 = anchors_for(&[&k1], 1);
    let k2 = key();
    let k3 = key();
    let day1 = t0() + Duration::days(1);
    let day2 = t0() + Duration::days(2);
    let (v2, e2) = rotate(&v1, &[&k1], &[&k2], Duration::days(30), day1).unwrap();
    let (v3, e3) = rotate(&v2, &[&k2], &[&k3], Duration::days(30), day2).unwrap();
    let now = t0() + Duration::days(3);

    assert_eq!(accept_chain(&v1, &[&e2, &e3], now).unwrap(), v3);
    assert_eq!(accept_chain(&v2, &[&e3], now).unwrap(), v3);
    assert_eq!(accept_chain(&v1, &[], now).unwrap(), v1);

    // Out of order: step 1 (v3, signed by k2) is not signed by v1's keys.
    let err = accept_chain(&v1, &[&e3, &e2], now).unwrap_err();
    assert!(
        matches!(&err, AnchorsError::Chain { index: 1, total: 2, source } if matches!(**source, AnchorsError::NotSignedByCurrent { .. })),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("rotation 1 of 2: "));

    // A forged second step.
    let stranger = key();
    let forged = sign_anchors(&successor(&v2, &stranger, now), &[&stranger]);
    assert!(matches!(
        accept_chain(&v1, &[&e2, &forged], now),
        Err(AnchorsError::Chain { index: 2, .. })
    ));

    // Bundles by k3 verify against the end of the chain only.
    let b = bundle(1, &[&k3]);
    assert!(verify_at(&b, &v1, now).is_err());
    assert!(verify_at(&b, &accept_chain(&v1, &[&e2, &e3], now).unwrap(), now).is_ok());
}

#[test]
fn expired_keys_are_dropped_and_retirement_never_extends() {
    // c, with no end, is what signs the rotation: a and b already have an end, and
    // a retiring key never counts toward a rotation (this test used to rotate with
    // `a` alone, which is what let a leaked retired key sign a backdated step).
    let (a, b, c) = (key(), key(), key());
    let mut v1 = anchors_for(&[&a, &b, &c], 1);
    let now = t0() + Duration::days(10);
    // b already ended; a ends in 2 days.
    v1.keys[1].valid_until = Some(t0() + Duration::days(5));
    v1.keys[0].valid_until = Some(now + Duration::days(2));
    let new = key();
    let (v2, envelope) = rotate(&v1, &[&a, &c], &[&new], Duration::days(30), now).unwrap();
    assert_eq!(v2.keys.len(), 3, "{v2:#?}");
    assert_eq!(v2.keys[0].keyid, a.keyid());
    assert_eq!(v2.keys[0].valid_until, Some(now + Duration::days(2)));
    assert_eq!(v2.keys[1].keyid, c.keyid());
    assert_eq!(v2.keys[1].valid_until, Some(now + Duration::days(30)));
    assert_eq!(v2.keys[2].keyid, new.keyid());
    assert!(accept_rotation(&v1, &envelope, now).is_ok());

    // Immediate retirement (compromise): the old keys stop at `now`.
    let (v2, envelope) = rotate(&v1, &[&c], &[&new], Duration::ZERO, now).unwrap();
    assert_eq!(v2.keys[0].valid_until, Some(now));
    assert_eq!(v2.keys[1].valid_until, Some(now));
    assert!(accept_rotation(&v1, &envelope, now).is_ok());
    assert!(matches!(
        verify_at(&bundle(1, &[&c]), &v2, now),
        Err(BundleError::KeyNotValid { .. })
    ));
}

/// Issue 12: with only retiring keys to sign, `rotate` produced an envelope that
/// no holder accepts under the lasting-key rule; it now says so itself.
#[test]
fn rotate_refuses_when_only_retiring_keys_sign() {
    let a = key();
    let mut v1 = anchors_for(&[&a], 1);
    let now = t0() + Duration::days(10);
    v1.keys[0].valid_until = Some(now + Duration::days(2));
    let err = rotate(&v1, &[&a], &[&key()], Duration::days(30), now).unwrap_err();
    assert!(
        matches!(
            err,
            AnchorsError::NotEnoughLastingSigners {
                have: 0,
                threshold: 1,
                version: 1
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("do not count"), "{err}");
}

#[test]
fn rotated_anchors_survive_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let new = key();
    let now = t0() + Duration::days(1);
    let (v2, _) = rotate(&v1, &[&old], &[&new], Duration::days(30), now).unwrap();
    let path = dir.path().join("anchors.json");
    fleetkit::anchors::save(&v2, &path).unwrap();
    assert_eq!(fleetkit::anchors::load(&path).unwrap(), v2);
}

// ----- the step-time rule: each rotation is checked at its own time -----------------

/// Issue 11: a device that did not sync between a rotation and the old key's
/// retirement could never follow the chain (everything was checked at one `now`, when
/// the old key had already retired), and the fleet was stranded.
#[test]
fn rotation_is_followed_after_the_old_key_retired() {
    let k1 = key();
    let v1 = anchors_for(&[&k1], 1);
    let (k2, k3) = (key(), key());
    let day1 = t0() + Duration::days(1);
    let day2 = t0() + Duration::days(2);
    let (v2, e2) = rotate(&v1, &[&k1], &[&k2], Duration::days(1), day1).unwrap();
    let (v3, e3) = rotate(&v2, &[&k2], &[&k3], Duration::days(1), day2).unwrap();
    // Long after k1 and k2 retired.
    let later = t0() + Duration::days(100);
    assert!(!v2.key(&k1.keyid()).unwrap().is_valid_at(later));
    assert!(!v3.key(&k2.keyid()).unwrap().is_valid_at(later));
    assert_eq!(accept_rotation(&v1, &e2, later).unwrap(), v2);
    assert_eq!(accept_chain(&v1, &[&e2, &e3], later).unwrap(), v3);
    // And what it ends with verifies bundles by the newest key only.
    let end = accept_chain(&v1, &[&e2, &e3], later).unwrap();
    assert!(verify_at(&bundle(1, &[&k3]), &end, later).is_ok());
    assert!(verify_at(&bundle(1, &[&k1]), &end, later).is_err());
    assert!(verify_at(&bundle(1, &[&k2]), &end, later).is_err());
}

#[test]
fn rotation_dated_in_the_future_is_refused() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let new = key();
    let now = t0() + Duration::days(1);
    let tomorrow = sign_anchors(
        &successor(&v1, &new, now + Duration::days(1)),
        &[&old, &new],
    );
    let err = accept_rotation(&v1, &tomorrow, now).unwrap_err();
    assert!(
        matches!(&err, AnchorsError::StepInFuture { keyid, .. } if *keyid == new.keyid()),
        "{err:?}"
    );
    assert!(err.to_string().contains("in the future"), "{err}");
    // A clock a minute ahead on the admin's side is within the allowance.
    let skewed = sign_anchors(
        &successor(&v1, &new, now + Duration::minutes(1)),
        &[&old, &new],
    );
    assert!(accept_rotation(&v1, &skewed, now).is_ok());
}

#[test]
fn rotation_signed_by_a_key_retired_at_the_step_time_is_refused() {
    let old = key();
    let mut v1 = anchors_for(&[&old], 1);
    v1.keys[0].valid_until = Some(t0() + Duration::days(30));
    let new = key();
    let now = t0() + Duration::days(60);
    // The step adds a key from day 31: the old key had retired by then.
    let late = sign_anchors(
        &successor(&v1, &new, t0() + Duration::days(31)),
        &[&old, &new],
    );
    let err = accept_rotation(&v1, &late, now).unwrap_err();
    assert!(
        matches!(err, AnchorsError::NotSignedByCurrent { valid: 0, at, .. } if at == t0() + Duration::days(31)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("outside its validity window"),
        "{err}"
    );
    // A step backdated into the key's old window does not help either: the key has
    // a planned end in the trusted anchors, so it never counts (this test used to
    // assert that it was accepted, "the rule's documented cost": issue 12).
    let backdated = sign_anchors(
        &successor(&v1, &new, t0() + Duration::days(20)),
        &[&old, &new],
    );
    let err = accept_rotation(&v1, &backdated, now).unwrap_err();
    assert!(
        matches!(err, AnchorsError::NotSignedByCurrent { valid: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not count"), "{err}");
}

/// Issue 12 (high): `keys rotate` keeps the retiring key K1 in v2 with an end; after
/// it retired and leaked, K1 + an attacker's key signed a v3 backdated into K1's
/// window, dropping the legitimate K2, and a holder of the *newest* anchors v2
/// accepted it.
#[test]
fn retired_key_cannot_sign_a_backdated_rotation_of_the_newest_anchors() {
    let k1 = key();
    let v1 = anchors_for(&[&k1], 1);
    let k2 = key();
    let rotated_at = t0() + Duration::days(10);
    let (v2, e2) = rotate(&v1, &[&k1], &[&k2], Duration::days(30), rotated_at).unwrap();
    let now = t0() + Duration::days(200);
    assert!(!v2.key(&k1.keyid()).unwrap().is_valid_at(now));

    let evil = key();
    let mut v3 = v2.clone();
    v3.version = 3;
    v3.keys = vec![AnchorKey::new(&evil, rotated_at + Duration::days(5), None)];
    let forged = sign_anchors(&v3, &[&k1, &evil]);
    let err = accept_rotation(&v2, &forged, now).unwrap_err();
    assert!(
        matches!(
            err,
            AnchorsError::NotSignedByCurrent {
                valid: 0,
                threshold: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("retires at"), "{err}");
    // Also within K1's window, and through a chain from v1.
    assert!(accept_rotation(&v2, &forged, rotated_at + Duration::days(6)).is_err());
    assert!(matches!(
        accept_chain(&v1, &[&e2, &forged], now),
        Err(AnchorsError::Chain { index: 2, .. })
    ));
    // The old step still walks (K1 had no end in v1), and K2 extends v2.
    assert_eq!(accept_rotation(&v1, &e2, now).unwrap(), v2);
    let k3 = key();
    let (v3, e3) = rotate(&v2, &[&k2], &[&k3], Duration::days(30), now).unwrap();
    assert_eq!(accept_chain(&v1, &[&e2, &e3], now).unwrap(), v3);
    // A rotation the admin makes while K1 is still retiring: K1 may co-sign.
    let mid = rotated_at + Duration::days(1);
    let (_, e3) = rotate(&v2, &[&k1, &k2], &[&k3], Duration::days(30), mid).unwrap();
    assert!(accept_rotation(&v2, &e3, now).is_ok());
}

#[test]
fn rotation_that_adds_no_key_is_checked_now() {
    let (a, b) = (key(), key());
    let mut v1 = anchors_for(&[&a, &b], 1);
    v1.keys[0].valid_until = Some(t0() + Duration::days(30));
    // Drops b, signed by a and b: the step has no time of its own.
    let mut only_a = v1.clone();
    only_a.version = 2;
    only_a.keys.remove(1);
    let envelope = sign_anchors(&only_a, &[&a, &b]);
    assert!(accept_rotation(&v1, &envelope, t0() + Duration::days(10)).is_ok());
    // After a retired, the new document has no valid key left to meet its threshold.
    let err = accept_rotation(&v1, &envelope, t0() + Duration::days(40)).unwrap_err();
    assert!(
        matches!(err, AnchorsError::NotSignedByNew { valid: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn rotation_that_skips_a_version_is_refused() {
    let old = key();
    let v1 = anchors_for(&[&old], 1);
    let new = key();
    let now = t0() + Duration::days(1);
    let mut skip = successor(&v1, &new, now);
    skip.version = 3;
    let err = accept_rotation(&v1, &sign_anchors(&skip, &[&old, &new]), now).unwrap_err();
    assert!(
        matches!(
            err,
            AnchorsError::VersionSkipped {
                version: 3,
                current: 1
            }
        ),
        "{err:?}"
    );
}

/// Issue 12: what `policy publish` checks after `keys rotate` — a bundle signed only
/// by retiring keys verifies today and is refused from the threshold-th latest end.
#[test]
fn outlived_bundle_names_when_new_devices_refuse_it() {
    use fleetkit::workspace::rotate::{OutlivedBundle, outlived_bundle};
    let (a, b) = (key(), key());
    let v1 = anchors_for(&[&a, &b], 2);
    let (n1, n2) = (key(), key());
    let now = t0() + Duration::days(1);
    assert_eq!(outlived_bundle(&v1, &bundle(1, &[&a, &b])), None);
    let (mut v2, _) = rotate(&v1, &[&a, &b], &[&n1, &n2], Duration::days(30), now).unwrap();
    assert_eq!(
        outlived_bundle(&v2, &bundle(1, &[&a, &b])),
        Some(OutlivedBundle {
            version: 1,
            refused_from: now + Duration::days(30)
        })
    );
    // One lasting and one retiring signer of threshold 2: refused when `a` ends.
    v2.keys[0].valid_until = Some(now + Duration::days(10));
    assert_eq!(
        outlived_bundle(&v2, &bundle(3, &[&a, &n1])),
        Some(OutlivedBundle {
            version: 3,
            refused_from: now + Duration::days(10)
        })
    );
    assert_eq!(outlived_bundle(&v2, &bundle(2, &[&n1, &n2])), None);
    // Not a threshold of the anchors' keys at all: for the verifier to explain.
    assert_eq!(outlived_bundle(&v2, &bundle(2, &[&n1])), None);
}

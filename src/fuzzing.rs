//! Entry points of the cargo-fuzz targets in `fuzz/`. They live in the library so that
//! the regular test suite runs them over seed inputs (`tests/fuzz_seeds.rs`) and they
//! cannot rot between fuzzing campaigns.

use crate::anchors::{AnchorKey, TrustAnchors};
use crate::bundle::{self, BundlePayload, VerifyOptions};
use crate::diag::SourceFile;
use crate::pki::PolicyKey;
use std::sync::OnceLock;
use time::OffsetDateTime;

/// The org of the fuzzing fixture.
pub const FUZZ_ORG: &str = "fuzz-org";

/// Parses and validates `data` as a policy. Any outcome but a panic is fine.
pub fn policy_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::policy::parse(&SourceFile::new("fuzz.yaml", text));
}

/// Verifies `data` as a bundle against the fixture anchors. Any outcome but a panic
/// is fine.
pub fn bundle_verify(data: &[u8]) {
    let f = fixture();
    let _ = bundle::verify_bundle(
        data,
        &f.anchors,
        &VerifyOptions {
            now: f.now,
            expected_org: Some(FUZZ_ORG),
            stored_version: Some(1),
        },
    );
}

/// A correctly signed bundle for the fixture key: a seed that lets the fuzzer reach
/// past the signature check.
pub fn seed_bundle(version: u64, policy: serde_json::Value) -> Vec<u8> {
    let f = fixture();
    let payload = BundlePayload {
        org: FUZZ_ORG.into(),
        version,
        issued_at: f.now,
        expires_at: f.now + time::Duration::days(1),
        policy: serde_json::value::to_raw_value(&policy).unwrap_or_default(),
    };
    bundle::sign_bundle(&payload, &[&f.key]).unwrap_or_default()
}

struct Fixture {
    key: PolicyKey,
    anchors: TrustAnchors,
    now: OffsetDateTime,
}

/// A fixed key and time, so seeds stay valid across runs. Never a real key.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let now = OffsetDateTime::from_unix_timestamp(1_764_547_200)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let key = PolicyKey::from_seed(&[7u8; 32]);
        let anchors = TrustAnchors {
            org: FUZZ_ORG.into(),
            version: 1,
            threshold: 1,
            keys: vec![AnchorKey::new(&key, now - time::Duration::days(1), None)],
            root_ca: Vec::new(),
        };
        Fixture { key, anchors, now }
    })
}

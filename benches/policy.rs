//! Benchmarks of the admin hot paths (issue 2 goals): check + sign of a 1,000-rule
//! policy (goal < 20 ms) and verification of a bundle (goal < 1 ms).
//!
//! Run: `cargo bench --bench policy`.

use criterion::{Criterion, criterion_group, criterion_main};
use fleetkit::anchors::{AnchorKey, TrustAnchors};
use fleetkit::bundle::{self, BundlePayload, VerifyOptions};
use fleetkit::diag::SourceFile;
use fleetkit::pki::{OrgCa, PolicyKey};
use std::hint::black_box;

/// A valid policy with `n` rules: half blocked patterns, half allowed tools.
fn big_policy(n: usize) -> String {
    let mut s = String::from(
        "version: \"1.0\"\norganization: \"bench-org\"\neffective_date: \"2025-12-01\"\nsafety:\n  risk_tolerance: low\n  blocked_patterns:\n",
    );
    for i in 0..n / 2 {
        s.push_str(&format!(
            "    - pattern: 'rm\\s+-rf\\s+/data/{i}(/|$)'\n      reason: \"rule {i}: protects data set {i}\"\n"
        ));
    }
    s.push_str("allowed_tools:\n");
    for i in 0..n - n / 2 {
        s.push_str(&format!(
            "  - name: \"tool-{i}\"\n    versions: [\">=1.{i}.0\", \"<{}.0.0\"]\n    approved_contexts: [\"dev-*\"]\n    blocked_contexts: [\"prod-*\"]\n    required_flags: [\"--dry-run\"]\n",
            i + 2
        ));
    }
    s
}

struct Setup {
    key: PolicyKey,
    anchors: TrustAnchors,
    now: time::OffsetDateTime,
}

fn setup() -> Setup {
    let now = fleetkit::clock::now();
    let key = PolicyKey::generate().expect("key");
    let ca = OrgCa::generate("bench-org", now).expect("ca");
    let anchors = TrustAnchors {
        org: "bench-org".into(),
        version: 1,
        threshold: 1,
        keys: vec![AnchorKey::new(&key, now - time::Duration::hours(1), None)],
        root_ca: vec![ca.root_cert_pem()],
    };
    Setup { key, anchors, now }
}

fn check_and_sign(text: &str, s: &Setup) -> Vec<u8> {
    let checked =
        fleetkit::policy::parse(&SourceFile::new("policy.yaml", text)).expect("valid policy");
    let payload = BundlePayload {
        org: "bench-org".into(),
        version: 1,
        issued_at: s.now,
        expires_at: s.now + time::Duration::days(30),
        policy: serde_json::value::to_raw_value(&checked.policy).expect("json"),
    };
    bundle::sign_bundle(&payload, &[&s.key]).expect("sign")
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let text = big_policy(1000);
    c.bench_function("check+sign 1000-rule policy", |b| {
        b.iter(|| check_and_sign(black_box(&text), &s))
    });

    let example =
        include_str!("../examples/acme-corp/policy.yaml").replace("acme-corp", "bench-org");
    for (name, policy) in [
        ("example policy", example.as_str()),
        ("1000-rule policy", text.as_str()),
    ] {
        let bytes = check_and_sign(policy, &s);
        let opts = VerifyOptions {
            now: s.now,
            expected_org: Some("bench-org"),
            stored_version: None,
        };
        c.bench_function(
            &format!("verify bundle ({name}, {} bytes)", bytes.len()),
            |b| {
                b.iter(|| {
                    bundle::verify_bundle(black_box(&bytes), &s.anchors, &opts).expect("valid")
                })
            },
        );
    }
}

criterion_group!(policy, benches);
criterion_main!(policy);

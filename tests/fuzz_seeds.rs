//! Runs the cargo-fuzz entry points over seed inputs and systematic mutations of
//! them, so the fuzz targets are exercised (and kept compiling) by every test run.

use std::path::Path;

fn policy_seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = vec![std::fs::read(root.join("examples/acme-corp/policy.yaml")).unwrap()];
    for dir in [
        "tests/fixtures/policies/valid",
        "tests/fixtures/policies/bad",
    ] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                seeds.push(std::fs::read(e.path()).unwrap());
            }
        }
    }
    seeds
}

/// Truncations and single-byte flips: cheap, and they reach the error paths.
fn mutations(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let step = (seed.len() / 16).max(1);
    for cut in (0..seed.len()).step_by(step) {
        out.push(seed[..cut].to_vec());
        for flip in [0x01u8, 0x20, 0x80] {
            let mut m = seed.to_vec();
            m[cut] ^= flip;
            out.push(m);
        }
    }
    out
}

#[test]
fn policy_parser_never_panics_on_mutated_seeds() {
    let seeds = policy_seeds();
    assert!(seeds.len() > 1);
    for seed in &seeds {
        fleetkit::fuzzing::policy_parse(seed);
        // The alias bomb costs its whole node budget on every parse: once is enough.
        if seed.windows(2).any(|w| w == b"*a") {
            continue;
        }
        for m in mutations(seed) {
            fleetkit::fuzzing::policy_parse(&m);
        }
    }
}

#[test]
fn bundle_verifier_never_panics_on_mutated_seeds() {
    let policy = serde_json::json!({"version": "1.0", "organization": fleetkit::fuzzing::FUZZ_ORG});
    let seeds = [
        fleetkit::fuzzing::seed_bundle(2, policy.clone()),
        fleetkit::fuzzing::seed_bundle(1, policy),
        b"{}".to_vec(),
        b"{\"payloadType\":\"application/vnd.fleetkit.policy+json\",\"payload\":\"\",\"signatures\":[]}".to_vec(),
    ];
    assert!(!seeds[0].is_empty(), "the seed bundle must be signed");
    for seed in &seeds {
        fleetkit::fuzzing::bundle_verify(seed);
        for m in mutations(seed) {
            fleetkit::fuzzing::bundle_verify(&m);
        }
    }
}

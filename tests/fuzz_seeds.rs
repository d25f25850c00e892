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

fn scep_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(fleetkit::fuzzing::SCEP_FIXTURE_DIR)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "der"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    seeds
}

/// The seeds are real pkiMessages encrypted to the test-only fixture RA: each must get
/// all the way through (parse, signature, decrypt, CSR), or the fuzzer would only ever
/// see the outer layer.
#[test]
fn scep_seeds_reach_the_csr() {
    use fleetkit::fuzzing::{ScepReach, scep_message_reach};
    let seeds = scep_seeds();
    assert!(seeds.len() >= 8, "SCEP seeds missing: {seeds:?}");
    for (name, seed) in &seeds {
        assert_eq!(scep_message_reach(seed), ScepReach::CsrRead, "{name}");
    }
    // A byte flipped in the enveloped content (byte 200 is inside it in every seed)
    // no longer matches the signed messageDigest.
    for (name, seed) in &seeds {
        let mut flipped = seed.clone();
        flipped[200] ^= 1;
        assert_eq!(scep_message_reach(&flipped), ScepReach::Refused, "{name}");
    }
}

#[test]
fn scep_message_never_panics_on_mutated_seeds() {
    let mut seeds: Vec<Vec<u8>> = scep_seeds().into_iter().map(|(_, s)| s).collect();
    seeds.push(Vec::new());
    seeds.push(b"0".to_vec());
    for seed in &seeds {
        fleetkit::fuzzing::scep_message(seed);
        for m in mutations(seed) {
            fleetkit::fuzzing::scep_message(&m);
        }
    }
}

#[test]
fn decision_engine_never_panics_on_mutated_corpus_commands() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for name in ["acme-corpus.yaml", "medium-corpus.yaml"] {
        let text = std::fs::read_to_string(root.join("tests/fixtures/enforce").join(name)).unwrap();
        let file = fleetkit::enforce::cases::parse(&text).unwrap();
        seeds.extend(
            file.cases
                .iter()
                .filter_map(|c| c.value.command.clone())
                .map(String::into_bytes),
        );
    }
    assert!(seeds.len() > 300);
    for seed in &seeds {
        fleetkit::fuzzing::decide(seed);
        for m in mutations(seed) {
            fleetkit::fuzzing::decide(&m);
        }
    }
}

//! Entry points of the cargo-fuzz targets in `fuzz/`. They live in the library so that
//! the regular test suite runs them over seed inputs (`tests/fuzz_seeds.rs`) and they
//! cannot rot between fuzzing campaigns: the policy parser, the bundle verifier and the
//! SCEP message layer (with a test-only RA in `tests/fixtures/scep/`), and the
//! decision engine.

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

/// Decides `data` as a command line under the example org's policy (compiled once).
/// Any decision but a panic, a hang or an empty rule is fine; a line that does not
/// parse must never be allowed.
pub fn decide(data: &[u8]) {
    use crate::enforce::{Engine, FixedContext, Request, Verdict};
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let text = include_str!("../examples/acme-corp/policy.yaml");
        let checked = crate::policy::parse(&SourceFile::new("policy.yaml", text)).ok()?;
        Engine::compile(&checked.policy).ok()
    });
    let Some(engine) = engine else {
        return;
    };
    let command = String::from_utf8_lossy(data).into_owned();
    let ctx = FixedContext {
        home: Some("/home/fuzz".into()),
        cwd: Some("/home/fuzz/src".into()),
        ..FixedContext::default()
    };
    let d = engine.decide(
        &Request::Command {
            command: command.clone(),
            cwd: None,
        },
        &ctx,
    );
    assert!(!d.rule.is_empty(), "a decision without a rule: {command:?}");
    if d.verdict == Verdict::Allow {
        let parsed = crate::enforce::wrappers::expand(&command);
        assert!(
            parsed.unresolved.is_empty(),
            "allowed although not analysed: {command:?}"
        );
    }
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

/// The SCEP fixtures: a test-only RA certificate and key, and pkiMessages encrypted to
/// it (`tests/fixtures/scep/`). Read from the source tree at first use, not embedded,
/// so no key (even a test one) ends up in a binary.
pub const SCEP_FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scep");
/// File names of the test-only RA in [`SCEP_FIXTURE_DIR`].
pub const SCEP_RA_CERT_FILE: &str = "test-only-ra.pem";
pub const SCEP_RA_KEY_FILE: &str = "test-only-ra.key";

/// How far [`scep_message`] got with an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScepReach {
    /// Not a pkiMessage that verifies.
    Refused,
    /// Parsed and its signature verified.
    Parsed,
    /// Its envelope opened with the fixture RA key.
    Decrypted,
    /// The plaintext is a PKCS#10 request whose self-signature verifies.
    CsrRead,
}

/// Parses `data` as a SCEP pkiMessage, opens it with the fixture RA, reads the CSR
/// inside, answers it with a FAILURE CertRep; and reads `data` itself as a CSR. Any
/// outcome but a panic is fine.
pub fn scep_message(data: &[u8]) {
    let _ = scep_message_reach(data);
}

/// [`scep_message`], saying how far the input got (for the seed tests).
pub fn scep_message_reach(data: &[u8]) -> ScepReach {
    use crate::scep::request::{Recipient, read_csr};
    use crate::scep::{CertRepStatus, FailInfo, RequestError, reply};
    let ra = scep_ra();
    let _ = read_csr(data);
    let message = match crate::scep::parse(data) {
        Ok(m) => m,
        Err(RequestError::Failure { header, .. }) => {
            let _ = reply::cert_rep(
                &ra.signer(),
                &header,
                CertRepStatus::Failure(FailInfo::BadMessageCheck),
            );
            return ScepReach::Refused;
        }
        Err(RequestError::Unreadable { .. }) => return ScepReach::Refused,
    };
    let _ = reply::cert_rep(
        &ra.signer(),
        &message.header,
        CertRepStatus::Failure(FailInfo::BadRequest),
    );
    let recipient = Recipient {
        key: &ra.key,
        cert: &ra.cert,
    };
    // Single DES allowed: it reaches one more cipher (refusing it is a plain branch).
    let Ok((plain, _cipher)) = message.decrypt(&recipient, true) else {
        return ScepReach::Parsed;
    };
    match read_csr(&plain) {
        Ok(_) => ScepReach::CsrRead,
        Err(_) => ScepReach::Decrypted,
    }
}

struct ScepRaFixture {
    key: rsa::PrivateKey,
    /// The same key for ring, as the server holds it (SHA-256/512 replies sign with it).
    ring: Option<ring::signature::RsaKeyPair>,
    cert: x509_cert::Certificate,
    cert_der: Vec<u8>,
}

impl ScepRaFixture {
    fn signer(&self) -> crate::scep::reply::Signer<'_> {
        crate::scep::reply::Signer {
            key: &self.key,
            ring: self.ring.as_ref(),
            cert_der: &self.cert_der,
        }
    }
}

/// The test-only RA of `tests/fixtures/scep/`. A missing or broken fixture is a
/// broken checkout, not an input: it panics with the path, so a campaign never runs
/// blind past the signature.
fn scep_ra() -> &'static ScepRaFixture {
    use rsa::pkcs8::DecodePrivateKey;
    static F: OnceLock<ScepRaFixture> = OnceLock::new();
    F.get_or_init(|| {
        let read = |name: &str| {
            let path = format!("{SCEP_FIXTURE_DIR}/{name}");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("fuzz fixture {path}: {e}"));
            // The files open with a comment saying they are test-only; PEM starts at
            // the first boundary.
            let start = text.find("-----BEGIN").unwrap_or(0);
            (path, text[start..].to_string())
        };
        let (key_path, key_pem) = read(SCEP_RA_KEY_FILE);
        let key = rsa::PrivateKey::from_pkcs8_pem(&key_pem)
            .unwrap_or_else(|e| panic!("fuzz fixture {key_path}: not a PKCS#8 RSA key ({e})"));
        let (cert_path, cert_pem) = read(SCEP_RA_CERT_FILE);
        let cert_der = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map(|(_, block)| block.contents)
            .unwrap_or_else(|e| panic!("fuzz fixture {cert_path}: not a PEM certificate ({e})"));
        let cert = crate::scep::request::certificate(&cert_der)
            .unwrap_or_else(|| panic!("fuzz fixture {cert_path}: not an X.509 certificate"));
        let ring = crate::pki::scep_ra::ring_key(&key);
        ScepRaFixture {
            key,
            ring,
            cert,
            cert_der,
        }
    })
}

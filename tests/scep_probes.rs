//! Red-team probes of the SCEP service (`fleetkit serve`, /scep), kept as regression
//! tests. Each `probe_…` test asserts the secure behaviour and failed while the
//! defect it describes existed (all nine are fixed; "Defect" below says what it
//! was); each `held_…` test checks an attack that the service withstood, so that it
//! stays withstood. They drive the macOS-shaped client (tests/scep/macos_client.py,
//! with its red-team options: --padding-oracle, --concurrent, --email-san, --uri-san,
//! --save-csr) and the admin and device APIs.
//!
//! Run: `FLEETKIT_TEST_PYTHON=~/.cache/fleetkit/ansible-venv/bin/python3 cargo test
//! --test scep_probes` (and `FLEETKIT_TEST_POSTGRES=$(scripts/postgres.sh)` for the
//! PostgreSQL half).

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use support::scep::*;
use support::*;

/// An agent-registered Mac in `team` with the hardware serial `serial`.
fn agent_mac(server: &Server, org: &Org, team: &str, machine_id: &str, serial: &str) -> Device {
    let token = create_token(server, org, team, 1, 3600);
    let mut device = Device::new(machine_id, None);
    device.facts.serial = Some(serial.into());
    device.facts.platform = "darwin-arm64".into();
    let a = enroll(server, org, &mut device, &token.token);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    device
}

/// Records a failed check (so that every database is probed before the test fails).
macro_rules! check {
    ($failures:expr, $ok:expr, $($message:tt)+) => {
        if !$ok {
            $failures.push(format!($($message)+));
        }
    };
}

// ----- probes: each fails while its defect exists --------------------------------------

/// Was a defect: a certificate that was already renewed renews again, any number of times
/// (the renewal path checks only "issued by us over SCEP, unexpired, unrevoked"; a
/// renewal neither supersedes nor revokes the certificate it renews). A stolen SCEP
/// key keeps minting fresh certificates long after the Mac moved on.
#[test]
fn probe_a_superseded_scep_certificate_cannot_renew_again() {
    let org = Org::new();
    let mut failures = Vec::new();
    for db in databases() {
        let server = Server::start(&org, db);
        let challenge = create_scep_token(&server, &org, "mac", 1, 3600);
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp(&dir, n);
        let first = mac(
            &server,
            &org,
            &[
                "--challenge",
                &challenge.token,
                "--subject",
                "CN=C02FORK",
                "--key-out",
                &p("k1.pem"),
                "--cert-out",
                &p("c1.pem"),
            ],
        );
        assert_eq!(status(&first), ("SUCCESS", None), "{first}");
        let renew_c1 = |n: &str| {
            mac(
                &server,
                &org,
                &[
                    "--subject",
                    "CN=C02FORK",
                    "--renew-with-cert",
                    &p("c1.pem"),
                    "--renew-with-key",
                    &p("k1.pem"),
                    "--key-out",
                    &p(&format!("k{n}.pem")),
                    "--cert-out",
                    &p(&format!("c{n}.pem")),
                ],
            )
        };
        let second = renew_c1("2");
        assert_eq!(status(&second), ("SUCCESS", None), "{second}");
        // c1 is superseded by c2; a new renewal signed by c1 (new key, so a new
        // transactionID) must be refused.
        let fork = renew_c1("3");
        check!(
            failures,
            !succeeded(&fork),
            "{db:?}: the superseded certificate c1 renewed again: serial {} beside c2 {}",
            fork["cert_serial"],
            second["cert_serial"]
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Was a defect: a renewal takes the subject (CN, serialNumber) and subjectAltNames from
/// the renewal's CSR instead of the certificate it renews: with no challenge, a
/// holder of any SCEP certificate gets one naming another Mac of its team.
#[test]
fn probe_a_renewal_keeps_the_names_of_the_certificate_it_renews() {
    let org = Org::new();
    let mut failures = Vec::new();
    for db in databases() {
        let server = Server::start(&org, db);
        let challenge = create_scep_token(&server, &org, "mac", 1, 3600);
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp(&dir, n);
        let first = mac(
            &server,
            &org,
            &[
                "--challenge",
                &challenge.token,
                "--subject",
                "CN=C02MINE",
                "--key-out",
                &p("k1.pem"),
                "--cert-out",
                &p("c1.pem"),
            ],
        );
        assert_eq!(status(&first), ("SUCCESS", None), "{first}");
        let renamed = mac(
            &server,
            &org,
            &[
                "--subject",
                "CN=C02VICTIM,SERIALNUMBER=C02VICTIM",
                "--renew-with-cert",
                &p("c1.pem"),
                "--renew-with-key",
                &p("k1.pem"),
            ],
        );
        check!(
            failures,
            !(succeeded(&renamed)
                && renamed["cert_subject"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("C02VICTIM")),
            "{db:?}: the renewal of CN=C02MINE was issued as {}",
            renamed["cert_subject"]
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Was a defect: removing a device revokes the SCEP certificates whose subject names its
/// serial *now*; a certificate renewed from one of them under another name (see the
/// probe above) is not revoked and keeps renewing.
#[test]
fn probe_removing_a_device_stops_renewal_of_every_certificate_descended_from_its_own() {
    let org = Org::new();
    let mut failures = Vec::new();
    for db in databases() {
        let server = Server::start(&org, db);
        let device = agent_mac(&server, &org, "mac", "m-lineage", "C02LINEAGE");
        let _ = device;
        let challenge = create_scep_token(&server, &org, "mac", 1, 3600);
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp(&dir, n);
        let first = mac(
            &server,
            &org,
            &[
                "--challenge",
                &challenge.token,
                "--subject",
                "CN=C02LINEAGE",
                "--key-out",
                &p("k1.pem"),
                "--cert-out",
                &p("c1.pem"),
            ],
        );
        assert_eq!(status(&first), ("SUCCESS", None), "{first}");
        // Renewed under a name that is no device's serial.
        let moved = mac(
            &server,
            &org,
            &[
                "--subject",
                "CN=not-a-serial",
                "--renew-with-cert",
                &p("c1.pem"),
                "--renew-with-key",
                &p("k1.pem"),
                "--key-out",
                &p("k2.pem"),
                "--cert-out",
                &p("c2.pem"),
            ],
        );
        if !succeeded(&moved) {
            continue; // names kept on renewal: nothing escapes the revocation
        }
        let row = inventory(&server, &org)
            .into_iter()
            .find(|d| d.machine_id == "m-lineage")
            .unwrap();
        server.admin(&org).remove_device(&row.device_id).unwrap();
        let after = mac(
            &server,
            &org,
            &[
                "--subject",
                "CN=not-a-serial",
                "--renew-with-cert",
                &p("c2.pem"),
                "--renew-with-key",
                &p("k2.pem"),
            ],
        );
        check!(
            failures,
            !succeeded(&after),
            "{db:?}: the device was removed, yet the certificate renewed from its own renewed again: {after}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Was a defect: the inventory joins a device with the newest SCEP certificate of its team
/// whose subject names its serial, and the subject is whatever the request says. Any
/// Mac in the profile's scope (the challenge sits in the profile) puts its own
/// certificate on another Mac's row.
#[test]
fn probe_a_shared_challenge_cannot_put_its_certificate_on_another_macs_row() {
    let org = Org::new();
    let mut failures = Vec::new();
    for db in databases() {
        let server = Server::start(&org, db);
        agent_mac(&server, &org, "mac", "m-victim", "C02VICTIM");
        let challenge = create_scep_token(&server, &org, "mac", 5, 3600);
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp(&dir, n);
        let own = mac(
            &server,
            &org,
            &[
                "--challenge",
                &challenge.token,
                "--subject",
                "CN=C02VICTIM",
                "--cert-out",
                &p("victim.pem"),
            ],
        );
        assert_eq!(status(&own), ("SUCCESS", None), "{own}");
        // Another Mac of the same scope, same challenge, naming the victim's serial.
        let other = mac(
            &server,
            &org,
            &[
                "--challenge",
                &challenge.token,
                "--subject",
                "CN=someone-else,SERIALNUMBER=C02VICTIM",
            ],
        );
        assert_eq!(status(&other), ("SUCCESS", None), "{other}");
        let row = inventory(&server, &org)
            .into_iter()
            .find(|d| d.machine_id == "m-victim")
            .unwrap();
        let shown = row
            .profile_certificate
            .as_ref()
            .map(|c| c.serial.clone())
            .unwrap_or_default();
        check!(
            failures,
            !same_serial(&shown, other["cert_serial"].as_str().unwrap()),
            "{db:?}: the victim's inventory row shows the other Mac's certificate {:?}",
            row.profile_certificate
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Was a defect (DESIGN.md, PKI: "machine certificates are built from the server's own
/// template ... whatever the CSR asks for"): SCEP certificates, chained to the org root
/// with clientAuth, carry the e-mail addresses, URIs and DNS names the requester
/// chose (only their syntax is checked), including the server's own host name.
#[test]
fn probe_scep_certificates_carry_no_names_the_request_chooses() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let challenge = create_scep_token(&server, &org, "mac", 5, 3600);
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    let v = mac(
        &server,
        &org,
        &[
            "--challenge",
            &challenge.token,
            "--subject",
            "CN=C02NAMES",
            "--email-san",
            "ceo@acme-corp.example",
            "--uri-san",
            "spiffe://acme-corp.example/admin",
            "--dns-san",
            "localhost",
            "--cert-out",
            cert.to_str().unwrap(),
        ],
    );
    if !succeeded(&v) {
        return;
    }
    let sans = san_text(&cert);
    for chosen in [
        "ceo@acme-corp.example",
        "spiffe://acme-corp.example/admin",
        "DNS:localhost",
    ] {
        assert!(
            !sans.contains(chosen),
            "the certificate names {chosen:?}, as the request asked:\n{sans}"
        );
    }
}

/// Was a defect: a CBC padding oracle. The EnvelopedData of someone else's request, re-sent
/// under the attacker's own signature with a chosen IV, is answered with failInfo
/// badMessageCheck ("does not decrypt") when the padding is bad and badRequest ("not
/// a PKCS#10 request") when it is good, so whoever captured a request (a TLS-
/// terminating proxy, a log of request bodies, SCEP behind plain HTTP) recovers its
/// plaintext, challenge included, a byte per <= 256 requests.
#[test]
fn probe_a_captured_request_is_no_padding_oracle() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let challenge = create_scep_token(&server, &org, "mac", 5, 3600);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp(&dir, n);
    let victim = mac(
        &server,
        &org,
        &[
            "--challenge",
            &challenge.token,
            "--subject",
            "CN=C02CAPTURED",
            "--cipher",
            "aes128",
            "--save-request",
            &p("captured.der"),
            "--save-csr",
            &p("csr.der"),
        ],
    );
    assert_eq!(status(&victim), ("SUCCESS", None), "{victim}");
    // Where the challenge sits in the plaintext: pick the block whose last bytes are
    // inside it.
    let csr = std::fs::read(p("csr.der")).unwrap();
    let secret = challenge.token.as_bytes();
    let at = csr
        .windows(secret.len())
        .position(|w| w == secret)
        .expect("the challenge is in the CSR");
    const BYTES: usize = 3;
    let block = (at + secret.len()) / 16 - 1;
    let end = (block + 1) * 16;
    assert!(end - BYTES >= at && end <= at + secret.len());
    let oracle = mac(
        &server,
        &org,
        &[
            "--padding-oracle",
            &p("captured.der"),
            "--oracle-block",
            &block.to_string(),
            "--oracle-bytes",
            &BYTES.to_string(),
        ],
    );
    assert_eq!(oracle["status"], "ORACLE", "{oracle}");
    let recovered = hex::decode(oracle["recovered_hex"].as_str().unwrap()).unwrap();
    assert_ne!(
        recovered,
        csr[end - BYTES..end].to_vec(),
        "recovered {:?} of the victim's challenge in {} requests; answers: {}",
        String::from_utf8_lossy(&recovered),
        oracle["oracle_queries"],
        oracle["oracle_answers"]
    );
}

/// Was a defect (low): the unauthenticated /scep endpoint's X-Fleetkit-Reason tells an
/// agent enrollment token from an unknown string, and a revoked, expired or used-up
/// challenge from an unknown one: whoever holds a leaked string learns, without
/// spending a use or leaving a device record, whether it is a live agent token.
#[test]
fn probe_refusals_do_not_tell_what_a_guessed_token_is() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let agent_token = create_token(&server, &org, "mac", 5, 3600);
    let revoked = create_scep_token(&server, &org, "mac", 5, 3600);
    server.admin(&org).revoke_token(&revoked.info.id).unwrap();
    let mut reasons = Vec::new();
    for (what, challenge) in [
        (
            "unknown",
            "fkt_NotAChallengeThisServerKnowsAtAllxxxxxxxxxxx".to_string(),
        ),
        ("agent token", agent_token.token.clone()),
        ("revoked challenge", revoked.token.clone()),
    ] {
        let v = mac(
            &server,
            &org,
            &["--challenge", &challenge, "--subject", "CN=C02GUESS"],
        );
        assert_eq!(status(&v), ("FAILURE", Some("badRequest")), "{what}: {v}");
        reasons.push((what, v["reason"].as_str().unwrap_or_default().to_string()));
    }
    let (_, unknown) = &reasons[0];
    for (what, reason) in &reasons[1..] {
        assert_eq!(
            reason, unknown,
            "the {what} is answered differently from an unknown string"
        );
    }
}

/// Was a defect (low): a PKCSReq that carries a valid challenge of team A but is signed by a
/// live SCEP certificate of team B is taken as a renewal of team B: the challenge is
/// neither checked nor spent, and the Mac that IT moved to team A stays in team B.
#[test]
fn probe_a_new_challenge_is_not_ignored_when_an_old_certificate_signs() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    agent_mac(&server, &org, "team-a", "m-mover", "C02MOVER");
    let old_team = create_scep_token(&server, &org, "team-b", 1, 3600);
    let new_team = create_scep_token(&server, &org, "team-a", 1, 3600);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp(&dir, n);
    let first = mac(
        &server,
        &org,
        &[
            "--challenge",
            &old_team.token,
            "--subject",
            "CN=C02MOVER",
            "--key-out",
            &p("k1.pem"),
            "--cert-out",
            &p("c1.pem"),
        ],
    );
    assert_eq!(status(&first), ("SUCCESS", None), "{first}");
    let moved = mac(
        &server,
        &org,
        &[
            "--challenge",
            &new_team.token,
            "--challenge-on-renewal",
            "--subject",
            "CN=C02MOVER",
            "--renew-with-cert",
            &p("c1.pem"),
            "--renew-with-key",
            &p("k1.pem"),
            "--renewal-message-type",
            "19",
        ],
    );
    if !succeeded(&moved) {
        return; // refused: the ambiguity is not resolved silently
    }
    let row = inventory(&server, &org)
        .into_iter()
        .find(|d| d.machine_id == "m-mover")
        .unwrap();
    assert!(
        token_uses(&server, &org, &new_team.info.id) == 1
            && row
                .profile_certificate
                .is_some_and(|c| same_serial(&c.serial, moved["cert_serial"].as_str().unwrap())),
        "team A's challenge was ignored: the new certificate stayed in team B"
    );
}

/// Was a defect: nothing an admin can do stops a SCEP certificate that names no registered
/// device. Revoking the challenge that granted it does not stop its renewals (each
/// renewal carries the challenge's id, unused), removal revokes only certificates whose
/// subject names a removed device's serial, and the admin API has no SCEP listing or
/// revocation. Whoever enrolled with a leaked challenge renews for ever.
#[test]
fn probe_revoking_a_challenge_stops_the_renewals_of_what_it_granted() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let challenge = create_scep_token(&server, &org, "mac", 5, 3600);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp(&dir, n);
    let rogue = mac(
        &server,
        &org,
        &[
            "--challenge",
            &challenge.token,
            "--subject",
            "CN=rogue-not-a-mac",
            "--key-out",
            &p("k1.pem"),
            "--cert-out",
            &p("c1.pem"),
        ],
    );
    assert_eq!(status(&rogue), ("SUCCESS", None), "{rogue}");
    // IT learns the challenge leaked and revokes it with what it admitted
    // (`fleetkit token revoke ID --certificates`); a plain revoke (a routine
    // rotation) leaves issued certificates renewing.
    server
        .admin(&org)
        .revoke_token_and(&challenge.info.id, true)
        .unwrap();
    let renewed = mac(
        &server,
        &org,
        &[
            "--subject",
            "CN=rogue-not-a-mac",
            "--renew-with-cert",
            &p("c1.pem"),
            "--renew-with-key",
            &p("k1.pem"),
        ],
    );
    assert!(
        !succeeded(&renewed),
        "a certificate granted by a revoked challenge renewed: {renewed}"
    );
}

// ----- held: attacks the service withstood ---------------------------------------------

/// An HTTPS client presenting `cert_pem` with `key_pem` (any key type).
fn client_with_cert(org: &Org, cert_pem: &str, key_pem: &str) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let roots = vec![Certificate::from_pem(org.root_ca_pem().as_bytes()).unwrap()];
    let certs: Vec<Certificate<'static>> =
        x509_parser::pem::Pem::iter_from_buffer(cert_pem.as_bytes())
            .map(|p| Certificate::from_der(&p.unwrap().contents).to_owned())
            .collect();
    let key = PrivateKey::from_pem(key_pem.as_bytes()).unwrap().to_owned();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .client_cert(Some(ClientCert::new_with_certs(&certs, key)))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Since the handshake no longer checks client chains, a certificate the org CA issued
/// over SCEP (clientAuth, chains to the root), a self-signed one and one of a foreign
/// CA with a device's subject must all fail device authentication; the device itself
/// still passes.
#[test]
fn held_only_a_devices_current_certificate_authenticates_after_the_lenient_handshake() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let device = agent_mac(&server, &org, "mac", "m-auth", "C02AUTH");
    let challenge = create_scep_token(&server, &org, "mac", 5, 3600);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp(&dir, n);
    let v = mac(
        &server,
        &org,
        &[
            // The SCEP certificate names the device's machine id and serial.
            "--challenge",
            &challenge.token,
            "--subject",
            "CN=m-auth,SERIALNUMBER=C02AUTH",
            "--key-out",
            &p("k.pem"),
            "--cert-out",
            &p("c.pem"),
        ],
    );
    assert_eq!(status(&v), ("SUCCESS", None), "{v}");
    let checkin = |agent: &ureq::Agent| {
        let body = serde_json::to_vec(&fleetkit::protocol::CheckinRequest {
            policy_version: None,
            facts: device.facts.clone(),
        })
        .unwrap();
        answer(
            agent
                .post(format!("{}/v1/checkin", server.url()))
                .header("content-type", "application/json")
                .send(&body[..]),
        )
    };
    // The device's own certificate: accepted.
    assert_eq!(checkin(&client(&org, Some(&device))).status, 200);
    // The SCEP certificate of the same names, with its chain.
    let scep_chain = format!(
        "{}{}",
        std::fs::read_to_string(p("c.pem")).unwrap(),
        org.issuing_ca_pem()
    );
    let scep = client_with_cert(
        &org,
        &scep_chain,
        &std::fs::read_to_string(p("k.pem")).unwrap(),
    );
    let a = checkin(&scep);
    assert_eq!((a.status, a.code()), (403, "unknown_certificate".into()));
    // A self-signed certificate with the device's subject and clientAuth: counts as
    // none.
    let foreign = tempfile::tempdir().unwrap();
    tool(Command::new("openssl").current_dir(foreign.path()).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.pem",
        "-days",
        "30",
        "-subj",
        "/CN=m-auth/O=acme-corp",
        "-addext",
        "extendedKeyUsage=clientAuth",
    ]));
    let stranger = client_with_cert(
        &org,
        &std::fs::read_to_string(foreign.path().join("leaf.pem")).unwrap(),
        &std::fs::read_to_string(foreign.path().join("leaf.key")).unwrap(),
    );
    let a = checkin(&stranger);
    assert_eq!(
        (a.status, a.code()),
        (401, "client_certificate_required".into())
    );
    // Anonymous SCEP still works for that client (the handshake did not fail).
    let caps = answer(
        stranger
            .get(format!("{}/scep?operation=GetCACaps", server.url()))
            .call(),
    );
    assert_eq!(caps.status, 200);
}

/// Two identical first requests at the same moment: one certificate, one use; a
/// one-use challenge raced by several different requests: exactly one certificate.
#[test]
fn held_concurrent_requests_issue_once_and_spend_once() {
    let org = Org::new();
    for db in databases() {
        let server = Server::start(&org, db);
        let challenge = create_scep_token(&server, &org, "mac", 5, 3600);
        let same = mac(
            &server,
            &org,
            &[
                "--challenge",
                &challenge.token,
                "--subject",
                "CN=C02TWICE",
                "--concurrent",
                "6",
            ],
        );
        let answers = same["answers"].as_array().expect("answers");
        let serials: std::collections::BTreeSet<_> = answers
            .iter()
            .map(|a| {
                assert_eq!(a["status"], "SUCCESS", "{db:?}: {same}");
                a["cert_serial"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(serials.len(), 1, "{db:?}: {same}");
        assert_eq!(token_uses(&server, &org, &challenge.info.id), 1);

        let one_use = create_scep_token(&server, &org, "mac", 1, 3600);
        let raced = mac(
            &server,
            &org,
            &[
                "--challenge",
                &one_use.token,
                "--subject",
                "CN=C02RACE",
                "--concurrent",
                "6",
                "--concurrent-distinct",
            ],
        );
        let answers = raced["answers"].as_array().expect("answers");
        let won = answers.iter().filter(|a| a["status"] == "SUCCESS").count();
        assert_eq!(won, 1, "{db:?}: {raced}");
        for a in answers.iter().filter(|a| a["status"] != "SUCCESS") {
            assert_eq!(a["fail_info"], "badRequest", "{db:?}: {raced}");
            assert!(
                !a["reason"].as_str().unwrap_or_default().contains("failed"),
                "{db:?}: a store failure under the race: {raced}"
            );
        }
        assert_eq!(token_uses(&server, &org, &one_use.info.id), 1);
    }
}

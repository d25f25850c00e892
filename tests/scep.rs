//! SCEP in `fleetkit serve`, checked with two independent clients: a client shaped
//! like Apple's (tests/scep/macos_client.py, Python `cryptography` + `asn1crypto`:
//! 3DES/AES, SHA-1/SHA-256, POST/GET, CertRep signature, nonces and transactionID
//! checked) and Debian's micromdm `scepclient` (Go). Certificates are checked with
//! `openssl verify` up to the org root; sequences (renewal, lost answers, replays,
//! used-up and revoked challenges, a removed device) with the store's answers.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::scep::*;
use support::*;

#[test]
fn the_macos_shaped_client_enrolls_with_each_cipher_digest_and_method() {
    let org = Org::new();
    for db in databases() {
        let server = Server::start(&org, db);
        let challenge = create_scep_token(&server, &org, "mac", 10, 3600);
        let dir = tempfile::tempdir().unwrap();
        for (cipher, digest, method) in [
            ("des3", "sha1", "post"),
            ("aes128", "sha256", "get"),
            ("aes256", "sha256", "post"),
            ("auto", "auto", "auto"),
        ] {
            let cert = dir.path().join(format!("{cipher}-{method}.pem"));
            let v = mac(
                &server,
                &org,
                &[
                    "--challenge",
                    &challenge.token,
                    "--subject",
                    &format!("CN=C02{cipher},O=ignored"),
                    "--cipher",
                    cipher,
                    "--digest",
                    digest,
                    "--method",
                    method,
                    "--cert-out",
                    cert.to_str().unwrap(),
                ],
            );
            assert_eq!(status(&v), ("SUCCESS", None), "{cipher}/{method}: {v}");
            // The reply uses the client's algorithms; the client checked the
            // signature, recipientNonce and transactionID (else exit 4).
            if cipher != "auto" {
                assert_eq!(v["cipher_in_reply"], cipher, "{v}");
                assert_eq!(v["digest_in_reply"], digest, "{v}");
            } else {
                // "AES" advertised: Apple picks AES-128 and SHA-256.
                assert_eq!(v["cipher_in_reply"], "aes128", "{v}");
            }
            verify(&org, &cert);
            let text = tool(Command::new("openssl").args([
                "x509",
                "-in",
                cert.to_str().unwrap(),
                "-noout",
                "-subject",
                "-ext",
                "basicConstraints,keyUsage,extendedKeyUsage",
            ]));
            // Our template: the request's CN, O = the org whatever it asked.
            assert!(
                text.contains(&format!("CN=C02{cipher}, O=acme-corp"))
                    || text.contains(&format!("CN = C02{cipher}, O = acme-corp")),
                "{text}"
            );
            assert!(text.contains("CA:FALSE"), "{text}");
            assert!(
                text.contains("Digital Signature, Key Encipherment"),
                "{text}"
            );
            assert!(text.contains("TLS Web Client Authentication"), "{text}");
        }
        assert_eq!(token_uses(&server, &org, &challenge.info.id), 4);
    }
}

#[test]
fn a_renewal_needs_no_challenge_and_a_lost_answer_costs_nothing() {
    let org = Org::new();
    for db in databases() {
        let server = Server::start(&org, db);
        let challenge = create_scep_token(&server, &org, "mac", 1, 3600);
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
        let first = mac(
            &server,
            &org,
            &[
                "--challenge",
                &challenge.token,
                "--subject",
                "CN=C02RENEW",
                "--key-out",
                &p("k1.pem"),
                "--cert-out",
                &p("c1.pem"),
                "--save-request",
                &p("r1.der"),
            ],
        );
        assert_eq!(status(&first), ("SUCCESS", None), "{first}");
        assert_eq!(token_uses(&server, &org, &challenge.info.id), 1);

        // The answer was lost: the same message again gets the same certificate,
        // although the one-use challenge is spent.
        let again = mac(
            &server,
            &org,
            &["--key-in", &p("k1.pem"), "--reuse-request", &p("r1.der")],
        );
        assert_eq!(status(&again), ("SUCCESS", None), "{again}");
        assert_eq!(again["cert_serial"], first["cert_serial"]);
        assert_eq!(token_uses(&server, &org, &challenge.info.id), 1);

        // A new request with the spent challenge: refused.
        let spent = mac(
            &server,
            &org,
            &["--challenge", &challenge.token, "--subject", "CN=C02OTHER"],
        );
        assert_eq!(status(&spent), ("FAILURE", Some("badRequest")), "{spent}");

        // The same transactionID with another key: refused.
        let tid = first["transaction_id"].as_str().unwrap();
        let other = create_scep_token(&server, &org, "mac", 5, 3600);
        let replay = mac(
            &server,
            &org,
            &[
                "--challenge",
                &other.token,
                "--subject",
                "CN=C02THIEF",
                "--transaction-id",
                tid,
            ],
        );
        assert_eq!(status(&replay), ("FAILURE", Some("badRequest")), "{replay}");
        assert_eq!(token_uses(&server, &org, &other.info.id), 0);

        // Renewal, as RenewalReq and as Apple sends it (a PKCSReq signed by the
        // current certificate), with a new key: no challenge, no use.
        for (n, message_type) in [("2", "17"), ("3", "19")] {
            let prev = if n == "2" { "1" } else { "2" };
            let renewed = mac(
                &server,
                &org,
                &[
                    "--subject",
                    "CN=C02RENEW",
                    "--renew-with-cert",
                    &p(&format!("c{prev}.pem")),
                    "--renew-with-key",
                    &p(&format!("k{prev}.pem")),
                    "--renewal-message-type",
                    message_type,
                    "--key-out",
                    &p(&format!("k{n}.pem")),
                    "--cert-out",
                    &p(&format!("c{n}.pem")),
                ],
            );
            assert_eq!(status(&renewed), ("SUCCESS", None), "{renewed}");
            assert_ne!(renewed["cert_serial"], first["cert_serial"]);
            verify(&org, Path::new(&p(&format!("c{n}.pem"))));
        }
        assert_eq!(token_uses(&server, &org, &challenge.info.id), 1);

        // Only the current certificate renews: c1 was renewed by c2 (a stolen old
        // certificate does not keep a lineage alive).
        let stale = mac(
            &server,
            &org,
            &[
                "--subject",
                "CN=C02RENEW",
                "--renew-with-cert",
                &p("c1.pem"),
                "--renew-with-key",
                &p("k1.pem"),
            ],
        );
        assert_eq!(status(&stale), ("FAILURE", Some("badRequest")), "{stale}");

        // A RenewalReq signed by a certificate this server did not issue over SCEP.
        let stranger_dir = tempfile::tempdir().unwrap();
        openssl_identity(stranger_dir.path(), "/CN=stranger");
        let (key, cert) = (
            stranger_dir.path().join("leaf.key"),
            stranger_dir.path().join("leaf.pem"),
        );
        let refused = mac(
            &server,
            &org,
            &[
                "--subject",
                "CN=C02RENEW",
                "--renew-with-cert",
                cert.to_str().unwrap(),
                "--renew-with-key",
                key.to_str().unwrap(),
            ],
        );
        assert_eq!(
            status(&refused),
            ("FAILURE", Some("badCertId")),
            "{refused}"
        );
    }
}

#[test]
fn bad_challenges_get_a_failure_and_no_certificate() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let revoked = create_scep_token(&server, &org, "mac", 5, 3600);
    server.admin(&org).revoke_token(&revoked.info.id).unwrap();
    let expiring = create_scep_token(&server, &org, "mac", 5, 1);
    let agent_token = create_token(&server, &org, "mac", 5, 3600);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    for (what, challenge) in [
        (
            "wrong",
            "fkt_NotAChallengeThisServerKnowsAtAllxxxxxxxxxxx".to_string(),
        ),
        ("not a token", "secret".to_string()),
        ("revoked", revoked.token.clone()),
        ("expired", expiring.token.clone()),
        ("agent token", agent_token.token.clone()),
    ] {
        let v = mac(
            &server,
            &org,
            &["--challenge", &challenge, "--subject", "CN=C02BAD"],
        );
        assert_eq!(status(&v), ("FAILURE", Some("badRequest")), "{what}: {v}");
    }
    let none = mac(&server, &org, &["--subject", "CN=C02NONE"]);
    assert_eq!(status(&none), ("FAILURE", Some("badRequest")), "{none}");
    // And a SCEP challenge does not register an agent.
    let scep = create_scep_token(&server, &org, "mac", 5, 3600);
    let mut device = Device::new("m-scep-token", None);
    let a = enroll(&server, &org, &mut device, &scep.token);
    assert_eq!((a.status, a.code()), (401, "token_unknown".to_string()));
    assert!(String::from_utf8_lossy(&a.body).contains("SCEP challenge"));
    assert_eq!(token_uses(&server, &org, &scep.info.id), 0);
}

#[test]
fn bad_input_is_a_failure_or_a_4xx_never_a_500() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let challenge = create_scep_token(&server, &org, "mac", 10, 3600);
    let dir = tempfile::tempdir().unwrap();
    // A request encrypted to another certificate than the RA.
    let (_, other_cert) = openssl_identity(dir.path(), "/CN=not-the-ra");
    let v = mac(
        &server,
        &org,
        &[
            "--challenge",
            &challenge.token,
            "--subject",
            "CN=C02ENC",
            "--encrypt-to",
            other_cert.to_str().unwrap(),
        ],
    );
    assert_eq!(status(&v), ("FAILURE", Some("badMessageCheck")), "{v}");
    for (what, extra) in [
        ("CA:TRUE", vec!["--request-ca"]),
        ("RSA-1024", vec!["--key-size", "1024"]),
        (
            "CN with a comma",
            vec!["--subject", "CN=C02X\\, serialNumber=C02Y"],
        ),
        ("single DES", vec!["--cipher", "des"]),
    ] {
        let mut args = vec!["--challenge", &challenge.token, "--subject", "CN=C02BADCSR"];
        args.extend(extra);
        let v = mac(&server, &org, &args);
        let want = if what == "single DES" {
            "badAlg"
        } else {
            "badRequest"
        };
        assert_eq!(status(&v), ("FAILURE", Some(want)), "{what}: {v}");
    }
    assert_eq!(token_uses(&server, &org, &challenge.info.id), 0);

    // Garbage, truncated and oversized messages: 4xx with a stable code.
    let saved = dir.path().join("good.der");
    let good = mac(
        &server,
        &org,
        &[
            "--challenge",
            &challenge.token,
            "--subject",
            "CN=C02GOOD",
            "--save-request",
            saved.to_str().unwrap(),
        ],
    );
    assert_eq!(status(&good), ("SUCCESS", None), "{good}");
    let good = std::fs::read(&saved).unwrap();
    let http = client(&org, None);
    let post = |body: Vec<u8>| {
        answer(
            http.post(format!("{}/scep?operation=PKIOperation", server.url()))
                .header("content-type", "application/x-pki-message")
                .send(&body[..]),
        )
    };
    for (what, body, want) in [
        ("garbage", b"hello".to_vec(), 400),
        ("truncated", good[..good.len() / 2].to_vec(), 400),
        ("empty", Vec::new(), 400),
    ] {
        let a = post(body);
        assert_eq!(
            a.status,
            want,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert!(
            String::from_utf8_lossy(&a.body).starts_with("scep_"),
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    // 10 MB: refused from its Content-Length, before the body is read (curl waits
    // for `100 Continue`, which never comes).
    let big = dir.path().join("big.der");
    std::fs::write(&big, vec![0x30; 10 * 1024 * 1024]).unwrap();
    let out = tool(Command::new("curl").args([
        "-sS",
        "-o",
        "/dev/stdout",
        "-w",
        "\n%{http_code}",
        "--cacert",
        org.path().join("keys/root-ca.pem").to_str().unwrap(),
        "-H",
        "content-type: application/x-pki-message",
        "--data-binary",
        &format!("@{}", big.display()),
        &format!("{}/scep?operation=PKIOperation", server.url()),
    ]));
    assert!(
        out.ends_with("413") && out.starts_with("scep_too_large"),
        "{out}"
    );
    // One flipped byte in the signature: a FAILURE CertRep, not a 500.
    let mut flipped = good.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x55;
    let a = post(flipped);
    assert_eq!(a.status, 200);
    assert_eq!(
        answer(
            http.get(format!(
                "{}/scep?operation=PKIOperation&message=%%%notbase64",
                server.url()
            ))
            .call()
        )
        .status,
        400
    );
    let caps = answer(
        http.get(format!("{}/scep?operation=GetCACaps", server.url()))
            .call(),
    );
    let caps = String::from_utf8_lossy(&caps.body).into_owned();
    for cap in [
        "POSTPKIOperation",
        "SHA-256",
        "SHA-1",
        "AES",
        "DES3",
        "SCEPStandard",
        "Renewal",
    ] {
        assert!(caps.lines().any(|l| l == cap), "{caps}");
    }
    assert!(!caps.lines().any(|l| l == "DES" || l == "MD5"), "{caps}");
    let unknown = answer(
        http.get(format!("{}/scep?operation=Nope", server.url()))
            .call(),
    );
    assert_eq!(unknown.status, 400);
}

/// Runs Debian's scepclient in `dir` (it keeps client.pem there and turns the next
/// run into a renewal).
fn scepclient(server: &Server, org: &Org, dir: &Path, challenge: &str) -> (bool, String) {
    let ra_fp = fingerprint(&org.path().join("keys/scep-ra.pem"), "-sha256").to_lowercase();
    let out = Command::new("scepclient")
        .current_dir(dir)
        // Go reads its trust roots from SSL_CERT_FILE.
        .env("SSL_CERT_FILE", org.path().join("keys/root-ca.pem"))
        .args(["-server-url", &format!("{}/scep", server.url())])
        .args([
            "-private-key",
            "key.pem",
            "-challenge",
            challenge,
            "-cn",
            "mac-scepclient",
        ])
        // Pins the RA: scepclient otherwise encrypts to every certificate of
        // GetCACert, and the issuing CA's key is EC.
        .args(["-ca-fingerprint", &ra_fp])
        .output()
        .expect("run scepclient (apt-get install scep)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join("client.pem").exists() && text.contains("SUCCESS"),
        text,
    )
}

#[test]
fn debian_scepclient_enrolls_and_renews_and_single_des_is_refused_by_default() {
    let org = Org::new();
    let mut strict = Server::start(&org, Db::Sqlite);
    let challenge = create_scep_token(&strict, &org, "mac", 3, 3600);
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = scepclient(&strict, &org, dir.path(), &challenge.token);
    assert!(!ok, "{text}");
    assert!(text.contains("badAlg"), "{text}");
    assert_eq!(token_uses(&strict, &org, &challenge.info.id), 0);
    strict.kill();

    // With the explicit setting for such a client.
    let server = Server::start_args(&org, Db::Sqlite, &["--scep-allow-des"]);
    let wrong = tempfile::tempdir().unwrap();
    let (ok, text) = scepclient(
        &server,
        &org,
        wrong.path(),
        "fkt_wrongwrongwrongwrongwrongwrongwrongwrong12",
    );
    assert!(!ok && text.contains("badRequest"), "{text}");
    let (ok, text) = scepclient(&server, &org, dir.path(), &challenge.token);
    assert!(ok, "{text}");
    let cert = dir.path().join("client.pem");
    verify(&org, &cert);
    let first = std::fs::read(&cert).unwrap();
    // The second run is its renewal (RenewalReq signed by client.pem).
    std::fs::remove_file(&cert).unwrap();
    std::fs::write(dir.path().join("client.pem"), &first).unwrap();
    let (ok, text) = scepclient(&server, &org, dir.path(), &challenge.token);
    assert!(ok, "{text}");
    assert_ne!(
        std::fs::read(&cert).unwrap(),
        first,
        "renewal gives a new certificate"
    );
    verify(&org, &cert);
    assert_eq!(token_uses(&server, &org, &challenge.info.id), 1);
}

#[test]
fn the_inventory_shows_the_profile_certificate_and_removal_stops_its_renewal() {
    let org = Org::new();
    for db in databases() {
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "mac", 2, 3600);
        let mut mac_device = Device::new("m-mac-1", None);
        mac_device.facts.serial = Some("C02SERIAL1".into());
        mac_device.facts.platform = "darwin-arm64".into();
        assert_eq!(
            enroll(&server, &org, &mut mac_device, &token.token).status,
            200
        );
        let mut other = Device::new("m-other", None);
        other.facts.serial = Some("C02SERIAL2".into());
        assert_eq!(enroll(&server, &org, &mut other, &token.token).status, 200);

        let challenge = create_scep_token(&server, &org, "mac", 5, 3600);
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
        let v = mac(
            &server,
            &org,
            &[
                "--challenge",
                &challenge.token,
                "--subject",
                "CN=C02SERIAL1,O=acme-corp",
                "--key-out",
                &p("k.pem"),
                "--cert-out",
                &p("c.pem"),
            ],
        );
        assert_eq!(status(&v), ("SUCCESS", None), "{v}");
        // Another team's challenge naming the same serial does not claim the device.
        let stranger = create_scep_token(&server, &org, "other-team", 5, 3600);
        let v2 = mac(
            &server,
            &org,
            &["--challenge", &stranger.token, "--subject", "CN=C02SERIAL2"],
        );
        assert_eq!(status(&v2), ("SUCCESS", None), "{v2}");

        let devices = inventory(&server, &org);
        let mac_row = devices.iter().find(|d| d.machine_id == "m-mac-1").unwrap();
        let profile = mac_row.profile_certificate.as_ref().expect("joined");
        let (ok, serial) = openssl(&["x509", "-in", &p("c.pem"), "-noout", "-serial"]);
        assert!(ok, "{serial}");
        assert_eq!(
            profile.serial,
            serial.trim().trim_start_matches("serial=").to_lowercase()
        );
        assert!(profile.subject.contains("CN=C02SERIAL1"), "{profile:?}");
        let other_row = devices.iter().find(|d| d.machine_id == "m-other").unwrap();
        assert!(other_row.profile_certificate.is_none(), "{other_row:?}");
        let out = fleetkit(&[
            "--workspace",
            &org.ws(),
            "devices",
            "list",
            "--server",
            &server.url(),
        ]);
        // The table shows when the profile certificate expires.
        let line = out
            .lines()
            .find(|l| l.contains(&mac_row.device_id))
            .unwrap();
        assert!(line.contains(&profile.not_after[..10]), "{out}");

        // Removed: its profile certificate renews no more.
        server
            .admin(&org)
            .remove_device(&mac_row.device_id)
            .unwrap();
        let renew = mac(
            &server,
            &org,
            &[
                "--subject",
                "CN=C02SERIAL1",
                "--renew-with-cert",
                &p("c.pem"),
                "--renew-with-key",
                &p("k.pem"),
            ],
        );
        assert_eq!(status(&renew), ("FAILURE", Some("badRequest")), "{renew}");
    }
}

/// macOS renewing its profile certificate presents its old leaf without the chain
/// (possibly expired): the handshake must not drop it. A presented certificate that
/// does not verify counts as none: SCEP answers, device endpoints refuse.
#[test]
fn a_client_certificate_that_does_not_verify_never_drops_the_connection() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let token = create_token(&server, &org, "mac", 1, 3600);
    let mut device = Device::new("m-tls", None);
    assert_eq!(enroll(&server, &org, &mut device, &token.token).status, 200);
    let bundle = |d: &Device| {
        answer(
            client(&org, Some(d))
                .get(format!("{}/v1/bundle", server.url()))
                .call(),
        )
    };
    let caps = |d: &Device| {
        answer(
            client(&org, Some(d))
                .get(format!("{}/scep?operation=GetCACaps", server.url()))
                .call(),
        )
        .status
    };
    assert_eq!(bundle(&device).status, 200);

    // The leaf alone: the server completes the chain with its issuing CA.
    let chain = device.chain_pem.clone().unwrap();
    let leaf_only = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let mut leaf_device = Device::new("m-tls", None);
    leaf_device.key = rcgen::KeyPair::from_pem(&device.key.serialize_pem()).unwrap();
    leaf_device.chain_pem = Some(pem_of(&leaf_only.contents));
    assert_eq!(bundle(&leaf_device).status, 200);
    assert_eq!(caps(&leaf_device), 200);

    // A certificate of no one we know (self-signed): no certificate.
    let mut stranger = Device::new("m-stranger", None);
    let params = rcgen::CertificateParams::new(vec!["stranger".into()]).unwrap();
    stranger.chain_pem = Some(params.self_signed(&stranger.key).unwrap().pem());
    let a = bundle(&stranger);
    assert_eq!(
        (a.status, a.code().as_str()),
        (401, "client_certificate_required")
    );
    assert_eq!(caps(&stranger), 200);
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The profile `fleetkit build` writes for a workspace: its SCEP payload's URL,
/// Challenge, CAFingerprint, Keysize and Subject (with `$SERIALNUMBER` filled in, as
/// Jamf does) enroll for real against the running server.
#[test]
fn the_profile_the_build_writes_enrolls_for_real() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let config = org.path().join("fleetkit.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let url_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("url: "))
        .unwrap()
        .to_string();
    let indent = &url_line[..url_line.len() - url_line.trim_start().len()];
    std::fs::write(
        &config,
        text.replace(&url_line, &format!("{indent}url: {}", server.url())),
    )
    .unwrap();
    let challenge = create_scep_token(&server, &org, "mac", 5, 3600);
    let dir = tempfile::tempdir().unwrap();
    let challenge_file = dir.path().join("challenge.txt");
    std::fs::write(&challenge_file, format!("{}\n", challenge.token)).unwrap();
    let out = dir.path().join("dist");
    org.build(
        &out,
        &[
            "--target",
            "mobileconfig",
            "--scep-challenge-file",
            challenge_file.to_str().unwrap(),
        ],
        &[],
    );
    let profile = std::fs::read_dir(out.join("macos"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "mobileconfig"))
        .unwrap();
    let plist = plist::Value::from_file(&profile).unwrap();
    let scep = plist.as_dictionary().unwrap()["PayloadContent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_dictionary().unwrap())
        .find(|p| p["PayloadType"].as_string() == Some("com.apple.security.scep"))
        .expect("a SCEP payload")["PayloadContent"]
        .as_dictionary()
        .unwrap()
        .clone();
    let url = scep["URL"].as_string().unwrap();
    assert_eq!(url, format!("{}/scep", server.url()));
    let fingerprint = hex::encode(scep["CAFingerprint"].as_data().unwrap());
    assert_eq!(fingerprint.to_uppercase(), issuing_sha1(&org));
    let keysize = scep["Keysize"].as_signed_integer().unwrap().to_string();
    let mut subject = Vec::new();
    for rdn in scep["Subject"].as_array().unwrap() {
        let pair = rdn.as_array().unwrap()[0].as_array().unwrap();
        let value = pair[1]
            .as_string()
            .unwrap()
            .replace("$SERIALNUMBER", "C02PROFILE1");
        subject.push(format!("{}={value}", pair[0].as_string().unwrap()));
    }
    let root = org.path().join("keys/root-ca.pem");
    let cert = dir.path().join("cert.pem");
    let output = Command::new(python())
        .arg(client_script())
        .args(["--url", url])
        .args(["--ca-file", root.to_str().unwrap()])
        .args(["--cafingerprint", &fingerprint])
        .args(["--challenge", scep["Challenge"].as_string().unwrap()])
        .args(["--key-size", &keysize])
        .args(["--subject", &subject.join(",")])
        .args(["--cert-out", cert.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(status(&v), ("SUCCESS", None), "{v}");
    verify(&org, &cert);
    assert_eq!(token_uses(&server, &org, &challenge.info.id), 1);
}

/// The RA rotates at a restart (its certificate had < 30 days left): a Mac that
/// fetched GetCACert before still enrolls, answered by the RA it knows, across more
/// restarts, until the old certificate expires; then the old pair is gone from the
/// keys folder, and a fresh GetCACert gets the new RA.
#[test]
fn a_device_that_fetched_the_old_ra_still_enrolls_after_the_ra_rotated() {
    use fleetkit::pki::scep_ra::{SCEP_RA_PREVIOUS_CERT, SCEP_RA_PREVIOUS_KEY, ScepRa};
    let org = Org::new();
    let keys = org.path().join("keys");
    let ca = fleetkit::pki::IssuingCa::load(&keys).unwrap();
    let now = fleetkit::clock::now();
    let days = time::Duration::days;
    // An RA made 701 days ago: 29 days left, so the next start rotates it.
    let (old, _) = ScepRa::load_or_create(&keys, &ca, "acme-corp", now - days(701)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // What the Mac's GetCACert returned before the restart: [RA, issuing CA].
    let saved = dir.path().join("getcacert-before.pem");
    std::fs::write(
        &saved,
        format!("{}{}", old.current.cert_pem(), org.issuing_ca_pem()),
    )
    .unwrap();
    let saved = saved.to_string_lossy().into_owned();
    let current_ra = || std::fs::read_to_string(keys.join("scep-ra.pem")).unwrap();

    let mut server = Server::start(&org, Db::Sqlite);
    assert_ne!(
        current_ra(),
        old.current.cert_pem(),
        "the start rotated the RA"
    );
    assert!(keys.join(SCEP_RA_PREVIOUS_KEY).exists());
    let token = create_scep_token(&server, &org, "mac", 10, 3600);
    let enroll = |server: &Server, cn: &str, extra: &[&str]| {
        let subject = format!("CN={cn}");
        let mut args = vec!["--challenge", &token.token, "--subject", &subject];
        args.extend_from_slice(extra);
        mac(server, &org, &args)
    };
    // The client checks that the CertRep is signed by the RA of its saved answer.
    let stale = enroll(&server, "C02STALE1", &["--ca-certs", &saved]);
    assert_eq!(status(&stale), ("SUCCESS", None), "{stale}");
    let fresh = enroll(&server, "C02FRESH1", &[]);
    assert_eq!(status(&fresh), ("SUCCESS", None), "{fresh}");

    // Another restart: both RAs are loaded again, nothing rotates.
    server.kill();
    let rotated = current_ra();
    let server = Server::start(&org, Db::Sqlite);
    assert_eq!(current_ra(), rotated);
    let stale = enroll(&server, "C02STALE2", &["--ca-certs", &saved]);
    assert_eq!(status(&stale), ("SUCCESS", None), "{stale}");
    drop(server);

    // The old certificate expired (here: an expired pair put in its place): the next
    // start deletes it, and a request encrypted to it is not opened.
    let expired_dir = tempfile::tempdir().unwrap();
    let (expired, _) =
        ScepRa::load_or_create(expired_dir.path(), &ca, "acme-corp", now - days(800)).unwrap();
    for name in [SCEP_RA_PREVIOUS_CERT, SCEP_RA_PREVIOUS_KEY] {
        let from = name.replace(".previous", "");
        std::fs::copy(expired_dir.path().join(from), keys.join(name)).unwrap();
    }
    let saved_expired = dir.path().join("getcacert-expired.pem");
    std::fs::write(
        &saved_expired,
        format!("{}{}", expired.current.cert_pem(), org.issuing_ca_pem()),
    )
    .unwrap();
    let server = Server::start(&org, Db::Sqlite);
    assert!(!keys.join(SCEP_RA_PREVIOUS_KEY).exists());
    assert!(!keys.join(SCEP_RA_PREVIOUS_CERT).exists());
    let gone = enroll(
        &server,
        "C02GONE",
        &["--ca-certs", saved_expired.to_str().unwrap()],
    );
    assert!(!succeeded(&gone), "{gone}");
    let fresh = enroll(&server, "C02FRESH2", &[]);
    assert_eq!(status(&fresh), ("SUCCESS", None), "{fresh}");
}

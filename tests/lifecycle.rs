//! Trust-lifecycle sequences a fleet meets in its first months (issue 11's red-team
//! findings), each a regression test named after the defect: enrollment that would
//! take over another device, removal and renewal on open connections, lost answers,
//! renamed hosts, reported versions, malformed credentials. Server sequences run on
//! SQLite and PostgreSQL.

mod support;

use fleetkit::protocol::*;
use support::agent::DeviceRoot;
use support::*;

fn each_db(test: impl Fn(Db)) {
    for db in databases() {
        eprintln!("--- {db:?}");
        test(db);
    }
}

fn post_json(agent: &ureq::Agent, url: String, body: &impl serde::Serialize) -> Answer {
    answer(
        agent
            .post(url)
            .header("content-type", "application/json")
            .send(serde_json::to_vec(body).unwrap()),
    )
}

fn token_with(server: &Server, org: &Org, team: &str, uses: u32, replace: bool) -> TokenCreated {
    server
        .admin(org)
        .create_token(&TokenCreate {
            team: team.into(),
            max_uses: uses,
            expires_in_secs: 3600,
            note: None,
            replace_existing: replace,
            kind: fleetkit::protocol::TokenKind::Agent,
        })
        .unwrap()
}

#[test]
fn enroll_cannot_take_over_another_device() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let own = create_token(&server, &org, "platform", 1, 3600);
        let mut victim = Device::new("m-victim", Some("platform"));
        let enrolled: EnrollResponse = enroll(&server, &org, &mut victim, &own.token).json();
        let before = inventory(&server, &org);

        // Any valid token, of any team, naming the victim's machine id: refused
        // with its own code, nothing changed, no token use taken.
        for team in ["platform", "ml-research"] {
            let attacker_token = create_token(&server, &org, team, 5, 3600);
            let mut attacker = Device::new("m-victim", Some(team));
            attacker.facts.hostname = "evil".into();
            attacker.facts.user = "mallory".into();
            let a = enroll(&server, &org, &mut attacker, &attacker_token.token);
            assert_eq!(
                (a.status, a.code().as_str()),
                (409, "device_exists"),
                "{team}"
            );
            assert_eq!(inventory(&server, &org), before, "{team}");
            let uses = server
                .admin(&org)
                .list_tokens()
                .unwrap()
                .into_iter()
                .find(|t| t.id == attacker_token.info.id)
                .unwrap()
                .uses;
            assert_eq!(uses, 0, "a refused enrollment takes no use");
        }
        // The victim's certificate still works.
        let bundle = answer(
            client(&org, Some(&victim))
                .get(format!("{}/v1/bundle", server.url()))
                .call(),
        );
        assert_eq!(bundle.status, 200);

        // The holder of the device's key may enroll again (e.g. after expiry).
        let again = create_token(&server, &org, "platform", 1, 3600);
        let a = enroll(&server, &org, &mut victim, &again.token);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let reenrolled: EnrollResponse = a.json();
        assert_eq!(reenrolled.device_id, enrolled.device_id);

        // The device reports the policy it enforces.
        let checkin = CheckinRequest {
            policy_version: Some(1),
            facts: victim.facts.clone(),
        };
        let a = post_json(
            &client(&org, Some(&victim)),
            format!("{}/v1/checkin", server.url()),
            &checkin,
        );
        assert_eq!(a.status, 200);

        // A re-imaged machine (new key) needs an admin's explicit consent: a token
        // made with --replace-existing, of the device's own team. The old
        // certificate is dead afterwards.
        let old_holder_chain = victim.chain_pem.clone();
        let other_team = token_with(&server, &org, "ml-research", 1, true);
        let mut reimaged = Device::new("m-victim", None);
        let a = enroll(&server, &org, &mut reimaged, &other_team.token);
        assert_eq!((a.status, a.code().as_str()), (409, "device_exists"));
        let replace = token_with(&server, &org, "platform", 1, true);
        let a = enroll(&server, &org, &mut reimaged, &replace.token);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let replaced: EnrollResponse = a.json();
        assert_eq!(replaced.device_id, enrolled.device_id);
        let after = inventory(&server, &org);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].team, "platform");
        assert_eq!(
            after[0].policy_version, None,
            "the re-imaged machine enforces nothing until it checks in"
        );
        assert_eq!(
            after[0].certificate_fingerprint,
            replaced.certificate_fingerprint
        );
        victim.chain_pem = old_holder_chain;
        let old = answer(
            client(&org, Some(&victim))
                .get(format!("{}/v1/bundle", server.url()))
                .call(),
        );
        assert_eq!(
            (old.status, old.code().as_str()),
            (403, "unknown_certificate")
        );
    });
}

#[test]
fn removed_device_is_cut_off_on_an_open_connection() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 1, 3600);
        let mut device = Device::new("m-removed", None);
        let id = enroll(&server, &org, &mut device, &token.token)
            .json::<EnrollResponse>()
            .device_id;
        // One agent: ureq keeps the connection open between requests.
        let agent = client(&org, Some(&device));
        let url = format!("{}/v1/bundle", server.url());
        assert_eq!(answer(agent.get(&url).call()).status, 200);
        server.admin(&org).remove_device(&id).unwrap();

        let a = answer(agent.get(&url).call());
        assert_eq!((a.status, a.code().as_str()), (403, "unknown_certificate"));
        let checkin = CheckinRequest {
            policy_version: None,
            facts: device.facts.clone(),
        };
        let a = post_json(&agent, format!("{}/v1/checkin", server.url()), &checkin);
        assert_eq!((a.status, a.code().as_str()), (403, "unknown_certificate"));
        let renew = RenewRequest {
            csr_pem: device.csr_pem("m-removed", false),
        };
        let a = post_json(&agent, format!("{}/v1/renew", server.url()), &renew);
        assert_eq!((a.status, a.code().as_str()), (403, "unknown_certificate"));
        assert!(
            inventory(&server, &org).is_empty(),
            "renewal revived nothing"
        );
    });
}

#[test]
fn renewed_certificate_retires_the_previous_one() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 1, 3600);
        let mut device = Device::new("m-renewing", None);
        enroll(&server, &org, &mut device, &token.token);
        let old_agent = client(&org, Some(&device));

        let new_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut renewed = Device::new("m-renewing", None);
        renewed.key = new_key;
        let renew = RenewRequest {
            csr_pem: renewed.csr_pem("m-renewing", false),
        };
        let a = post_json(&old_agent, format!("{}/v1/renew", server.url()), &renew);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        renewed.chain_pem = Some(a.json::<EnrollResponse>().certificate_chain_pem);

        let url = format!("{}/v1/bundle", server.url());
        // The previous certificate, on its open connection and on a new one.
        let a = answer(old_agent.get(&url).call());
        assert_eq!((a.status, a.code().as_str()), (403, "unknown_certificate"));
        let a = answer(client(&org, Some(&device)).get(&url).call());
        assert_eq!((a.status, a.code().as_str()), (403, "unknown_certificate"));
        // A renewal with the superseded certificate for another key is refused;
        // only the very renewal it made may be asked again (its answer was lost),
        // and gets the same certificate.
        let other = Device::new("m-renewing", None);
        let a = post_json(
            &old_agent,
            format!("{}/v1/renew", server.url()),
            &RenewRequest {
                csr_pem: other.csr_pem("m-renewing", false),
            },
        );
        assert_eq!((a.status, a.code().as_str()), (403, "unknown_certificate"));
        let a = post_json(&old_agent, format!("{}/v1/renew", server.url()), &renew);
        assert_eq!(a.status, 200);
        assert_eq!(
            a.json::<EnrollResponse>().certificate_chain_pem,
            renewed.chain_pem.clone().unwrap()
        );
        assert_eq!(
            answer(client(&org, Some(&renewed)).get(&url).call()).status,
            200
        );
    });
}

#[test]
fn repeated_enrollment_gets_the_same_answer_and_spends_no_use() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 1, 3600);
        let device = Device::new("m-retry", None);
        let request = serde_json::to_vec(&device.enroll_request(&token.token)).unwrap();
        let first = post_enroll(&server, &org, &request);
        assert_eq!(first.status, 200);
        // The answer was lost; the agent sends the same enrollment again.
        let second = post_enroll(&server, &org, &request);
        assert_eq!(
            second.status,
            200,
            "{}",
            String::from_utf8_lossy(&second.body)
        );
        assert_eq!(
            first.json::<EnrollResponse>(),
            second.json::<EnrollResponse>()
        );
        assert_eq!(inventory(&server, &org).len(), 1);
        assert_eq!(server.admin(&org).list_tokens().unwrap()[0].uses, 1);

        // The same token with another key is not a repeat.
        let other = Device::new("m-retry", None);
        let a = post_enroll(
            &server,
            &org,
            &serde_json::to_vec(&other.enroll_request(&token.token)).unwrap(),
        );
        assert_eq!((a.status, a.code().as_str()), (409, "device_exists"));
        // A revoked token repeats nothing.
        server.admin(&org).revoke_token(&token.info.id).unwrap();
        let a = post_enroll(&server, &org, &request);
        assert_eq!((a.status, a.code().as_str()), (401, "token_revoked"));
    });
}

#[test]
fn lost_enrollment_answer_does_not_lock_the_device_out() {
    each_db(|db| {
        let org = Org::new();
        let db_url = database_url(db, org.dir.path());
        let mut first = Server::start_with(&org, &db_url);
        let port = first.port;
        let token = create_token(&first, &org, "platform", 1, 3600).token;
        first.kill();

        // The agent makes and keeps its key, but reaches no server.
        let dir = tempfile::tempdir().unwrap();
        let d = DeviceRoot::install(
            &org,
            dir.path(),
            "lost",
            &format!("https://localhost:{port}"),
            "",
        );
        assert_eq!(d.register(&token).code, 75);
        let machine_id = d.manifest()["machine_id"].as_str().unwrap().to_string();

        // The server commits the enrollment made with that key, and the answer
        // never reaches the agent.
        let server = Server::start_on(&org, &db_url, port);
        let key_pem = std::fs::read_to_string(d.data("pending-key.pem")).unwrap();
        let mut lost = Device::new(&machine_id, None);
        lost.key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
        let committed = enroll(&server, &org, &mut lost, &token);
        assert_eq!(committed.status, 200);

        // Running register again resumes with the saved key and gets that answer.
        let run = d.register(&token);
        assert_eq!(run.code, 0, "{run:?}");
        let status = d.status();
        assert_eq!(status["enrollment"], "registered");
        assert_eq!(
            status["device_id"].as_str(),
            Some(committed.json::<EnrollResponse>().device_id.as_str())
        );
        let inv = inventory(&server, &org);
        assert_eq!(inv.len(), 1);
        assert_eq!(
            inv[0].certificate_fingerprint,
            status["certificate_fingerprint"].as_str().unwrap()
        );
        assert_eq!(server.admin(&org).list_tokens().unwrap()[0].uses, 1);
        let sync = d.agent(&["sync"], &[]);
        assert_eq!(sync.code, 0, "{sync:?}");
    });
}

/// Runs `fleetkit agent ARGS` for `device` under another host name, in a UTS
/// namespace of its own (the test runs as root, as the test command does).
fn agent_as_host(
    device: &DeviceRoot,
    host: &str,
    args: &[&str],
    token: Option<&str>,
) -> agent::Run {
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "--uts",
        "sh",
        "-c",
        "hostname \"$0\" && exec \"$@\"",
        host,
        BIN,
        "agent",
    ])
    .args(args)
    .arg("--root")
    .arg(&device.root)
    .env_remove("FLEETKIT_ENROLL_TOKEN");
    if let Some(t) = token {
        cmd.env("FLEETKIT_ENROLL_TOKEN", t);
    }
    let out = cmd.output().expect("unshare");
    agent::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn renamed_host_keeps_its_identity() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 2, 3600).token;
        let dir = tempfile::tempdir().unwrap();
        let d = DeviceRoot::install(&org, dir.path(), "renamed", &server.url(), "");
        let run = agent_as_host(&d, "alice-laptop", &["register"], Some(&token));
        assert_eq!(run.code, 0, "{run:?}");
        let registered = d.status();
        assert_eq!(inventory(&server, &org)[0].hostname, "alice-laptop");

        let run = agent_as_host(&d, "bob-workstation", &["sync"], None);
        assert_eq!(run.code, 0, "a renamed host still checks in: {run:?}");
        let inv = inventory(&server, &org);
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].hostname, "bob-workstation", "the inventory follows");
        assert_eq!(
            inv[0].machine_id,
            registered["machine_id"].as_str().unwrap()
        );

        // register --force under the new name: the same machine, the same row.
        let run = agent_as_host(
            &d,
            "bob-workstation",
            &["register", "--force"],
            Some(&token),
        );
        assert_eq!(run.code, 0, "{run:?}");
        let inv = inventory(&server, &org);
        assert_eq!(inv.len(), 1, "{inv:#?}");
        assert_eq!(inv[0].device_id, registered["device_id"].as_str().unwrap());
        assert_eq!(d.status()["machine_id"], registered["machine_id"]);
    });
}

#[test]
fn checkin_cannot_report_an_unpublished_version() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 1, 3600);
        let mut device = Device::new("m-liar", None);
        enroll(&server, &org, &mut device, &token.token);
        let agent = client(&org, Some(&device));
        let url = format!("{}/v1/checkin", server.url());
        for v in [2, i64::MAX as u64, u64::MAX] {
            let lying = CheckinRequest {
                policy_version: Some(v),
                facts: device.facts.clone(),
            };
            let a = post_json(&agent, url.clone(), &lying);
            assert_eq!(
                (a.status, a.code().as_str()),
                (422, "bad_policy_version"),
                "v{v}"
            );
        }
        assert_eq!(inventory(&server, &org)[0].policy_version, None);
        let honest = CheckinRequest {
            policy_version: Some(1),
            facts: device.facts.clone(),
        };
        assert_eq!(post_json(&agent, url, &honest).status, 200);
        assert_eq!(inventory(&server, &org)[0].policy_version, Some(1));
    });
}

#[test]
fn bearer_credential_needs_its_space() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let credential = std::fs::read_to_string(org.path().join("keys/admin-credential")).unwrap();
    let credential = credential.trim();
    let url = format!("{}/v1/admin/tokens", server.url());
    let anonymous = client(&org, None);
    for (header, status) in [
        (format!("Bearer{credential}"), 401),
        (format!("Bearer\u{0}{credential}"), 401),
        (format!("Bearer {credential}"), 200),
        (format!("bearer  {credential}"), 200),
    ] {
        let sent = anonymous.get(&url).header("authorization", &header).call();
        match sent {
            Ok(_) => assert_eq!(answer(sent).status, status, "{header:?}"),
            // A header value ureq itself refuses to send never reaches the server.
            Err(_) => assert_eq!(status, 401, "{header:?}"),
        }
    }
}

#[test]
fn a_schema_1_database_is_upgraded_and_its_devices_keep_working() {
    let org = Org::new();
    let db_url = database_url(Db::Sqlite, org.dir.path());
    let mut server = Server::start_with(&org, &db_url);
    let port = server.port;
    let token = create_token(&server, &org, "platform", 1, 3600);
    let mut device = Device::new("m-before-upgrade", None);
    assert_eq!(enroll(&server, &org, &mut device, &token.token).status, 200);
    server.kill();

    // Put the database back in the shape the previous release wrote (schema 1).
    let path = org.dir.path().join("fleet.db");
    let python = std::env::var("FLEETKIT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = std::process::Command::new(python)
        .args([
            "-c",
            "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.executescript(sys.argv[2])",
            path.to_str().unwrap(),
            "ALTER TABLE devices DROP COLUMN cert_key_fingerprint;
             ALTER TABLE devices DROP COLUMN cert_pem;
             DROP INDEX devices_prev_cert;
             ALTER TABLE devices DROP COLUMN prev_cert_fingerprint;
             ALTER TABLE tokens DROP COLUMN replace_existing;
             ALTER TABLE tokens DROP COLUMN kind;
             DROP TABLE scep_certificates;
             UPDATE meta SET value = '1' WHERE key = 'schema';",
        ])
        .status()
        .unwrap();
    assert!(status.success());

    let server = Server::start_on(&org, &db_url, port);
    let agent = client(&org, Some(&device));
    let url = format!("{}/v1/bundle", server.url());
    assert_eq!(answer(agent.get(&url).call()).status, 200);
    assert_eq!(inventory(&server, &org).len(), 1);
    assert!(!server.admin(&org).list_tokens().unwrap()[0].replace_existing);
    // A renewal records the key, so the device can later prove it holds it.
    let renew = RenewRequest {
        csr_pem: device.csr_pem("m-before-upgrade", false),
    };
    let a = post_json(&agent, format!("{}/v1/renew", server.url()), &renew);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    device.chain_pem = Some(a.json::<EnrollResponse>().certificate_chain_pem);
    let again = create_token(&server, &org, "platform", 1, 3600);
    assert_eq!(enroll(&server, &org, &mut device, &again.token).status, 200);
}

/// Plays a renewal of `device` whose answer is lost: a renewal key is kept where
/// the agent keeps it, and the server records a certificate for it, asked with the
/// device's current certificate. Returns that (now superseded) holder and the
/// recorded answer.
fn lose_a_renewal_answer(
    org: &Org,
    server: &Server,
    device: &DeviceRoot,
    machine_id: &str,
) -> (Device, EnrollResponse) {
    let identity = std::fs::read_to_string(device.data("identity.pem")).unwrap();
    let mut current = Device::new(machine_id, None);
    current.key = rcgen::KeyPair::from_pem(&identity).unwrap();
    current.chain_pem = Some(std::fs::read_to_string(device.data("certificate.pem")).unwrap());
    let renewing = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(device.data("renewing-key.pem"), renewing.serialize_pem()).unwrap();
    let mut renewed = Device::new(machine_id, None);
    renewed.key = renewing;
    let request = RenewRequest {
        csr_pem: renewed.csr_pem(machine_id, false),
    };
    let committed = post_json(
        &client(org, Some(&current)),
        format!("{}/v1/renew", server.url()),
        &request,
    );
    assert_eq!(committed.status, 200);
    (current, committed.json())
}

#[test]
fn lost_renewal_answer_does_not_lock_the_device_out() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 1, 3600).token;
        let dir = tempfile::tempdir().unwrap();
        let d = DeviceRoot::install(&org, dir.path(), "renewing", &server.url(), "");
        assert_eq!(d.register(&token).code, 0);
        let machine_id = d.status()["machine_id"].as_str().unwrap().to_string();

        // The agent made and kept its renewal key, the server renewed, and the
        // answer never arrived: the device still holds only the superseded
        // certificate.
        let (current, committed) = lose_a_renewal_answer(&org, &server, &d, &machine_id);
        let url = format!("{}/v1/renew", server.url());

        // The superseded certificate with another key gets nothing.
        let a = post_json(
            &client(&org, Some(&current)),
            url,
            &RenewRequest {
                csr_pem: current.csr_pem(&machine_id, false),
            },
        );
        assert_eq!((a.status, a.code().as_str()), (403, "unknown_certificate"));

        // The next sync sends the renewal again with the kept key and gets the
        // certificate the server already recorded.
        let sync = d.agent(&["sync"], &[]);
        assert_eq!(sync.code, 0, "{sync:?}");
        let status = d.status();
        assert_eq!(
            status["certificate_fingerprint"].as_str(),
            Some(committed.certificate_fingerprint.as_str())
        );
        assert!(!d.data("renewing-key.pem").exists());
        // The same sync sent the audit records over the renewed certificate (the
        // superseded one is refused, as above): nothing left behind, no error.
        assert_eq!(
            status["audit_forward_error"],
            serde_json::Value::Null,
            "{status}"
        );
        let segments = std::fs::read_dir(d.data("audit")).unwrap();
        let head = segments
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(|l| {
                        serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap();
        assert_eq!(status["audit_sent_seq"], head, "{status}");
        let inv = inventory(&server, &org);
        assert_eq!(inv.len(), 1);
        assert_eq!(
            inv[0].certificate_fingerprint,
            committed.certificate_fingerprint
        );
    });
}

#[test]
fn instances_starting_together_on_postgres_all_start() {
    if !databases().contains(&Db::Postgres) {
        return;
    }
    use fleetkit::server::store::Store;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut failures = Vec::new();
    for round in 0..3 {
        // A fresh database, and one the previous release left (schema 1).
        for upgrade in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let url = database_url(Db::Postgres, dir.path());
            rt.block_on(async {
                if upgrade {
                    drop(Store::open(&url, "acme-corp", 2).await.unwrap());
                    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
                    for statement in [
                        "ALTER TABLE devices DROP COLUMN cert_key_fingerprint",
                        "ALTER TABLE devices DROP COLUMN cert_pem",
                        "DROP INDEX devices_prev_cert",
                        "ALTER TABLE devices DROP COLUMN prev_cert_fingerprint",
                        "ALTER TABLE tokens DROP COLUMN replace_existing",
                        "ALTER TABLE tokens DROP COLUMN kind",
                        "DROP TABLE scep_certificates",
                        "DROP TABLE rotations",
                        "UPDATE meta SET value = '1' WHERE key = 'schema'",
                    ] {
                        sqlx::query(statement).execute(&pool).await.unwrap();
                    }
                    pool.close().await;
                }
                let (a, b, c) = tokio::join!(
                    Store::open(&url, "acme-corp", 2),
                    Store::open(&url, "acme-corp", 2),
                    Store::open(&url, "acme-corp", 2)
                );
                for (name, opened) in [("a", a), ("b", b), ("c", c)] {
                    if let Err(e) = opened {
                        failures.push(format!("round {round} upgrade {upgrade} {name}: {e}"));
                    }
                }
            });
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn force_register_after_a_lost_renewal_answer_proves_the_renewed_key() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 2, 3600).token;
        let dir = tempfile::tempdir().unwrap();
        let d = DeviceRoot::install(&org, dir.path(), "forced", &server.url(), "");
        assert_eq!(d.register(&token).code, 0);
        let status = d.status();
        let machine_id = status["machine_id"].as_str().unwrap().to_string();

        // The server recorded a renewal to the agent's kept renewal key; the answer
        // was lost.
        lose_a_renewal_answer(&org, &server, &d, &machine_id);

        // `register --force` (e.g. after the certificate expired) proves the key the
        // server holds now, and the device keeps its row.
        let run = d.agent(
            &["register", "--force"],
            &[("FLEETKIT_ENROLL_TOKEN", &token)],
        );
        assert_eq!(run.code, 0, "{run:?}");
        let inv = inventory(&server, &org);
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].device_id, status["device_id"].as_str().unwrap());
        assert_eq!(
            inv[0].certificate_fingerprint,
            d.status()["certificate_fingerprint"].as_str().unwrap()
        );
        assert!(!d.data("renewing-key.pem").exists());
        assert_eq!(d.agent(&["sync"], &[]).code, 0);
    });
}

#[test]
fn a_removed_machine_id_can_be_enrolled_again_and_nothing_of_the_old_device_works() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 3, 3600);
        let mut old = Device::new("m-reused", None);
        let first: EnrollResponse = enroll(&server, &org, &mut old, &token.token).json();
        server.admin(&org).remove_device(&first.device_id).unwrap();

        // The machine comes back (re-imaged: a new key): no replace token needed.
        let mut again = Device::new("m-reused", None);
        let a = enroll(&server, &org, &mut again, &token.token);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let second: EnrollResponse = a.json();
        assert_ne!(second.device_id, first.device_id, "a new inventory row");
        let inv = inventory(&server, &org);
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].device_id, second.device_id);

        // The removed device's certificate stays dead, and its old enrollment
        // repeated (same token, old key) cannot take the machine id back.
        let url = format!("{}/v1/bundle", server.url());
        let a = answer(client(&org, Some(&old)).get(&url).call());
        assert_eq!((a.status, a.code().as_str()), (403, "unknown_certificate"));
        let a = enroll(&server, &org, &mut old, &token.token);
        assert_eq!((a.status, a.code().as_str()), (409, "device_exists"));
        assert_eq!(
            answer(client(&org, Some(&again)).get(&url).call()).status,
            200
        );
        assert_eq!(server.admin(&org).list_tokens().unwrap()[0].uses, 2);
    });
}

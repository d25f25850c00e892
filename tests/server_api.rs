//! The server suite, run against SQLite and PostgreSQL: enrollment end to end with
//! certificates checked by `openssl`, every abuse refused with the inventory
//! unchanged, exact token counts under concurrency, ETag polls, bundle publishing.

mod support;

use fleetkit::server::admin_client::ClientError;

use fleetkit::protocol::*;
use support::*;

/// Runs `test` once per database.
fn each_db(test: impl Fn(Db)) {
    for db in databases() {
        eprintln!("--- {db:?}");
        test(db);
    }
}

#[test]
fn devices_enroll_and_appear_in_the_inventory_with_sound_certificates() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 3, 3600);
        let mut ids = Vec::new();
        for i in 0..3 {
            let mut device = Device::new(&format!("m-e2e-{i}"), Some("platform"));
            let a = enroll(&server, &org, &mut device, &token.token);
            assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
            let answer: EnrollResponse = a.json();
            ids.push(answer.device_id.clone());

            let dir = org.dir.path();
            let leaf = dir.join(format!("leaf-{i}.pem"));
            let pems: Vec<_> = answer
                .certificate_chain_pem
                .split_inclusive("-----END CERTIFICATE-----\n")
                .collect();
            assert_eq!(pems.len(), 2, "leaf + issuing CA");
            std::fs::write(&leaf, pems[0]).unwrap();
            std::fs::write(dir.join("issuing.pem"), org.issuing_ca_pem()).unwrap();
            let (ok, out) = openssl(&[
                "verify",
                "-CAfile",
                org.path().join("keys/root-ca.pem").to_str().unwrap(),
                "-untrusted",
                dir.join("issuing.pem").to_str().unwrap(),
                "-purpose",
                "sslclient",
                leaf.to_str().unwrap(),
            ]);
            assert!(ok, "openssl verify: {out}");
            let (_, text) = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-text"]);
            assert!(text.contains("CA:FALSE"), "{text}");
            assert!(text.contains("TLS Web Client Authentication"), "{text}");
            assert!(!text.contains("TLS Web Server Authentication"), "{text}");
            assert!(text.contains(&format!("CN = m-e2e-{i}")), "{text}");
        }
        let inventory = inventory(&server, &org);
        assert_eq!(inventory.len(), 3);
        for (i, d) in inventory.iter().enumerate() {
            assert_eq!(d.machine_id, format!("m-e2e-{i}"));
            assert_eq!(d.team, "platform");
            assert_eq!(d.org, "acme-corp");
            assert_eq!(d.department.as_deref(), Some("engineering"));
            assert!(ids.contains(&d.device_id));
        }
        let only = server
            .admin(&org)
            .list_devices(Some("other-team"), None)
            .unwrap();
        assert!(only.is_empty());
    });
}

#[test]
fn token_abuse_is_refused_and_changes_nothing() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let admin = server.admin(&org);

        // Used past its count.
        let once = create_token(&server, &org, "platform", 1, 3600);
        assert_eq!(
            enroll(&server, &org, &mut Device::new("m-1", None), &once.token).status,
            200
        );
        let a = enroll(&server, &org, &mut Device::new("m-2", None), &once.token);
        assert_eq!((a.status, a.code().as_str()), (401, "token_used_up"));

        // Revoked.
        let revoked = create_token(&server, &org, "platform", 5, 3600);
        admin.revoke_token(&revoked.info.id).unwrap();
        let a = enroll(&server, &org, &mut Device::new("m-3", None), &revoked.token);
        assert_eq!((a.status, a.code().as_str()), (401, "token_revoked"));

        // Expired.
        let short = create_token(&server, &org, "platform", 5, 1);
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let a = enroll(&server, &org, &mut Device::new("m-4", None), &short.token);
        assert_eq!((a.status, a.code().as_str()), (401, "token_expired"));

        // Unknown, and not a token at all.
        let a = enroll(
            &server,
            &org,
            &mut Device::new("m-5", None),
            "fkt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
        assert_eq!((a.status, a.code().as_str()), (401, "token_unknown"));
        let a = enroll(&server, &org, &mut Device::new("m-6", None), "' OR 1=1 --");
        assert_eq!((a.status, a.code().as_str()), (401, "token_unknown"));

        // Bound to another team than the device says.
        let other = create_token(&server, &org, "ml-research", 5, 3600);
        let a = enroll(
            &server,
            &org,
            &mut Device::new("m-7", Some("platform")),
            &other.token,
        );
        assert_eq!((a.status, a.code().as_str()), (403, "team_mismatch"));

        let inventory = inventory(&server, &org);
        assert_eq!(
            inventory
                .iter()
                .map(|d| d.machine_id.as_str())
                .collect::<Vec<_>>(),
            ["m-1"]
        );
        // A refused team binding does not use the token up.
        let tokens = admin.list_tokens().unwrap();
        let other_info = tokens.iter().find(|t| t.id == other.info.id).unwrap();
        assert_eq!(other_info.uses, 0);
    });
}

#[test]
fn the_certificate_comes_from_our_template_whatever_the_csr_asks() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 5, 3600);
        let device = Device::new("m-honest", None);
        let request = EnrollRequest {
            token: token.token.clone(),
            csr_pem: device.csr_pem("acme-corp Root CA", true),
            facts: device.facts.clone(),
        };
        let a = post_enroll(&server, &org, &serde_json::to_vec(&request).unwrap());
        assert_eq!(a.status, 200);
        let chain = a.json::<EnrollResponse>().certificate_chain_pem;
        let leaf = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap();
        let path = org.dir.path().join("leaf.pem");
        std::fs::write(&path, leaf).unwrap();
        let (_, text) = openssl(&["x509", "-in", path.to_str().unwrap(), "-noout", "-text"]);
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(
            text.contains("Subject: CN = m-honest, O = acme-corp"),
            "{text}"
        );
        assert!(!text.contains("Root CA\n"), "{text}");

        // A CSR whose signature does not verify, and one with a weak key, are refused.
        let mut bad = request.clone();
        bad.csr_pem = flip_last_signature_byte(&device.csr_pem("m-honest", false));
        let a = post_enroll(&server, &org, &serde_json::to_vec(&bad).unwrap());
        assert_eq!(a.status, 400);
        assert_eq!(a.code(), "bad_csr");
        assert_eq!(inventory(&server, &org).len(), 1);
    });
}

#[test]
fn oversized_and_malformed_requests_are_refused() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 5, 3600);
        let mut request = Device::new("m-big", None).enroll_request(&token.token);
        request.facts.hostname = "x".repeat(MAX_REQUEST_BYTES + 10);
        let a = post_enroll(&server, &org, &serde_json::to_vec(&request).unwrap());
        assert_eq!((a.status, a.code().as_str()), (413, "too_large"));

        for body in [
            &b"not json"[..],
            b"{}",
            b"\xff\xfe\x00garbage",
            br#"{"token":"x","csr_pem":"y","facts":{},"extra":1}"#,
        ] {
            let a = post_enroll(&server, &org, body);
            assert_eq!(
                (a.status, a.code().as_str()),
                (400, "bad_request"),
                "{body:?}"
            );
        }
        let mut request = Device::new("bad id/../x", None).enroll_request(&token.token);
        let a = post_enroll(&server, &org, &serde_json::to_vec(&request).unwrap());
        assert_eq!((a.status, a.code().as_str()), (400, "bad_facts"));
        request.facts.machine_id = "m-ok".into();
        request.facts.user = "bell\u{7}".into();
        let a = post_enroll(&server, &org, &serde_json::to_vec(&request).unwrap());
        assert_eq!((a.status, a.code().as_str()), (400, "bad_facts"));

        assert!(inventory(&server, &org).is_empty());
        let tokens = server.admin(&org).list_tokens().unwrap();
        assert_eq!(tokens[0].uses, 0, "refused requests use no token");
    });
}

#[test]
fn device_and_admin_endpoints_need_their_credentials() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let anonymous = client(&org, None);
        let a = answer(anonymous.get(format!("{}/v1/bundle", server.url())).call());
        assert_eq!(
            (a.status, a.code().as_str()),
            (401, "client_certificate_required")
        );
        let a = answer(
            anonymous
                .post(format!("{}/v1/checkin", server.url()))
                .send("{}"),
        );
        assert_eq!(
            (a.status, a.code().as_str()),
            (401, "client_certificate_required")
        );

        for auth in [
            None,
            Some("Bearer fka_wrong"),
            Some("Bearer fka_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ] {
            let mut r = anonymous.get(format!("{}/v1/admin/devices", server.url()));
            if let Some(auth) = auth {
                r = r.header("authorization", auth);
            }
            let a = answer(r.call());
            assert_eq!(
                (a.status, a.code().as_str()),
                (401, "admin_credential_required")
            );
        }
        let a = answer(
            anonymous
                .post(format!("{}/v1/admin/tokens", server.url()))
                .header("content-type", "application/json")
                .send(r#"{"team":"x","max_uses":1000,"expires_in_secs":3600}"#),
        );
        assert_eq!(a.status, 401);
        assert!(server.admin(&org).list_tokens().unwrap().is_empty());

        // A certificate from another org's CA authenticates nothing: it counts as
        // no certificate (the handshake no longer fails on a client certificate
        // that does not verify: SCEP clients renewing present whatever they have).
        let other = Org::new();
        let other_server = Server::start(&other, Db::Sqlite);
        let token = create_token(&other_server, &other, "platform", 1, 3600);
        let mut foreign = Device::new("m-foreign", None);
        assert_eq!(
            enroll(&other_server, &other, &mut foreign, &token.token).status,
            200
        );
        let a = answer(
            client(&org, Some(&foreign))
                .get(format!("{}/v1/bundle", server.url()))
                .call(),
        );
        assert_eq!(
            (a.status, a.code().as_str()),
            (401, "client_certificate_required")
        );
    });
}

#[test]
fn bundle_polls_use_etags_and_publishing_verifies() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 1, 3600);
        let mut device = Device::new("m-poll", None);
        assert_eq!(enroll(&server, &org, &mut device, &token.token).status, 200);
        let agent = client(&org, Some(&device));
        let url = format!("{}/v1/bundle", server.url());

        let first = answer(agent.get(&url).call());
        assert_eq!(first.status, 200);
        let v1 = std::fs::read(org.path().join("bundles/policy-v1.json")).unwrap();
        assert_eq!(first.body, v1, "the exact signed bytes");
        let etag = first.etag.clone().unwrap();
        let again = answer(agent.get(&url).header("if-none-match", &etag).call());
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());

        // Publishing: tampered and rolled-back bundles are refused, a new one served.
        let admin = server.admin(&org);
        let mut tampered = v1.clone();
        let at = tampered.len() / 2;
        tampered[at] ^= 0x01;
        assert!(admin.publish_bundle(&tampered).is_err());
        let v2_path = org.sign_next();
        let v2 = std::fs::read(&v2_path).unwrap();
        assert_eq!(admin.publish_bundle(&v2).unwrap().version, 2);
        let err = admin.publish_bundle(&v1).unwrap_err().to_string();
        assert!(err.contains("rollback"), "{err}");
        let err = admin.publish_bundle(&v2).unwrap_err().to_string();
        assert!(err.contains("already_published"), "{err}");

        let after = answer(agent.get(&url).header("if-none-match", &etag).call());
        assert_eq!(after.status, 200);
        assert_eq!(after.body, v2);
        assert_ne!(after.etag.unwrap(), etag);

        // Check-in records the version the device applied.
        let checkin = CheckinRequest {
            policy_version: Some(2),
            facts: device.facts.clone(),
        };
        let a = answer(
            agent
                .post(format!("{}/v1/checkin", server.url()))
                .header("content-type", "application/json")
                .send(serde_json::to_vec(&checkin).unwrap()),
        );
        assert_eq!(a.status, 200);
        assert_eq!(a.json::<CheckinResponse>().bundle_version, Some(2));
        let mut lying = checkin.clone();
        lying.facts.machine_id = "m-someone-else".into();
        let a = answer(
            agent
                .post(format!("{}/v1/checkin", server.url()))
                .header("content-type", "application/json")
                .send(serde_json::to_vec(&lying).unwrap()),
        );
        assert_eq!((a.status, a.code().as_str()), (403, "machine_mismatch"));
        let inventory = inventory(&server, &org);
        assert_eq!(inventory[0].policy_version, Some(2));
    });
}

/// Issue 11: a bundle at version 2^63 was answered 201 but stored as 2^63 − 1, and
/// every later publish was refused as a rollback. Now it is refused, nothing stored.
#[test]
fn a_version_above_i64_max_is_refused_at_publish_and_blocks_nothing() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let admin = server.admin(&org);
        let v1 = std::fs::read(org.path().join("bundles/policy-v1.json")).unwrap();
        for version in [9_223_372_036_854_775_808, u64::MAX] {
            let huge = resign_with_version(&org.path(), &v1, version);
            match admin.publish_bundle(&huge) {
                Err(ClientError::Refused {
                    status,
                    code,
                    message,
                }) => {
                    assert_eq!((status, code), (422, ErrorCode::BundleRefused));
                    assert!(message.contains("(version-out-of-range)"), "{message}");
                }
                other => panic!("v{version} published: {other:?}"),
            }
        }
        // Publishing goes on: the published v1 (from the workspace at start) is still
        // the current one, and v2 follows it.
        let v2 = std::fs::read(org.sign_next()).unwrap();
        assert_eq!(admin.publish_bundle(&v2).unwrap().version, 2);
        let mut device = Device::new("m-after-huge", None);
        let token = create_token(&server, &org, "platform", 1, 3600);
        assert_eq!(enroll(&server, &org, &mut device, &token.token).status, 200);
        let served = answer(
            client(&org, Some(&device))
                .get(format!("{}/v1/bundle", server.url()))
                .call(),
        );
        assert_eq!((served.status, served.body), (200, v2));
    });
}

#[test]
fn token_use_counts_are_exact_under_concurrency() {
    each_db(|db| {
        let org = Org::new();
        // 40 enrollments at once from one address: more than one source's default
        // share of anonymous connections (32).
        let server = Server::start_args(&org, db, &["--max-connections-per-ip", "64"]);
        let token = create_token(&server, &org, "platform", 10, 3600);
        let results: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..40)
                .map(|i| {
                    let (server, org, token) = (&server, &org, &token.token);
                    s.spawn(move || {
                        enroll(
                            server,
                            org,
                            &mut Device::new(&format!("m-race-{i}"), None),
                            token,
                        )
                        .status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|s| **s == 200).count(), 10);
        assert_eq!(results.iter().filter(|s| **s == 401).count(), 30);
        assert_eq!(inventory(&server, &org).len(), 10);
        assert_eq!(server.admin(&org).list_tokens().unwrap()[0].uses, 10);
    });
}

#[test]
fn a_renewed_certificate_replaces_the_old_one_in_the_inventory() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 1, 3600);
        let mut device = Device::new("m-renew", None);
        let first: EnrollResponse = enroll(&server, &org, &mut device, &token.token).json();
        let renew = RenewRequest {
            csr_pem: device.csr_pem("ignored", true),
        };
        let a = answer(
            client(&org, Some(&device))
                .post(format!("{}/v1/renew", server.url()))
                .header("content-type", "application/json")
                .send(serde_json::to_vec(&renew).unwrap()),
        );
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let renewed: EnrollResponse = a.json();
        assert_eq!(renewed.device_id, first.device_id);
        assert_ne!(
            renewed.certificate_fingerprint,
            first.certificate_fingerprint
        );
        let inventory = inventory(&server, &org);
        assert_eq!(inventory.len(), 1);
        assert_eq!(
            inventory[0].certificate_fingerprint,
            renewed.certificate_fingerprint
        );
    });
}

#[test]
fn a_removed_device_is_gone_and_its_certificate_authenticates_nothing() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 2, 3600);
        let mut lost = Device::new("m-lost", None);
        let mut kept = Device::new("m-kept", None);
        let lost_id = enroll(&server, &org, &mut lost, &token.token)
            .json::<EnrollResponse>()
            .device_id;
        enroll(&server, &org, &mut kept, &token.token);

        // Without the credential: refused, nothing removed.
        let a = answer(
            client(&org, None)
                .delete(format!("{}/v1/admin/devices/{lost_id}", server.url()))
                .call(),
        );
        assert_eq!(a.status, 401);
        assert_eq!(inventory(&server, &org).len(), 2);

        let removed = server.admin(&org).remove_device(&lost_id).unwrap();
        assert_eq!(removed.machine_id, "m-lost");
        let left = inventory(&server, &org);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].machine_id, "m-kept");
        // A new connection with the lost device's certificate gets nowhere.
        let a = answer(
            client(&org, Some(&lost))
                .get(format!("{}/v1/bundle", server.url()))
                .call(),
        );
        assert_eq!((a.status, a.code().as_str()), (403, "unknown_certificate"));
        let a = answer(
            client(&org, Some(&kept))
                .get(format!("{}/v1/bundle", server.url()))
                .call(),
        );
        assert_eq!(a.status, 200);
        // Removing it again says there is no such device.
        let again = server.admin(&org).remove_device(&lost_id);
        assert!(
            matches!(
                again,
                Err(ClientError::Refused {
                    status: 404,
                    code: ErrorCode::NoSuchDevice,
                    ..
                })
            ),
            "{again:?}"
        );
    });
}

/// The CSR with one byte of its signature changed, re-encoded as PEM.
fn flip_last_signature_byte(pem: &str) -> String {
    use base64::Engine;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let mut der = block.contents;
    let at = der.len() - 3;
    der[at] ^= 0x01;
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

/// Issue 11: a CSR signed with SHA-1 (or MD5) was refused as "signature does not
/// verify", which sends the requester hunting for a key mix-up. It is refused as
/// `bad_csr` naming the algorithm openssl says it used; the same request signed with
/// SHA-256 enrolls, so the refusal is about the hash alone.
#[test]
fn sha1_and_md5_signed_csrs_are_refused_naming_the_algorithm() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 5, 3600);
        let dir = tempfile::tempdir().unwrap();
        for (digest, accepted) in [("-sha1", false), ("-md5", false), ("-sha256", true)] {
            let name = format!("m{digest}");
            let key = dir.path().join(format!("{name}.key"));
            let csr_path = dir.path().join(format!("{name}.csr"));
            let (ok, out) = openssl(&[
                "req",
                "-new",
                digest,
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                csr_path.to_str().unwrap(),
            ]);
            assert!(ok, "openssl req {digest}: {out}");
            // The algorithm's name as openssl reports it.
            let (ok, text) =
                openssl(&["req", "-in", csr_path.to_str().unwrap(), "-noout", "-text"]);
            assert!(ok, "{text}");
            let algorithm = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("Signature Algorithm: "))
                .unwrap_or_else(|| panic!("openssl names no signature algorithm:\n{text}"))
                .trim()
                .to_string();
            let mut request = Device::new(&name, None).enroll_request(&token.token);
            request.csr_pem = std::fs::read_to_string(&csr_path).unwrap();
            let a = post_enroll(&server, &org, &serde_json::to_vec(&request).unwrap());
            if accepted {
                assert_eq!(
                    a.status,
                    200,
                    "{digest}: {}",
                    String::from_utf8_lossy(&a.body)
                );
                continue;
            }
            assert_eq!((a.status, a.code().as_str()), (400, "bad_csr"), "{digest}");
            let message = a.json::<ApiError>().message;
            assert!(
                message.contains(&algorithm) && message.contains("not accepted"),
                "{digest}: the refusal must name {algorithm}: {message}"
            );
            assert!(!message.contains("does not verify"), "{message}");
        }
        let listed = inventory(&server, &org);
        assert_eq!(listed.len(), 1, "only the SHA-256 request enrolls");
        assert_eq!(server.admin(&org).list_tokens().unwrap()[0].uses, 1);
    });
}

/// Issue 11: `server/fleet.db` (the inventory and the token hashes) and its WAL and
/// shared-memory files were created with the umask's mode, readable by every local
/// user. Whether the server makes its default database or opens one named with
/// `--db`, the database and its journal files are 0600 and the default server/ is
/// 0700 (the suite runs under the usual 022 umask, which gave 0644 before).
#[test]
fn fleet_db_and_its_journal_are_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let org = Org::new();
    let named = org.dir.path().join("named.db");
    for default in [true, false] {
        let server = if default {
            Server::start_default_db(&org)
        } else {
            Server::start_with(&org, &format!("sqlite://{}", named.display()))
        };
        let token = create_token(&server, &org, "platform", 1, 3600);
        let mut device = Device::new(if default { "m-perm-1" } else { "m-perm-2" }, None);
        assert_eq!(enroll(&server, &org, &mut device, &token.token).status, 200);
        let db = fleetkit::server::sqlite_path(&server.db_url).unwrap();
        if default {
            assert_eq!(db, org.path().join("server/fleet.db"));
            assert_eq!(format!("{:o}", mode(&org.path().join("server"))), "700");
        }
        // The journal files exist while the server runs (WAL mode).
        for suffix in ["", "-wal", "-shm"] {
            let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
            assert_eq!(format!("{:o}", mode(&path)), "600", "{}", path.display());
        }
    }
}

/// The headers of a request whose 1000-byte body never comes (one byte is sent).
const TRICKLE: &[u8] = b"POST /v1/enroll HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{";

/// Issue 11: a body trickling in (a byte every few seconds) held its connection
/// forever, and a few hundred of them from one unauthenticated client made the
/// server unreachable. Now one source holds at most its per-source share, devices and
/// the admin are served meanwhile, and each held request ends at its deadline.
#[test]
fn trickling_request_bodies_cannot_hold_the_server() {
    const PER_IP: usize = 32;
    const TIMEOUT_SECS: u64 = 6;
    let org = Org::new();
    let server = Server::start_args(
        &org,
        Db::Sqlite,
        &[
            "--max-connections-per-ip",
            &PER_IP.to_string(),
            "--request-timeout-secs",
            &TIMEOUT_SECS.to_string(),
        ],
    );
    let token = create_token(&server, &org, "platform", 1, 3600);
    let mut device = Device::new("m-under-attack", None);
    assert_eq!(enroll(&server, &org, &mut device, &token.token).status, 200);

    // 300 slow requests from one source (127.0.0.2): only its share is let in.
    let raw = Raw::new(&org, &server);
    let anonymous = raw.connector(None);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        match raw.connect("127.0.0.2", &anonymous) {
            Some(mut conn) => {
                assert!(raw.send(&mut conn, TRICKLE), "admitted, then closed");
                held.push((conn, std::time::Instant::now()));
            }
            None => refused += 1,
        }
    }
    eprintln!("held {} slow requests, {refused} refused", held.len());
    assert_eq!((held.len(), refused), (PER_IP, 300 - PER_IP));
    // Another source holds TLS handshakes open instead (connects, sends nothing).
    let stalled_at = std::time::Instant::now();
    let (stalled, stalled_refused) =
        raw.stalled_handshakes("127.0.0.3", 100, std::time::Duration::from_secs(3));
    eprintln!(
        "held {} stalled handshakes, {stalled_refused} refused",
        stalled.len()
    );
    assert_eq!((stalled.len(), stalled_refused), (PER_IP, 100 - PER_IP));

    // Meanwhile the device is served, and so is the admin.
    let agent = client(&org, Some(&device));
    let bundle = answer(agent.get(format!("{}/v1/bundle", server.url())).call());
    assert_eq!(bundle.status, 200);
    let checkin = CheckinRequest {
        policy_version: Some(1),
        facts: device.facts.clone(),
    };
    let a = answer(
        agent
            .post(format!("{}/v1/checkin", server.url()))
            .header("content-type", "application/json")
            .send(serde_json::to_vec(&checkin).unwrap()),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(inventory(&server, &org).len(), 1);

    // Each slow request ends at its deadline: 408 request_timeout, then the server
    // closes the connection.
    let mut lasted = Vec::new();
    for (mut conn, sent) in held {
        let (status, body) = raw.response(&mut conn).expect("a 408 before the close");
        assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
        let error: ApiError = serde_json::from_slice(&body).unwrap();
        assert_eq!(error.code, ErrorCode::RequestTimeout);
        assert!(
            raw.closed_within(&mut conn, std::time::Duration::from_secs(30)),
            "the connection stays open after the 408"
        );
        lasted.push(sent.elapsed());
    }
    let (shortest, longest) = (lasted.iter().min().unwrap(), lasted.iter().max().unwrap());
    eprintln!("slow requests held for {shortest:?} to {longest:?} (deadline {TIMEOUT_SECS} s)");
    // Timers never fire early: nobody is cut off before the deadline.
    assert!(*shortest >= std::time::Duration::from_secs(TIMEOUT_SECS));

    // Stalled handshakes end at the handshake deadline (10 s).
    for mut tcp in stalled {
        assert!(
            raw.closed_within(&mut tcp, std::time::Duration::from_secs(40)),
            "a stalled handshake is still open"
        );
    }
    let stalled_for = stalled_at.elapsed();
    eprintln!("stalled handshakes closed within {stalled_for:?} (deadline 10 s)");
    assert!(stalled_for >= std::time::Duration::from_secs(10));

    // Their slots are free again: the source may connect once more.
    let again = raw.connect_when_free("127.0.0.2", &anonymous);
    assert!(
        again.is_some(),
        "the slots of closed connections were not given back"
    );
}

/// Issue 11: with the connection cap reached by anonymous clients from several
/// sources, enrolled devices must still get in: a quarter of `--max-connections` is
/// kept for connections with a client certificate, and the cap itself holds.
#[test]
fn anonymous_connections_cannot_crowd_out_enrolled_devices() {
    // 40 connections: 10 kept for devices, 30 anonymous, 12 per source.
    let org = Org::new();
    let server = Server::start_args(
        &org,
        Db::Sqlite,
        &["--max-connections", "40", "--max-connections-per-ip", "12"],
    );
    let token = create_token(&server, &org, "platform", 4, 3600);
    let mut device = Device::new("m-crowded", None);
    assert_eq!(enroll(&server, &org, &mut device, &token.token).status, 200);
    let mut second = Device::new("m-crowded-2", None);
    assert_eq!(enroll(&server, &org, &mut second, &token.token).status, 200);
    let mut third = Device::new("m-crowded-3", None);
    assert_eq!(enroll(&server, &org, &mut third, &token.token).status, 200);
    let mut removed = Device::new("m-removed-crowd", None);
    let removed_id = enroll(&server, &org, &mut removed, &token.token)
        .json::<EnrollResponse>()
        .device_id;
    server.admin(&org).remove_device(&removed_id).unwrap();
    let v1 = std::fs::read(org.path().join("bundles/policy-v1.json")).unwrap();

    // Anonymous clients fill their 30 slots from three sources; each holds a slow
    // request once it has shown it is in (a health check answered).
    let raw = Raw::new(&org, &server);
    let anonymous = raw.connector(None);
    let mut held = Vec::new();
    let mut admitted = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let mut n = 0;
        for _ in 0..13 {
            let Some(mut conn) = raw.connect(source, &anonymous) else {
                continue;
            };
            if raw
                .request(&mut conn, "GET", "/v1/health", b"")
                .map(|r| r.0)
                == Some(200)
            {
                assert!(raw.send(&mut conn, TRICKLE));
                held.push(conn);
                n += 1;
            }
        }
        admitted.push(n);
    }
    assert_eq!(admitted, [12, 12, 6], "12 per source, 30 anonymous in all");
    // One more anonymous connection, from a fresh source: closed at once.
    let late = raw.connect("127.0.0.1", &anonymous);
    assert!(late.is_none_or(|mut c| raw.request(&mut c, "GET", "/v1/health", b"").is_none()));

    // The device is served: its bundle and a check-in.
    let as_device = raw.connector(Some(&device));
    let mut devices = Vec::new();
    let mut conn = raw
        .connect("127.0.0.1", &as_device)
        .expect("device admitted");
    let (status, body) = raw.request(&mut conn, "GET", "/v1/bundle", b"").unwrap();
    assert_eq!((status, body), (200, v1));
    devices.push(conn);
    let checkin = serde_json::to_vec(&CheckinRequest {
        policy_version: Some(1),
        facts: device.facts.clone(),
    })
    .unwrap();
    let mut conn = raw
        .connect("127.0.0.1", &as_device)
        .expect("device admitted");
    let (status, body) = raw
        .request(&mut conn, "POST", "/v1/checkin", &checkin)
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    devices.push(conn);

    // A removed device's certificate (the TLS layer still accepts it: it chains to
    // the org root) is no device: it gets no reserve slot.
    let as_removed = raw.connector(Some(&removed));
    let gone = raw.connect("127.0.0.5", &as_removed);
    assert!(gone.is_none_or(|mut c| raw.request(&mut c, "GET", "/v1/health", b"").is_none()));

    // One certificate holds at most 4 connections, so devices fill the reserve
    // together, and not one connection more: the cap holds.
    let per_device = |connector: &tokio_rustls::TlsConnector, devices: &mut Vec<_>, n: usize| {
        let mut got = 0;
        for _ in 0..n {
            let Some(mut conn) = raw.connect("127.0.0.1", connector) else {
                continue;
            };
            if raw.request(&mut conn, "GET", "/v1/health", b"").is_some() {
                devices.push(conn);
                got += 1;
            }
        }
        got
    };
    assert_eq!(
        per_device(&as_device, &mut devices, 3),
        2,
        "4 per certificate"
    );
    assert_eq!(
        per_device(&raw.connector(Some(&second)), &mut devices, 4),
        4
    );
    let as_third = raw.connector(Some(&third));
    assert_eq!(per_device(&as_third, &mut devices, 4), 2, "the cap");
    assert_eq!(held.len() + devices.len(), 40);

    // A device connection that closes gives its slot back to the next device.
    devices.pop();
    let back = raw.connect_when_free("127.0.0.1", &as_third);
    assert!(
        back.is_some(),
        "a closed device connection's slot was not given back"
    );
}

/// Issue 11 (second review): hyper's header deadline only runs while it reads a
/// request, so a client that pipelines requests and never reads the answers held its
/// connection and its slot for ever. Now a write that stalls past the request
/// deadline ends the connection, and the source's slot comes back.
#[test]
fn a_client_that_never_reads_its_answers_loses_its_connection() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let org = Org::new();
    let server = Server::start_args(
        &org,
        Db::Sqlite,
        &[
            "--max-connections",
            "8",
            "--max-connections-per-ip",
            "1",
            "--request-timeout-secs",
            "2",
        ],
    );
    let raw = Raw::new(&org, &server);
    let anonymous = raw.connector(None);
    let port = server.port;
    let written = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let conn = raw.rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        anonymous.connect(name, tcp).await.unwrap()
    });
    let (reader, mut writer) = tokio::io::split(conn);
    let pipelining = raw.rt.spawn(async move {
        use tokio::io::AsyncWriteExt;
        let requests = b"GET /v1/health HTTP/1.1\r\nhost: localhost\r\n\r\n".repeat(64);
        loop {
            if writer.write_all(&requests).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            counter.fetch_add(requests.len(), Ordering::Relaxed);
        }
    });
    // The server stops reading once its answers back up, then drops the connection
    // (bounded wait: the deadlines here are 2 s and 6 s).
    let started = std::time::Instant::now();
    while !pipelining.is_finished() && started.elapsed() < std::time::Duration::from_secs(40) {
        raw.rt
            .block_on(async { tokio::time::sleep(std::time::Duration::from_millis(200)).await });
    }
    eprintln!(
        "the never-reading client wrote {} bytes; its connection ended after {:?}",
        written.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(pipelining.is_finished(), "the connection is still open");
    drop(reader);
    // The source's only slot is free again.
    let back = raw.connect_when_free("127.0.0.2", &anonymous);
    assert!(back.is_some(), "the slot was not given back");
}

/// The soft open-file limit of a running process, from /proc (Linux).
fn soft_nofile(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Second red-team review, item 2: `--max-connections` was never checked against
/// the open-file limit. With the default cap of 1024 under systemd's default soft
/// limit of 1024, the connections took the last descriptors and the database could
/// not open one (accept got EMFILE). Now the server raises its soft limit to the
/// hard one, and lowers the cap to fit what remains, saying so and how to raise it.
#[test]
fn max_connections_is_never_checked_against_the_fd_limit() {
    let org = Org::new();
    let prlimit = |soft_hard: &'static str| ["prlimit", soft_hard, "--"];

    // Hard limit 256: the cap is lowered, and the server says so and serves.
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(Db::Sqlite, dir.path());
    let (server, stderr) = Server::start_logged(
        &org,
        &prlimit("--nofile=256:256"),
        &url,
        &["--max-connections", "1024"],
    );
    assert!(
        stderr.contains("--max-connections lowered from 1024 to"),
        "{stderr}"
    );
    assert!(stderr.contains("open-file limit is 256"), "{stderr}");
    assert!(stderr.contains("ulimit -n"), "{stderr}");
    assert!(stderr.contains("LimitNOFILE="), "{stderr}");
    let mut device = Device::new("m-fd", Some("platform"));
    let token = create_token(&server, &org, "platform", 1, 3600).token;
    assert_eq!(enroll(&server, &org, &mut device, &token).status, 200);
    drop(server);

    // A cap that fits: nothing said.
    let (server, stderr) = Server::start_logged(
        &org,
        &prlimit("--nofile=256:256"),
        &url,
        &["--max-connections", "100"],
    );
    assert!(!stderr.contains("open-file"), "{stderr}");
    assert!(!stderr.contains("--max-connections"), "{stderr}");
    create_token(&server, &org, "platform", 1, 3600);
    drop(server);

    // A soft limit below a higher hard one is raised to it: nothing to lower.
    let (server, stderr) = Server::start_logged(
        &org,
        &prlimit("--nofile=256:4096"),
        &url,
        &["--max-connections", "1024"],
    );
    assert!(!stderr.contains("open-file"), "{stderr}");
    assert_eq!(soft_nofile(server.child.id()), 4096);
    create_token(&server, &org, "platform", 1, 3600);
}

/// The certificates the server recorded, counted in its database.
fn certificates_recorded(db_url: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certificates")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    })
}

/// Second red-team review, item 3: `/v1/enroll` signed a certificate and took the
/// store's write lock before it knew the token was good, so a flood of well-formed
/// made-up `fkt_…` tokens cost a signature each and queued check-ins behind it.
/// Now an unknown, revoked or expired token is refused first, from one read: a CSR
/// that does not even verify gets the token's refusal, not `bad_csr` (which comes
/// from signing), and nothing is issued.
#[test]
fn enroll_signs_a_certificate_before_the_token_is_known_to_be_valid() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let device = Device::new("m-flood", None);
        let good_csr = device.csr_pem("m-flood", false);
        let bad_csr = flip_last_signature_byte(&good_csr);
        let request = |token: &str, csr: &str| {
            let mut r = device.enroll_request(token);
            r.csr_pem = csr.to_string();
            serde_json::to_vec(&r).unwrap()
        };

        // A burst of made-up tokens, half of them with a CSR that does not verify.
        let answers: Vec<Answer> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let token = format!("fkt_{}", "A".repeat(42) + &format!("{i:01X}"));
                    let csr = if i % 2 == 0 { &good_csr } else { &bad_csr };
                    let body = request(&token, csr);
                    let (server, org) = (&server, &org);
                    s.spawn(move || post_enroll(server, org, &body))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for a in &answers {
            assert_eq!(
                (a.status, a.code().as_str()),
                (401, "token_unknown"),
                "{}",
                String::from_utf8_lossy(&a.body)
            );
        }

        assert_eq!(certificates_recorded(&server.db_url), 0, "nothing issued");

        // Revoked and expired tokens are refused as early, except the repeat of an
        // enrollment the expired token made (its answer may have been lost).
        let admin = server.admin(&org);
        let revoked = create_token(&server, &org, "platform", 5, 3600);
        admin.revoke_token(&revoked.info.id).unwrap();
        let a = post_enroll(&server, &org, &request(&revoked.token, &bad_csr));
        assert_eq!((a.status, a.code().as_str()), (401, "token_revoked"));
        let short = create_token(&server, &org, "platform", 5, 2);
        let late = Device::new("m-late", None);
        let late_request = serde_json::to_vec(&late.enroll_request(&short.token)).unwrap();
        let first = post_enroll(&server, &org, &late_request);
        assert_eq!(
            first.status,
            200,
            "{}",
            String::from_utf8_lossy(&first.body)
        );
        std::thread::sleep(std::time::Duration::from_millis(3100));
        let a = post_enroll(&server, &org, &request(&short.token, &bad_csr));
        assert_eq!((a.status, a.code().as_str()), (401, "token_expired"));
        let again = post_enroll(&server, &org, &late_request);
        assert_eq!(
            again.status,
            200,
            "{}",
            String::from_utf8_lossy(&again.body)
        );
        assert_eq!(
            first.json::<EnrollResponse>(),
            again.json::<EnrollResponse>()
        );
        assert_eq!(certificates_recorded(&server.db_url), 1, "m-late's only");

        // A good token still gets the CSR checked, then a certificate.
        let token = create_token(&server, &org, "platform", 1, 3600).token;
        let a = post_enroll(&server, &org, &request(&token, &bad_csr));
        assert_eq!((a.status, a.code().as_str()), (400, "bad_csr"));
        let a = post_enroll(&server, &org, &request(&token, &good_csr));
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(certificates_recorded(&server.db_url), 2);
    });
}

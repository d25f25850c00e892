//! End to end on loopback: `fleetkit serve` and several real `fleetkit agent`
//! processes, each under its own `--root`: registration, the inventory, the issued
//! certificates checked by openssl, pending registration, and the manifest with its
//! mirrors.

mod support;

use std::os::unix::fs::PermissionsExt;
use support::agent::DeviceRoot;
use support::*;

/// The ADR-002 machine-manifest fields: the contract.
const MANIFEST_FIELDS: [&str; 16] = [
    "machine_id",
    "organization",
    "user",
    "hostname",
    "platform",
    "cmdai_version",
    "enterprise_plugin_version",
    "registered_at",
    "certificate_fingerprint",
    "department",
    "team",
    "environment",
    "compliance_zone",
    "provisioned",
    "policy_version",
    "last_policy_update",
];

/// The lean agent a device gets (`--no-default-features`, cross-built by
/// scripts/build-agents.sh) does what the full binary's `agent` does, and nothing
/// of the admin side is in it.
#[test]
fn the_lean_linux_agent_registers_syncs_and_has_no_admin_commands() {
    let Some(lean) = real_agent("linux-x86_64") else {
        return;
    };
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let token = create_token(&server, &org, "platform", 1, 3600).token;
    let dir = tempfile::tempdir().unwrap();
    let d = DeviceRoot::install(&org, dir.path(), "lean", &server.url(), "team: platform\n");
    let run = d.agent_binary(&lean, &["register"], &[("FLEETKIT_ENROLL_TOKEN", &token)]);
    assert_eq!(run.code, 0, "{run:?}");
    org.sign_next();
    fleetkit(&[
        "--workspace",
        &org.ws(),
        "policy",
        "publish",
        "--server",
        &server.url(),
    ]);
    let sync = d.agent_binary(&lean, &["sync"], &[]);
    assert_eq!(sync.code, 0, "{sync:?}");
    let status = d.agent_binary(&lean, &["status", "--json"], &[]).json();
    assert_eq!(status["policy_version"], 2, "{status}");
    let listed = inventory(&server, &org);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].policy_version, Some(2));

    for admin in [
        "serve", "build", "init", "token", "devices", "policy", "keys", "demo",
    ] {
        let out = std::process::Command::new(&lean)
            .arg(admin)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "the lean agent has no `{admin}`"
        );
    }
}

#[test]
fn several_agents_register_and_the_inventory_matches_them() {
    for db in databases() {
        let org = Org::new();
        let server = Server::start(&org, db);
        let token = create_token(&server, &org, "platform", 3, 3600).token;
        let dir = tempfile::tempdir().unwrap();
        let devices: Vec<DeviceRoot> = ["alpha", "bravo", "charlie"]
            .iter()
            .map(|n| {
                DeviceRoot::install(
                    &org,
                    dir.path(),
                    n,
                    &server.url(),
                    "team: platform\nenvironment: production\n",
                )
            })
            .collect();
        for (i, d) in devices.iter().enumerate() {
            let run = d.agent(
                &["register", "--department", &format!("dept-{i}")],
                &[("FLEETKIT_ENROLL_TOKEN", &token)],
            );
            assert_eq!(run.code, 0, "{db:?}: {run:?}");
            assert!(run.stdout.contains("registered"), "{run:?}");
            // The token never reaches the device's files or the output.
            assert!(!run.stdout.contains(&token) && !run.stderr.contains(&token));
            let sync = d.agent(&["sync"], &[]);
            assert_eq!(sync.code, 0, "{sync:?}");
        }

        let listed = inventory(&server, &org);
        assert_eq!(listed.len(), 3, "{db:?}");
        for (i, d) in devices.iter().enumerate() {
            let m = d.manifest();
            for field in MANIFEST_FIELDS {
                assert!(m.get(field).is_some(), "manifest lacks {field}: {m}");
            }
            let machine_id = m["machine_id"].as_str().unwrap();
            let row = listed
                .iter()
                .find(|r| r.machine_id == machine_id)
                .unwrap_or_else(|| panic!("{machine_id} not in the inventory"));
            assert_eq!(m["device_id"], row.device_id.as_str());
            assert_eq!(m["organization"], "acme-corp");
            assert_eq!(row.team, "platform");
            assert_eq!(m["team"], "platform");
            assert_eq!(
                row.department.as_deref(),
                Some(format!("dept-{i}").as_str())
            );
            assert_eq!(m["department"], format!("dept-{i}").as_str());
            assert_eq!(row.environment.as_deref(), Some("production"));
            assert_eq!(row.policy_version, Some(1));
            assert_eq!(m["policy_version"], 1);
            assert_eq!(m["provisioned"], true);
            assert_eq!(m["enrollment"], "registered");
            assert_eq!(
                m["certificate_fingerprint"],
                row.certificate_fingerprint.as_str()
            );

            // The mirrors carry the same manifest.
            let fact: serde_json::Value = serde_json::from_slice(
                &std::fs::read(d.path("etc/ansible/facts.d/fleetkit.fact")).unwrap(),
            )
            .unwrap();
            assert_eq!(fact["machine_id"], machine_id);
            let puppet: serde_json::Value = serde_json::from_slice(
                &std::fs::read(d.path("etc/puppetlabs/facter/facts.d/fleetkit.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(puppet["fleetkit"]["device_id"], row.device_id.as_str());
            let hint: serde_json::Value = serde_json::from_slice(
                &std::fs::read(d.path("etc/chef/ohai/hints/fleetkit.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(hint["team"], "platform");

            // The key stays private; the certificate is ours, checked by openssl.
            let mode = std::fs::metadata(d.data("identity.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let cert = d.data("certificate.pem");
            let leaf = d.data("leaf.pem");
            let chain = std::fs::read_to_string(&cert).unwrap();
            let first_end = chain.find("-----END CERTIFICATE-----").unwrap() + 26;
            std::fs::write(&leaf, &chain[..first_end]).unwrap();
            let root = org.path().join("keys/root-ca.pem");
            let issuing = org.path().join("keys/issuing-ca.pem");
            let (ok, out) = openssl(&[
                "verify",
                "-CAfile",
                root.to_str().unwrap(),
                "-untrusted",
                issuing.to_str().unwrap(),
                "-purpose",
                "sslclient",
                leaf.to_str().unwrap(),
            ]);
            assert!(ok, "{out}");
            let (_, text) = openssl(&[
                "x509",
                "-in",
                leaf.to_str().unwrap(),
                "-noout",
                "-text",
                "-subject",
            ]);
            assert!(text.contains("CA:FALSE"), "{text}");
            assert!(text.contains("TLS Web Client Authentication"), "{text}");
            assert!(text.contains(&format!("CN = {machine_id}")), "{text}");
            assert!(text.contains(machine_id), "{text}");
        }

        // A fourth device finds the token used up: refused, inventory unchanged.
        let late = DeviceRoot::install(&org, dir.path(), "delta", &server.url(), "");
        let run = late.register(&token);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("token_used_up"), "{run:?}");
        assert_eq!(late.manifest()["enrollment"], "pending");
        assert_eq!(inventory(&server, &org).len(), 3);

        // Registering again is idempotent; --force enrolls a new key and certificate.
        let again = devices[0].register(&token);
        assert_eq!(again.code, 0, "{again:?}");
        assert!(again.stdout.contains("already registered"), "{again:?}");
    }
}

#[test]
fn without_a_server_registration_is_pending_and_the_next_sync_finishes_it() {
    let org = Org::new();
    // Find a free port, then leave it closed.
    let db_url = database_url(Db::Sqlite, org.dir.path());
    let mut first = Server::start_with(&org, &db_url);
    let port = first.port;
    let token = create_token(&first, &org, "ml-research", 1, 3600).token;
    first.kill();

    let dir = tempfile::tempdir().unwrap();
    let d = DeviceRoot::install(
        &org,
        dir.path(),
        "offline",
        &format!("https://localhost:{port}"),
        "",
    );
    // The installer leaves the token in a 0600 file; the agent deletes it once used.
    let token_file = d.path("etc/fleetkit/enroll-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let run = d.agent(&["register", "--team", "ml-research"], &[]);
    assert_eq!(run.code, 75, "pending registration exits 75: {run:?}");
    assert!(run.stderr.contains("pending"), "{run:?}");
    let m = d.manifest();
    assert_eq!(m["enrollment"], "pending");
    assert_eq!(m["provisioned"], false);
    assert_eq!(
        m["policy_version"], 1,
        "the shipped policy is installed offline"
    );
    assert!(d.data("pending-key.pem").exists());
    assert!(token_file.exists());

    let _server = Server::start_on(&org, &db_url, port);
    let sync = d.agent(&["sync"], &[]);
    assert_eq!(sync.code, 0, "{sync:?}");
    let status = d.status();
    assert_eq!(status["enrollment"], "registered");
    assert_eq!(status["team"], "ml-research");
    assert!(!token_file.exists(), "the used token is removed");
    assert!(!d.data("pending-key.pem").exists());
    let inv = inventory(&_server, &org);
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].machine_id, status["machine_id"].as_str().unwrap());
}

#[test]
fn renewal_gives_a_new_certificate_for_the_same_device() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let token = create_token(&server, &org, "platform", 1, 3600).token;
    let dir = tempfile::tempdir().unwrap();
    let d = DeviceRoot::install(&org, dir.path(), "renewer", &server.url(), "");
    assert_eq!(d.register(&token).code, 0);
    let before = d.status();
    let run = d.agent(&["renew"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let after = d.status();
    assert_ne!(
        before["certificate_fingerprint"],
        after["certificate_fingerprint"]
    );
    assert_eq!(before["device_id"], after["device_id"]);
    // The new certificate authenticates the device.
    let sync = d.agent(&["sync"], &[]);
    assert_eq!(sync.code, 0, "{sync:?}");
    let inv = inventory(&server, &org);
    assert_eq!(inv.len(), 1);
    assert_eq!(
        inv[0].certificate_fingerprint,
        after["certificate_fingerprint"].as_str().unwrap()
    );
}

#[test]
fn a_device_without_settings_or_anchors_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = DeviceRoot {
        root: dir.path().to_path_buf(),
    };
    let run = d.agent(&["status"], &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("agent.yaml"), "{run:?}");
    let org = Org::new();
    let d = DeviceRoot::install(
        &org,
        dir.path(),
        "x",
        "https://localhost:1",
        "offline_mode: sometimes\n",
    );
    let run = d.agent(&["sync"], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("offline_mode") && run.stderr.contains("fail-closed"),
        "{run:?}"
    );
    let d = DeviceRoot::install(&org, dir.path(), "y", "https://localhost:1", "");
    let run = d.agent(&["sync"], &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("agent register"), "{run:?}");
}

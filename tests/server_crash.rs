//! Crash safety: `kill -9` of the server in the middle of 200 concurrent
//! registrations loses no registration it acknowledged (SQLite and PostgreSQL).

mod support;

use fleetkit::protocol::EnrollResponse;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::*;

#[test]
fn kill_9_mid_registrations_loses_no_acknowledged_one() {
    for db in databases() {
        let org = Org::new();
        let url = database_url(db, org.dir.path());
        // 200 machines registering at once, as from 200 hosts; here all come from
        // 127.0.0.1, more than one source's default share of anonymous connections.
        let mut server = Server::start_with_args(&org, &url, &["--max-connections-per-ip", "256"]);
        let token = create_token(&server, &org, "platform", 1000, 3600);
        let acknowledged = Mutex::new(Vec::<EnrollResponse>::new());
        let answered = AtomicUsize::new(0);

        let base = server.url();
        let pid = server.child.id().to_string();
        std::thread::scope(|s| {
            for i in 0..200 {
                let (base, org, token) = (&base, &org, &token.token);
                let (acknowledged, answered) = (&acknowledged, &answered);
                s.spawn(move || {
                    let mut device = Device::new(&format!("m-crash-{i}"), None);
                    let body = serde_json::to_vec(&device.enroll_request(token)).unwrap();
                    let sent = client(org, None)
                        .post(format!("{base}/v1/enroll"))
                        .header("content-type", "application/json")
                        .send(&body[..]);
                    // Only a complete 200 answer counts as acknowledged.
                    if let Ok(mut r) = sent
                        && r.status() == 200
                        && let Ok(bytes) = r.body_mut().read_to_vec()
                        && let Ok(answer) = serde_json::from_slice::<EnrollResponse>(&bytes)
                    {
                        device.chain_pem = Some(answer.certificate_chain_pem.clone());
                        acknowledged.lock().unwrap().push(answer);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            // Kill the server once some registrations are acknowledged and others
            // are still in flight.
            while answered.load(Ordering::SeqCst) < 40 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let killed = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap();
            assert!(killed.success());
        });
        server.kill();

        let acknowledged = acknowledged.into_inner().unwrap();
        eprintln!(
            "{db:?}: {} of 200 registrations acknowledged before kill -9",
            acknowledged.len()
        );
        assert!(acknowledged.len() >= 40);
        assert!(
            acknowledged.len() < 200,
            "the kill must land while registrations are in flight"
        );

        let restarted = Server::start_with(&org, &url);
        let inventory = inventory(&restarted, &org);
        for ack in &acknowledged {
            let found = inventory
                .iter()
                .find(|d| d.device_id == ack.device_id)
                .unwrap_or_else(|| panic!("acknowledged {} lost", ack.device_id));
            assert_eq!(found.machine_id, ack.machine_id);
            assert_eq!(found.certificate_fingerprint, ack.certificate_fingerprint);
        }
        // The token's count matches what was stored: no half-done enrollment.
        let tokens = restarted.admin(&org).list_tokens().unwrap();
        assert_eq!(tokens[0].uses as usize, inventory.len());
    }
}

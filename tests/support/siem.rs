//! A SIEM for the tests: an HTTPS endpoint speaking Elasticsearch's bulk API as far
//! as the agent uses it — `create` actions keyed by `_id`, 201 for a new id, 409
//! for one already held — with a certificate from the test org's CA, and switches
//! to take it down, refuse the credential, or slow it (to kill the agent mid-batch).

use super::Org;
use super::https::{HttpsListener, answer_one};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// How the receiver behaves now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Connections are closed at once.
    Down,
    /// Every request gets this status and no items.
    Status(u16),
}

#[derive(Debug, Default)]
pub struct Held {
    /// Documents stored, in the order they arrived.
    pub docs: Vec<serde_json::Value>,
    ids: HashSet<String>,
    /// Every `create` received, repeats included.
    pub deliveries: u64,
    pub conflicts: u64,
    /// Requests that reached the handler (whatever the answer).
    pub requests: u64,
    pub authorizations: Vec<Option<String>>,
}

pub struct Receiver {
    pub port: u16,
    pub held: Arc<Mutex<Held>>,
    mode: Arc<Mutex<Mode>>,
    credential: Arc<Mutex<String>>,
    delay_ms: Arc<Mutex<u64>>,
}

impl Receiver {
    /// Listens on a free loopback port; accepts `Authorization: <credential>`.
    pub fn start(org: &Org, credential: &str) -> Self {
        let https = HttpsListener::bind(org);
        let (listener, config, port) = (https.listener, https.config, https.port);
        let r = Self {
            port,
            held: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Up)),
            credential: Arc::new(Mutex::new(credential.to_string())),
            delay_ms: Arc::default(),
        };
        let (held, mode, cred, delay) = (
            r.held.clone(),
            r.mode.clone(),
            r.credential.clone(),
            r.delay_ms.clone(),
        );
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                if *mode.lock().unwrap() == Mode::Down {
                    drop(tcp);
                    continue;
                }
                let (held, mode, cred, delay, config) = (
                    held.clone(),
                    mode.clone(),
                    cred.clone(),
                    delay.clone(),
                    config.clone(),
                );
                std::thread::spawn(move || {
                    answer_one(config, tcp, |head, body| {
                        let wait = *delay.lock().unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(wait));
                        let (status, answer) = handle(head, body, &held, &mode, &cred);
                        format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                            answer.len()
                        )
                    });
                });
            }
        });
        r
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/fleetkit-audit/_bulk", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn set_credential(&self, credential: &str) {
        *self.credential.lock().unwrap() = credential.to_string();
    }

    /// Each answer waits this long (a window to kill the agent in).
    pub fn set_delay_ms(&self, ms: u64) {
        *self.delay_ms.lock().unwrap() = ms;
    }

    /// The seqs of the stored documents, in arrival order.
    pub fn seqs(&self) -> Vec<u64> {
        self.held
            .lock()
            .unwrap()
            .docs
            .iter()
            .map(|d| d["seq"].as_u64().unwrap())
            .collect()
    }

    pub fn requests(&self) -> u64 {
        self.held.lock().unwrap().requests
    }
}

fn handle(
    head: &str,
    body: &[u8],
    held: &Mutex<Held>,
    mode: &Mutex<Mode>,
    credential: &Mutex<String>,
) -> (u16, String) {
    let authorization = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    let mut held = held.lock().unwrap();
    held.requests += 1;
    held.authorizations.push(authorization.clone());
    if let Mode::Status(s) = *mode.lock().unwrap() {
        return (s, r#"{"error":"test"}"#.into());
    }
    if authorization.as_deref() != Some(credential.lock().unwrap().as_str()) {
        return (401, r#"{"error":"unauthorized"}"#.into());
    }
    if !head
        .to_ascii_lowercase()
        .contains("content-type: application/x-ndjson")
    {
        return (406, r#"{"error":"not ndjson"}"#.into());
    }
    let text = String::from_utf8_lossy(body);
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    for pair in lines.chunks(2) {
        let action: serde_json::Value = serde_json::from_str(pair[0]).unwrap();
        let id = action["create"]["_id"].as_str().unwrap().to_string();
        let doc: serde_json::Value = serde_json::from_str(pair[1]).unwrap();
        assert_eq!(doc["id"], id, "the _id is the record's id");
        held.deliveries += 1;
        if held.ids.insert(id.clone()) {
            held.docs.push(doc);
            items.push(serde_json::json!({"create": {"_id": id, "status": 201}}));
        } else {
            held.conflicts += 1;
            items.push(serde_json::json!({"create": {"_id": id, "status": 409,
                "error": {"type": "version_conflict_engine_exception"}}}));
        }
    }
    (
        200,
        serde_json::json!({"errors": items.iter().any(|i| i["create"]["status"] != 201), "items": items})
            .to_string(),
    )
}

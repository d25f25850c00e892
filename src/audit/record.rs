//! One audit record: the stable schema (v1) every device writes, the server stores
//! and a SIEM receives.
//!
//! A record is one JSON object on one line. Its keys are always present (`null` when
//! a value does not apply), in the order below, so a SIEM field map never changes:
//! `v, seq, id, time, event, device, machine_id, user, team, policy_version, mode,
//! source, request, decision, applied, rule, reason, detail, prev`.
//!
//! What a record holds is bounded whatever a command looks like: text is capped at a
//! character boundary (the original length and SHA-256 are kept), so a 1 MB command
//! or a megabyte of newlines and NULs makes a line of a few KB. serde_json escapes
//! every control character, so a record is always exactly one line.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The schema version written in `v`.
pub const SCHEMA_VERSION: u32 = 1;
/// The most bytes of a command kept in a record.
pub const MAX_COMMAND_BYTES: usize = 4096;
/// The most bytes of any other text (reason, rule, user, detail values).
pub const MAX_TEXT_BYTES: usize = 1024;
/// The longest line read back: a record built here is far shorter; a longer line
/// is not one of ours.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// `prev` of the first record ever written on a device.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Event {
    /// The engine decided a request.
    #[serde(rename = "decision")]
    Decision,
    /// A new policy version was verified and put in force.
    #[serde(rename = "policy.installed")]
    PolicyInstalled,
    /// A bundle or rotation from the server was refused; the policy in force stays.
    #[serde(rename = "policy.refused")]
    PolicyRefused,
    /// The device registered (first enrollment, or again with `--force`).
    #[serde(rename = "device.registered")]
    Registered,
    /// The machine certificate was renewed.
    #[serde(rename = "device.renewed")]
    Renewed,
    /// The device key signed the chain up to a record (see [`super::checkpoint`]).
    #[serde(rename = "audit.checkpoint")]
    Checkpoint,
    /// Segments older than the retention period were removed.
    #[serde(rename = "audit.pruned")]
    Pruned,
    /// A torn last line (a writer killed mid-write, never acknowledged) was cut off.
    #[serde(rename = "audit.repaired")]
    Repaired,
    /// Records were dropped: a full inbox or spool, or unreadable inbox lines.
    #[serde(rename = "audit.dropped")]
    Dropped,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decision => "decision",
            Self::PolicyInstalled => "policy.installed",
            Self::PolicyRefused => "policy.refused",
            Self::Registered => "device.registered",
            Self::Renewed => "device.renewed",
            Self::Checkpoint => "audit.checkpoint",
            Self::Pruned => "audit.pruned",
            Self::Repaired => "audit.repaired",
            Self::Dropped => "audit.dropped",
        }
    }

    /// Whether `audit.log_all_commands: false` still records it: everything but an
    /// allowed decision.
    pub fn always_recorded(self) -> bool {
        self != Self::Decision
    }
}

/// The request a decision was about, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// `command` or `inference`.
    pub kind: String,
    /// The command line (or `backend/model`), cut at [`MAX_COMMAND_BYTES`].
    pub text: String,
    pub cwd: Option<String>,
    /// The length of the whole text, in bytes.
    pub bytes: u64,
    /// `text` is only the start of it.
    pub truncated: bool,
    /// SHA-256 of the whole text, hex: the same command gives the same hash, so a
    /// cut command can still be counted and matched.
    pub sha256: String,
}

impl RecordedRequest {
    /// A request whose text may be anything: cut and hashed here. Bytes that are not
    /// UTF-8 become U+FFFD (the hash is of the bytes as given).
    pub fn new(kind: &str, text: &[u8], cwd: Option<&str>) -> Self {
        let lossy = String::from_utf8_lossy(text);
        let (kept, truncated) = cut(&lossy, MAX_COMMAND_BYTES);
        Self {
            kind: kind.to_string(),
            text: kept,
            cwd: cwd.map(|c| cut(c, MAX_TEXT_BYTES).0),
            bytes: text.len() as u64,
            truncated,
            sha256: hex::encode(Sha256::digest(text)),
        }
    }
}

/// One audit record. `seq` and `prev` are set when the record joins the chain
/// ([`super::log::AuditLog::append`]); until then (in the inbox) they are 0 and empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub v: u32,
    /// Position in the device's chain, from 1.
    pub seq: u64,
    /// Random, made when the record is made: the key a SIEM and the server
    /// deduplicate on, the same however often the record is sent.
    pub id: String,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub event: Event,
    /// The server's device id, once registered.
    pub device: Option<String>,
    pub machine_id: Option<String>,
    /// Who made the request (for an unprivileged hook: the owner of the inbox file
    /// it wrote, not what the hook claimed).
    pub user: Option<String>,
    pub team: Option<String>,
    pub policy_version: Option<u64>,
    /// The policy's enforcement mode (`enforce`, `audit-only`, `permissive`).
    pub mode: Option<String>,
    /// Who asked: `claude-code`, `cli`, `agent`.
    pub source: Option<String>,
    pub request: Option<RecordedRequest>,
    /// What the rules decide: `allow`, `ask`, `deny`.
    pub decision: Option<String>,
    /// What was done about it under the mode (audit-only: `allow`).
    pub applied: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// Event-specific values (a checkpoint's signature, a prune's range…).
    pub detail: Option<serde_json::Map<String, serde_json::Value>>,
    /// SHA-256 (hex) of the previous record's line.
    pub prev: String,
}

impl Record {
    /// A new record of `event`, made now, with a fresh id and everything else empty.
    pub fn new(event: Event, time: time::OffsetDateTime) -> Self {
        Self {
            v: SCHEMA_VERSION,
            seq: 0,
            id: new_id(),
            time: rfc3339_millis(time),
            event,
            device: None,
            machine_id: None,
            user: None,
            team: None,
            policy_version: None,
            mode: None,
            source: None,
            request: None,
            decision: None,
            applied: None,
            rule: None,
            reason: None,
            detail: None,
            prev: String::new(),
        }
    }

    /// Sets a text field's value, cut to [`MAX_TEXT_BYTES`].
    pub fn text(value: &str) -> Option<String> {
        Some(cut(value, MAX_TEXT_BYTES).0)
    }

    /// Adds one `detail` value.
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.detail
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.into());
        self
    }

    /// One `detail` value.
    pub fn detail(&self, key: &str) -> Option<&serde_json::Value> {
        self.detail.as_ref()?.get(key)
    }

    /// The record as its line (no newline).
    pub fn to_line(&self) -> String {
        // Serialising a struct of strings, numbers and JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads one line; `None` when it is not a record of this schema.
    pub fn from_line(line: &[u8]) -> Option<Self> {
        if line.len() > MAX_LINE_BYTES {
            return None;
        }
        serde_json::from_slice(line)
            .ok()
            .filter(|r: &Self| r.v == SCHEMA_VERSION)
    }
}

/// The hash a record's successor carries in `prev`: SHA-256 of the line's bytes.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// `s` cut to at most `max` bytes at a character boundary; true when cut.
fn cut(s: &str, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s.to_string(), false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_string(), true)
}

/// 128 random bits as a UUID-shaped (version 4) string.
fn new_id() -> String {
    let mut b = [0u8; 16];
    // getrandom fails only where the OS has no randomness at all; then the time
    // and a counter still make the id unique on this device.
    if getrandom::fill(&mut b).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
        b[..8].copy_from_slice(&n.to_be_bytes());
        b[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `2026-12-03T07:11:29.123Z`.
pub fn rfc3339_millis(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_commands_make_one_bounded_line() {
        let mut command = b"rm -rf / \n\0\r\x1b[31m\xff\xfe ".to_vec();
        command.extend(std::iter::repeat_n(b'\n', 1 << 20));
        let mut r = Record::new(Event::Decision, time::OffsetDateTime::UNIX_EPOCH);
        r.request = Some(RecordedRequest::new("command", &command, Some("/tmp\n")));
        let line = r.to_line();
        assert!(!line.contains('\n') && !line.contains('\0'), "{line:.200}");
        assert!(line.len() < 2 * MAX_COMMAND_BYTES * 6, "{}", line.len());
        let back = Record::from_line(line.as_bytes()).unwrap();
        let req = back.request.unwrap();
        assert!(req.truncated);
        assert_eq!(req.bytes, command.len() as u64);
        assert!(
            req.text
                .starts_with("rm -rf / \n\0\r\x1b[31m\u{fffd}\u{fffd} ")
        );
        assert_eq!(req.sha256, hex::encode(Sha256::digest(&command)));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let s = "é".repeat(MAX_COMMAND_BYTES);
        let r = RecordedRequest::new("command", s.as_bytes(), None);
        assert!(r.truncated && r.text.len() <= MAX_COMMAND_BYTES);
        assert!(r.text.chars().all(|c| c == 'é'));
    }

    #[test]
    fn ids_are_unique_and_uuid_shaped() {
        let a = new_id();
        assert_ne!(a, new_id());
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn every_key_is_always_present_in_schema_order() {
        let line = Record::new(Event::Checkpoint, time::OffsetDateTime::UNIX_EPOCH).to_line();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Value>(&line)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys.len(), 19, "{line}");
        assert!(line.starts_with(r#"{"v":1,"seq":0,"id":"#), "{line}");
        assert!(line.contains(r#""time":"1970-01-01T00:00:00.000Z""#));
        assert!(line.ends_with(r#""prev":""}"#), "{line}");
    }
}

//! The audit trail: every decision and policy event a device makes, in a
//! tamper-evident log that the device, the server and a SIEM can all check.
//!
//! - [`record`]: the record schema (v1), bounded whatever the input;
//! - [`log`]: the hash chain in daily segments, its append, repair and retention;
//! - [`checkpoint`]: the device key's signatures over the chain's head;
//! - [`elastic_bulk`]: the envelope the SIEM receives the records in;
//! - [`inbox`]: how an unprivileged hook hands its records to the agent;
//! - [`verify`]: walks the chain and says where it breaks.
//!
//! [`DeviceAudit`] is what the agent and `agent decide` use: a record goes straight
//! into the chain when this process may write it (the agent, root), and into the
//! inbox otherwise (the hook, as the user).

pub mod checkpoint;
pub mod elastic_bulk;
pub mod file_owner;
pub mod inbox;
pub mod log;
pub mod record;
pub mod verify;

pub use log::{AuditError, AuditLog};
pub use record::{Event, Record, RecordedRequest};

use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// The device's audit log and inbox, under the agent's data folder.
#[derive(Debug, Clone)]
pub struct DeviceAudit {
    pub log: AuditLog,
    pub inbox: PathBuf,
}

/// Where a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landed {
    /// In the chain, as record `seq`.
    Chain(u64),
    /// In the inbox, until the agent's next run.
    Inbox,
}

impl DeviceAudit {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            log: AuditLog::new(&data_dir.join("audit")),
            inbox: data_dir.join("audit-inbox"),
        }
    }

    /// Records one record where this process may write it.
    pub fn record(&self, record: Record, now: OffsetDateTime) -> Result<Landed, String> {
        if self.may_write_chain() {
            return match self.log.append(vec![record], now) {
                Ok(written) => Ok(Landed::Chain(written.last().map_or(0, |r| r.seq))),
                Err(e) => Err(e.to_string()),
            };
        }
        inbox::drop_record(&self.inbox, &record).map(|()| Landed::Inbox)
    }

    /// Appends records the agent itself made (it always may write the chain).
    pub fn append(&self, records: Vec<Record>, now: OffsetDateTime) -> log::Result<Vec<Record>> {
        self.log.append(records, now)
    }

    /// Whether this process may append to the chain itself: the folder is ours to
    /// write, or does not exist yet and the folder it would be made in is.
    fn may_write_chain(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let writable = |p: &Path| {
                std::ffi::CString::new(p.as_os_str().as_bytes()).is_ok_and(|c| {
                    // SAFETY: `c` is a valid NUL-terminated path for the call.
                    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
                })
            };
            // The folder, or the nearest folder above it that exists (it is made
            // on the first write).
            self.log
                .dir()
                .ancestors()
                .find(|p| p.exists())
                .is_some_and(writable)
        }
        #[cfg(not(unix))]
        {
            // Windows: the folder's ACL decides; a user's process is refused there
            // (the agent runs as SYSTEM), and hands its record to the inbox.
            if std::fs::create_dir_all(self.log.dir()).is_err() {
                return false;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.log.dir().join("audit.lock"))
                .is_ok()
        }
    }
}

/// Who a device's records are about: filled in from the agent's state.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub device: Option<String>,
    pub machine_id: Option<String>,
    pub team: Option<String>,
    pub policy_version: Option<u64>,
    pub mode: Option<String>,
}

impl Subject {
    /// A record of `event` about this device, made now.
    pub fn record(&self, event: Event, now: OffsetDateTime) -> Record {
        let mut r = Record::new(event, now);
        r.device = self.device.clone();
        r.machine_id = self.machine_id.clone();
        r.team = self.team.clone();
        r.policy_version = self.policy_version;
        r.mode = self.mode.clone();
        r
    }

    /// A decision record about a request `source` made as this process's user.
    fn request_record(&self, source: &str, now: OffsetDateTime) -> Record {
        let mut r = self.record(Event::Decision, now);
        r.source = Some(source.to_string());
        r.user = Some(inbox::current_user());
        r
    }
}

/// Whether the policy asks for a decision with this verdict to be recorded:
/// everything under `audit.log_all_commands`, otherwise what the rules would not
/// simply allow (recorded in audit-only mode too: that is what a dry run measures).
pub fn required(policy: &crate::policy::OrgPolicy, verdict: crate::enforce::Verdict) -> bool {
    policy.audit.log_all_commands || verdict != crate::enforce::Verdict::Allow
}

/// The record of one decision.
pub fn decision_record(
    subject: &Subject,
    request: &crate::enforce::Request,
    decision: &crate::enforce::Decision,
    source: &str,
    now: OffsetDateTime,
) -> Record {
    use crate::enforce::Request;
    let mut r = subject.request_record(source, now);
    r.mode = Some(decision.mode.to_string());
    r.request = Some(match request {
        Request::Command { command, cwd } => {
            RecordedRequest::new("command", command.as_bytes(), cwd.as_deref())
        }
        Request::Inference { backend, model } => {
            let text = match model {
                Some(m) => format!("{backend}/{m}"),
                None => backend.clone(),
            };
            RecordedRequest::new("inference", text.as_bytes(), None)
        }
    });
    r.decision = Some(decision.verdict.as_str().to_string());
    r.applied = Some(decision.applied.as_str().to_string());
    r.rule = Record::text(&decision.rule);
    r.reason = Record::text(&decision.reason);
    if !decision.classes.is_empty() {
        r = r.with_detail("classes", decision.classes.clone());
    }
    r
}

/// The record of hook input that could not be read as a request (blocked): what
/// came in is kept, bounded, whatever its bytes.
pub fn unreadable_input_record(
    subject: &Subject,
    input: &[u8],
    why: &str,
    source: &str,
    now: OffsetDateTime,
) -> Record {
    let mut r = subject.request_record(source, now);
    r.request = Some(RecordedRequest::new("unreadable", input, None));
    r.decision = Some("deny".into());
    r.applied = Some("deny".into());
    r.rule = Some("engine.input".into());
    r.reason = Record::text(why);
    r
}

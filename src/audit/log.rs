//! The device's audit log: a hash chain of records in daily JSON-lines segments.
//!
//! `<data>/audit/audit-YYYY-MM-DD.jsonl` (0600, in a 0700 folder), one record per
//! line. Each record carries its place (`seq`, from 1) and the SHA-256 of the line
//! before it (`prev`; the first record ever carries [`GENESIS`]); the chain runs on
//! across segments. Only the agent's own processes (root) append; a hook run by a
//! user drops its records in the inbox instead ([`super::inbox`]).
//!
//! Appending: take `audit.lock`, read the newest segment's last line (cutting off a
//! torn one a killed writer left, and saying so in an `audit.repaired` record), give
//! the batch its seqs and prevs, write it with one `O_APPEND` write and `fdatasync`
//! before returning. The fsync policy: one per append call, before the caller acts
//! on the decision, so a decision that was answered is on disk (a hook decides one
//! command per process, so batching across calls would lose exactly the records an
//! auditor asks for). What a crash can lose is a record whose append had not
//! returned: its decision was never answered.
//!
//! Retention: [`AuditLog::prune`] removes whole segments older than
//! `audit.log_retention_days` (never the newest), after recording in the chain which
//! ones and where the chain stood, so verification can tell a pruned segment from a
//! deleted one.

use super::record::{Event, GENESIS, MAX_LINE_BYTES, Record, line_hash};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: the last record is unreadable, so the chain cannot be continued; run `fleetkit agent audit verify` to see where the log was changed"
    )]
    Corrupt { path: PathBuf },
    #[error("cannot sign the audit checkpoint with the device key: {0}")]
    Sign(String),
}

pub type Result<T, E = AuditError> = std::result::Result<T, E>;

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AuditError + 'a {
    move |source| AuditError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Where the chain stands: the last record's seq and line hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    /// The last record's event (`None` before the first).
    pub last_event: Option<Event>,
}

impl Head {
    fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_string(),
            last_event: None,
        }
    }
}

/// The audit log in one folder.
#[derive(Debug, Clone)]
pub struct AuditLog {
    dir: PathBuf,
}

/// The segment file name prefix and suffix.
const SEGMENT_PREFIX: &str = "audit-";
const SEGMENT_SUFFIX: &str = ".jsonl";

impl AuditLog {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("cannot list", &self.dir)(e)),
        };
        let mut out: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| segment_date(&e.file_name().to_string_lossy()).is_some())
            .map(|e| e.path())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Appends `records` (their `seq` and `prev` are set here) and returns them as
    /// written. Durable (fdatasync) when this returns.
    pub fn append(&self, records: Vec<Record>, now: OffsetDateTime) -> Result<Vec<Record>> {
        if records.is_empty() {
            return Ok(records);
        }
        let _lock = self.lock()?;
        self.append_locked(records, now)
    }

    /// The chain's head, read under the lock.
    pub fn head(&self) -> Result<Head> {
        let _lock = self.lock()?;
        self.head_locked()
    }

    /// The chain's head, with the lock already held (a torn line is cut off and
    /// recorded first).
    pub(super) fn head_locked(&self) -> Result<Head> {
        let (head, torn) = self.tail()?;
        if torn.is_none() {
            return Ok(head);
        }
        let written = self.write_after(head.clone(), torn, Vec::new(), crate::clock::now())?;
        Ok(written.last().map_or(head, |r| Head {
            seq: r.seq,
            hash: line_hash(r.to_line().as_bytes()),
            last_event: Some(r.event),
        }))
    }

    /// Takes the log's lock (waiting for another writer), creating the folder.
    pub(super) fn lock(&self) -> Result<File> {
        create_private_dir(&self.dir)?;
        let path = self.dir.join("audit.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("cannot open", &path))?;
        file.lock().map_err(io("cannot lock", &path))?;
        Ok(file)
    }

    /// Appends with the lock already held.
    pub(super) fn append_locked(
        &self,
        records: Vec<Record>,
        now: OffsetDateTime,
    ) -> Result<Vec<Record>> {
        let (head, torn) = self.tail()?;
        self.write_after(head, torn, records, now)
    }

    /// Writes `records` after `head`, first recording a torn line that was cut off.
    fn write_after(
        &self,
        mut head: Head,
        torn: Option<Torn>,
        mut records: Vec<Record>,
        now: OffsetDateTime,
    ) -> Result<Vec<Record>> {
        if let Some(torn) = torn {
            // Recorded even when nothing else is appended (head_locked).
            let repaired = Record::new(Event::Repaired, now)
                .with_detail("file", torn.file)
                .with_detail("cut_bytes", torn.bytes);
            records.insert(0, repaired);
        }
        if records.is_empty() {
            return Ok(records);
        }
        let path = self.dir.join(segment_name(now));
        let new_file = !path.exists();
        let mut buf = Vec::new();
        for r in &mut records {
            head.seq += 1;
            r.seq = head.seq;
            r.prev = std::mem::take(&mut head.hash);
            let line = r.to_line();
            head.hash = line_hash(line.as_bytes());
            head.last_event = Some(r.event);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        let mut file = open_append(&path)?;
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(io("cannot write", &path))?;
        if new_file {
            // Windows: no group or other access (an ACL; unix files are made 0600).
            crate::fsutil::set_mode(&path, crate::fsutil::SECRET_MODE)
                .map_err(|e| io("cannot restrict", &path)(e.source))?;
            crate::fsutil::sync_dir(&self.dir);
        }
        Ok(records)
    }

    /// The chain's head, after cutting off a torn last line (reported).
    fn tail(&self) -> Result<(Head, Option<Torn>)> {
        let mut torn = None;
        for path in self.segments()?.iter().rev() {
            // Read only: opening for writing costs more, and every decision reads
            // the tail; the rare repair opens again to write.
            let mut file = File::open(path).map_err(io("cannot open", path))?;
            let len = file.metadata().map_err(io("cannot read", path))?.len();
            let (last, end) = last_line(&mut file, len).map_err(io("cannot read", path))?;
            if end < len {
                // A writer was killed mid-line: that record's append never returned.
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io("cannot open", path))?;
                file.set_len(end)
                    .and_then(|()| file.sync_data())
                    .map_err(io("cannot repair", path))?;
                torn = Some(Torn {
                    file: file_name(path),
                    bytes: len - end,
                });
            }
            let Some(line) = last else {
                continue; // an empty segment (created, nothing written yet)
            };
            let record = Record::from_line(&line)
                .ok_or_else(|| AuditError::Corrupt { path: path.clone() })?;
            return Ok((
                Head {
                    seq: record.seq,
                    hash: line_hash(&line),
                    last_event: Some(record.event),
                },
                torn,
            ));
        }
        Ok((Head::genesis(), torn))
    }

    /// Removes segments whose day is more than `retention_days` before `now`, never
    /// the newest, after appending an `audit.pruned` record naming each one and the
    /// last record it held. Returns that record, if anything was pruned.
    pub fn prune(&self, retention_days: u64, now: OffsetDateTime) -> Result<Option<Record>> {
        let _lock = self.lock()?;
        let segments = self.segments()?;
        let cutoff = now.date() - time::Duration::days(retention_days.min(36_500) as i64);
        let old: Vec<&PathBuf> = segments
            .iter()
            .take(segments.len().saturating_sub(1))
            .filter(|p| segment_date(&file_name(p)).is_some_and(|d| d < cutoff))
            .collect();
        if old.is_empty() {
            return Ok(None);
        }
        let mut removed = Vec::new();
        for path in &old {
            let mut file = File::open(path).map_err(io("cannot open", path))?;
            let len = file.metadata().map_err(io("cannot read", path))?.len();
            let (last, _) = last_line(&mut file, len).map_err(io("cannot read", path))?;
            let (seq, hash) = match last
                .as_deref()
                .and_then(|l| Record::from_line(l).map(|r| (r, l)))
            {
                Some((r, l)) => (
                    serde_json::Value::from(r.seq),
                    serde_json::Value::from(line_hash(l)),
                ),
                None => (serde_json::Value::Null, serde_json::Value::Null),
            };
            removed.push(serde_json::json!({
                "file": file_name(path),
                "last_seq": seq,
                "last_hash": hash,
            }));
        }
        let record = Record::new(Event::Pruned, now)
            .with_detail("retention_days", retention_days)
            .with_detail("segments", removed);
        let written = self.append_locked(vec![record], now)?;
        for path in old {
            fs::remove_file(path).map_err(io("cannot remove", path))?;
        }
        crate::fsutil::sync_dir(&self.dir);
        Ok(written.into_iter().find(|r| r.event == Event::Pruned))
    }
}

impl AuditLog {
    /// The seq of the oldest record the log still holds.
    pub fn first_seq(&self) -> Result<Option<u64>> {
        use std::io::BufRead;
        for path in self.segments()? {
            let file = File::open(&path).map_err(io("cannot open", &path))?;
            let mut reader = std::io::BufReader::new(file);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = (&mut reader)
                    .take(MAX_LINE_BYTES as u64 + 1)
                    .read_until(b'\n', &mut line)
                    .map_err(io("cannot read", &path))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                if let Some(r) = Record::from_line(&line[..line.len() - 1]) {
                    return Ok(Some(r.seq));
                }
            }
        }
        Ok(None)
    }

    /// The records after seq `after`, as written (lines without their newline),
    /// oldest first: the first run of consecutive seqs, at most `max_records` and
    /// `max_bytes` of lines. Lines that are not records (a changed log) are
    /// skipped: the receiver sees the gap and says so; a torn last line is not
    /// complete and is left for the writer to repair.
    pub fn lines_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, String)>> {
        let mut newest_first: Vec<Vec<(u64, String)>> = Vec::new();
        for path in self.segments()?.iter().rev() {
            let bytes = fs::read(path).map_err(io("cannot read", path))?;
            let complete = match bytes.iter().rposition(|&b| b == b'\n') {
                Some(i) => &bytes[..i],
                None => &[][..],
            };
            let mut here = Vec::new();
            let mut reaches_back = false;
            for line in complete.split(|&b| b == b'\n') {
                let Some(r) = Record::from_line(line) else {
                    continue;
                };
                if r.seq <= after {
                    reaches_back = true;
                    continue;
                }
                here.push((r.seq, String::from_utf8_lossy(line).into_owned()));
            }
            newest_first.push(here);
            if reaches_back {
                break;
            }
        }
        let mut out: Vec<(u64, String)> = Vec::new();
        let mut bytes = 0usize;
        for (seq, line) in newest_first.into_iter().rev().flatten() {
            let consecutive = out.last().is_none_or(|(s, _)| seq == s + 1);
            if !consecutive || out.len() >= max_records || bytes + line.len() > max_bytes {
                break;
            }
            bytes += line.len() + 8;
            out.push((seq, line));
        }
        Ok(out)
    }
}

/// A torn last line that was cut off.
struct Torn {
    file: String,
    bytes: u64,
}

/// `audit-2026-12-03.jsonl` for the UTC day of `t`.
pub fn segment_name(t: OffsetDateTime) -> String {
    let d = t.to_offset(time::UtcOffset::UTC).date();
    format!(
        "{SEGMENT_PREFIX}{:04}-{:02}-{:02}{SEGMENT_SUFFIX}",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// The day of a segment file name.
pub fn segment_date(name: &str) -> Option<time::Date> {
    let day = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(day, &format).ok()
}

pub(super) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The last complete line of a file of `len` bytes (without its newline), and where
/// the complete lines end (`< len` when the file ends in a torn line).
fn last_line(file: &mut File, len: u64) -> std::io::Result<(Option<Vec<u8>>, u64)> {
    // Read back from the end until two newlines (or the start) are in hand; a line
    // longer than MAX_LINE_BYTES is not ours, so reading stops there.
    let want = (MAX_LINE_BYTES as u64 * 2 + 2).min(len);
    let start = len - want;
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity(want as usize);
    file.take(want).read_to_end(&mut buf)?;
    let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
        // No complete line in the window: all of it is torn (or one huge line).
        return Ok((None, start));
    };
    let end = start + last_nl as u64 + 1;
    let body = &buf[..last_nl];
    let line_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if line_start == 0 && start > 0 {
        return Ok((Some(body.to_vec()), end)); // longer than ours: unreadable
    }
    Ok((Some(body[line_start..].to_vec()), end))
}

/// Opens a segment to append, creating it 0600.
fn open_append(path: &Path) -> Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    o.open(path).map_err(io("cannot open", path))
}

/// Creates `dir` (and parents) and makes it 0700 (unix).
fn create_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(io("cannot create directory", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

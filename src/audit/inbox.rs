//! The inbox: where a decision made by an unprivileged process (Claude Code's hook,
//! run as the user) waits until the agent puts it in the chain.
//!
//! Only the agent (root) may write the chain, and the hook must never wait on it,
//! so the hook appends its record to a file of its own in `<data>/audit-inbox/`: a
//! folder owned by root, mode 1733 (anyone may create a file in it, nobody else
//! may list it, and the sticky bit keeps users off each other's files). The file is
//! opened without following links, must be a regular file the writer owns, is
//! bounded ([`MAX_INBOX_BYTES`]), and each append is one `write` under a shared lock,
//! then `fdatasync`.
//!
//! The agent collects at every run: it renames each file aside (new records go to a
//! new file), takes the file's exclusive lock (waiting out a writer mid-append),
//! reads the records, sets each one's `user` from the file's **owner** (not from what
//! the record claims), appends them to the chain in one batch and removes the file.
//! A writer that opened the old name re-checks after its lock that the name is still
//! its file, and opens the new one otherwise, so no record lands in a removed file.
//! A collection killed between append and removal is finished by the next one,
//! which skips the records the chain already holds (by id).
//!
//! What this cannot prevent: until the agent's next run, the user owns the file and
//! can change what their own hook wrote there. The chain is tamper evident from the
//! moment of collection; `agent sync` collects on every run. On Windows the owner
//! is the file's owner SID, looked up to `DOMAIN\user` ([`super::file_owner`]).

use super::file_owner::{self, Owner};
use super::log::{AuditLog, Result};
use super::record::{Event, MAX_LINE_BYTES, Record};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// The most one user's inbox file holds before the hook stops adding to it (the
/// agent empties it at every run).
pub const MAX_INBOX_BYTES: u64 = 8 * 1024 * 1024;
/// The name a file is renamed to while it is collected.
const COLLECTING: &str = ".collecting-";

/// Appends `record` to the caller's inbox file under `dir`. The error says why in
/// words (the hook reports it; nothing is written half).
pub fn drop_record(dir: &Path, record: &Record) -> std::result::Result<(), String> {
    let mut line = record.to_line().into_bytes();
    line.push(b'\n');
    if line.len() > MAX_LINE_BYTES {
        return Err("the record is too large for the inbox".into());
    }
    let me = writer_id();
    let names = [
        format!("{me}.jsonl"),
        format!("{me}-{}.jsonl", std::process::id()),
    ];
    let mut last_error = String::new();
    for name in &names {
        let path = dir.join(name);
        // A collection may rename the file between open and lock: try again then.
        for _ in 0..3 {
            match append_to(&path, &line) {
                Ok(true) => return Ok(()),
                Ok(false) => continue,
                Err(e) => {
                    last_error = e;
                    break;
                }
            }
        }
    }
    Err(last_error)
}

/// One attempt: `Ok(false)` when the file was collected under us.
fn append_to(path: &Path, line: &[u8]) -> std::result::Result<bool, String> {
    let shown = path.display();
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = o
        .open(path)
        .map_err(|e| format!("cannot open {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() || !owned_by_me(&meta) {
        return Err(format!("{shown} is not a file of this user's"));
    }
    file.lock_shared()
        .map_err(|e| format!("cannot lock {shown}: {e}"))?;
    if !still_named(&file, path) {
        return Ok(false);
    }
    let size = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .len();
    if size + line.len() as u64 > MAX_INBOX_BYTES {
        return Err(format!(
            "{shown} is full ({size} bytes): the agent has not collected it; run `fleetkit agent sync`"
        ));
    }
    file.write_all(line)
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    Ok(true)
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    pub records: usize,
    /// Lines that were not decision records (counted in an `audit.dropped` record).
    pub refused: usize,
    /// Records a killed collection had already put in the chain.
    pub duplicates: usize,
}

/// Makes the inbox folder (root-owned, 1733). Run by the agent, as root.
pub fn prepare(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| super::log::AuditError::Io {
        action: "cannot create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o1733));
    }
    Ok(())
}

/// Moves every inbox file's records into the chain.
pub fn collect(dir: &Path, log: &AuditLog, now: OffsetDateTime) -> Result<Collected> {
    prepare(dir)?;
    let mut done = Collected::default();
    let mut leftovers = false;
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            // Only the hook's regular files belong here; a link or a folder is
            // someone's attempt to make the agent read elsewhere.
            let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
            continue;
        }
        if let Some(original) = name.strip_prefix(COLLECTING) {
            leftovers = true;
            files.push((path, original.to_string()));
        } else if name.ends_with(".jsonl") {
            let aside = dir.join(format!("{COLLECTING}{name}"));
            if fs::rename(&path, &aside).is_ok() {
                files.push((aside, name));
            }
        }
    }
    files.sort();
    let _lock = log.lock()?;
    let already: HashSet<String> = if leftovers {
        recent_ids(log)
    } else {
        HashSet::new()
    };
    let mut batch = Vec::new();
    let mut collected = Vec::new();
    for (path, name) in files {
        let Some((owner, bytes)) = read_locked(&path) else {
            continue;
        };
        let mut refused = 0usize;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match Record::from_line(line).filter(|r| r.event == Event::Decision && r.seq == 0) {
                Some(r) if already.contains(&r.id) => done.duplicates += 1,
                Some(mut r) => {
                    r.user = Some(owner.name.clone());
                    r.prev.clear();
                    r = r.with_detail("via", "inbox");
                    if let Some(uid) = owner.uid {
                        r = r.with_detail("uid", uid);
                    }
                    batch.push(r);
                    done.records += 1;
                }
                None => refused += 1,
            }
        }
        if refused > 0 {
            done.refused += refused;
            batch.push(
                Record::new(Event::Dropped, now)
                    .with_detail("reason", "inbox lines that are not decision records")
                    .with_detail("count", refused)
                    .with_detail("file", name)
                    .with_detail("user", owner.name.clone()),
            );
        }
        collected.push(path);
    }
    log.append_locked(batch, now)?;
    for path in collected {
        let _ = fs::remove_file(path);
    }
    crate::fsutil::sync_dir(dir);
    Ok(done)
}

/// The ids in the newest two segments: what an interrupted collection may already
/// have appended.
fn recent_ids(log: &AuditLog) -> HashSet<String> {
    let segments = log.segments().unwrap_or_default();
    let mut ids = HashSet::new();
    for path in segments.iter().rev().take(2) {
        if let Ok(bytes) = fs::read(path) {
            for line in bytes.split(|&b| b == b'\n') {
                if let Some(r) = Record::from_line(line) {
                    ids.insert(r.id);
                }
            }
        }
    }
    ids
}

/// Reads a renamed inbox file whole under its exclusive lock, with its owner.
fn read_locked(path: &PathBuf) -> Option<(Owner, Vec<u8>)> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW);
    }
    let file = o.open(path).ok()?;
    // Waits for a writer that had the file open before it was renamed.
    file.lock().ok()?;
    let owner = file_owner::of(&file).unwrap_or_else(Owner::unknown);
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_INBOX_BYTES + MAX_LINE_BYTES as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    Some((owner, bytes))
}

#[cfg(unix)]
fn owned_by_me(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    meta.uid() == unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn owned_by_me(_meta: &fs::Metadata) -> bool {
    true
}

/// Whether `path` still names the open `file` (not renamed away by a collection).
#[cfg(unix)]
fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino() && a.nlink() > 0,
        _ => false,
    }
}

#[cfg(not(unix))]
fn still_named(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// The writer's file name stem: its uid (unix) or user name.
fn writer_id() -> String {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }.to_string()
    }
    #[cfg(not(unix))]
    {
        current_user()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }
}

/// The name of the user this process runs as.
pub fn current_user() -> String {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        file_owner::user_name(unsafe { libc::geteuid() })
    }
    #[cfg(not(unix))]
    {
        std::env::var("USERNAME").unwrap_or_else(|_| "unknown".into())
    }
}

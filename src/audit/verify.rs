//! `fleetkit agent audit verify`: walks the whole chain and says where it breaks.
//!
//! What each change to the log looks like, and what is reported:
//! - a record **edited**: its hash no longer matches the next record's `prev`
//!   (or, for the record a checkpoint covers, the checkpoint's signed hash);
//! - a record **deleted**: a gap in `seq`;
//! - records **reordered**: `seq` goes backwards (a seq found later in the file);
//! - the log **truncated**: the newest checkpoint (`checkpoint.json`, and the
//!   server's copy) covers records the log no longer has;
//! - the oldest segment **deleted** rather than pruned: the first record is not
//!   seq 1 and no `audit.pruned` record names the segment before it;
//! - a checkpoint **forged**: its signature or certificate does not verify.
//!
//! A torn last line (a writer killed mid-write: that append never returned, so no
//! decision was answered on it) is a note, not a break. Records after the newest
//! checkpoint are chained but not signed: their number is reported.

use super::checkpoint;
use super::log::{AuditLog, file_name};
use super::record::{Event, GENESIS, MAX_LINE_BYTES, Record, line_hash};
use serde::Serialize;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;

/// What kind of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Break {
    Edited,
    Deleted,
    Reordered,
    Truncated,
    Unreadable,
    BadCheckpoint,
}

/// One break, where it is.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: Break,
    /// `audit-2026-12-03.jsonl:17`.
    pub at: String,
    pub seq: Option<u64>,
    pub message: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub segments: usize,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub checkpoints: u64,
    /// The newest checkpoint that verifies: its seq and time.
    pub last_checkpoint: Option<(u64, String)>,
    /// Records after the newest checkpoint.
    pub unsigned: u64,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A record as read, with where it was.
struct Seen {
    seq: u64,
    hash: String,
    prev: String,
    at: String,
    record: Option<Record>,
}

/// Verifies the log in `log`'s folder. `roots_pem`: the org root CA certificates to
/// check checkpoints with (`None`: signatures are not checked, and that is said).
pub fn verify(log: &AuditLog, roots_pem: Option<&[String]>) -> std::io::Result<Report> {
    let mut report = Report::default();
    let segments = log
        .segments()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    report.segments = segments.len();
    let mut seen: Vec<Seen> = Vec::new();
    for (i, path) in segments.iter().enumerate() {
        read_segment(path, i + 1 == segments.len(), &mut seen, &mut report)?;
    }
    report.records = seen.len() as u64;
    report.first_seq = seen.first().map(|s| s.seq);
    report.last_seq = seen.last().map(|s| s.seq);
    if roots_pem.is_none() {
        report
            .notes
            .push("checkpoint signatures were not checked (no trust anchors given)".into());
    }
    check_links(&seen, &mut report);
    check_start(&seen, &mut report);
    check_checkpoints(&seen, roots_pem, &mut report);
    check_latest(log, &seen, roots_pem, &mut report);
    Ok(report)
}

fn read_segment(
    path: &Path,
    last_segment: bool,
    seen: &mut Vec<Seen>,
    report: &mut Report,
) -> std::io::Result<()> {
    let name = file_name(path);
    let mut reader = BufReader::new(std::fs::File::open(path)?);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        number += 1;
        let at = format!("{name}:{number}");
        if line.last() != Some(&b'\n') {
            if line.len() > MAX_LINE_BYTES {
                report.problems.push(Problem {
                    kind: Break::Unreadable,
                    at: at.clone(),
                    seq: None,
                    message: format!("a line longer than {MAX_LINE_BYTES} bytes: not a record"),
                });
                // Skip the rest of the long line.
                let mut rest = Vec::new();
                reader.read_until(b'\n', &mut rest)?;
                continue;
            }
            let note = format!(
                "{at}: a torn last line of {} bytes (a writer stopped mid-write; that record was never acknowledged)",
                line.len()
            );
            if last_segment {
                report.notes.push(note);
            } else {
                report.problems.push(Problem {
                    kind: Break::Unreadable,
                    at,
                    seq: None,
                    message: "a torn line in a segment that is not the newest".into(),
                });
            }
            break;
        }
        let body = &line[..line.len() - 1];
        let hash = line_hash(body);
        match Record::from_line(body) {
            Some(r) => seen.push(Seen {
                seq: r.seq,
                hash,
                prev: r.prev.clone(),
                at,
                record: matches!(r.event, Event::Checkpoint | Event::Pruned).then_some(r),
            }),
            None => report.problems.push(Problem {
                kind: Break::Unreadable,
                at,
                seq: None,
                message: "not an audit record: the line was edited or overwritten".into(),
            }),
        }
    }
    Ok(())
}

fn check_links(seen: &[Seen], report: &mut Report) {
    let present: HashSet<u64> = seen.iter().map(|s| s.seq).collect();
    for pair in seen.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.seq == a.seq + 1 {
            if b.prev != a.hash {
                report.problems.push(Problem {
                    kind: Break::Edited,
                    at: a.at.clone(),
                    seq: Some(a.seq),
                    message: format!(
                        "record {} ({}) does not hash to what record {} ({}) carries: record {} was edited (or record {}'s `prev` was)",
                        a.seq, a.at, b.seq, b.at, a.seq, b.seq
                    ),
                });
            }
        } else if b.seq <= a.seq {
            report.problems.push(Problem {
                kind: Break::Reordered,
                at: b.at.clone(),
                seq: Some(b.seq),
                message: format!(
                    "record {} ({}) comes after record {} ({}): records were reordered or copied",
                    b.seq, b.at, a.seq, a.at
                ),
            });
        } else {
            let missing: Vec<u64> = (a.seq + 1..b.seq)
                .filter(|s| !present.contains(s))
                .collect();
            if let (Some(first), Some(last)) = (missing.first(), missing.last()) {
                report.problems.push(Problem {
                    kind: Break::Deleted,
                    at: b.at.clone(),
                    seq: Some(*first),
                    message: format!(
                        "{} record(s), seq {first}..={last}, are missing between {} and {}: deleted",
                        missing.len(),
                        a.at,
                        b.at
                    ),
                });
            }
        }
    }
}

/// The first record: seq 1 after the genesis hash, or the first after a segment an
/// `audit.pruned` record names.
fn check_start(seen: &[Seen], report: &mut Report) {
    let Some(first) = seen.first() else {
        return;
    };
    if first.seq == 1 && first.prev == GENESIS {
        return;
    }
    let pruned = seen
        .iter()
        .filter_map(|s| s.record.as_ref())
        .filter(|r| r.event == Event::Pruned)
        .filter_map(|r| r.detail("segments")?.as_array().cloned())
        .flatten()
        .any(|seg| {
            seg.get("last_seq").and_then(|v| v.as_u64()) == Some(first.seq.wrapping_sub(1))
                && seg.get("last_hash").and_then(|v| v.as_str()) == Some(first.prev.as_str())
        });
    if pruned {
        report.notes.push(format!(
            "records before seq {} were pruned (audit.log_retention_days)",
            first.seq
        ));
    } else {
        report.problems.push(Problem {
            kind: Break::Deleted,
            at: first.at.clone(),
            seq: Some(1),
            message: format!(
                "the log starts at record {} ({}), and no audit.pruned record names what came before: the oldest records were deleted",
                first.seq, first.at
            ),
        });
    }
}

fn check_checkpoints(seen: &[Seen], roots: Option<&[String]>, report: &mut Report) {
    for (i, s) in seen.iter().enumerate() {
        let Some(r) = s.record.as_ref().filter(|r| r.event == Event::Checkpoint) else {
            continue;
        };
        report.checkpoints += 1;
        let bad = |message: String| Problem {
            kind: Break::BadCheckpoint,
            at: s.at.clone(),
            seq: Some(s.seq),
            message,
        };
        let covers_seq = r.detail("covers_seq").and_then(|v| v.as_u64());
        let covers_hash = r.detail("covers_hash").and_then(|v| v.as_str());
        if let Some(roots) = roots
            && let Err(why) = checkpoint::check(r, roots)
        {
            report
                .problems
                .push(bad(format!("checkpoint {}: {why}", s.seq)));
            continue;
        }
        match (i.checked_sub(1).map(|j| &seen[j]), covers_seq, covers_hash) {
            (Some(before), Some(cs), Some(ch)) if before.seq == cs && before.hash == ch => {}
            (Some(before), Some(cs), Some(_)) if before.seq == cs => {
                report.problems.push(Problem {
                    kind: Break::Edited,
                    at: before.at.clone(),
                    seq: Some(cs),
                    message: format!(
                        "record {cs} ({}) is not the record checkpoint {} ({}) signed: it was edited",
                        before.at, s.seq, s.at
                    ),
                });
            }
            _ => {
                report.problems.push(bad(format!(
                    "checkpoint {} signs record {}, which is not the record before it",
                    s.seq,
                    covers_seq.map_or("?".into(), |c| c.to_string())
                )));
                continue;
            }
        }
        report.last_checkpoint = Some((s.seq, r.time.clone()));
    }
    if let (Some(last), Some((cp, _))) = (report.last_seq, &report.last_checkpoint) {
        report.unsigned = last.saturating_sub(*cp);
    } else if let Some(last) = report.last_seq {
        report.unsigned = last;
    }
}

/// The newest checkpoint kept beside the log: a log that ends before it was cut.
fn check_latest(log: &AuditLog, seen: &[Seen], roots: Option<&[String]>, report: &mut Report) {
    let path = log.dir().join(checkpoint::LATEST_FILE);
    let Ok(bytes) = crate::fsutil::read_capped(&path, MAX_LINE_BYTES as u64) else {
        return;
    };
    let Some(latest) = Record::from_line(bytes.trim_ascii_end()) else {
        report.problems.push(Problem {
            kind: Break::BadCheckpoint,
            at: checkpoint::LATEST_FILE.into(),
            seq: None,
            message: "the newest checkpoint's copy is unreadable".into(),
        });
        return;
    };
    if let Some(roots) = roots
        && let Err(why) = checkpoint::check(&latest, roots)
    {
        report.problems.push(Problem {
            kind: Break::BadCheckpoint,
            at: checkpoint::LATEST_FILE.into(),
            seq: Some(latest.seq),
            message: why,
        });
        return;
    }
    let hash = line_hash(bytes.trim_ascii_end());
    match seen.iter().find(|s| s.seq == latest.seq) {
        Some(s) if s.hash == hash => {}
        Some(s) => report.problems.push(Problem {
            kind: Break::Edited,
            at: s.at.clone(),
            seq: Some(s.seq),
            message: format!(
                "checkpoint {} ({}) differs from the copy kept in {}",
                s.seq,
                s.at,
                checkpoint::LATEST_FILE
            ),
        }),
        None if report.last_seq.is_none_or(|l| l < latest.seq) => {
            let end = seen.last().map_or("the log is empty".to_string(), |s| {
                format!("the log ends at record {} ({})", s.seq, s.at)
            });
            report.problems.push(Problem {
                kind: Break::Truncated,
                at: seen.last().map_or(String::new(), |s| s.at.clone()),
                seq: report.last_seq.map(|l| l + 1),
                message: format!(
                    "{end}, but the checkpoint of {} is record {}: records {}..={} were cut off",
                    latest.time,
                    latest.seq,
                    report.last_seq.unwrap_or(0) + 1,
                    latest.seq
                ),
            });
        }
        None => {} // deleted from the middle: reported by the gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn decision(n: u64) -> Record {
        let mut r = Record::new(Event::Decision, datetime!(2026-01-01 0:00 UTC));
        r.rule = Some(format!("rule.{n}"));
        r
    }

    /// A log of `per_day` records on each of `days` consecutive days.
    fn log_over(days: i64, per_day: u64) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&dir.path().join("audit"));
        for d in 0..days {
            let now = datetime!(2026-01-01 12:00 UTC) + time::Duration::days(d);
            let batch = (0..per_day).map(decision).collect();
            log.append(batch, now).unwrap();
        }
        (dir, log)
    }

    fn kinds(r: &Report) -> Vec<Break> {
        r.problems.iter().map(|p| p.kind).collect()
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_untouched_chain_across_days_verifies() {
        let (_d, log) = log_over(3, 4);
        let r = verify(&log, None).unwrap();
        assert!(r.ok(), "{r:?}");
        assert_eq!(
            (r.segments, r.records, r.first_seq, r.last_seq),
            (3, 12, Some(1), Some(12))
        );
        assert_eq!(r.unsigned, 12);
    }

    #[test]
    fn an_edited_record_is_named_with_its_file_and_line() {
        let (_d, log) = log_over(1, 5);
        let seg = &log.segments().unwrap()[0];
        let mut l = lines(seg);
        l[2] = l[2].replace("rule.2", "rule.X");
        rewrite(seg, &l);
        let r = verify(&log, None).unwrap();
        assert_eq!(kinds(&r), [Break::Edited], "{r:?}");
        assert_eq!(r.problems[0].at, "audit-2026-01-01.jsonl:3");
        assert_eq!(r.problems[0].seq, Some(3));
    }

    #[test]
    fn a_deleted_record_is_a_gap() {
        let (_d, log) = log_over(1, 5);
        let seg = &log.segments().unwrap()[0];
        let mut l = lines(seg);
        l.remove(1);
        rewrite(seg, &l);
        let r = verify(&log, None).unwrap();
        assert_eq!(kinds(&r), [Break::Deleted], "{r:?}");
        assert!(r.problems[0].message.contains("seq 2..=2"), "{r:?}");
    }

    #[test]
    fn swapped_records_are_reordered() {
        let (_d, log) = log_over(1, 5);
        let seg = &log.segments().unwrap()[0];
        let mut l = lines(seg);
        l.swap(1, 2);
        rewrite(seg, &l);
        let r = verify(&log, None).unwrap();
        assert!(kinds(&r).contains(&Break::Reordered), "{r:?}");
        assert!(!kinds(&r).contains(&Break::Deleted), "{r:?}");
    }

    #[test]
    fn pruning_is_told_apart_from_deleting_the_oldest_segment() {
        let (_d, log) = log_over(5, 2);
        let now = datetime!(2026-01-05 12:00 UTC);
        let pruned = log
            .prune(2, now)
            .unwrap()
            .expect("two segments are past 2 days");
        assert_eq!(
            pruned.detail("segments").unwrap().as_array().unwrap().len(),
            2
        );
        assert_eq!(log.segments().unwrap().len(), 3);
        let r = verify(&log, None).unwrap();
        assert!(r.ok(), "{r:?}");
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("before seq 5 were pruned")),
            "{r:?}"
        );
        // Nothing more is due: no second record.
        assert!(log.prune(2, now).unwrap().is_none());
        // Removing the oldest remaining segment by hand is a deletion.
        std::fs::remove_file(&log.segments().unwrap()[0]).unwrap();
        let r = verify(&log, None).unwrap();
        assert_eq!(kinds(&r), [Break::Deleted], "{r:?}");
    }

    #[test]
    fn a_torn_tail_is_a_note_and_the_next_append_repairs_and_records_it() {
        let (_d, log) = log_over(1, 3);
        let seg = log.segments().unwrap()[0].clone();
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, br#"{"v":1,"seq":4,"id":"half"#).unwrap();
        let r = verify(&log, None).unwrap();
        assert!(
            r.ok() && r.notes.iter().any(|n| n.contains("torn")),
            "{r:?}"
        );
        let written = log
            .append(vec![decision(9)], datetime!(2026-01-01 13:00 UTC))
            .unwrap();
        assert_eq!(written[0].event, Event::Repaired);
        assert_eq!(written[0].seq, 4);
        assert_eq!(written[1].seq, 5);
        let r = verify(&log, None).unwrap();
        assert!(
            r.ok() && r.notes.iter().all(|n| !n.contains("torn")),
            "{r:?}"
        );
    }

    #[test]
    fn an_unreadable_line_is_reported_and_a_writer_refuses_to_build_on_it() {
        let (_d, log) = log_over(1, 2);
        let seg = &log.segments().unwrap()[0];
        let mut l = lines(seg);
        l.push("not json at all".into());
        rewrite(seg, &l);
        let r = verify(&log, None).unwrap();
        assert_eq!(kinds(&r), [Break::Unreadable], "{r:?}");
        let err = log
            .append(vec![decision(1)], datetime!(2026-01-01 13:00 UTC))
            .unwrap_err();
        assert!(err.to_string().contains("audit verify"), "{err}");
    }
}

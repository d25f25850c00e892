//! The audit endpoints: devices send their records (`POST /v1/audit`, client
//! certificate), admins query them (`GET /v1/admin/audit`, `…/stats`).
//!
//! An upload is checked before it is stored: at most
//! [`MAX_AUDIT_UPLOAD_RECORDS`] records of the v1 schema, consecutive, for this
//! device's machine. The chain is then checked against what the server already
//! holds for the device (each `prev` the hash of the line before, no gap after the
//! server's head, checkpoints that verify against the org's root CA). A break does
//! not refuse the upload: the records are evidence and are kept; the break is
//! counted on the device's head, named in the answer, and the agent reports it.
//!
//! Who may: the device named by its current certificate, for its own records only
//! (the device id and team stored come from the server's device row, never from
//! the records). Twice: each record is stored once by id; a repeat is counted as a
//! duplicate and acknowledged. Lost answer: the agent sends the same records again.

use super::device::authenticate;
use super::respond::{Answer, internal, read_body, refuse, reply};
use super::{AppState, admin::check_admin};
use crate::audit::checkpoint;
use crate::audit::record::{Event, GENESIS, Record, line_hash, rfc3339_millis};
use crate::protocol::*;
use crate::server::http::Peer;
use crate::server::store::audit::{AuditFilter, AuditHead, AuditRow, CountRow};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use std::sync::Arc;
use time::OffsetDateTime;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/audit", post(upload))
        .route("/v1/admin/audit", get(list))
        .route("/v1/admin/audit/stats", get(stats))
        .route("/v1/admin/audit/requests", get(requests))
}

fn bad(message: impl Into<String>) -> super::respond::Refusal {
    refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
}

/// `POST /v1/audit`.
async fn upload(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<Arc<Peer>>>,
    body: Body,
) -> Response {
    let result: Answer<AuditAck> = async {
        let device = authenticate(&state, peer.as_deref().map(|p| &**p)).await?;
        let bytes = read_body(body, MAX_AUDIT_UPLOAD_BYTES).await?;
        let upload: AuditUpload = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("the request body is not the expected JSON: {e}")))?;
        if upload.records.is_empty() || upload.records.len() > MAX_AUDIT_UPLOAD_RECORDS {
            return Err(bad(format!(
                "send 1 to {MAX_AUDIT_UPLOAD_RECORDS} records at a time, not {}",
                upload.records.len()
            )));
        }
        let mut records = Vec::with_capacity(upload.records.len());
        for (i, line) in upload.records.iter().enumerate() {
            let r = Record::from_line(line.as_bytes())
                .ok_or_else(|| bad(format!("records[{i}] is not an audit record (schema v1)")))?;
            if let Some(previous) = records.last().map(|(p, _): &(Record, &String)| p.seq)
                && r.seq != previous + 1
            {
                return Err(bad(format!(
                    "records[{i}] is seq {} after seq {previous}: send consecutive records",
                    r.seq
                )));
            }
            if r.machine_id
                .as_ref()
                .is_some_and(|m| *m != device.machine_id)
            {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    ErrorCode::MachineMismatch,
                    format!("records[{i}] names another machine than the certificate"),
                ));
            }
            records.push((r, line));
        }
        let head = state
            .store
            .audit_head(&device.device_id)
            .await
            .map_err(internal)?;
        let breaks = chain_breaks(&records, head.as_ref(), &state.anchors.root_ca);
        let mut rows = Vec::with_capacity(records.len());
        for (r, line) in &records {
            rows.push(row(r, line, &device.device_id, &device.team)?);
        }
        let (last, last_line) = records
            .last()
            .map(|(r, l)| (r, *l))
            .ok_or_else(|| bad("no records"))?;
        let new_head = AuditHead {
            seq: last.seq as i64,
            hash: line_hash(last_line.as_bytes()),
        };
        let stored = state
            .store
            .store_audit(
                &device.device_id,
                &rows,
                Some(&new_head),
                &breaks,
                crate::clock::now().unix_timestamp(),
            )
            .await
            .map_err(internal)?;
        let held = head.map_or(0, |h| h.seq.max(0) as u64);
        Ok(AuditAck {
            acknowledged_seq: held.max(last.seq),
            stored: stored.stored,
            duplicates: stored.duplicates,
            chain_breaks: breaks,
        })
    }
    .await;
    reply(StatusCode::OK, result)
}

/// Where an upload does not continue the chain the server holds.
fn chain_breaks(
    records: &[(Record, &String)],
    head: Option<&AuditHead>,
    roots: &[String],
) -> Vec<String> {
    let mut breaks = Vec::new();
    let Some((first, _)) = records.first() else {
        return breaks;
    };
    match head {
        Some(h) if first.seq as i64 == h.seq + 1 && first.prev != h.hash => breaks.push(format!(
            "record {} does not follow record {} the server holds: the device's log was changed",
            first.seq, h.seq
        )),
        Some(h) if first.seq as i64 > h.seq + 1 => breaks.push(format!(
            "records {}..={} never arrived: the device's log lost them",
            h.seq + 1,
            first.seq - 1
        )),
        None if first.seq == 1 && first.prev != GENESIS => {
            breaks.push("record 1 does not start a chain".into())
        }
        _ => {}
    }
    for pair in records.windows(2) {
        let ((a, a_line), (b, _)) = (&pair[0], &pair[1]);
        if b.prev != line_hash(a_line.as_bytes()) {
            breaks.push(format!(
                "record {} does not follow record {}: the device's log was changed",
                b.seq, a.seq
            ));
        }
    }
    for (i, (r, _)) in records.iter().enumerate() {
        if r.event != Event::Checkpoint {
            continue;
        }
        match checkpoint::check(r, roots) {
            Err(why) => breaks.push(format!("checkpoint {}: {why}", r.seq)),
            Ok(c) => {
                let before = i
                    .checked_sub(1)
                    .map(|j| (records[j].0.seq, line_hash(records[j].1.as_bytes())));
                let held = head.map(|h| (h.seq as u64, h.hash.clone()));
                let covered = before.or(held.filter(|(s, _)| *s + 1 == r.seq));
                if covered.is_some_and(|(s, h)| s != c.covers_seq || h != c.covers_hash) {
                    breaks.push(format!(
                        "checkpoint {} signs another record {} than the one before it",
                        r.seq, c.covers_seq
                    ));
                }
            }
        }
    }
    breaks
}

/// The stored row of a record.
fn row(r: &Record, line: &str, device_id: &str, team: &str) -> Answer<AuditRow> {
    let time = OffsetDateTime::parse(&r.time, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad(format!("record {} has a bad time `{}`", r.seq, r.time)))?;
    let time_ms = crate::clock::unix_millis(time);
    let seq =
        i64::try_from(r.seq).map_err(|_| bad(format!("record seq {} is out of range", r.seq)))?;
    let request = r.request.as_ref();
    Ok(AuditRow {
        id: r.id.clone(),
        device_id: device_id.to_string(),
        seq,
        time_ms,
        event: r.event.as_str().to_string(),
        team: team.to_string(),
        username: r.user.clone(),
        policy_version: r.policy_version.and_then(|v| i64::try_from(v).ok()),
        mode: r.mode.clone(),
        source: r.source.clone(),
        decision: r.decision.clone(),
        applied: r.applied.clone(),
        rule: r.rule.clone(),
        reason: r.reason.clone(),
        command: request.map(|q| q.text.clone()),
        command_sha256: request.map(|q| q.sha256.clone()),
        cwd: request.and_then(|q| q.cwd.clone()),
        line: line.to_string(),
    })
}

/// The admin query's parameters (times in Unix milliseconds).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    team: Option<String>,
    user: Option<String>,
    device: Option<String>,
    decision: Option<String>,
    rule: Option<String>,
    event: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<u32>,
}

impl AuditQuery {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            team: self.team.clone(),
            user: self.user.clone(),
            device: self.device.clone(),
            decision: self.decision.clone(),
            rule: self.rule.clone(),
            event: self.event.clone(),
            since: self.since,
            until: self.until,
        }
    }
}

type QueryResult = Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>;

fn query_of(query: QueryResult) -> Answer<AuditQuery> {
    query.map(|Query(q)| q).map_err(|e| {
        bad(format!(
            "{e}; parameters are team, user, device, decision, rule, event, since and until (Unix ms), limit"
        ))
    })
}

pub fn millis_text(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map(rfc3339_millis)
        .unwrap_or_default()
}

fn entry(r: AuditRow) -> AuditEntry {
    AuditEntry {
        id: r.id,
        device_id: r.device_id,
        seq: r.seq.max(0) as u64,
        time: millis_text(r.time_ms),
        event: r.event,
        team: r.team,
        user: r.username,
        policy_version: r.policy_version.map(|v| v.max(0) as u64),
        mode: r.mode,
        source: r.source,
        decision: r.decision,
        applied: r.applied,
        rule: r.rule,
        reason: r.reason,
        command: r.command,
        command_sha256: r.command_sha256,
        cwd: r.cwd,
    }
}

/// `GET /v1/admin/audit`.
async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    let result: Answer<AuditPage> = async {
        check_admin(&state, &headers)?;
        let q = query_of(query)?;
        let limit = q.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE);
        let (rows, more) = state
            .store
            .audit_query(&q.filter(), limit)
            .await
            .map_err(internal)?;
        Ok(AuditPage {
            records: rows.into_iter().map(entry).collect(),
            more,
        })
    }
    .await;
    reply(StatusCode::OK, result)
}

/// `GET /v1/admin/audit/stats`.
async fn stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    let result: Answer<AuditStats> = async {
        check_admin(&state, &headers)?;
        let q = query_of(query)?;
        let filter = q.filter();
        let store = &state.store;
        let (by, decisions) = store
            .audit_by_team_rule(&filter, 200)
            .await
            .map_err(internal)?;
        let top = store
            .audit_top_denied(&filter, 20)
            .await
            .map_err(internal)?;
        let dry = store.audit_only_devices(&filter).await.map_err(internal)?;
        let pruned = store.audit_pruned().await.map_err(internal)?;
        let count = |c: &CountRow| c.count.max(0) as u64;
        let key = |c: &CountRow, i: usize| c.keys.get(i).cloned().unwrap_or_default();
        Ok(AuditStats {
            decisions,
            by_team_rule: by
                .iter()
                .map(|c| TeamRuleCount {
                    team: key(c, 0),
                    rule: key(c, 1),
                    decision: key(c, 2),
                    count: count(c),
                })
                .collect(),
            top_denied: top
                .iter()
                .map(|c| CommandCount {
                    command_sha256: key(c, 0),
                    command: key(c, 1),
                    count: count(c),
                    devices: c.extra.max(0) as u64,
                })
                .collect(),
            audit_only_devices: dry
                .iter()
                .map(|c| AuditOnlyDevice {
                    device_id: key(c, 0),
                    team: key(c, 1),
                    decisions: count(c),
                    would_block: c.extra.max(0) as u64,
                    last: millis_text(key(c, 2).parse().unwrap_or(0)),
                })
                .collect(),
            pruned_before: (pruned.records > 0 || pruned.before_ms > 0)
                .then(|| millis_text(pruned.before_ms)),
            pruned_records: pruned.records,
        })
    }
    .await;
    reply(StatusCode::OK, result)
}

/// `GET /v1/admin/audit/requests`.
async fn requests(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    let result: Answer<RecordedRequests> = async {
        check_admin(&state, &headers)?;
        let q = query_of(query)?;
        let rows = state
            .store
            .audit_requests(&q.filter())
            .await
            .map_err(internal)?;
        Ok(RecordedRequests {
            requests: rows
                .into_iter()
                .map(|r| RecordedRequestCount {
                    team: r.team,
                    command: r.command,
                    cwd: r.cwd,
                    decision: r.decision,
                    count: r.count.max(0) as u64,
                })
                .collect(),
        })
    }
    .await;
    reply(StatusCode::OK, result)
}

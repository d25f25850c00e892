//! The fleet's audit records: what every device decided, as it recorded it.
//!
//! One row per record, keyed by the record's id (a repeat upload stores nothing
//! twice) and unique per (device, seq). Each row keeps the exact line the device
//! wrote, so the chain can be re-checked from the server's copy alone, beside the
//! columns the admin queries filter on. `team` is the team the server holds the
//! device in when the record arrives, never what the record claims.
//!
//! Indexes: every filter of `fleetkit audit list` leads an index that ends in
//! `time`, so "the newest N of team X since T" is an index range scan whatever
//! the table's size (benches/audit_query.rs measures it at 10 million rows).
//!
//! `audit_heads` holds, per device, where its chain stands on the server (the last
//! seq and line hash), so the next upload is checked to continue it.

use super::{Backend, Result, Store, audit_daily};
use sqlx::Row;
use sqlx::any::AnyRow;

/// The audit tables and indexes (part of the store's schema).
pub(super) fn schema() -> Vec<String> {
    let mut out = vec![
        "CREATE TABLE IF NOT EXISTS audit_records (
            id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            time_ms BIGINT NOT NULL,
            event TEXT NOT NULL,
            team TEXT NOT NULL,
            username TEXT,
            policy_version BIGINT,
            mode TEXT,
            source TEXT,
            decision TEXT,
            applied TEXT,
            rule TEXT,
            reason TEXT,
            command TEXT,
            command_sha256 TEXT,
            cwd TEXT,
            line TEXT NOT NULL,
            received_at BIGINT NOT NULL)"
            .to_string(),
        "CREATE UNIQUE INDEX IF NOT EXISTS audit_device_seq ON audit_records (device_id, seq)"
            .to_string(),
        "CREATE TABLE IF NOT EXISTS audit_heads (
            device_id TEXT PRIMARY KEY,
            seq BIGINT NOT NULL,
            hash TEXT NOT NULL,
            breaks BIGINT NOT NULL DEFAULT 0,
            last_break TEXT)"
            .to_string(),
    ];
    out.extend(audit_daily::schema());
    for (name, columns) in INDEXES {
        out.push(format!(
            "CREATE INDEX IF NOT EXISTS {name} ON audit_records ({columns})"
        ));
    }
    out
}

/// The query indexes: one per filter, each ending in `time_ms`.
const INDEXES: [(&str, &str); 7] = [
    ("audit_time", "time_ms"),
    ("audit_team_time", "team, time_ms"),
    ("audit_user_time", "username, time_ms"),
    ("audit_device_time", "device_id, time_ms"),
    ("audit_decision_time", "decision, time_ms"),
    ("audit_rule_time", "rule, time_ms"),
    // `audit stats`' devices under an audit-only release: a few in a fleet.
    ("audit_mode_time", "mode, time_ms"),
];

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: String,
    pub device_id: String,
    pub seq: i64,
    pub time_ms: i64,
    pub event: String,
    pub team: String,
    pub username: Option<String>,
    pub policy_version: Option<i64>,
    pub mode: Option<String>,
    pub source: Option<String>,
    pub decision: Option<String>,
    pub applied: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub command: Option<String>,
    pub command_sha256: Option<String>,
    pub cwd: Option<String>,
    pub line: String,
}

/// Where a device's chain stands on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

/// What an admin query selects. Times are Unix milliseconds, `until` exclusive.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub team: Option<String>,
    pub user: Option<String>,
    pub device: Option<String>,
    pub decision: Option<String>,
    pub rule: Option<String>,
    pub event: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

const COLUMNS: &str = "id, device_id, seq, time_ms, event, team, username, policy_version, mode, \
    source, decision, applied, rule, reason, command, command_sha256, cwd, line";

fn audit_row(row: &AnyRow) -> Result<AuditRow> {
    Ok(AuditRow {
        id: row.try_get(0)?,
        device_id: row.try_get(1)?,
        seq: row.try_get(2)?,
        time_ms: row.try_get(3)?,
        event: row.try_get(4)?,
        team: row.try_get(5)?,
        username: row.try_get(6)?,
        policy_version: row.try_get(7)?,
        mode: row.try_get(8)?,
        source: row.try_get(9)?,
        decision: row.try_get(10)?,
        applied: row.try_get(11)?,
        rule: row.try_get(12)?,
        reason: row.try_get(13)?,
        command: row.try_get(14)?,
        command_sha256: row.try_get(15)?,
        cwd: row.try_get(16)?,
        line: row.try_get(17)?,
    })
}

/// A WHERE clause and its values: the texts bound first (`$1…`), then the numbers.
pub(super) struct Where {
    pub sql: String,
    pub texts: Vec<String>,
    pub numbers: Vec<i64>,
}

impl Where {
    /// `column = value` for each text given, then `bound value` (such as
    /// `time_ms >=`) for each number given, joined by AND.
    pub fn new(equal: &[(&str, &Option<String>)], bounds: &[(&str, Option<i64>)]) -> Self {
        let mut parts = Vec::new();
        let mut texts = Vec::new();
        for (column, value) in equal {
            if let Some(v) = value {
                texts.push(v.clone());
                parts.push(format!("{column} = ${}", texts.len()));
            }
        }
        let mut numbers = Vec::new();
        for (bound, value) in bounds {
            if let Some(v) = value {
                numbers.push(*v);
                parts.push(format!("{bound} ${}", texts.len() + numbers.len()));
            }
        }
        Where {
            sql: if parts.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", parts.join(" AND "))
            },
            texts,
            numbers,
        }
    }
}

impl AuditFilter {
    /// The clause: text equalities first, then the time bounds (numbered after).
    fn clause(&self) -> Where {
        Where::new(
            &[
                ("team", &self.team),
                ("username", &self.user),
                ("device_id", &self.device),
                ("decision", &self.decision),
                ("rule", &self.rule),
                ("event", &self.event),
            ],
            &[("time_ms >=", self.since), ("time_ms <", self.until)],
        )
    }
}

/// Binds a clause's values to a query.
macro_rules! bind_where {
    ($query:expr, $w:expr) => {{
        let mut q = $query;
        for t in &$w.texts {
            q = q.bind(t.clone());
        }
        for n in &$w.numbers {
            q = q.bind(*n);
        }
        q
    }};
}
pub(super) use bind_where;

/// Rows per INSERT statement: 19 values each stays under SQLite's 32,766 bound
/// variables and PostgreSQL's 65,535 parameters.
const ROWS_PER_INSERT: usize = 500;

/// Inserts `rows`, skipping any already held (by id, or by device and seq);
/// returns how many were stored.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    rows: &[AuditRow],
    now: i64,
) -> Result<u64> {
    let mut stored = 0;
    let mut daily = audit_daily::DayCounts::new();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        // RETURNING names only the rows really inserted: those, and no repeat,
        // go into the daily counts.
        let sql = format!(
            "INSERT INTO audit_records ({COLUMNS}, received_at) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING time_ms, team, rule, decision, event",
            placeholders(backend, chunk.len(), 19)
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.id.clone())
                .bind(r.device_id.clone())
                .bind(r.seq)
                .bind(r.time_ms)
                .bind(r.event.clone())
                .bind(r.team.clone())
                .bind(r.username.clone())
                .bind(r.policy_version)
                .bind(r.mode.clone())
                .bind(r.source.clone())
                .bind(r.decision.clone())
                .bind(r.applied.clone())
                .bind(r.rule.clone())
                .bind(r.reason.clone())
                .bind(r.command.clone())
                .bind(r.command_sha256.clone())
                .bind(r.cwd.clone())
                .bind(r.line.clone())
                .bind(now);
        }
        let inserted = q.fetch_all(&mut **tx).await?;
        stored += inserted.len() as u64;
        for row in &inserted {
            let event: String = row.try_get(4)?;
            if event != "decision" {
                continue;
            }
            let time_ms: i64 = row.try_get(0)?;
            let rule: Option<String> = row.try_get(2)?;
            let decision: Option<String> = row.try_get(3)?;
            *daily
                .entry((
                    audit_daily::day_of(time_ms),
                    row.try_get(1)?,
                    rule.unwrap_or_default(),
                    decision.unwrap_or_default(),
                ))
                .or_insert(0) += 1;
        }
    }
    audit_daily::add(tx, backend, &daily).await?;
    Ok(stored)
}

/// `rows` parenthesised groups of `columns` parameters for a multi-row VALUES.
/// SQLite binds `?` by position; a `$N` there is a name, looked up one by one
/// (quadratic in a 9,500-value statement: 2,300 rows/s instead of tens of
/// thousands).
pub(super) fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::new();
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for k in 1..=columns {
            if k > 1 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${}", i * columns + k)),
            }
        }
        sql.push(')');
    }
    sql
}

/// What [`Store::store_audit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditStored {
    pub stored: u64,
    pub duplicates: u64,
}

/// One distinct recorded request, for the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRow {
    pub team: String,
    pub decision: String,
    pub rule: String,
    pub command: String,
    pub cwd: Option<String>,
    pub count: i64,
}

/// Counted rows of the stats queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    pub keys: Vec<String>,
    pub count: i64,
    pub extra: i64,
}

impl Store {
    /// Loads records in bulk, outside any device's chain (imports, and the
    /// benchmark's generated fleet): `rows` in transactions of 50,000.
    pub async fn import_audit(&self, rows: &[AuditRow], now: i64) -> Result<u64> {
        let mut stored = 0;
        for chunk in rows.chunks(50_000) {
            let _guard = self.lock_writes().await;
            let mut tx = self.pool.begin().await?;
            stored += insert_rows(&mut tx, self.backend, chunk, now).await?;
            tx.commit().await?;
        }
        Ok(stored)
    }

    /// Where the device's chain stands on the server.
    pub async fn audit_head(&self, device_id: &str) -> Result<Option<AuditHead>> {
        sqlx::query("SELECT seq, hash FROM audit_heads WHERE device_id = $1")
            .bind(device_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| {
                Ok(AuditHead {
                    seq: r.try_get(0)?,
                    hash: r.try_get(1)?,
                })
            })
            .transpose()
    }

    /// Stores `rows` (a record already held, by id or by device and seq, is
    /// counted, not stored), moves the device's head forward to `head` when it is
    /// further, and counts `breaks`. One transaction: the answer is sent after it.
    pub async fn store_audit(
        &self,
        device_id: &str,
        rows: &[AuditRow],
        head: Option<&AuditHead>,
        breaks: &[String],
        now: i64,
    ) -> Result<AuditStored> {
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        let stored = insert_rows(&mut tx, self.backend, rows, now).await?;
        let done = AuditStored {
            stored,
            duplicates: rows.len() as u64 - stored,
        };
        if let Some(head) = head {
            let last_break = breaks.last().cloned();
            sqlx::query(
                "INSERT INTO audit_heads (device_id, seq, hash, breaks, last_break)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (device_id) DO UPDATE SET
                   seq = CASE WHEN excluded.seq > audit_heads.seq THEN excluded.seq ELSE audit_heads.seq END,
                   hash = CASE WHEN excluded.seq > audit_heads.seq THEN excluded.hash ELSE audit_heads.hash END,
                   breaks = audit_heads.breaks + excluded.breaks,
                   last_break = COALESCE(excluded.last_break, audit_heads.last_break)",
            )
            .bind(device_id.to_string())
            .bind(head.seq)
            .bind(head.hash.clone())
            .bind(breaks.len() as i64)
            .bind(last_break)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// The newest `limit` records matching `filter` (and whether there were more).
    pub async fn audit_query(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<(Vec<AuditRow>, bool)> {
        let w = filter.clause();
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_records{} ORDER BY time_ms DESC, id DESC LIMIT {}",
            w.sql,
            limit as u64 + 1
        );
        let rows = bind_where!(sqlx::query(&sql), w)
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows.iter().map(audit_row).collect::<Result<Vec<_>>>()?;
        let more = out.len() > limit as usize;
        out.truncate(limit as usize);
        Ok((out, more))
    }

    /// Decisions by team, rule and verdict in the filter's window, the `limit`
    /// most frequent first, and the number of decisions in the window. Whole days
    /// come from the daily counts, the rest from the records (see
    /// [`audit_daily`]).
    pub async fn audit_by_team_rule(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<(Vec<CountRow>, u64)> {
        let mut f = filter.clone();
        f.event = Some("decision".into());
        let mut counts = audit_daily::TeamRuleCounts::new();
        let record_windows = match audit_daily::split(&f) {
            Some(split) => {
                counts = audit_daily::counts(&self.pool, split.days, &f).await?;
                split.edges
            }
            None => vec![f],
        };
        for window in &record_windows {
            let w = window.clause();
            let sql = format!(
                "SELECT team, COALESCE(rule, ''), COALESCE(decision, ''), COUNT(*)
                 FROM audit_records{} GROUP BY team, rule, decision",
                w.sql
            );
            for r in bind_where!(sqlx::query(&sql), w)
                .fetch_all(&self.pool)
                .await?
            {
                let n: i64 = r.try_get(3)?;
                *counts
                    .entry((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                    .or_insert(0) += n;
            }
        }
        let total = counts.values().map(|n| (*n).max(0) as u64).sum();
        let mut rows: Vec<CountRow> = counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|((team, rule, decision), count)| CountRow {
                keys: vec![team, rule, decision],
                count,
                extra: 0,
            })
            .collect();
        // Most frequent first; ties in key order (the map's), so the answer is stable.
        rows.sort_by_key(|c| std::cmp::Reverse(c.count));
        rows.truncate(limit as usize);
        Ok((rows, total))
    }

    /// The commands denied most often: (sha256, one spelling), count, devices.
    pub async fn audit_top_denied(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<CountRow>> {
        let mut f = filter.clone();
        f.decision = Some("deny".into());
        f.event = Some("decision".into());
        let w = f.clause();
        let sql = format!(
            "SELECT COALESCE(command_sha256, ''), MIN(COALESCE(command, '')), COUNT(*) AS n,
                    COUNT(DISTINCT device_id)
             FROM audit_records{} GROUP BY command_sha256 ORDER BY n DESC, 1 LIMIT {limit}",
            w.sql
        );
        let rows = bind_where!(sqlx::query(&sql), w)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CountRow {
                    keys: vec![r.try_get(0)?, r.try_get(1)?],
                    count: r.try_get(2)?,
                    extra: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Devices that decided under an audit-only policy in the window: (device,
    /// team, last time as ms text), decisions, decisions that would have blocked.
    pub async fn audit_only_devices(&self, filter: &AuditFilter) -> Result<Vec<CountRow>> {
        let mut f = filter.clone();
        f.event = Some("decision".into());
        let w = f.clause();
        let mode_clause = if w.sql.is_empty() { " WHERE" } else { " AND" };
        let sql = format!(
            "SELECT device_id, MAX(team), MAX(time_ms), COUNT(*),
                    SUM(CASE WHEN decision <> 'allow' THEN 1 ELSE 0 END)
             FROM audit_records{}{mode_clause} mode = 'audit-only'
             GROUP BY device_id ORDER BY device_id",
            w.sql
        );
        let rows = bind_where!(sqlx::query(&sql), w)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let last: i64 = r.try_get(2)?;
                let blocked: Option<i64> = r.try_get(4)?;
                Ok(CountRow {
                    keys: vec![r.try_get(0)?, r.try_get(1)?, last.to_string()],
                    count: r.try_get(3)?,
                    extra: blocked.unwrap_or(0),
                })
            })
            .collect()
    }

    /// The recorded decision requests in the window for the impact analysis
    /// replay: one row per distinct (command, cwd, team, verdict), with how many
    /// times it was recorded. Commands cut at the device's cap replay as cut.
    pub async fn audit_requests(&self, filter: &AuditFilter) -> Result<Vec<ReplayRow>> {
        let mut f = filter.clone();
        f.event = Some("decision".into());
        let w = f.clause();
        let command_clause = if w.sql.is_empty() { " WHERE" } else { " AND" };
        let sql = format!(
            "SELECT team, COALESCE(decision, ''), MIN(COALESCE(rule, '')), command,
                    COALESCE(cwd, ''), COUNT(*)
             FROM audit_records{}{command_clause} command IS NOT NULL
             GROUP BY command, cwd, team, decision",
            w.sql
        );
        let rows = bind_where!(sqlx::query(&sql), w)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let cwd: String = r.try_get(4)?;
                Ok(ReplayRow {
                    team: r.try_get(0)?,
                    decision: r.try_get(1)?,
                    rule: r.try_get(2)?,
                    command: r.try_get(3)?,
                    cwd: (!cwd.is_empty()).then_some(cwd),
                    count: r.try_get(5)?,
                })
            })
            .collect()
    }
}

//! The server's audit retention: records older than the retention go, whole UTC
//! days at a time, with their share of the daily counts.
//!
//! Deleted in batches, each its own short transaction that also takes the deleted
//! decisions off the daily counts (`DELETE … RETURNING`), so counts and records
//! agree at every commit, whatever uploads run meanwhile, and devices uploading and
//! admins querying are not held behind a delete of millions of rows. A record goes
//! only once the server has held it for the retention too (`received_at`): a device
//! whose clock was reset dates its records years back, and they would otherwise be
//! removed within the hour they arrive.
//!
//! What went is kept in `meta` (the cutoff, and how many records in all), so
//! `audit stats` can say that an empty past was pruned, not never recorded. The
//! devices' chain heads (`audit_heads`) stay: a device's next upload is still
//! checked against them.

use super::audit_daily::{self, DAY_MS, day_of};
use super::{Backend, Result, Store};
use sqlx::Row;

/// Records deleted per statement.
const BATCH: i64 = 20_000;

/// What the retention has removed so far (both zero: nothing yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Records older than this (Unix milliseconds, the start of a UTC day) are gone.
    pub before_ms: i64,
    /// Records removed in all, over every run.
    pub records: u64,
}

impl Store {
    /// Removes the records of the days before the `keep_days` whole days up to
    /// `now_ms`'s day (once held as long), with their daily counts; returns what
    /// this run removed and where the retention stands now.
    pub async fn prune_audit(&self, keep_days: u32, now_ms: i64) -> Result<(u64, Pruned)> {
        let cutoff_day = day_of(now_ms) - i64::from(keep_days);
        let cutoff = cutoff_day.saturating_mul(DAY_MS);
        let received_cutoff = now_ms.div_euclid(1000) - i64::from(keep_days) * 86_400;
        let mut removed = 0u64;
        loop {
            let _guard = self.lock_writes().await;
            let mut tx = self.pool.begin().await?;
            let gone = sqlx::query(
                "DELETE FROM audit_records WHERE id IN
                   (SELECT id FROM audit_records WHERE time_ms < $1 AND received_at < $2 LIMIT $3)
                 RETURNING time_ms, team, rule, decision, event",
            )
            .bind(cutoff)
            .bind(received_cutoff)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            let mut counts = audit_daily::DayCounts::new();
            for row in &gone {
                let event: String = row.try_get(4)?;
                if event == "decision" {
                    let rule: Option<String> = row.try_get(2)?;
                    let decision: Option<String> = row.try_get(3)?;
                    *counts
                        .entry((
                            day_of(row.try_get(0)?),
                            row.try_get(1)?,
                            rule.unwrap_or_default(),
                            decision.unwrap_or_default(),
                        ))
                        .or_insert(0) -= 1;
                }
            }
            audit_daily::add(&mut tx, self.backend, &counts).await?;
            tx.commit().await?;
            removed += gone.len() as u64;
            if gone.len() < BATCH as usize {
                break;
            }
        }
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        // Two instances pruning at once on PostgreSQL: one mark at a time.
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(726300102)")
                .execute(&mut *tx)
                .await?;
        }
        // Days emptied above (and any count below zero, from records stored by a
        // release that kept no daily counts).
        sqlx::query("DELETE FROM audit_daily WHERE n <= 0")
            .execute(&mut *tx)
            .await?;
        let mut pruned = read(&mut tx).await?;
        pruned.before_ms = pruned.before_ms.max(cutoff);
        pruned.records += removed;
        for (key, value) in [
            ("audit_pruned_before", pruned.before_ms.to_string()),
            ("audit_pruned_records", pruned.records.to_string()),
        ] {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key.to_string())
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((removed, pruned))
    }

    /// Where the retention stands.
    pub async fn audit_pruned(&self) -> Result<Pruned> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn).await
    }
}

async fn read(conn: &mut sqlx::AnyConnection) -> Result<Pruned> {
    let rows = sqlx::query(
        "SELECT key, value FROM meta WHERE key IN ('audit_pruned_before', 'audit_pruned_records')",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut pruned = Pruned::default();
    for row in rows {
        let key: String = row.try_get(0)?;
        let value: String = row.try_get(1)?;
        match key.as_str() {
            "audit_pruned_before" => pruned.before_ms = value.parse().unwrap_or(0),
            _ => pruned.records = value.parse().unwrap_or(0),
        }
    }
    Ok(pruned)
}

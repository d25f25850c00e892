//! The server's audit retention: records older than the retention go, whole UTC
//! days at a time, with their daily counts.
//!
//! Deleted in batches, each its own short transaction, so devices uploading and
//! admins querying are not held behind a delete of millions of rows. What went is
//! kept in `meta` (the cutoff, and how many records in all), so `audit stats` can
//! say that an empty past was pruned, not never recorded. The devices' chain heads
//! (`audit_heads`) stay: a device's next upload is still checked against them.

use super::audit_daily::{DAY_MS, day_of};
use super::{Result, Store};
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
    /// `now_ms`'s day, and their daily counts; returns what this run removed and
    /// where the retention stands now.
    pub async fn prune_audit(&self, keep_days: u32, now_ms: i64) -> Result<(u64, Pruned)> {
        let cutoff_day = day_of(now_ms) - i64::from(keep_days);
        let cutoff = cutoff_day.saturating_mul(DAY_MS);
        let mut removed = 0u64;
        loop {
            let _guard = self.lock_writes().await;
            let n = sqlx::query(
                "DELETE FROM audit_records WHERE id IN
                   (SELECT id FROM audit_records WHERE time_ms < $1 LIMIT $2)",
            )
            .bind(cutoff)
            .bind(BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            removed += n;
            if n < BATCH as u64 {
                break;
            }
        }
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM audit_daily WHERE day < $1")
            .bind(cutoff_day)
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

//! Certificates issued over SCEP: recorded with the token that allowed them, so a
//! repeated request (a lost answer) gets the same certificate without spending
//! another use, a renewal finds the certificate it renews, and the inventory can
//! show which device holds which profile certificate.

use super::{Backend, Result, Store, TokenRefusal, TokenRow, token_refusal};
use crate::protocol::TokenKind;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A recorded SCEP certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScepCertRow {
    pub serial: String,
    pub fingerprint: String,
    pub subject: String,
    /// The device serial number the subject names (its serialNumber attribute, else
    /// its CN): how the certificate is joined with a registered device.
    pub device_serial: Option<String>,
    pub key_fingerprint: String,
    pub transaction_id: String,
    pub team: String,
    /// The challenge that admitted its lineage (a renewal keeps the one of the
    /// certificate it renews).
    pub token_id: Option<String>,
    /// The fingerprint of the certificate that signed the renewal.
    pub renewed_from: Option<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    pub cert_pem: String,
    pub revoked_at: Option<i64>,
    /// The fingerprint of the certificate that renewed this one: a superseded
    /// certificate renews no more (only the current one of a lineage does).
    pub superseded_by: Option<String>,
}

/// A certificate to record.
pub type NewScepCert = ScepCertRow;

/// What [`Store::scep_record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScepRecorded {
    /// Recorded; the token (if any) spent one use.
    Issued,
    /// The same request was answered meanwhile: answer with this one instead.
    Repeat(Box<ScepCertRow>),
    /// The transactionID belongs to another key.
    TransactionTaken,
    /// The certificate being renewed was renewed meanwhile by another request.
    Superseded,
    Token(TokenRefusal),
}

const COLUMNS: &str = "serial, fingerprint, subject, device_serial, key_fingerprint, \
    transaction_id, team, token_id, renewed_from, not_before, not_after, issued_at, cert_pem, \
    revoked_at, superseded_by";

fn scep_row(row: &AnyRow) -> Result<ScepCertRow> {
    Ok(ScepCertRow {
        serial: row.try_get(0)?,
        fingerprint: row.try_get(1)?,
        subject: row.try_get(2)?,
        device_serial: row.try_get(3)?,
        key_fingerprint: row.try_get(4)?,
        transaction_id: row.try_get(5)?,
        team: row.try_get(6)?,
        token_id: row.try_get(7)?,
        renewed_from: row.try_get(8)?,
        not_before: row.try_get(9)?,
        not_after: row.try_get(10)?,
        issued_at: row.try_get(11)?,
        cert_pem: row.try_get(12)?,
        revoked_at: row.try_get(13)?,
        superseded_by: row.try_get(14)?,
    })
}

/// How a request relates to what is recorded under its transactionID.
pub enum Prior {
    None,
    /// The same request, answered before: its certificate is still good.
    Repeat(Box<ScepCertRow>),
    /// Another key used this transactionID.
    Taken,
}

/// Judges `rows` (one transactionID's) for a request for `key` renewing `renewed_from`.
fn prior(rows: Vec<ScepCertRow>, key: &str, renewed_from: Option<&str>, now: i64) -> Prior {
    if rows.iter().any(|r| r.key_fingerprint != key) {
        return Prior::Taken;
    }
    match rows.into_iter().find(|r| {
        r.renewed_from.as_deref() == renewed_from && r.revoked_at.is_none() && r.not_after > now
    }) {
        Some(r) => Prior::Repeat(Box::new(r)),
        None => Prior::None,
    }
}

impl Store {
    /// What is recorded under `transaction_id` for this request.
    pub async fn scep_prior(
        &self,
        transaction_id: &str,
        key_fingerprint: &str,
        renewed_from: Option<&str>,
        now: i64,
    ) -> Result<Prior> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scep_certificates WHERE transaction_id = $1
             ORDER BY issued_at DESC"
        ))
        .bind(transaction_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let rows = rows.iter().map(scep_row).collect::<Result<Vec<_>>>()?;
        Ok(prior(rows, key_fingerprint, renewed_from, now))
    }

    /// The SCEP certificate with this fingerprint.
    pub async fn scep_by_fingerprint(&self, fingerprint: &str) -> Result<Option<ScepCertRow>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scep_certificates WHERE fingerprint = $1"
        ))
        .bind(fingerprint.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(scep_row).transpose()
    }

    /// Why a SCEP challenge cannot be used now, read without a write: lets the
    /// server refuse before it signs anything. The use itself is taken by
    /// [`Self::scep_record`].
    pub async fn scep_challenge_refused(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<std::result::Result<TokenRow, TokenRefusal>> {
        let Some(token) = self.token_by_hash(token_hash).await? else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        if token.kind != TokenKind::Scep {
            return Ok(Err(TokenRefusal::WrongKind));
        }
        Ok(match token.refusal(now) {
            Some(reason) => Err(reason),
            None => Ok(token),
        })
    }

    /// Records `cert`, spending one use of the challenge `token_hash` (none for a
    /// renewal), in one transaction; a request answered meanwhile wins.
    pub async fn scep_record(
        &self,
        cert: &NewScepCert,
        token_hash: Option<&str>,
        now: i64,
    ) -> Result<ScepRecorded> {
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Two copies of one request on two instances: one at a time.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(cert.transaction_id.clone())
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scep_certificates WHERE transaction_id = $1
             ORDER BY issued_at DESC"
        ))
        .bind(cert.transaction_id.clone())
        .fetch_all(&mut *tx)
        .await?;
        let rows = rows.iter().map(scep_row).collect::<Result<Vec<_>>>()?;
        match prior(
            rows,
            &cert.key_fingerprint,
            cert.renewed_from.as_deref(),
            now,
        ) {
            Prior::Taken => {
                tx.rollback().await?;
                return Ok(ScepRecorded::TransactionTaken);
            }
            Prior::Repeat(row) => {
                tx.rollback().await?;
                return Ok(ScepRecorded::Repeat(row));
            }
            Prior::None => {}
        }
        if let Some(hash) = token_hash {
            let taken = sqlx::query(
                "UPDATE tokens SET uses = uses + 1
                 WHERE hash = $1 AND kind = 'scep' AND revoked_at IS NULL AND expires_at > $2
                    AND uses < max_uses",
            )
            .bind(hash.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() == 0 {
                let reason = token_refusal(&mut tx, hash, now).await?;
                tx.rollback().await?;
                return Ok(ScepRecorded::Token(reason));
            }
        }
        if let Some(old) = &cert.renewed_from {
            // Only the current certificate of a lineage renews, once.
            let marked = sqlx::query(
                "UPDATE scep_certificates SET superseded_by = $1
                 WHERE fingerprint = $2 AND superseded_by IS NULL AND revoked_at IS NULL",
            )
            .bind(cert.fingerprint.clone())
            .bind(old.clone())
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(ScepRecorded::Superseded);
            }
        }
        sqlx::query(&format!(
            "INSERT INTO scep_certificates ({COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL)"
        ))
        .bind(cert.serial.clone())
        .bind(cert.fingerprint.clone())
        .bind(cert.subject.clone())
        .bind(cert.device_serial.clone())
        .bind(cert.key_fingerprint.clone())
        .bind(cert.transaction_id.clone())
        .bind(cert.team.clone())
        .bind(cert.token_id.clone())
        .bind(cert.renewed_from.clone())
        .bind(cert.not_before)
        .bind(cert.not_after)
        .bind(cert.issued_at)
        .bind(cert.cert_pem.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ScepRecorded::Issued)
    }

    /// The newest unrevoked SCEP certificate of `team` naming `device_serial`.
    pub async fn scep_for_device(
        &self,
        team: &str,
        device_serial: &str,
    ) -> Result<Option<ScepCertRow>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scep_certificates
             WHERE team = $1 AND device_serial = $2 AND revoked_at IS NULL
             ORDER BY issued_at DESC, not_after DESC LIMIT 1"
        ))
        .bind(team.to_string())
        .bind(device_serial.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(scep_row).transpose()
    }

    /// Revokes the SCEP certificates of `team` naming `device_serial` (the device
    /// was removed): they renew no more.
    pub async fn scep_revoke_device(
        &self,
        team: &str,
        device_serial: &str,
        now: i64,
    ) -> Result<u64> {
        let _guard = self.lock_writes().await;
        let done = sqlx::query(
            "UPDATE scep_certificates SET revoked_at = $1
             WHERE team = $2 AND device_serial = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(team.to_string())
        .bind(device_serial.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Revokes every SCEP certificate whose lineage the challenge `token_id`
    /// admitted (a leaked challenge): they renew no more.
    pub async fn scep_revoke_token(&self, token_id: &str, now: i64) -> Result<u64> {
        let _guard = self.lock_writes().await;
        let done = sqlx::query(
            "UPDATE scep_certificates SET revoked_at = $1
             WHERE token_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(token_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

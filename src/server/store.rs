//! Server storage: enrollment tokens, devices, their certificates and published
//! bundles, in SQLite (default: one file, no setup) or PostgreSQL (several server
//! instances behind a load balancer), through sqlx's `Any` driver so that one set of
//! SQL statements serves both.
//!
//! Times are Unix seconds (`BIGINT`). Everything a request changes is changed in one
//! transaction that commits before the server answers, so an acknowledged enrollment
//! survives a `kill -9` (SQLite in WAL mode: committed pages are in the log file; the
//! process dying does not lose them). Token use counts are exact under concurrency:
//! one conditional `UPDATE … SET uses = uses + 1 WHERE uses < max_uses` per
//! enrollment, which PostgreSQL row locks and SQLite's single writer serialise.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::sync::Once;
use time::OffsetDateTime;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is neither sqlite:// nor postgres://")]
    UnknownScheme(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(
        "the database belongs to org {found:?}, not {expected:?}; give this org its own database"
    )]
    WrongOrg { found: String, expected: String },
    #[error("a bundle with version {0} is already published")]
    DuplicateBundle(u64),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The storage handle, cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer: queueing writers here is much faster than letting
    /// them spin on SQLITE_BUSY.
    write_lock: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

/// A stored enrollment token (never the secret, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub team: String,
    pub max_uses: i64,
    pub uses: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub note: Option<String>,
}

/// Why a token could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Revoked,
    Expired,
    Exhausted,
}

/// A device row, as the inventory shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub device_id: String,
    pub machine_id: String,
    pub org: String,
    pub team: String,
    pub department: Option<String>,
    pub environment: Option<String>,
    pub compliance_zone: Option<String>,
    pub hostname: String,
    pub platform: String,
    pub os_name: String,
    pub os_version: String,
    pub serial: Option<String>,
    pub user: String,
    pub agent_version: String,
    pub registered_at: i64,
    pub last_seen: i64,
    pub policy_version: Option<i64>,
    pub cert_fingerprint: String,
    pub cert_not_after: i64,
}

/// What an enrollment writes: the device as it describes itself, and its new
/// certificate. `device_id` is used only when the machine id is new.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub device: DeviceRow,
    pub cert_serial: String,
    pub cert_not_before: i64,
}

/// A published bundle.
#[derive(Debug, Clone)]
pub struct BundleRow {
    pub version: i64,
    pub etag: String,
    pub body: Vec<u8>,
    pub expires_at: i64,
    pub published_at: i64,
}

/// Filters of the inventory query.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub team: Option<String>,
    /// Only devices not seen since this time.
    pub not_seen_since: Option<i64>,
}

const SCHEMA_VERSION: &str = "1";

fn schema(backend: Backend) -> Vec<String> {
    let blob = match backend {
        Backend::Sqlite => "BLOB",
        Backend::Postgres => "BYTEA",
    };
    vec![
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)".into(),
        "CREATE TABLE IF NOT EXISTS tokens (
            id TEXT PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,
            team TEXT NOT NULL,
            max_uses BIGINT NOT NULL,
            uses BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            revoked_at BIGINT,
            note TEXT)"
            .into(),
        "CREATE TABLE IF NOT EXISTS devices (
            device_id TEXT PRIMARY KEY,
            machine_id TEXT NOT NULL UNIQUE,
            org TEXT NOT NULL,
            team TEXT NOT NULL,
            department TEXT,
            environment TEXT,
            compliance_zone TEXT,
            hostname TEXT NOT NULL,
            platform TEXT NOT NULL,
            os_name TEXT NOT NULL,
            os_version TEXT NOT NULL,
            serial TEXT,
            username TEXT NOT NULL,
            agent_version TEXT NOT NULL,
            registered_at BIGINT NOT NULL,
            last_seen BIGINT NOT NULL,
            policy_version BIGINT,
            token_id TEXT NOT NULL,
            cert_fingerprint TEXT NOT NULL,
            cert_not_after BIGINT NOT NULL)"
            .into(),
        "CREATE INDEX IF NOT EXISTS devices_team ON devices (team)".into(),
        "CREATE TABLE IF NOT EXISTS certificates (
            fingerprint TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            serial TEXT NOT NULL,
            not_before BIGINT NOT NULL,
            not_after BIGINT NOT NULL)"
            .into(),
        "CREATE INDEX IF NOT EXISTS certificates_device ON certificates (device_id)".into(),
        format!(
            "CREATE TABLE IF NOT EXISTS bundles (
            version BIGINT PRIMARY KEY,
            etag TEXT NOT NULL,
            body {blob} NOT NULL,
            expires_at BIGINT NOT NULL,
            published_at BIGINT NOT NULL)"
        ),
    ]
}

const DEVICE_COLUMNS: &str = "device_id, machine_id, org, team, department, environment, \
    compliance_zone, hostname, platform, os_name, os_version, serial, username, agent_version, \
    registered_at, last_seen, policy_version, cert_fingerprint, cert_not_after";

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

impl Store {
    /// Opens (and creates or migrates) the database at `url`: `sqlite://PATH` or
    /// `postgres://…`. The database is bound to one org on first use.
    pub async fn open(url: &str, org: &str, max_connections: u32) -> Result<Self> {
        install_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnknownScheme(url.to_string()));
        };
        let mut options = AnyPoolOptions::new().max_connections(max_connections.max(1));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL: readers never block the writer; NORMAL: a commit is durable
                    // against a process crash (the WAL is written before we answer),
                    // fsync happens at checkpoints.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let url = if backend == Backend::Sqlite && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        let pool = options.connect(&url).await?;
        let store = Self {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite)
                .then(|| std::sync::Arc::new(tokio::sync::Mutex::new(()))),
        };
        store.migrate(org).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self, org: &str) -> Result<()> {
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        for statement in schema(self.backend) {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
        let found: Option<String> = sqlx::query("SELECT value FROM meta WHERE key = 'org'")
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        match found {
            Some(found) if found != org => {
                return Err(StoreError::WrongOrg {
                    found,
                    expected: org.to_string(),
                });
            }
            Some(_) => {}
            None => {
                sqlx::query("INSERT INTO meta (key, value) VALUES ('org', $1), ('schema', $2)")
                    .bind(org.to_string())
                    .bind(SCHEMA_VERSION.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn lock_writes(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    // ----- tokens -------------------------------------------------------------------

    pub async fn insert_token(&self, token: &TokenRow, hash: &str) -> Result<()> {
        let _guard = self.lock_writes().await;
        sqlx::query(
            "INSERT INTO tokens (id, hash, team, max_uses, uses, created_at, expires_at, revoked_at, note)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(token.id.clone())
        .bind(hash.to_string())
        .bind(token.team.clone())
        .bind(token.max_uses)
        .bind(token.uses)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .bind(token.note.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query(
            "SELECT id, team, max_uses, uses, created_at, expires_at, revoked_at, note
             FROM tokens ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_row).collect()
    }

    /// Revokes a token; `None` when there is no such token.
    pub async fn revoke_token(&self, id: &str, now: i64) -> Result<Option<TokenRow>> {
        let _guard = self.lock_writes().await;
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        let row = sqlx::query(
            "SELECT id, team, max_uses, uses, created_at, expires_at, revoked_at, note
             FROM tokens WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    /// Removes a device and every certificate issued to it, in one transaction: its
    /// certificates then authenticate nothing. Returns the removed row, if any.
    pub async fn remove_device(&self, device_id: &str) -> Result<Option<DeviceRow>> {
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1"
        ))
        .bind(device_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let device = device_row(&row)?;
        sqlx::query("DELETE FROM certificates WHERE device_id = $1")
            .bind(device_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM devices WHERE device_id = $1")
            .bind(device_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(device))
    }

    // ----- enrollment ---------------------------------------------------------------

    /// In one transaction: takes one use of the token with hash `token_hash` (if it is
    /// known, not revoked, not expired, not used up), checks its team against
    /// `team_check`, and records the device (new, or the same machine id enrolling
    /// again: its device id is kept) and its certificate. Returns the device id and
    /// the token's team, or why the token was refused (nothing is written then).
    pub async fn enroll(
        &self,
        token_hash: &str,
        now: i64,
        team_check: impl FnOnce(&str) -> std::result::Result<(), String>,
        enrollment: &NewEnrollment,
    ) -> Result<std::result::Result<(String, String), EnrollRefusal>> {
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        let taken = sqlx::query(
            "UPDATE tokens SET uses = uses + 1
             WHERE hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND uses < max_uses
             RETURNING id, team",
        )
        .bind(token_hash.to_string())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(taken) = taken else {
            let reason = token_refusal(&mut tx, token_hash, now).await?;
            tx.rollback().await?;
            return Ok(Err(EnrollRefusal::Token(reason)));
        };
        let token_id: String = taken.try_get(0)?;
        let team: String = taken.try_get(1)?;
        if let Err(message) = team_check(&team) {
            tx.rollback().await?;
            return Ok(Err(EnrollRefusal::Team(message)));
        }
        let d = &enrollment.device;
        let device_id: String = sqlx::query(
            "INSERT INTO devices (device_id, machine_id, org, team, department, environment,
                compliance_zone, hostname, platform, os_name, os_version, serial, username,
                agent_version, registered_at, last_seen, policy_version, token_id,
                cert_fingerprint, cert_not_after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                NULL, $17, $18, $19)
             ON CONFLICT (machine_id) DO UPDATE SET
                team = excluded.team, department = excluded.department,
                environment = excluded.environment, compliance_zone = excluded.compliance_zone,
                hostname = excluded.hostname, platform = excluded.platform,
                os_name = excluded.os_name, os_version = excluded.os_version,
                serial = excluded.serial, username = excluded.username,
                agent_version = excluded.agent_version, registered_at = excluded.registered_at,
                last_seen = excluded.last_seen, token_id = excluded.token_id,
                cert_fingerprint = excluded.cert_fingerprint,
                cert_not_after = excluded.cert_not_after
             RETURNING device_id",
        )
        .bind(d.device_id.clone())
        .bind(d.machine_id.clone())
        .bind(d.org.clone())
        .bind(team.clone())
        .bind(d.department.clone())
        .bind(d.environment.clone())
        .bind(d.compliance_zone.clone())
        .bind(d.hostname.clone())
        .bind(d.platform.clone())
        .bind(d.os_name.clone())
        .bind(d.os_version.clone())
        .bind(d.serial.clone())
        .bind(d.user.clone())
        .bind(d.agent_version.clone())
        .bind(d.registered_at)
        .bind(d.last_seen)
        .bind(token_id)
        .bind(d.cert_fingerprint.clone())
        .bind(d.cert_not_after)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        insert_certificate(&mut tx, &device_id, enrollment).await?;
        tx.commit().await?;
        Ok(Ok((device_id, team)))
    }

    /// Records a renewed certificate for an enrolled device.
    pub async fn renew(&self, device_id: &str, enrollment: &NewEnrollment) -> Result<()> {
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE devices SET cert_fingerprint = $1, cert_not_after = $2, last_seen = $3
             WHERE device_id = $4",
        )
        .bind(enrollment.device.cert_fingerprint.clone())
        .bind(enrollment.device.cert_not_after)
        .bind(enrollment.device.last_seen)
        .bind(device_id.to_string())
        .execute(&mut *tx)
        .await?;
        insert_certificate(&mut tx, device_id, enrollment).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The device holding the certificate with this fingerprint, if the certificate
    /// is one we issued and the device still exists.
    pub async fn device_by_certificate(&self, fingerprint: &str) -> Result<Option<DeviceRow>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id =
                (SELECT device_id FROM certificates WHERE fingerprint = $1)"
        ))
        .bind(fingerprint.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_row).transpose()
    }

    /// A check-in: the device's facts, policy version and last-seen time.
    pub async fn check_in(&self, device: &DeviceRow) -> Result<()> {
        let _guard = self.lock_writes().await;
        sqlx::query(
            "UPDATE devices SET department = $1, environment = $2, compliance_zone = $3,
                hostname = $4, platform = $5, os_name = $6, os_version = $7, serial = $8,
                username = $9, agent_version = $10, last_seen = $11, policy_version = $12
             WHERE device_id = $13",
        )
        .bind(device.department.clone())
        .bind(device.environment.clone())
        .bind(device.compliance_zone.clone())
        .bind(device.hostname.clone())
        .bind(device.platform.clone())
        .bind(device.os_name.clone())
        .bind(device.os_version.clone())
        .bind(device.serial.clone())
        .bind(device.user.clone())
        .bind(device.agent_version.clone())
        .bind(device.last_seen)
        .bind(device.policy_version)
        .bind(device.device_id.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_devices(&self, filter: &DeviceFilter) -> Result<Vec<DeviceRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices
             WHERE ($1 IS NULL OR team = $1) AND ($2 IS NULL OR last_seen < $2)
             ORDER BY team, hostname, device_id"
        ))
        .bind(filter.team.clone())
        .bind(filter.not_seen_since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_row).collect()
    }

    // ----- bundles ------------------------------------------------------------------

    pub async fn publish_bundle(&self, bundle: &BundleRow) -> Result<()> {
        let _guard = self.lock_writes().await;
        let done = sqlx::query(
            "INSERT INTO bundles (version, etag, body, expires_at, published_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version) DO NOTHING",
        )
        .bind(bundle.version)
        .bind(bundle.etag.clone())
        .bind(bundle.body.clone())
        .bind(bundle.expires_at)
        .bind(bundle.published_at)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::DuplicateBundle(bundle.version as u64));
        }
        Ok(())
    }

    /// The newest published bundle's version and ETag.
    pub async fn current_bundle_tag(&self) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT version, etag FROM bundles ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn bundle(&self, version: i64) -> Result<Option<BundleRow>> {
        let row = sqlx::query(
            "SELECT version, etag, body, expires_at, published_at FROM bundles WHERE version = $1",
        )
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(BundleRow {
                version: r.try_get(0)?,
                etag: r.try_get(1)?,
                body: r.try_get(2)?,
                expires_at: r.try_get(3)?,
                published_at: r.try_get(4)?,
            })
        })
        .transpose()
    }
}

/// Why an enrollment was refused by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollRefusal {
    Token(TokenRefusal),
    Team(String),
}

async fn token_refusal(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    token_hash: &str,
    now: i64,
) -> Result<TokenRefusal> {
    let row =
        sqlx::query("SELECT revoked_at, expires_at, uses, max_uses FROM tokens WHERE hash = $1")
            .bind(token_hash.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    let Some(row) = row else {
        return Ok(TokenRefusal::Unknown);
    };
    let revoked: Option<i64> = row.try_get(0)?;
    let expires_at: i64 = row.try_get(1)?;
    let uses: i64 = row.try_get(2)?;
    let max_uses: i64 = row.try_get(3)?;
    Ok(if revoked.is_some() {
        TokenRefusal::Revoked
    } else if expires_at <= now {
        TokenRefusal::Expired
    } else if uses >= max_uses {
        TokenRefusal::Exhausted
    } else {
        // Raced with a revocation or the last use: report it as used up.
        TokenRefusal::Exhausted
    })
}

async fn insert_certificate(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device_id: &str,
    enrollment: &NewEnrollment,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO certificates (fingerprint, device_id, serial, not_before, not_after)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(enrollment.device.cert_fingerprint.clone())
    .bind(device_id.to_string())
    .bind(enrollment.cert_serial.clone())
    .bind(enrollment.cert_not_before)
    .bind(enrollment.device.cert_not_after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn token_row(row: &AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        id: row.try_get(0)?,
        team: row.try_get(1)?,
        max_uses: row.try_get(2)?,
        uses: row.try_get(3)?,
        created_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
        note: row.try_get(7)?,
    })
}

fn device_row(row: &AnyRow) -> Result<DeviceRow> {
    Ok(DeviceRow {
        device_id: row.try_get(0)?,
        machine_id: row.try_get(1)?,
        org: row.try_get(2)?,
        team: row.try_get(3)?,
        department: row.try_get(4)?,
        environment: row.try_get(5)?,
        compliance_zone: row.try_get(6)?,
        hostname: row.try_get(7)?,
        platform: row.try_get(8)?,
        os_name: row.try_get(9)?,
        os_version: row.try_get(10)?,
        serial: row.try_get(11)?,
        user: row.try_get(12)?,
        agent_version: row.try_get(13)?,
        registered_at: row.try_get(14)?,
        last_seen: row.try_get(15)?,
        policy_version: row.try_get(16)?,
        cert_fingerprint: row.try_get(17)?,
        cert_not_after: row.try_get(18)?,
    })
}

/// Unix seconds of a time.
pub fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

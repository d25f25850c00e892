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

use crate::protocol::{DeviceFacts, DeviceRecord, TokenKind};

pub mod audit;
mod audit_daily;
mod audit_retention;
pub mod scep;
pub use audit::{AuditFilter, AuditHead, AuditRow};
pub use audit_retention::Pruned;
pub use scep::{NewScepCert, ScepCertRow, ScepRecorded};
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
    #[error(
        "the database is at schema {found}, made by a newer fleetkit than this one (schema {SCHEMA_VERSION}); run that release, or restore a backup taken before the upgrade"
    )]
    NewerSchema { found: String },
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
    /// Enrollments with this token may replace an existing device of the same
    /// machine id (re-imaged machines) instead of being refused.
    pub replace_existing: bool,
    pub kind: TokenKind,
}

impl TokenRow {
    /// Why this token cannot be used at `now`, if it cannot.
    pub fn refusal(&self, now: i64) -> Option<TokenRefusal> {
        if self.revoked_at.is_some() {
            Some(TokenRefusal::Revoked)
        } else if self.expires_at <= now {
            Some(TokenRefusal::Expired)
        } else if self.uses >= self.max_uses {
            Some(TokenRefusal::Exhausted)
        } else {
            None
        }
    }
}

/// Why a token could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    /// A token of the other kind (a SCEP challenge used to register an agent, or
    /// the reverse).
    WrongKind,
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

impl DeviceRow {
    /// A new device as its enrollment facts describe it, with its first certificate.
    pub fn enrolling(
        facts: &DeviceFacts,
        org: &str,
        device_id: String,
        cert: &IssuedCert,
        now: i64,
    ) -> Self {
        let mut row = Self {
            device_id,
            machine_id: facts.machine_id.clone(),
            org: org.to_string(),
            team: String::new(),
            department: None,
            environment: None,
            compliance_zone: None,
            hostname: String::new(),
            platform: String::new(),
            os_name: String::new(),
            os_version: String::new(),
            serial: None,
            user: String::new(),
            agent_version: String::new(),
            registered_at: now,
            last_seen: now,
            policy_version: None,
            cert_fingerprint: cert.fingerprint.clone(),
            cert_not_after: cert.not_after,
        };
        row.apply_facts(facts);
        row
    }

    /// Takes what the device says of itself (every fact but the machine id, which
    /// never changes, and the team, which the token decides).
    pub fn apply_facts(&mut self, f: &DeviceFacts) {
        self.department = f.department.clone();
        self.environment = f.environment.clone();
        self.compliance_zone = f.compliance_zone.clone();
        self.hostname = f.hostname.clone();
        self.platform = f.platform.clone();
        self.os_name = f.os_name.clone();
        self.os_version = f.os_version.clone();
        self.serial = f.serial.clone();
        self.user = f.user.clone();
        self.agent_version = f.agent_version.clone();
    }
}

/// The inventory's wire form of a row.
impl From<DeviceRow> for DeviceRecord {
    fn from(row: DeviceRow) -> Self {
        DeviceRecord {
            registered_at: rfc3339_of(row.registered_at),
            last_seen: rfc3339_of(row.last_seen),
            certificate_not_after: rfc3339_of(row.cert_not_after),
            device_id: row.device_id,
            machine_id: row.machine_id,
            org: row.org,
            team: row.team,
            department: row.department,
            environment: row.environment,
            compliance_zone: row.compliance_zone,
            hostname: row.hostname,
            platform: row.platform,
            os_name: row.os_name,
            os_version: row.os_version,
            serial: row.serial,
            user: row.user,
            agent_version: row.agent_version,
            policy_version: row.policy_version.map(|v| v.max(0) as u64),
            certificate_fingerprint: row.cert_fingerprint,
            // Joined in by the inventory endpoint (`Store::scep_for_device`).
            profile_certificate: None,
        }
    }
}

/// RFC 3339 of Unix seconds (empty for a time out of range, which no row holds).
pub fn rfc3339_of(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .map(crate::clock::rfc3339)
        .unwrap_or_default()
}

/// A recorded renewal: the device and the key and PEM of the certificate it got.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub device: DeviceRow,
    pub key_fingerprint: String,
    pub pem: String,
}

/// A certificate issued to a device, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// `sha256:<hex>` of the DER: what TLS presents and authentication looks up.
    pub fingerprint: String,
    /// `sha256:<hex>` of the certified key's SubjectPublicKeyInfo.
    pub key_fingerprint: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    /// The PEM, kept so that a retried enrollment gets the same answer.
    pub pem: String,
}

/// What an enrollment writes: the device as it describes itself, and its new
/// certificate. `device.device_id` is used only when the machine id is new.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub device: DeviceRow,
    pub cert: IssuedCert,
}

/// How an enrollment was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// A machine id the inventory did not hold.
    New { device_id: String, team: String },
    /// The holder of the device's current key enrolled again (e.g. after its
    /// certificate expired): same device id, new certificate.
    Reenrolled { device_id: String, team: String },
    /// A token made with `replace_existing` replaced the device of this machine id
    /// (a re-imaged machine): same device id, its old certificates are dead.
    Replaced { device_id: String, team: String },
    /// The same enrollment (same token, same key) was already recorded: its answer
    /// was lost. Nothing changed; the stored certificate is returned again.
    Repeated {
        device_id: String,
        team: String,
        cert_pem: String,
        not_after: i64,
        fingerprint: String,
    },
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

/// Schema 2 added tokens.replace_existing and the devices' key fingerprint,
/// certificate PEM and previous certificate (ownership proofs, idempotent enrollment
/// and renewal).
/// Schema 3 added tokens.kind and the SCEP certificates table.
/// Schema 4 added the audit records and heads (new tables only).
/// Schema 5 added the daily decision counts (rebuilt from the records on upgrade)
/// and the audit retention marks in `meta`.
const SCHEMA_VERSION: &str = "5";

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
            note TEXT,
            replace_existing BIGINT NOT NULL DEFAULT 0,
            kind TEXT NOT NULL DEFAULT 'agent')"
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
            cert_not_after BIGINT NOT NULL,
            cert_key_fingerprint TEXT NOT NULL DEFAULT '',
            cert_pem TEXT NOT NULL DEFAULT '',
            prev_cert_fingerprint TEXT NOT NULL DEFAULT '')"
            .into(),
        "CREATE INDEX IF NOT EXISTS devices_team ON devices (team)".into(),
        "CREATE INDEX IF NOT EXISTS devices_cert ON devices (cert_fingerprint)".into(),
        "CREATE TABLE IF NOT EXISTS certificates (
            fingerprint TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            serial TEXT NOT NULL,
            not_before BIGINT NOT NULL,
            not_after BIGINT NOT NULL)"
            .into(),
        "CREATE INDEX IF NOT EXISTS certificates_device ON certificates (device_id)".into(),
        // Certificates issued over SCEP (configuration profiles). A transactionID is
        // not unique: a renewal with the same key reuses it (micromdm's client does).
        "CREATE TABLE IF NOT EXISTS scep_certificates (
            serial TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            subject TEXT NOT NULL,
            device_serial TEXT,
            key_fingerprint TEXT NOT NULL,
            transaction_id TEXT NOT NULL,
            team TEXT NOT NULL,
            token_id TEXT,
            renewed_from TEXT,
            not_before BIGINT NOT NULL,
            not_after BIGINT NOT NULL,
            issued_at BIGINT NOT NULL,
            cert_pem TEXT NOT NULL,
            revoked_at BIGINT,
            superseded_by TEXT)"
            .into(),
        "CREATE INDEX IF NOT EXISTS scep_transaction ON scep_certificates (transaction_id)".into(),
        "CREATE INDEX IF NOT EXISTS scep_device ON scep_certificates (team, device_serial)".into(),
        format!(
            "CREATE TABLE IF NOT EXISTS bundles (
            version BIGINT PRIMARY KEY,
            etag TEXT NOT NULL,
            body {blob} NOT NULL,
            expires_at BIGINT NOT NULL,
            published_at BIGINT NOT NULL)"
        ),
        // The key rotation chain: one signed anchors document per version.
        format!(
            "CREATE TABLE IF NOT EXISTS rotations (
            version BIGINT PRIMARY KEY,
            envelope {blob} NOT NULL,
            published_at BIGINT NOT NULL)"
        ),
    ]
    .into_iter()
    .chain(audit::schema())
    .collect()
}

const TOKEN_COLUMNS: &str =
    "id, team, max_uses, uses, created_at, expires_at, revoked_at, note, replace_existing, kind";

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
        // Several instances starting together on one PostgreSQL: one at a time
        // (CREATE TABLE IF NOT EXISTS and the schema upgrade are not safe to run
        // concurrently there). The lock ends with the transaction. SQLite has one
        // writer anyway.
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(726300101)")
                .execute(&mut *tx)
                .await?;
        }
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
            Some(_) => {
                let schema: Option<String> =
                    sqlx::query("SELECT value FROM meta WHERE key = 'schema'")
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|row| row.try_get(0))
                        .transpose()?;
                // A newer release's database: writing it with this release's
                // statements would leave what the newer one keeps (such as the
                // daily audit counts) behind the records.
                if let Some(found) = &schema
                    && found.parse::<u32>().unwrap_or(u32::MAX)
                        > SCHEMA_VERSION.parse::<u32>().unwrap_or(0)
                {
                    return Err(StoreError::NewerSchema {
                        found: found.clone(),
                    });
                }
                if schema.as_deref() == Some("1") {
                    for statement in [
                        "ALTER TABLE tokens ADD COLUMN replace_existing BIGINT NOT NULL DEFAULT 0",
                        "ALTER TABLE devices ADD COLUMN cert_key_fingerprint TEXT NOT NULL DEFAULT ''",
                        "ALTER TABLE devices ADD COLUMN cert_pem TEXT NOT NULL DEFAULT ''",
                        "ALTER TABLE devices ADD COLUMN prev_cert_fingerprint TEXT NOT NULL DEFAULT ''",
                        "UPDATE meta SET value = '2' WHERE key = 'schema'",
                    ] {
                        sqlx::query(statement).execute(&mut *tx).await?;
                    }
                }
                if matches!(schema.as_deref(), Some("1") | Some("2")) {
                    for statement in [
                        "ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent'",
                        "UPDATE meta SET value = '3' WHERE key = 'schema'",
                    ] {
                        sqlx::query(statement).execute(&mut *tx).await?;
                    }
                }
                // Schema 4's tables were made above (CREATE … IF NOT EXISTS).
                if matches!(schema.as_deref(), Some("1") | Some("2") | Some("3")) {
                    sqlx::query("UPDATE meta SET value = '4' WHERE key = 'schema'")
                        .execute(&mut *tx)
                        .await?;
                }
                // Schema 5's table was made above, empty: count what is held.
                if matches!(
                    schema.as_deref(),
                    Some("1") | Some("2") | Some("3") | Some("4")
                ) {
                    for statement in [
                        audit_daily::BACKFILL,
                        "UPDATE meta SET value = '5' WHERE key = 'schema'",
                    ] {
                        sqlx::query(statement).execute(&mut *tx).await?;
                    }
                }
            }
            None => {
                sqlx::query("INSERT INTO meta (key, value) VALUES ('org', $1), ('schema', $2)")
                    .bind(org.to_string())
                    .bind(SCHEMA_VERSION.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // After the migration: the column is new in schema 2.
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS devices_prev_cert ON devices (prev_cert_fingerprint)",
        )
        .execute(&mut *tx)
        .await?;
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
            "INSERT INTO tokens (id, hash, team, max_uses, uses, created_at, expires_at, revoked_at,
                note, replace_existing, kind)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .bind(i64::from(token.replace_existing))
        .bind(token.kind.as_str().to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
        ))
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
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
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

    /// Records an enrollment, in one transaction (DESIGN.md rule 9):
    ///
    /// - a machine id the inventory does not hold: a new device;
    /// - the same token and the same key as the device's current certificate: the
    ///   answer of that enrollment was lost; nothing changes, and no token use is
    ///   taken ([`Enrolled::Repeated`]);
    /// - a key equal to the device's current certificate's key (the CSR's
    ///   self-signature proved the caller holds it): enrolled again;
    /// - a token made with `replace_existing`: the device is replaced;
    /// - anything else is refused: a machine id is not a secret, and enrolling
    ///   never takes over a device.
    ///
    /// Every case but the repeat takes one use of the token (known, not revoked, not
    /// expired, not used up) and checks its team with `team_check`. Nothing is
    /// written when the enrollment is refused.
    pub async fn enroll(
        &self,
        token_hash: &str,
        now: i64,
        team_check: impl Fn(&str) -> std::result::Result<(), String>,
        enrollment: &NewEnrollment,
    ) -> Result<std::result::Result<Enrolled, EnrollRefusal>> {
        // Two enrollments of one new machine id racing: the loser sees the winner's
        // row on its second pass and is judged against it.
        for _ in 0..2 {
            if let Some(outcome) = self
                .try_enroll(token_hash, now, &team_check, enrollment)
                .await?
            {
                return Ok(outcome);
            }
        }
        Ok(Err(EnrollRefusal::DeviceExists))
    }

    /// One pass of [`Self::enroll`]; `None` when it lost a race and wrote nothing.
    async fn try_enroll(
        &self,
        token_hash: &str,
        now: i64,
        team_check: &impl Fn(&str) -> std::result::Result<(), String>,
        enrollment: &NewEnrollment,
    ) -> Result<Option<std::result::Result<Enrolled, EnrollRefusal>>> {
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        let Some(token) = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
        ))
        .bind(token_hash.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(token_row)
        .transpose()?
        else {
            return Ok(Some(Err(EnrollRefusal::Token(TokenRefusal::Unknown))));
        };
        if token.kind != TokenKind::Agent {
            return Ok(Some(Err(EnrollRefusal::Token(TokenRefusal::WrongKind))));
        }
        let d = &enrollment.device;
        let existing = sqlx::query(
            "SELECT device_id, team, token_id, cert_fingerprint, cert_key_fingerprint, cert_pem,
                cert_not_after
             FROM devices WHERE machine_id = $1",
        )
        .bind(d.machine_id.clone())
        .fetch_optional(&mut *tx)
        .await?;
        let existing = match existing {
            None => None,
            Some(row) => Some(ExistingDevice {
                device_id: row.try_get(0)?,
                team: row.try_get(1)?,
                token_id: row.try_get(2)?,
                cert_fingerprint: row.try_get(3)?,
                cert_key_fingerprint: row.try_get(4)?,
                cert_pem: row.try_get(5)?,
                cert_not_after: row.try_get(6)?,
            }),
        };
        let key = &enrollment.cert.key_fingerprint;
        // The recorded key proves ownership only while it is the current
        // certificate's (a row written by an older release during a rolling upgrade
        // may carry the previous key beside a newer certificate).
        let holds_key = existing.as_ref().is_some_and(|e| {
            !e.cert_key_fingerprint.is_empty()
                && &e.cert_key_fingerprint == key
                && crate::pki::fingerprint_pem(&e.cert_pem).as_deref()
                    == Some(e.cert_fingerprint.as_str())
        });
        // A repeat only while its certificate is still good: the holder of an
        // expired one enrolls again and gets a new certificate.
        if let Some(e) = &existing
            && holds_key
            && e.token_id == token.id
            && token.revoked_at.is_none()
            && e.cert_not_after > now
        {
            tx.rollback().await?;
            return Ok(Some(Ok(Enrolled::Repeated {
                device_id: e.device_id.clone(),
                team: e.team.clone(),
                cert_pem: e.cert_pem.clone(),
                not_after: e.cert_not_after,
                fingerprint: e.cert_fingerprint.clone(),
            })));
        }
        // A replace-existing token replaces only a device of its own team: a token
        // of one team never takes over another team's machine.
        if let Some(e) = &existing
            && !holds_key
            && !(token.replace_existing && e.team == token.team)
        {
            tx.rollback().await?;
            return Ok(Some(Err(EnrollRefusal::DeviceExists)));
        }

        let taken = sqlx::query(
            "UPDATE tokens SET uses = uses + 1
             WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 AND uses < max_uses",
        )
        .bind(token.id.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            let reason = token_refusal(&mut tx, token_hash, now).await?;
            tx.rollback().await?;
            return Ok(Some(Err(EnrollRefusal::Token(reason))));
        }
        if let Err(message) = team_check(&token.team) {
            tx.rollback().await?;
            return Ok(Some(Err(EnrollRefusal::Team(message))));
        }

        let outcome = match &existing {
            None => {
                let inserted = bind_enrollment(
                    sqlx::query(
                        "INSERT INTO devices (team, department, environment, compliance_zone,
                            hostname, platform, os_name, os_version, serial, username,
                            agent_version, registered_at, last_seen, token_id, cert_fingerprint,
                            cert_not_after, cert_key_fingerprint, cert_pem, device_id, machine_id,
                            org, policy_version)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                            $16, $17, $18, $19, $20, $21, NULL)
                         ON CONFLICT (machine_id) DO NOTHING",
                    ),
                    &token,
                    enrollment,
                )
                .bind(d.device_id.clone())
                .bind(d.machine_id.clone())
                .bind(d.org.clone())
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                Enrolled::New {
                    device_id: d.device_id.clone(),
                    team: token.team.clone(),
                }
            }
            Some(e) => {
                // Only if the row is still the one judged above (PostgreSQL may
                // have let another transaction change it meanwhile).
                let updated = bind_enrollment(
                    sqlx::query(
                        "UPDATE devices SET team = $1, department = $2, environment = $3,
                            compliance_zone = $4, hostname = $5, platform = $6, os_name = $7,
                            os_version = $8, serial = $9, username = $10, agent_version = $11,
                            registered_at = $12, last_seen = $13, token_id = $14,
                            cert_fingerprint = $15, cert_not_after = $16,
                            cert_key_fingerprint = $17, cert_pem = $18,
                            prev_cert_fingerprint = '', policy_version = NULL
                         WHERE device_id = $19 AND cert_fingerprint = $20",
                    ),
                    &token,
                    enrollment,
                )
                .bind(e.device_id.clone())
                .bind(e.cert_fingerprint.clone())
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let (device_id, team) = (e.device_id.clone(), token.team.clone());
                if holds_key {
                    Enrolled::Reenrolled { device_id, team }
                } else {
                    Enrolled::Replaced { device_id, team }
                }
            }
        };
        let device_id = match &outcome {
            Enrolled::New { device_id, .. }
            | Enrolled::Reenrolled { device_id, .. }
            | Enrolled::Replaced { device_id, .. }
            | Enrolled::Repeated { device_id, .. } => device_id.clone(),
        };
        insert_certificate(&mut tx, &device_id, &enrollment.cert).await?;
        tx.commit().await?;
        Ok(Some(Ok(outcome)))
    }

    /// Records a renewed certificate, if `presented` is still the device's current
    /// certificate: `false` when the device was removed or renewed meanwhile (the
    /// caller's certificate is no longer the one that authenticates it).
    pub async fn renew(
        &self,
        device_id: &str,
        presented: &str,
        cert: &IssuedCert,
        now: i64,
    ) -> Result<bool> {
        let _guard = self.lock_writes().await;
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE devices SET prev_cert_fingerprint = cert_fingerprint,
                cert_fingerprint = $1, cert_not_after = $2, last_seen = $3,
                cert_key_fingerprint = $4, cert_pem = $5
             WHERE device_id = $6 AND cert_fingerprint = $7",
        )
        .bind(cert.fingerprint.clone())
        .bind(cert.not_after)
        .bind(now)
        .bind(cert.key_fingerprint.clone())
        .bind(cert.pem.clone())
        .bind(device_id.to_string())
        .bind(presented.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_certificate(&mut tx, device_id, cert).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The renewal that superseded the certificate with this fingerprint, if it is
    /// the device's previous one: the device (its current certificate's fingerprint
    /// and expiry) with that certificate's key fingerprint and PEM, so that a
    /// repeated renewal (its answer was lost) can be answered again. Authenticates
    /// nothing by itself.
    pub async fn renewal_of(&self, previous: &str) -> Result<Option<Renewal>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS}, cert_key_fingerprint, cert_pem FROM devices
             WHERE prev_cert_fingerprint = $1 AND prev_cert_fingerprint <> ''"
        ))
        .bind(previous.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Renewal {
                device: device_row(&row)?,
                key_fingerprint: row.try_get(19)?,
                pem: row.try_get(20)?,
            })
        })
        .transpose()
    }

    /// The enrolled device whose *current* certificate has this fingerprint. A
    /// certificate superseded by a renewal or a re-enrollment, or one of a removed
    /// device, finds nothing: asked on every device request, so that a removal or
    /// renewal takes effect at once, even on an open connection.
    pub async fn device_by_id(&self, device_id: &str) -> Result<Option<DeviceRow>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1"
        ))
        .bind(device_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_row).transpose()
    }

    pub async fn device_by_certificate(&self, fingerprint: &str) -> Result<Option<DeviceRow>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE cert_fingerprint = $1"
        ))
        .bind(fingerprint.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_row).transpose()
    }

    /// A check-in: the device's facts, policy version and last-seen time. `false`
    /// when the device is gone or its certificate was superseded since it was looked
    /// up (a removal racing the request).
    pub async fn check_in(&self, device: &DeviceRow) -> Result<bool> {
        let _guard = self.lock_writes().await;
        let done = sqlx::query(
            "UPDATE devices SET department = $1, environment = $2, compliance_zone = $3,
                hostname = $4, platform = $5, os_name = $6, os_version = $7, serial = $8,
                username = $9, agent_version = $10, last_seen = $11, policy_version = $12
             WHERE device_id = $13 AND cert_fingerprint = $14",
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
        .bind(device.cert_fingerprint.clone())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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

    // ----- key rotations ------------------------------------------------------------

    /// Stores a rotation step; `false` when one with this version is already there
    /// (nothing is changed then).
    pub async fn insert_rotation(
        &self,
        version: i64,
        envelope: &[u8],
        published_at: i64,
    ) -> Result<bool> {
        let _guard = self.lock_writes().await;
        let done = sqlx::query(
            "INSERT INTO rotations (version, envelope, published_at) VALUES ($1, $2, $3)
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(envelope.to_vec())
        .bind(published_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The stored rotation step of this version.
    pub async fn rotation(&self, version: i64) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT envelope FROM rotations WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// The stored rotation steps above `after`, oldest first.
    pub async fn rotations_after(&self, after: i64) -> Result<Vec<(i64, Vec<u8>)>> {
        let rows = sqlx::query(
            "SELECT version, envelope FROM rotations WHERE version > $1 ORDER BY version",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    // ----- read-only checks -----------------------------------------------------------

    /// Why an enrollment with this token can be refused at once, read only and
    /// without the write lock: before the server signs a certificate and serialises
    /// the enrollment against every other write, so that a flood of made-up tokens
    /// costs one indexed read each. `None` when the token may be good; [`Self::enroll`]
    /// then decides everything again in its transaction (use count, races with a
    /// revocation).
    ///
    /// The token whose secret hashes to `token_hash`.
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
        ))
        .bind(token_hash.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    /// Unknown and revoked tokens are refused. An expired one is refused unless the
    /// machine id holds a still-valid certificate enrolled with this very token: that
    /// may be the repeat of an enrollment whose answer was lost, which gets the same
    /// answer however old the token (DESIGN.md rule 9; the key is checked later).
    pub async fn token_refused_early(
        &self,
        token_hash: &str,
        machine_id: &str,
        now: i64,
    ) -> Result<Option<TokenRefusal>> {
        let Some(token) = self.token_by_hash(token_hash).await? else {
            return Ok(Some(TokenRefusal::Unknown));
        };
        if token.kind != TokenKind::Agent {
            return Ok(Some(TokenRefusal::WrongKind));
        }
        // A used-up token is the transaction's to judge (a repeat spends no use).
        match token.refusal(now) {
            Some(TokenRefusal::Revoked) => return Ok(Some(TokenRefusal::Revoked)),
            Some(TokenRefusal::Expired) => {}
            _ => return Ok(None),
        }
        let id = token.id;
        let maybe_repeat = sqlx::query(
            "SELECT 1 FROM devices WHERE machine_id = $1 AND token_id = $2 AND cert_not_after > $3",
        )
        .bind(machine_id.to_string())
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .is_some();
        Ok((!maybe_repeat).then_some(TokenRefusal::Expired))
    }
}

/// Why an enrollment was refused by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollRefusal {
    Token(TokenRefusal),
    Team(String),
    /// Another device holds this machine id and the caller proved no right to it.
    DeviceExists,
}

/// The parts of a device row an enrollment is judged against.
struct ExistingDevice {
    device_id: String,
    team: String,
    token_id: String,
    cert_fingerprint: String,
    cert_key_fingerprint: String,
    cert_pem: String,
    cert_not_after: i64,
}

pub(crate) async fn token_refusal(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    token_hash: &str,
    now: i64,
) -> Result<TokenRefusal> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
    ))
    .bind(token_hash.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row.as_ref().map(token_row).transpose()? {
        None => TokenRefusal::Unknown,
        // None: raced with a revocation or the last use; report it as used up.
        Some(token) => token.refusal(now).unwrap_or(TokenRefusal::Exhausted),
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds $1..$18 of an enrollment's device write (insert or replace), in one order
/// for both statements: the token's team, the device's facts, the token and the
/// new certificate.
fn bind_enrollment<'q>(
    query: AnyQuery<'q>,
    token: &TokenRow,
    enrollment: &NewEnrollment,
) -> AnyQuery<'q> {
    let d = &enrollment.device;
    let c = &enrollment.cert;
    query
        .bind(token.team.clone())
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
        .bind(token.id.clone())
        .bind(c.fingerprint.clone())
        .bind(c.not_after)
        .bind(c.key_fingerprint.clone())
        .bind(c.pem.clone())
}

async fn insert_certificate(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device_id: &str,
    cert: &IssuedCert,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO certificates (fingerprint, device_id, serial, not_before, not_after)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(cert.fingerprint.clone())
    .bind(device_id.to_string())
    .bind(cert.serial.clone())
    .bind(cert.not_before)
    .bind(cert.not_after)
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
        replace_existing: row.try_get::<i64, _>(8)? != 0,
        // An unknown kind (a newer release's) must never register an agent.
        kind: TokenKind::parse(&row.try_get::<String, _>(9)?).unwrap_or(TokenKind::Scep),
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

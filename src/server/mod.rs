//! The server (`fleetkit serve`): enrollment, device inventory and policy distribution
//! over HTTPS with device client certificates, on SQLite or PostgreSQL.
//!
//! - [`store`]: the database (tokens, devices, certificates, bundles);
//! - [`secrets`]: enrollment tokens and the admin credential (random, stored hashed);
//! - [`tls`]: the server certificate and client-certificate verification;
//! - [`http`]: the TLS accept loop; [`api`]: the routes and handlers;
//! - [`fdlimit`]: the open-file limit, raised and fitted to the connection cap;
//! - [`admin_client`]: the admin side's HTTPS client (`fleetkit token`, `devices`).
//!
//! The server holds no state of its own beyond one-second caches of the newest
//! bundle and of its current anchors (its start anchors plus the stored rotation
//! chain): several instances can share one PostgreSQL database, and all of them
//! pick up a published rotation without a restart.

pub mod admin_client;
pub mod api;
pub mod fdlimit;
pub mod http;
pub mod secrets;
pub mod store;
pub mod tls;

use crate::anchors::TrustAnchors;
use crate::fsutil;
use crate::pki::IssuingCa;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use time::Duration;
use tokio::net::TcpListener;

/// File name of the admin credential in the workspace's keys directory.
pub const ADMIN_CREDENTIAL_FILE: &str = "admin-credential";

/// Everything `fleetkit serve` needs, resolved by the CLI from the workspace.
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    pub org: String,
    pub ca: IssuingCa,
    pub anchors: TrustAnchors,
    pub cert_lifetime: Duration,
    /// The admin credential's SHA-256.
    pub admin_credential_hash: [u8; 32],
    /// DNS names and IP addresses the server certificate is made for.
    pub server_names: Vec<String>,
    /// Bundles to publish at start when newer than the published one (the
    /// workspace's newest signed bundle), oldest first.
    pub publish_at_start: Vec<Vec<u8>>,
    /// The workspace's rotation chain (`rotations/anchors-v<N>.json`), oldest first,
    /// each with its file name for messages: stored at start when the database
    /// lacks them.
    pub rotations_at_start: Vec<(String, Vec<u8>)>,
    pub max_db_connections: u32,
    /// Connection cap, per-source limit and request deadline (DESIGN.md rule 11).
    pub limits: http::Limits,
    /// The SCEP registration authority (`None`: no SCEP service).
    pub scep_ra: Option<crate::pki::scep_ra::ScepRas>,
    /// Accept single-DES SCEP envelopes (`--scep-allow-des`; off by default).
    pub scep_allow_des: bool,
    /// Keep the fleet's audit records this many whole days (`None`: keep them
    /// all): pruned once serving, then every hour.
    pub audit_retention_days: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the workspace's newest bundle cannot be published: {0}")]
    Publish(String),
    #[error("cannot make the SQLite database {path} private (0600): {source}")]
    DatabaseFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the SCEP RA certificate cannot be read")]
    ScepRa,
    #[error("the workspace's key rotation cannot be stored: {0}")]
    Rotation(#[from] api::rotation::StartChainError),
}

/// A server bound to its address, not yet serving.
pub struct BoundServer {
    listener: TcpListener,
    acceptor: tls::Acceptor,
    state: Arc<api::AppState>,
    limits: http::Limits,
    /// Versions published at start.
    pub published: Vec<u64>,
    /// Anchors versions whose rotation step was stored at start.
    pub rotations_stored: Vec<u64>,
    audit_retention_days: Option<u32>,
    /// Rotation files above the start anchors, not stored (label, claimed version):
    /// see [`api::rotation::store_at_start`].
    pub rotations_skipped: Vec<(String, u64)>,
}

impl BoundServer {
    /// Opens the database, makes the TLS identity, binds the port, stores the
    /// workspace's rotation steps the database lacks, and publishes the workspace's
    /// newest bundle if the database has an older one.
    pub async fn bind(opts: ServeOptions) -> Result<Self, ServeError> {
        let now = crate::clock::now();
        secure_sqlite_file(&opts.database_url)?;
        let store =
            store::Store::open(&opts.database_url, &opts.org, opts.max_db_connections).await?;
        let config = tls::server_config(&opts.ca, &opts.server_names, &opts.org, now)?;
        let client_check = Arc::new(tls::ClientCheck::new(&opts.ca)?);
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: opts.listen,
                source,
            })?;
        let state = Arc::new(api::AppState {
            store,
            ca: opts.ca,
            anchors: opts.anchors,
            org: opts.org,
            cert_lifetime: opts.cert_lifetime,
            admin_credential_hash: opts.admin_credential_hash,
            bundle_cache: api::BundleCache::default(),
            anchors_cache: api::rotation::AnchorsCache::default(),
            scep: match opts.scep_ra {
                Some(ra) => Some(
                    api::scep::ScepService::new(ra, opts.scep_allow_des)
                        .ok_or(ServeError::ScepRa)?,
                ),
                None => None,
            },
        });
        // Rotations before bundles: a bundle may be signed by a key only they add.
        let chain = api::rotation::store_at_start(&state, &opts.rotations_at_start)
            .await
            .map_err(ServeError::Rotation)?;
        let mut published = Vec::new();
        for body in opts.publish_at_start {
            match api::publish(&state, body).await {
                Ok(p) => published.push(p.version),
                // Already published, or older than the published one: nothing to do.
                Err(api::PublishError::AlreadyPublished(_))
                | Err(api::PublishError::Refused {
                    code: "rollback", ..
                }) => {}
                Err(e) => return Err(ServeError::Publish(e.to_string())),
            }
        }
        Ok(Self {
            listener,
            acceptor: tls::Acceptor {
                tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
                client_check,
            },
            state,
            limits: opts.limits,
            published,
            rotations_stored: chain.stored,
            rotations_skipped: chain.skipped,
            audit_retention_days: opts.audit_retention_days,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn backend(&self) -> store::Backend {
        self.state.store.backend()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let store = self.state.store.clone();
        let retention = self.audit_retention_days.map(|days| {
            let store = store.clone();
            // Beside serving, not before it: the first run on a large store takes
            // a while, and a database error must not keep the server from starting.
            tokio::spawn(async move {
                let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
                loop {
                    hourly.tick().await; // the first tick is at once
                    // A failure (the database away) is tried again in an hour; the
                    // records are only kept longer meanwhile.
                    let now = crate::clock::unix_millis(crate::clock::now());
                    let _ = store.prune_audit(days, now).await;
                }
            })
        });
        let router = api::router(self.state);
        http::serve(
            self.listener,
            self.acceptor,
            router,
            self.limits,
            store,
            shutdown,
        )
        .await;
        if let Some(task) = retention {
            task.abort();
        }
    }
}

/// The file a `sqlite:` database URL names, decoded as sqlx decodes it; `None` for
/// an in-memory database or another backend.
pub fn sqlite_path(database_url: &str) -> Option<std::path::PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory =
        url::form_urlencoded::parse(params.as_bytes()).any(|(k, v)| k == "mode" && v == "memory");
    if database.is_empty() || database == ":memory:" || in_memory {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(database)
        .decode_utf8()
        .ok()?;
    Some(std::path::PathBuf::from(decoded.as_ref()))
}

/// Creates the SQLite database file 0600 before SQLite opens it, and narrows an
/// existing one (and its `-wal`/`-shm` files) to 0600. The database holds the
/// inventory and the hashes of tokens; SQLite creates it with the umask's mode
/// (usually 0644) and gives its WAL and shared-memory files the database file's
/// mode, so the database file's mode is the one that matters. An empty file is a
/// valid empty SQLite database.
pub fn secure_sqlite_file(database_url: &str) -> Result<(), ServeError> {
    let Some(path) = sqlite_path(database_url) else {
        return Ok(());
    };
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServeError::DatabaseFile { path, source }
    };
    let mut open = std::fs::OpenOptions::new();
    open.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    open.open(&path).map_err(fail(&path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&path, private.clone()).map_err(fail(&path))?;
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let journal = std::path::PathBuf::from(name);
            match std::fs::set_permissions(&journal, private.clone()) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other.map_err(fail(&journal))?,
            }
        }
    }
    Ok(())
}

/// Reads the admin credential from `path`, or makes one (0600) when the file does not
/// exist. Returns the credential and whether it was just made.
pub fn load_or_create_admin_credential(path: &Path) -> Result<(String, bool), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let credential = text.trim().to_string();
            if secrets::is_well_formed(&credential, secrets::ADMIN_PREFIX) {
                Ok((credential, false))
            } else {
                Err(format!(
                    "{} does not hold a fleetkit admin credential (fka_…); delete it to make a new one",
                    path.display()
                ))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let credential =
                secrets::new_secret(secrets::ADMIN_PREFIX).map_err(|e| e.to_string())?;
            fsutil::write_atomic(
                path,
                format!("{credential}\n").as_bytes(),
                fsutil::SECRET_MODE,
            )
            .map_err(|e| e.to_string())?;
            Ok((credential, true))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The stored form of the admin credential.
pub fn admin_credential_hash(credential: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(credential.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_read_as_sqlx_reads_them() {
        use std::path::PathBuf;
        assert_eq!(
            sqlite_path("sqlite:///srv/ws/server/fleet.db"),
            Some(PathBuf::from("/srv/ws/server/fleet.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://a%3Fb.db?mode=rwc"),
            Some(PathBuf::from("a?b.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:fleet.db"),
            Some(PathBuf::from("fleet.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://?mode=memory"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }
}

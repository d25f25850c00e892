//! The HTTP API of `fleetkit serve`, one module per concern (see `protocol` for the
//! endpoint table):
//!
//! - [`device`]: enroll, renew, check-in: the device's own endpoints;
//! - [`distribution`]: the published bundle (device side) and publishing;
//! - [`admin`]: tokens, inventory, removal, publishing (bearer credential);
//! - [`audit`]: devices send their audit records; admins query and count them;
//! - [`respond`]: refusals with their codes, capped body reading;
//! - [`checks`]: input checks shared by the endpoints;
//! - [`rotation`]: the key rotation chain: stored, served, and the anchors it makes;
//! - [`scep`]: SCEP (RFC 8894) enrollment of profile certificates.
//!
//! Each protocol mounts its own routes here; a new one (SCEP, ACME) is one more
//! module and one more `merge`.

pub mod admin;
pub mod audit;
pub mod checks;
pub mod device;
pub mod distribution;
pub mod respond;
pub mod rotation;
pub mod scep;

pub use distribution::{BundleCache, PublishError, bundle_etag, publish};

use crate::anchors::TrustAnchors;
use crate::pki::IssuingCa;
use crate::server::store::Store;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;
use time::Duration;

/// Everything the handlers share.
pub struct AppState {
    pub store: Store,
    pub ca: IssuingCa,
    /// The anchors the server was started with (the workspace's anchors.json).
    pub anchors: TrustAnchors,
    pub org: String,
    pub cert_lifetime: Duration,
    /// SHA-256 of the admin credential.
    pub admin_credential_hash: [u8; 32],
    pub bundle_cache: BundleCache,
    /// `anchors` with the stored rotation chain applied (see [`rotation`]).
    pub anchors_cache: rotation::AnchorsCache,
    /// The SCEP service (`None`: `/scep` answers that it is not enabled).
    pub scep: Option<scep::ScepService>,
}

/// The router of every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(device::routes())
        .merge(audit::routes())
        .merge(admin::routes())
        .merge(rotation::routes())
        .merge(scep::routes())
        .route("/v1/health", get(respond::health))
        .fallback(respond::not_found)
        .with_state(state)
}

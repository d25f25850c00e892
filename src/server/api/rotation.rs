//! Key rotation on the server (DESIGN.md rule 10): the rotation chain is stored,
//! served to devices, and decides which anchors the server itself trusts.
//!
//! - `PUT /v1/admin/rotations` (admin): one rotation envelope. It is stored only if
//!   it extends the server's current anchors (the next version, accepted by
//!   [`crate::anchors::accept_rotation`] with the same rules as a device); a repeat
//!   of a stored one is `409 already_published`, anything else `422
//!   rotation_refused`.
//! - `GET /v1/rotations?after=N` (device): the stored envelopes above version `N`,
//!   oldest first, as a JSON array of the exact stored documents. Devices check
//!   every step themselves; the server is not trusted for it.
//!
//! The server's *current anchors* are the anchors it was started with (the
//! workspace's `anchors.json`) with every stored rotation of a higher version
//! applied in order, each re-verified; a step that does not verify stops the walk
//! there. They are re-read from the database at most once a second per instance
//! ([`AnchorsCache`]), so several instances on one PostgreSQL, and a running
//! instance, all pick a rotation up at once without a restart; publishing a bundle
//! verifies it against them (freshly read).
//!
//! At start `fleetkit serve` stores the workspace's `rotations/anchors-v*.json` that
//! the database lacks ([`store_at_start`]): steps above its anchors through the same
//! check as the PUT, and the history below (which leads *to* its anchors) after
//! checking that it links up to them, so that devices installed with older anchors
//! can walk the chain from their version.

use super::AppState;
use super::respond::{Answer, Refusal, internal, read_body, refuse, reply};
use crate::anchors::{self, MAX_ANCHORS_BYTES, TrustAnchors};
use crate::clock;
use crate::protocol::{ErrorCode, RotationPublished};
use crate::server::http::Peer;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Router};
use serde::Deserialize;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// How long an instance trusts its idea of the current anchors before asking the
/// database again (another instance may have stored a rotation).
const ANCHORS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The rotation endpoints' routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/admin/rotations", put(publish_rotation))
        .route("/v1/rotations", get(rotations))
}

/// The server's current anchors, kept in memory.
#[derive(Default)]
pub struct AnchorsCache {
    inner: RwLock<Option<(Instant, Arc<CurrentAnchors>)>>,
}

/// What the stored rotation chain makes of the server's start anchors.
#[derive(Debug)]
pub struct CurrentAnchors {
    /// The anchors in force: the start anchors plus every stored step that verifies.
    pub anchors: TrustAnchors,
    /// The highest version of the chain served to devices (what check-ins announce).
    pub chain_version: u64,
    /// The versions of the stored steps above the start anchors, as read.
    stored: Vec<i64>,
    /// The first stored step that did not verify, and why.
    pub refused: Option<(u64, String)>,
}

/// The server's current anchors (see the module comment); `fresh` skips the cache
/// (publishing must see a rotation stored a moment ago by another instance).
pub async fn current_anchors(state: &AppState, fresh: bool) -> Answer<Arc<CurrentAnchors>> {
    let cached = state
        .anchors_cache
        .inner
        .read()
        .ok()
        .and_then(|g| g.clone());
    if !fresh
        && let Some((checked, current)) = &cached
        && checked.elapsed() < ANCHORS_CACHE_TTL
    {
        return Ok(current.clone());
    }
    let base = &state.anchors;
    let rows = state
        .store
        .rotations_after(base.version.min(i64::MAX as u64) as i64)
        .await
        .map_err(internal)?;
    let versions: Vec<i64> = rows.iter().map(|(v, _)| *v).collect();
    let current = match cached {
        // Same rows, all applied: rows never change, so neither does the result.
        Some((_, c)) if c.stored == versions && c.refused.is_none() => c,
        _ => Arc::new(apply_chain(base, rows, clock::now())),
    };
    if let Ok(mut guard) = state.anchors_cache.inner.write() {
        *guard = Some((Instant::now(), current.clone()));
    }
    Ok(current)
}

/// `base` with the stored steps `rows` (ascending versions above it) applied.
fn apply_chain(
    base: &TrustAnchors,
    rows: Vec<(i64, Vec<u8>)>,
    now: time::OffsetDateTime,
) -> CurrentAnchors {
    let stored: Vec<i64> = rows.iter().map(|(v, _)| *v).collect();
    let chain_version = stored
        .last()
        .map_or(base.version, |v| (*v).max(0) as u64)
        .max(base.version);
    let mut anchors = base.clone();
    let mut refused = None;
    for (version, envelope) in rows {
        match anchors::accept_rotation(&anchors, &envelope, now) {
            Ok(next) if next.version as i64 == version => anchors = next,
            Ok(next) => {
                refused = Some((
                    version.max(0) as u64,
                    format!(
                        "the rotation stored as v{version} holds anchors v{}",
                        next.version
                    ),
                ));
                break;
            }
            Err(e) => {
                refused = Some((version.max(0) as u64, e.to_string()));
                break;
            }
        }
    }
    CurrentAnchors {
        anchors,
        chain_version,
        stored,
        refused,
    }
}

/// Why a rotation was not stored.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{0}")]
    Refused(String),
    #[error("rotation v{0} is already published")]
    AlreadyPublished(u64),
    #[error("the server failed: {0}")]
    Internal(String),
}

impl RotationError {
    fn into_refusal(self) -> Refusal {
        match self {
            Self::Refused(m) => refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::RotationRefused,
                format!("the rotation was refused: {m}"),
            ),
            Self::AlreadyPublished(v) => refuse(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyPublished,
                format!("rotation v{v} is already published"),
            ),
            Self::Internal(m) => internal(m),
        }
    }
}

/// Stores `envelope` if it extends the server's current anchors; returns the
/// anchors version it leads to.
pub async fn publish(state: &AppState, envelope: &[u8]) -> Result<u64, RotationError> {
    let current = current_anchors(state, true)
        .await
        .map_err(|r| RotationError::Internal(r.message))?;
    let (_, version) =
        anchors::claimed_version(envelope).map_err(|e| RotationError::Refused(e.to_string()))?;
    if version > current.anchors.version {
        let next =
            anchors::accept_rotation(&current.anchors, envelope, clock::now()).map_err(|e| {
                RotationError::Refused(format!(
                    "it does not extend the server's anchors v{}: {e}",
                    current.anchors.version
                ))
            })?;
        store(state, next.version, envelope).await?;
        return Ok(next.version);
    }
    // At or below the anchors in force: only a repeat of a stored step.
    match stored(state, version).await? {
        Some(body) if body == envelope => Err(RotationError::AlreadyPublished(version)),
        Some(_) => Err(RotationError::Refused(format!(
            "the server holds another rotation v{version}; a chain has one step per version"
        ))),
        None => Err(RotationError::Refused(format!(
            "anchors v{version} is not above the server's anchors v{}; older steps are stored from the workspace's rotations/ when `fleetkit serve` starts",
            current.anchors.version
        ))),
    }
}

async fn stored(state: &AppState, version: u64) -> Result<Option<Vec<u8>>, RotationError> {
    state
        .store
        .rotation(version.min(i64::MAX as u64) as i64)
        .await
        .map_err(|e| RotationError::Internal(e.to_string()))
}

/// Inserts a checked step; a step already there under the same version is a
/// repeat (same bytes) or a conflicting one.
async fn store(state: &AppState, version: u64, envelope: &[u8]) -> Result<(), RotationError> {
    let inserted = state
        .store
        .insert_rotation(
            version.min(i64::MAX as u64) as i64,
            envelope,
            clock::now().unix_timestamp(),
        )
        .await
        .map_err(|e| RotationError::Internal(e.to_string()))?;
    if !inserted {
        return match stored(state, version).await? {
            Some(body) if body == envelope => Err(RotationError::AlreadyPublished(version)),
            _ => Err(RotationError::Refused(format!(
                "the server holds another rotation v{version}; a chain has one step per version"
            ))),
        };
    }
    // Everyone on this instance sees the new anchors at once.
    if let Ok(mut guard) = state.anchors_cache.inner.write() {
        *guard = None;
    }
    Ok(())
}

/// Stores the workspace's chain at start (oldest first, each with a label naming
/// its file for messages); returns the versions stored.
pub async fn store_at_start(
    state: &AppState,
    chain: &[(String, Vec<u8>)],
) -> Result<Vec<u64>, String> {
    let now = clock::now();
    let base = &state.anchors;
    let mut done = Vec::new();
    // The history below the start anchors cannot be checked from them (it leads to
    // them); check that consecutive steps link up and that the last one is them.
    let mut previous: Option<(u64, TrustAnchors)> = None;
    for (label, envelope) in chain {
        let (org, version) =
            anchors::claimed_version(envelope).map_err(|e| format!("{label}: {e}"))?;
        if org != state.org {
            return Err(format!(
                "{label}: the rotation is for org {org}, the server for {}",
                state.org
            ));
        }
        if version > base.version {
            match publish(state, envelope).await {
                Ok(v) => done.push(v),
                Err(RotationError::AlreadyPublished(_)) => {}
                Err(e) => return Err(format!("{label}: {e}")),
            }
            continue;
        }
        let doc = payload_anchors(envelope).map_err(|e| format!("{label}: {e}"))?;
        if let Some((pv, pdoc)) = &previous
            && *pv + 1 == version
        {
            anchors::accept_rotation(pdoc, envelope, now)
                .map_err(|e| format!("{label}: does not follow anchors v{pv}: {e}"))?;
        }
        if version == base.version && &doc != base {
            return Err(format!(
                "{label}: holds other anchors v{version} than the workspace's anchors.json"
            ));
        }
        previous = Some((version, doc));
        match store(state, version, envelope).await {
            Ok(()) => done.push(version),
            Err(RotationError::AlreadyPublished(_)) => {}
            Err(e) => return Err(format!("{label}: {e}")),
        }
    }
    Ok(done)
}

/// The anchors document inside a rotation envelope, not verified.
fn payload_anchors(envelope: &[u8]) -> Result<TrustAnchors, anchors::AnchorsError> {
    let decoded = crate::bundle::dsse::Envelope::from_json(envelope)?.decode()?;
    serde_json::from_slice(&decoded.payload)
        .map_err(|e| anchors::AnchorsError::MalformedPayload(e.to_string()))
}

/// `PUT /v1/admin/rotations`.
pub async fn publish_rotation(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refusal) = super::admin::check_admin(&state, &headers) {
        return refusal.into_response();
    }
    let body = match read_body(body, MAX_ANCHORS_BYTES).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    match publish(&state, &body).await {
        Ok(version) => reply(
            StatusCode::CREATED,
            Ok(RotationPublished {
                anchors_version: version,
            }),
        ),
        Err(e) => e.into_refusal().into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationsQuery {
    #[serde(default)]
    after: u64,
}

/// `GET /v1/rotations?after=N`.
pub async fn rotations(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<Arc<Peer>>>,
    query: Result<Query<RotationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result: Answer<Vec<u8>> = async {
        super::device::authenticate(&state, peer.as_deref().map(|p| &**p)).await?;
        let Ok(Query(query)) = query else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "the query parameter is `after`, an anchors version",
            ));
        };
        let rows = state
            .store
            .rotations_after(query.after.min(i64::MAX as u64) as i64)
            .await
            .map_err(internal)?;
        // The exact stored documents, as raw JSON values of one array.
        let mut chain = Vec::with_capacity(rows.len());
        for (version, envelope) in rows {
            let text = String::from_utf8(envelope)
                .map_err(|_| internal(format!("stored rotation v{version} is not UTF-8")))?;
            chain.push(
                serde_json::value::RawValue::from_string(text)
                    .map_err(|e| internal(format!("stored rotation v{version}: {e}")))?,
            );
        }
        serde_json::to_vec(&chain).map_err(internal)
    }
    .await;
    match result {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

//! Policy distribution: the newest published bundle, cached for a second per
//! instance (another instance may publish), served to devices with an ETag, and
//! publishing, which verifies a bundle against the server's anchors first.

use super::AppState;
use super::respond::{Answer, Refusal, internal, refuse};
use crate::bundle::{self, Verified, VerifyOptions};
use crate::clock::{self, rfc3339};
use crate::protocol::{ErrorCode, Published};
use crate::server::http::Peer;
use crate::server::store::BundleRow;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// How long a server instance trusts its cached idea of the newest bundle before
/// asking the database again (another instance may have published).
const BUNDLE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The newest bundle, kept in memory.
#[derive(Default)]
pub struct BundleCache {
    inner: RwLock<Option<(Instant, Option<Arc<CurrentBundle>>)>>,
}

pub struct CurrentBundle {
    pub version: i64,
    pub etag: String,
    pub body: Bytes,
}

pub async fn current_bundle(state: &AppState) -> Answer<Option<Arc<CurrentBundle>>> {
    if let Ok(guard) = state.bundle_cache.inner.read()
        && let Some((checked, current)) = guard.as_ref()
        && checked.elapsed() < BUNDLE_CACHE_TTL
    {
        return Ok(current.clone());
    }
    let tag = state.store.current_bundle_tag().await.map_err(internal)?;
    let cached = state
        .bundle_cache
        .inner
        .read()
        .ok()
        .and_then(|g| g.as_ref().and_then(|(_, c)| c.clone()));
    let current = match tag {
        None => None,
        Some((version, _)) if cached.as_ref().is_some_and(|c| c.version == version) => cached,
        Some((version, _)) => {
            let row = state.store.bundle(version).await.map_err(internal)?;
            row.map(|r| {
                Arc::new(CurrentBundle {
                    version: r.version,
                    etag: r.etag,
                    body: Bytes::from(r.body),
                })
            })
        }
    };
    if let Ok(mut guard) = state.bundle_cache.inner.write() {
        *guard = Some((Instant::now(), current.clone()));
    }
    Ok(current)
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// `GET /v1/bundle`.
pub async fn bundle(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<Arc<Peer>>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = super::device::authenticate(&state, peer.as_deref().map(|p| &**p)).await {
        return refusal.into_response();
    }
    let current = match current_bundle(&state).await {
        Ok(Some(current)) => current,
        Ok(None) => {
            return refuse(
                StatusCode::NOT_FOUND,
                ErrorCode::NoBundle,
                "no policy bundle has been published yet; publish one with `fleetkit policy publish`",
            )
            .into_response();
        }
        Err(refusal) => return refusal.into_response(),
    };
    let etag = HeaderValue::from_str(&current.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let cache = HeaderValue::from_static("no-cache");
    if etag_matches(&headers, &current.etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        current.body.clone(),
    )
        .into_response()
}

/// The ETag of a bundle's bytes.
pub fn bundle_etag(version: u64, body: &[u8]) -> String {
    format!(
        "\"v{version}-{}\"",
        &hex::encode(Sha256::digest(body))[..16]
    )
}

/// Why a bundle was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the bundle was refused ({code}): {message}")]
    Refused { code: &'static str, message: String },
    #[error("bundle v{0} is already published")]
    AlreadyPublished(u64),
    #[error("the server failed: {0}")]
    Internal(String),
}

impl PublishError {
    pub fn into_refusal(self) -> Refusal {
        match self {
            Self::Refused { code, message } => refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::BundleRefused,
                format!("the bundle was refused ({code}): {message}"),
            ),
            Self::AlreadyPublished(v) => refuse(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyPublished,
                format!("bundle v{v} is already the published one"),
            ),
            Self::Internal(m) => internal(m),
        }
    }
}

/// Verifies a bundle against the server's current anchors (its start anchors with
/// the stored rotation chain applied) and publishes it as the newest.
pub async fn publish(state: &AppState, body: Vec<u8>) -> Result<Published, PublishError> {
    let now = clock::now();
    let current = state
        .store
        .current_bundle_tag()
        .await
        .map_err(|e| PublishError::Internal(e.to_string()))?
        .map(|(v, _)| v.max(0) as u64);
    // The anchors as the stored rotation chain makes them, read afresh: a rotation
    // published a moment ago (maybe through another instance) counts.
    let anchors = super::rotation::current_anchors(state, true)
        .await
        .map_err(|r| PublishError::Internal(r.message))?;
    let verified = bundle::verify_bundle(
        &body,
        &anchors.anchors,
        &VerifyOptions {
            now,
            expected_org: Some(&state.org),
            stored_version: current,
        },
    )
    .map_err(|e| PublishError::Refused {
        code: e.code(),
        message: e.to_string(),
    })?;
    let payload = match verified {
        Verified::Accepted { payload, .. } => payload,
        Verified::AlreadyCurrent { version } => {
            return Err(PublishError::AlreadyPublished(version));
        }
    };
    // The shared bound (verify_bundle applies it too): refused, never clamped.
    bundle::check_version(payload.version).map_err(|e| PublishError::Refused {
        code: e.code(),
        message: e.to_string(),
    })?;
    let etag = bundle_etag(payload.version, &body);
    let row = BundleRow {
        version: payload.version as i64,
        etag: etag.clone(),
        body,
        expires_at: payload.expires_at.unix_timestamp(),
        published_at: now.unix_timestamp(),
    };
    state
        .store
        .publish_bundle(&row)
        .await
        .map_err(|e| match e {
            crate::server::store::StoreError::DuplicateBundle(v) => {
                PublishError::AlreadyPublished(v)
            }
            other => PublishError::Internal(other.to_string()),
        })?;
    if let Ok(mut guard) = state.bundle_cache.inner.write() {
        *guard = Some((
            Instant::now(),
            Some(Arc::new(CurrentBundle {
                version: row.version,
                etag: row.etag,
                body: Bytes::from(row.body),
            })),
        ));
    }
    Ok(Published {
        version: payload.version,
        etag,
        expires_at: rfc3339(payload.expires_at),
    })
}

//! Key rotation on the server (DESIGN.md rule 10): the rotation chain is stored,
//! served to devices, and decides which anchors the server itself trusts.
//!
//! - `PUT /v1/admin/rotations` (admin): one rotation envelope. It is stored only if
//!   it extends the server's current anchors (the next version, accepted by
//!   [`crate::anchors::accept_rotation`] with the same rules as a device, and signed
//!   by a threshold of the current keys valid now); a repeat
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
//! the database lacks ([`store_at_start`]): the history up to its anchors (which
//! leads *to* them) only when it is whole, v2 up to them, each step linking to the
//! next (a gap refuses the start, storing nothing), so that devices installed with
//! older anchors can walk the chain from their version. A step *above* its anchors
//! is never stored at start, only reported: `keys rotate` writes anchors.json right
//! after the step, so such a file was left by an interrupted rotation (or put there
//! by hand), and a stored step is permanent; `keys rotate` finishes it, then
//! `policy publish` sends it.
//!
//! A `PUT` must also be signed by a threshold of the current keys valid *now*
//! ([`crate::anchors::check_signed_now`]): the step-time rule lets devices walk old
//! history, and a new step never needs to be dated in the past.

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

/// Stores `envelope`, a new step handed to the server (`PUT`), if it extends the
/// server's current anchors and a threshold of their keys valid *now* signed it;
/// returns the anchors version it leads to. A step made today has no reason to be
/// dated in the past: the step-time rule exists for devices walking old history,
/// and without the rule on *now* a leaked key that retired could still have a
/// backdated step stored.
pub async fn publish(state: &AppState, envelope: &[u8]) -> Result<u64, RotationError> {
    let current = current_anchors(state, true)
        .await
        .map_err(|r| RotationError::Internal(r.message))?;
    let (_, version) =
        anchors::claimed_version(envelope).map_err(|e| RotationError::Refused(e.to_string()))?;
    if version > current.anchors.version {
        let now = clock::now();
        let refused = |e: anchors::AnchorsError| {
            RotationError::Refused(format!(
                "it does not extend the server's anchors v{}: {e}",
                current.anchors.version
            ))
        };
        let next = anchors::accept_rotation(&current.anchors, envelope, now).map_err(refused)?;
        anchors::check_signed_now(&current.anchors, envelope, now).map_err(refused)?;
        store(state, next.version, envelope).await?;
        return Ok(next.version);
    }
    // At or below the anchors in force: only a repeat of a stored step.
    Err(already_stored(state, version, envelope)
        .await?
        .unwrap_or_else(|| {
            RotationError::Refused(format!(
                "anchors v{version} is not above the server's anchors v{}; older steps are stored from the workspace's rotations/ when `fleetkit serve` starts",
                current.anchors.version
            ))
        }))
}

/// What the step stored under `version` makes of `envelope`: a repeat (the same
/// bytes), a conflict (another step: a chain has one per version), or nothing
/// stored there (`None`).
async fn already_stored(
    state: &AppState,
    version: u64,
    envelope: &[u8],
) -> Result<Option<RotationError>, RotationError> {
    let stored = state
        .store
        .rotation(version.min(i64::MAX as u64) as i64)
        .await
        .map_err(|e| RotationError::Internal(e.to_string()))?;
    Ok(stored.map(|body| {
        if body == envelope {
            RotationError::AlreadyPublished(version)
        } else {
            RotationError::Refused(format!(
                "the server holds another rotation v{version}; a chain has one step per version"
            ))
        }
    }))
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
        // Lost a race with another instance storing this version.
        return Err(already_stored(state, version, envelope)
            .await?
            .unwrap_or_else(|| {
                RotationError::Refused(format!(
                    "the server holds another rotation v{version}; a chain has one step per version"
                ))
            }));
    }
    // Everyone on this instance sees the new anchors at once.
    if let Ok(mut guard) = state.anchors_cache.inner.write() {
        *guard = None;
    }
    Ok(())
}

/// Why the workspace's rotation chain could not be stored at start.
#[derive(Debug, thiserror::Error)]
pub enum StartChainError {
    #[error(
        "{missing} is missing: the rotation files below the workspace's anchors.json (v{start}) must run without a gap from anchors-v2.json to anchors-v{start}.json, because a step stored without its predecessor is never checked and can never be replaced; restore the file (from a backup or the workspace copy it was made in), or move every anchors-v<N>.json up to v{start} out of rotations/ to serve without the history"
    )]
    Gap {
        /// The path of the missing file.
        missing: String,
        /// The start anchors' version.
        start: u64,
    },
    #[error("{0}")]
    Step(String),
}

/// What [`store_at_start`] did with the workspace's chain.
#[derive(Debug, Default)]
pub struct StartChain {
    /// Anchors versions whose step was stored now.
    pub stored: Vec<u64>,
    /// Steps above the start anchors, left alone: each file's label and the version
    /// its payload claims.
    pub skipped: Vec<(String, u64)>,
}

/// Stores the workspace's chain at start (oldest first, each with a label naming
/// its file for messages).
///
/// The history below the start anchors cannot be checked from them (it leads *to*
/// them), and a stored step is permanent. So it is stored only when it is whole:
/// v2 up to the start version without a gap, each step accepted from the one
/// before, the last one exactly the workspace's anchors.json; otherwise nothing is
/// stored. No history at all is fine (devices can follow only from the start
/// anchors then). Steps above the start anchors are never stored here, only
/// returned in [`StartChain::skipped`]: the workspace's anchors.json does not
/// follow them, so they come from an interrupted `keys rotate` (which finishes
/// them) or from someone's hand; `policy publish` sends them once anchors.json does.
pub async fn store_at_start(
    state: &AppState,
    chain: &[(String, Vec<u8>)],
) -> Result<StartChain, StartChainError> {
    let step = StartChainError::Step;
    let now = clock::now();
    let base = &state.anchors;
    let mut history: Vec<(&str, u64, &[u8])> = Vec::new();
    let mut skipped = Vec::new();
    for (label, envelope) in chain {
        let (org, version) =
            anchors::claimed_version(envelope).map_err(|e| step(format!("{label}: {e}")))?;
        if org != state.org {
            return Err(step(format!(
                "{label}: the rotation is for org {org}, the server for {}",
                state.org
            )));
        }
        if version > base.version {
            skipped.push((label.clone(), version));
        } else {
            history.push((label, version, envelope));
        }
    }

    // Check the whole history before storing any of it.
    let mut previous: Option<TrustAnchors> = None;
    let mut expected = 2u64;
    for (label, version, envelope) in &history {
        if *version < expected {
            return Err(step(format!(
                "{label}: holds anchors v{version}, but the chain below anchors.json runs v2, v3, … without repeats and this version is {}; remove the file",
                if *version < 2 {
                    "never the result of a rotation"
                } else {
                    "already given by another file"
                }
            )));
        }
        if *version > expected {
            return Err(missing(label, expected, base.version));
        }
        let doc =
            anchors::unverified_anchors(envelope).map_err(|e| step(format!("{label}: {e}")))?;
        if let Some(pdoc) = &previous {
            anchors::accept_rotation(pdoc, envelope, now).map_err(|e| {
                step(format!(
                    "{label}: does not follow anchors v{}: {e}",
                    pdoc.version
                ))
            })?;
        }
        previous = Some(doc);
        expected += 1;
    }
    if let Some((label, _, _)) = history.last() {
        if expected <= base.version {
            return Err(missing(label, expected, base.version));
        }
        if previous.as_ref() != Some(base) {
            return Err(step(format!(
                "{label}: holds other anchors v{} than the workspace's anchors.json",
                base.version
            )));
        }
    }

    let mut done = Vec::new();
    for (label, version, envelope) in history {
        match store(state, version, envelope).await {
            Ok(()) => done.push(version),
            Err(RotationError::AlreadyPublished(_)) => {}
            Err(e) => return Err(step(format!("{label}: {e}"))),
        }
    }
    Ok(StartChain {
        stored: done,
        skipped,
    })
}

/// The gap error for version `missing`, named as a file beside `label`'s.
fn missing(label: &str, missing: u64, start: u64) -> StartChainError {
    let name = format!("anchors-v{missing}.json");
    let path = std::path::Path::new(label)
        .parent()
        .map_or_else(|| name.clone(), |dir| dir.join(&name).display().to_string());
    StartChainError::Gap {
        missing: path,
        start,
    }
}

/// `PUT /v1/admin/rotations`.
pub async fn publish_rotation(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result: Answer<RotationPublished> = async {
        super::admin::check_admin(&state, &headers)?;
        let body = read_body(body, MAX_ANCHORS_BYTES).await?;
        let version = publish(&state, &body)
            .await
            .map_err(RotationError::into_refusal)?;
        Ok(RotationPublished {
            anchors_version: version,
        })
    }
    .await;
    reply(StatusCode::CREATED, result)
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

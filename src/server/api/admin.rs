//! The admin endpoints (bearer credential): enrollment tokens, the inventory,
//! device removal and publishing.

use super::AppState;
use super::checks::check_text;
use super::distribution::{PublishError, publish};
use super::respond::{Answer, internal, read_body, read_json, refuse, reply};
use crate::bundle::MAX_BUNDLE_BYTES;
use crate::clock;
use crate::protocol::*;
use crate::server::secrets::{self, ADMIN_PREFIX, TOKEN_PREFIX};
use crate::server::store::{DeviceFilter, TokenRow, rfc3339_of};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The admin endpoints' routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/admin/tokens", post(create_token).get(list_tokens))
        .route("/v1/admin/tokens/{id}/revoke", post(revoke_token))
        .route("/v1/admin/devices", get(list_devices))
        .route("/v1/admin/devices/{id}", delete(remove_device))
        .route("/v1/admin/bundle", put(publish_bundle))
}

/// The credential of an `Authorization: Bearer <credential>` header. The scheme is
/// case-insensitive (RFC 9110) and must be followed by whitespace:
/// `Bearer<credential>` is not a bearer credential.
fn bearer_credential(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case(ADMIN_AUTH_SCHEME)
        .then(|| rest.trim())
}

pub(super) fn check_admin(state: &AppState, headers: &HeaderMap) -> Answer<()> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credential)
        .filter(|v| secrets::is_well_formed(v, ADMIN_PREFIX));
    let ok = presented.is_some_and(|v| {
        secrets::digests_equal(&Sha256::digest(v.as_bytes()), &state.admin_credential_hash)
    });
    if ok {
        Ok(())
    } else {
        let mut refusal = refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::AdminCredentialRequired,
            "admin endpoints need `Authorization: Bearer <admin credential>` (the workspace's keys/admin-credential)",
        );
        refusal.challenge = true;
        Err(refusal)
    }
}

fn token_info(row: TokenRow) -> TokenInfo {
    let at = rfc3339_of;
    TokenInfo {
        id: row.id,
        team: row.team,
        max_uses: row.max_uses.clamp(0, u32::MAX as i64) as u32,
        uses: row.uses.clamp(0, u32::MAX as i64) as u32,
        created_at: at(row.created_at),
        expires_at: at(row.expires_at),
        revoked_at: row.revoked_at.map(at),
        note: row.note,
        replace_existing: row.replace_existing,
        kind: row.kind,
    }
}

/// Longest token lifetime accepted: a year.
const MAX_TOKEN_LIFETIME_SECS: u64 = 366 * 24 * 3600;

/// `POST /v1/admin/tokens`.
async fn create_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result: Answer<TokenCreated> = async {
        check_admin(&state, &headers)?;
        let request: TokenCreate = read_json(body).await?;
        let bad = |m: String| refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m);
        check_text("team", &request.team, true).map_err(bad)?;
        if request.replace_existing && request.kind == TokenKind::Scep {
            return Err(bad(
                "`replace_existing` applies to agent tokens; a SCEP challenge replaces nothing"
                    .into(),
            ));
        }
        if request.max_uses == 0 {
            return Err(bad("`max_uses` must be at least 1".into()));
        }
        if request.expires_in_secs == 0 || request.expires_in_secs > MAX_TOKEN_LIFETIME_SECS {
            return Err(bad(format!(
                "`expires_in_secs` must be between 1 and {MAX_TOKEN_LIFETIME_SECS} (a year)"
            )));
        }
        if let Some(note) = &request.note {
            check_text("note", note, false).map_err(bad)?;
        }
        let now = clock::now().unix_timestamp();
        let secret = secrets::new_secret(TOKEN_PREFIX).map_err(internal)?;
        let row = TokenRow {
            id: secrets::new_id("tok").map_err(internal)?,
            team: request.team,
            max_uses: i64::from(request.max_uses),
            uses: 0,
            created_at: now,
            expires_at: now + request.expires_in_secs as i64,
            revoked_at: None,
            note: request.note,
            replace_existing: request.replace_existing,
            kind: request.kind,
        };
        state
            .store
            .insert_token(&row, &secrets::hash_secret(&secret))
            .await
            .map_err(internal)?;
        Ok(TokenCreated {
            token: secret,
            info: token_info(row),
        })
    }
    .await;
    reply(StatusCode::CREATED, result)
}

/// `GET /v1/admin/tokens`.
async fn list_tokens(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let result: Answer<Vec<TokenInfo>> = async {
        check_admin(&state, &headers)?;
        let rows = state.store.list_tokens().await.map_err(internal)?;
        Ok(rows.into_iter().map(token_info).collect())
    }
    .await;
    reply(StatusCode::OK, result)
}

/// `POST /v1/admin/tokens/{id}/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeQuery {
    /// Also revoke the SCEP certificates the challenge admitted (a leaked challenge;
    /// a routine rotation leaves them renewing).
    #[serde(default)]
    certificates: bool,
}

async fn revoke_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<RevokeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result: Answer<TokenInfo> = async {
        check_admin(&state, &headers)?;
        let Ok(Query(query)) = query else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "the only query parameter is `certificates` (true or false)",
            ));
        };
        if query.certificates {
            // First: a retry after a failure in between finds the token revoked
            // and does this again (it is idempotent).
            state
                .store
                .scep_revoke_token(&id, clock::now().unix_timestamp())
                .await
                .map_err(internal)?;
        }
        let row = state
            .store
            .revoke_token(&id, clock::now().unix_timestamp())
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                refuse(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NoSuchToken,
                    format!("there is no token with id {id:?}; `fleetkit token list` shows them"),
                )
            })?;
        Ok(token_info(row))
    }
    .await;
    reply(StatusCode::OK, result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    team: Option<String>,
    stale_secs: Option<u64>,
}

/// `GET /v1/admin/devices`.
async fn list_devices(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<DeviceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result: Answer<Vec<DeviceRecord>> = async {
        check_admin(&state, &headers)?;
        let Ok(Query(query)) = query else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "query parameters are `team` and `stale_secs` (a number of seconds)",
            ));
        };
        let now = clock::now().unix_timestamp();
        let filter = DeviceFilter {
            team: query.team,
            not_seen_since: query
                .stale_secs
                .map(|s| now.saturating_sub(s.min(i64::MAX as u64) as i64)),
        };
        let rows = state.store.list_devices(&filter).await.map_err(internal)?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let serial = row.serial.clone();
            let team = row.team.clone();
            let mut record = DeviceRecord::from(row);
            // The profile certificate of the same Mac: same team (a challenge of
            // another team cannot claim this device), subject naming its serial.
            if let Some(serial) = serial.filter(|s| !s.is_empty()) {
                record.profile_certificate = state
                    .store
                    .scep_for_device(&team, &serial)
                    .await
                    .map_err(internal)?
                    .map(|c| ProfileCertificate {
                        serial: c.serial,
                        subject: c.subject,
                        fingerprint: c.fingerprint,
                        not_after: rfc3339_of(c.not_after),
                        issued_at: rfc3339_of(c.issued_at),
                    });
            }
            records.push(record);
        }
        Ok(records)
    }
    .await;
    reply(StatusCode::OK, result)
}

/// `DELETE /v1/admin/devices/{id}`: the device leaves the inventory and its
/// certificates stop authenticating it (a lost or retired machine). It can come
/// back only by enrolling again with a token.
async fn remove_device(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result: Answer<DeviceRecord> = async {
        check_admin(&state, &headers)?;
        // The device's profile certificates first: if the removal then fails, a
        // retry finds the device and does both again (revoking is idempotent).
        let listed = state.store.device_by_id(&id).await.map_err(internal)?;
        if let Some(d) = &listed
            && let Some(serial) = d.serial.as_deref().filter(|s| !s.is_empty())
        {
            state
                .store
                .scep_revoke_device(&d.team, serial, clock::now().unix_timestamp())
                .await
                .map_err(internal)?;
        }
        let row = state
            .store
            .remove_device(&id)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                refuse(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NoSuchDevice,
                    format!(
                        "there is no device with id {id:?}; `fleetkit devices list` shows them"
                    ),
                )
            })?;
        Ok(DeviceRecord::from(row))
    }
    .await;
    reply(StatusCode::OK, result)
}

/// `PUT /v1/admin/bundle`.
async fn publish_bundle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result: Answer<Published> = async {
        check_admin(&state, &headers)?;
        let body = read_body(body, MAX_BUNDLE_BYTES).await?;
        publish(&state, body.to_vec())
            .await
            .map_err(PublishError::into_refusal)
    }
    .await;
    reply(StatusCode::CREATED, result)
}

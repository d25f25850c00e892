//! The endpoint handlers (see `protocol` for the table). Every request body is read
//! with a size cap and parsed strictly; every refusal is an `ApiError` with its own
//! code; nothing is written unless the whole request is acceptable.

use super::http::Peer;
use super::secrets::{self, ADMIN_PREFIX, TOKEN_PREFIX};
use super::store::{
    BundleRow, DeviceFilter, DeviceRow, EnrollRefusal, NewEnrollment, Store, TokenRefusal, TokenRow,
};
use crate::anchors::TrustAnchors;
use crate::bundle::{self, MAX_BUNDLE_BYTES, Verified, VerifyOptions};
use crate::clock::{self, rfc3339};
use crate::pki::{self, IssuedCertificate, IssuingCa, MachineTemplate};
use crate::protocol::*;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use time::{Duration, OffsetDateTime};

/// How long a server instance trusts its cached idea of the newest bundle before
/// asking the database again (another instance may have published).
const BUNDLE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest string accepted in any device fact.
const MAX_FACT_CHARS: usize = 256;

/// Everything the handlers share.
pub struct AppState {
    pub store: Store,
    pub ca: IssuingCa,
    pub anchors: TrustAnchors,
    pub org: String,
    pub cert_lifetime: Duration,
    /// SHA-256 of the admin credential.
    pub admin_credential_hash: [u8; 32],
    pub bundle_cache: BundleCache,
}

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

// ----- responses ----------------------------------------------------------------------

/// A refusal: status, stable code, sentence.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    code: String,
    message: String,
    /// Ask for a bearer credential (401 of the admin API).
    challenge: bool,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ApiError {
                code: self.code,
                message: self.message,
            }),
        )
            .into_response();
        if self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fleetkit admin\""),
            );
        }
        response
    }
}

pub fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code: code.into(),
        message: message.into(),
        challenge: false,
    }
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("the server failed: {e}"),
    )
}

type Answer<T> = Result<T, Refusal>;

async fn read_body(body: Body, max: usize) -> Answer<Bytes> {
    axum::body::to_bytes(body, max).await.map_err(|_| {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than {max} bytes (or was cut short)"),
        )
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Answer<T> {
    let bytes = read_body(body, MAX_REQUEST_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

// ----- input checks -------------------------------------------------------------------

fn check_text(field: &str, value: &str, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    if value.chars().count() > MAX_FACT_CHARS {
        return Err(format!(
            "`{field}` is longer than {MAX_FACT_CHARS} characters"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("`{field}` contains control characters"));
    }
    Ok(())
}

/// Machine ids name certificates and rows: a short, plain alphabet.
pub fn is_valid_machine_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_facts(f: &DeviceFacts) -> Answer<()> {
    let bad = |m: String| refuse(StatusCode::BAD_REQUEST, "bad_facts", m);
    if !is_valid_machine_id(&f.machine_id) {
        return Err(bad(
            "`machine_id` must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
                .into(),
        ));
    }
    for (field, value) in [
        ("hostname", &f.hostname),
        ("platform", &f.platform),
        ("os_name", &f.os_name),
        ("os_version", &f.os_version),
        ("arch", &f.arch),
        ("user", &f.user),
        ("agent_version", &f.agent_version),
    ] {
        check_text(field, value, matches!(field, "hostname" | "platform")).map_err(bad)?;
    }
    for (field, value) in [
        ("serial", &f.serial),
        ("team", &f.team),
        ("department", &f.department),
        ("environment", &f.environment),
        ("compliance_zone", &f.compliance_zone),
    ] {
        if let Some(v) = value {
            check_text(field, v, false).map_err(bad)?;
        }
    }
    Ok(())
}

fn issue(
    state: &AppState,
    csr_pem: &str,
    machine_id: &str,
    now: OffsetDateTime,
) -> Answer<IssuedCertificate> {
    let csr = pki::check_csr_pem(csr_pem)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad_csr", e.to_string()))?;
    state
        .ca
        .issue_machine(
            &csr,
            &MachineTemplate {
                machine_id,
                org: &state.org,
                lifetime: state.cert_lifetime,
                now,
            },
        )
        .map_err(internal)
}

fn enroll_response(
    state: &AppState,
    device_id: String,
    machine_id: String,
    team: String,
    cert: &IssuedCertificate,
) -> EnrollResponse {
    EnrollResponse {
        device_id,
        machine_id,
        team,
        certificate_chain_pem: format!("{}{}", cert.pem, state.ca.cert_pem()),
        not_after: rfc3339(cert.not_after),
        certificate_fingerprint: cert.fingerprint.clone(),
    }
}

fn device_row_from(
    facts: &DeviceFacts,
    org: &str,
    device_id: String,
    team: String,
    cert: &IssuedCertificate,
    now: i64,
) -> DeviceRow {
    DeviceRow {
        device_id,
        machine_id: facts.machine_id.clone(),
        org: org.to_string(),
        team,
        department: facts.department.clone(),
        environment: facts.environment.clone(),
        compliance_zone: facts.compliance_zone.clone(),
        hostname: facts.hostname.clone(),
        platform: facts.platform.clone(),
        os_name: facts.os_name.clone(),
        os_version: facts.os_version.clone(),
        serial: facts.serial.clone(),
        user: facts.user.clone(),
        agent_version: facts.agent_version.clone(),
        registered_at: now,
        last_seen: now,
        policy_version: None,
        cert_fingerprint: cert.fingerprint.clone(),
        cert_not_after: cert.not_after.unix_timestamp(),
    }
}

// ----- device endpoints ---------------------------------------------------------------

/// `POST /v1/enroll`.
pub async fn enroll(State(state): State<Arc<AppState>>, body: Body) -> Response {
    match enroll_inner(&state, body).await {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn enroll_inner(state: &AppState, body: Body) -> Answer<EnrollResponse> {
    let request: EnrollRequest = read_json(body).await?;
    if !secrets::is_well_formed(&request.token, TOKEN_PREFIX) {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "token_unknown",
            "the enrollment token is not a fleetkit token (fkt_…); ask IT for a current one",
        ));
    }
    check_facts(&request.facts)?;
    let now = clock::now();
    let cert = issue(state, &request.csr_pem, &request.facts.machine_id, now)?;
    let new_id = secrets::new_id("dev").map_err(internal)?;
    let unix_now = now.unix_timestamp();
    let claimed_team = request.facts.team.clone();
    let enrollment = NewEnrollment {
        device: device_row_from(
            &request.facts,
            &state.org,
            new_id,
            String::new(),
            &cert,
            unix_now,
        ),
        cert_serial: cert.serial.clone(),
        cert_not_before: cert.not_before.unix_timestamp(),
    };
    let outcome = state
        .store
        .enroll(
            &secrets::hash_secret(&request.token),
            unix_now,
            |token_team| match claimed_team.as_deref() {
                Some(team) if !team.is_empty() && team != token_team => Err(format!(
                    "the token is for team {token_team:?}, the device says {team:?}; use a token of the device's team or correct its team setting"
                )),
                _ => Ok(()),
            },
            &enrollment,
        )
        .await
        .map_err(internal)?;
    match outcome {
        Ok((device_id, team)) => Ok(enroll_response(
            state,
            device_id,
            request.facts.machine_id.clone(),
            team,
            &cert,
        )),
        Err(EnrollRefusal::Token(reason)) => {
            let (code, message) = match reason {
                TokenRefusal::Unknown => (
                    "token_unknown",
                    "the enrollment token is not known to this server",
                ),
                TokenRefusal::Revoked => (
                    "token_revoked",
                    "the enrollment token was revoked; ask IT for a current one",
                ),
                TokenRefusal::Expired => (
                    "token_expired",
                    "the enrollment token has expired; ask IT for a current one",
                ),
                TokenRefusal::Exhausted => (
                    "token_used_up",
                    "the enrollment token has been used as many times as allowed; ask IT for a new one",
                ),
            };
            Err(refuse(StatusCode::UNAUTHORIZED, code, message))
        }
        Err(EnrollRefusal::Team(message)) => {
            Err(refuse(StatusCode::FORBIDDEN, "team_mismatch", message))
        }
    }
}

/// The device presenting the connection's client certificate.
async fn device(state: &AppState, peer: Option<&Peer>) -> Answer<DeviceRow> {
    let Some(fingerprint) = peer.and_then(|p| p.certificate_fingerprint.as_deref()) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "client_certificate_required",
            "device endpoints need the device's certificate as TLS client certificate; run `fleetkit agent register` first",
        ));
    };
    let peer = peer.expect("fingerprint came from the peer");
    let found = peer
        .device
        .get_or_try_init(|| state.store.device_by_certificate(fingerprint))
        .await
        .map_err(internal)?;
    found.clone().ok_or_else(|| {
        refuse(
            StatusCode::FORBIDDEN,
            "unknown_certificate",
            "this certificate belongs to no enrolled device; register the device again",
        )
    })
}

/// `POST /v1/renew`.
pub async fn renew(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<Arc<Peer>>>,
    body: Body,
) -> Response {
    let result: Answer<EnrollResponse> = async {
        let device = device(&state, peer.as_deref().map(|p| &**p)).await?;
        let request: RenewRequest = read_json(body).await?;
        let now = clock::now();
        let cert = issue(&state, &request.csr_pem, &device.machine_id, now)?;
        let mut row = device.clone();
        row.cert_fingerprint = cert.fingerprint.clone();
        row.cert_not_after = cert.not_after.unix_timestamp();
        row.last_seen = now.unix_timestamp();
        let enrollment = NewEnrollment {
            device: row,
            cert_serial: cert.serial.clone(),
            cert_not_before: cert.not_before.unix_timestamp(),
        };
        state
            .store
            .renew(&device.device_id, &enrollment)
            .await
            .map_err(internal)?;
        Ok(enroll_response(
            &state,
            device.device_id,
            device.machine_id,
            device.team,
            &cert,
        ))
    }
    .await;
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// `POST /v1/checkin`.
pub async fn checkin(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<Arc<Peer>>>,
    body: Body,
) -> Response {
    let result: Answer<CheckinResponse> = async {
        let device = device(&state, peer.as_deref().map(|p| &**p)).await?;
        let request: CheckinRequest = read_json(body).await?;
        check_facts(&request.facts)?;
        if request.facts.machine_id != device.machine_id {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "machine_mismatch",
                "the facts name another machine than the certificate",
            ));
        }
        let now = clock::now();
        let f = &request.facts;
        let updated = DeviceRow {
            department: f.department.clone(),
            environment: f.environment.clone(),
            compliance_zone: f.compliance_zone.clone(),
            hostname: f.hostname.clone(),
            platform: f.platform.clone(),
            os_name: f.os_name.clone(),
            os_version: f.os_version.clone(),
            serial: f.serial.clone(),
            user: f.user.clone(),
            agent_version: f.agent_version.clone(),
            last_seen: now.unix_timestamp(),
            policy_version: request
                .policy_version
                .map(|v| v.min(i64::MAX as u64) as i64),
            ..device
        };
        state.store.check_in(&updated).await.map_err(internal)?;
        let current = current_bundle(&state).await?;
        Ok(CheckinResponse {
            device_id: updated.device_id,
            server_time: rfc3339(now),
            bundle_version: current.map(|b| b.version as u64),
        })
    }
    .await;
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn current_bundle(state: &AppState) -> Answer<Option<Arc<CurrentBundle>>> {
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
    if let Err(refusal) = device(&state, peer.as_deref().map(|p| &**p)).await {
        return refusal.into_response();
    }
    let current = match current_bundle(&state).await {
        Ok(Some(current)) => current,
        Ok(None) => {
            return refuse(
                StatusCode::NOT_FOUND,
                "no_bundle",
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

// ----- admin endpoints ----------------------------------------------------------------

fn check_admin(state: &AppState, headers: &HeaderMap) -> Answer<()> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(ADMIN_AUTH_SCHEME))
        .map(str::trim)
        .filter(|v| secrets::is_well_formed(v, ADMIN_PREFIX));
    let ok = presented.is_some_and(|v| {
        secrets::digests_equal(&Sha256::digest(v.as_bytes()), &state.admin_credential_hash)
    });
    if ok {
        Ok(())
    } else {
        let mut refusal = refuse(
            StatusCode::UNAUTHORIZED,
            "admin_credential_required",
            "admin endpoints need `Authorization: Bearer <admin credential>` (the workspace's keys/admin-credential)",
        );
        refusal.challenge = true;
        Err(refusal)
    }
}

fn token_info(row: TokenRow) -> TokenInfo {
    let at = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map(rfc3339)
            .unwrap_or_default()
    };
    TokenInfo {
        id: row.id,
        team: row.team,
        max_uses: row.max_uses.clamp(0, u32::MAX as i64) as u32,
        uses: row.uses.clamp(0, u32::MAX as i64) as u32,
        created_at: at(row.created_at),
        expires_at: at(row.expires_at),
        revoked_at: row.revoked_at.map(at),
        note: row.note,
    }
}

/// Longest token lifetime accepted: a year.
const MAX_TOKEN_LIFETIME_SECS: u64 = 366 * 24 * 3600;

/// `POST /v1/admin/tokens`.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result: Answer<TokenCreated> = async {
        check_admin(&state, &headers)?;
        let request: TokenCreate = read_json(body).await?;
        let bad = |m: String| refuse(StatusCode::BAD_REQUEST, "bad_request", m);
        check_text("team", &request.team, true).map_err(bad)?;
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
    match result {
        Ok(answer) => (StatusCode::CREATED, Json(answer)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /v1/admin/tokens`.
pub async fn list_tokens(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = check_admin(&state, &headers) {
        return refusal.into_response();
    }
    match state.store.list_tokens().await {
        Ok(rows) => Json(rows.into_iter().map(token_info).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// `POST /v1/admin/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refusal) = check_admin(&state, &headers) {
        return refusal.into_response();
    }
    match state
        .store
        .revoke_token(&id, clock::now().unix_timestamp())
        .await
    {
        Ok(Some(row)) => Json(token_info(row)).into_response(),
        Ok(None) => refuse(
            StatusCode::NOT_FOUND,
            "no_such_token",
            format!("there is no token with id {id:?}; `fleetkit token list` shows them"),
        )
        .into_response(),
        Err(e) => internal(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    team: Option<String>,
    stale_secs: Option<u64>,
}

/// `GET /v1/admin/devices`.
pub async fn list_devices(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<DeviceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refusal) = check_admin(&state, &headers) {
        return refusal.into_response();
    }
    let Ok(Query(query)) = query else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "query parameters are `team` and `stale_secs` (a number of seconds)",
        )
        .into_response();
    };
    let now = clock::now().unix_timestamp();
    let filter = DeviceFilter {
        team: query.team,
        not_seen_since: query
            .stale_secs
            .map(|s| now.saturating_sub(s.min(i64::MAX as u64) as i64)),
    };
    match state.store.list_devices(&filter).await {
        Ok(rows) => Json(rows.into_iter().map(device_record).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// `DELETE /v1/admin/devices/{id}`: the device leaves the inventory and its
/// certificates stop authenticating it (a lost or retired machine). It can come
/// back only by enrolling again with a token.
pub async fn remove_device(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refusal) = check_admin(&state, &headers) {
        return refusal.into_response();
    }
    match state.store.remove_device(&id).await {
        Ok(Some(row)) => Json(device_record(row)).into_response(),
        Ok(None) => refuse(
            StatusCode::NOT_FOUND,
            "no_such_device",
            format!("there is no device with id {id:?}; `fleetkit devices list` shows them"),
        )
        .into_response(),
        Err(e) => internal(e).into_response(),
    }
}

fn device_record(row: DeviceRow) -> DeviceRecord {
    let at = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map(rfc3339)
            .unwrap_or_default()
    };
    DeviceRecord {
        registered_at: at(row.registered_at),
        last_seen: at(row.last_seen),
        certificate_not_after: at(row.cert_not_after),
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
    }
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
    fn into_refusal(self) -> Refusal {
        match self {
            Self::Refused { code, message } => refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!("the bundle was refused: {message}"),
            ),
            Self::AlreadyPublished(v) => refuse(
                StatusCode::CONFLICT,
                "already_published",
                format!("bundle v{v} is already the published one"),
            ),
            Self::Internal(m) => internal(m),
        }
    }
}

/// Verifies a bundle against the server's anchors and publishes it as the newest.
pub async fn publish(state: &AppState, body: Vec<u8>) -> Result<Published, PublishError> {
    let now = clock::now();
    let current = state
        .store
        .current_bundle_tag()
        .await
        .map_err(|e| PublishError::Internal(e.to_string()))?
        .map(|(v, _)| v.max(0) as u64);
    let verified = bundle::verify_bundle(
        &body,
        &state.anchors,
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
            super::store::StoreError::DuplicateBundle(v) => PublishError::AlreadyPublished(v),
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

/// `PUT /v1/admin/bundle`.
pub async fn publish_bundle(
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
    match result {
        Ok(answer) => (StatusCode::CREATED, Json(answer)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /v1/health`: for load balancers; says nothing about devices.
pub async fn health() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

pub async fn not_found() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see the protocol table in the fleetkit docs",
    )
    .into_response()
}

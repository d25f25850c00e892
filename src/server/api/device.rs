//! The device endpoints: enroll (token), renew and check-in (client certificate).
//!
//! A device is authenticated on *every* request by its client certificate's
//! fingerprint, which must be the device's current one (DESIGN.md rule 8): a device
//! removed by an admin, or a certificate superseded by a renewal, is refused at
//! once, even on a keep-alive connection opened before.
//!
//! Enrollment reads its token before it signs anything: an unknown, revoked or
//! expired token is refused from one read ([`crate::server::store::Store::token_refused_early`]),
//! and only then is the CSR checked, a certificate signed and the enrollment written
//! under the store's write lock, where the token is checked again.

use super::checks::check_facts;
use super::respond::{Answer, Refusal, internal, read_json, refuse, reply};
use super::{AppState, distribution};
use crate::clock::{self, rfc3339};
use crate::pki::{self, IssuedCertificate, MachineTemplate};
use crate::protocol::*;
use crate::server::http::Peer;
use crate::server::secrets::{self, TOKEN_PREFIX};
use crate::server::store::{
    DeviceRow, EnrollRefusal, Enrolled, IssuedCert, NewEnrollment, TokenRefusal,
};
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use std::sync::Arc;
use time::OffsetDateTime;

/// The device endpoints' routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/enroll", post(enroll))
        .route("/v1/renew", post(renew))
        .route("/v1/checkin", post(checkin))
        .route("/v1/bundle", get(distribution::bundle))
}

/// Signs a machine certificate for the CSR's key, from the server's template.
fn issue(
    state: &AppState,
    csr_pem: &str,
    machine_id: &str,
    now: OffsetDateTime,
) -> Answer<IssuedCert> {
    let csr = pki::check_csr_pem(csr_pem)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, ErrorCode::BadCsr, e.to_string()))?;
    let cert: IssuedCertificate = state
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
        .map_err(internal)?;
    Ok(IssuedCert {
        fingerprint: cert.fingerprint,
        key_fingerprint: csr.key_fingerprint().to_string(),
        serial: cert.serial,
        not_before: cert.not_before.unix_timestamp(),
        not_after: cert.not_after.unix_timestamp(),
        pem: cert.pem,
    })
}

fn enroll_response(
    state: &AppState,
    device_id: String,
    machine_id: String,
    team: String,
    leaf_pem: &str,
    not_after: i64,
    fingerprint: String,
) -> EnrollResponse {
    EnrollResponse {
        device_id,
        machine_id,
        team,
        certificate_chain_pem: format!("{leaf_pem}{}", state.ca.cert_pem()),
        not_after: crate::server::store::rfc3339_of(not_after),
        certificate_fingerprint: fingerprint,
    }
}

/// The answer to an enrollment whose token cannot be used.
fn token_refused(reason: TokenRefusal) -> Refusal {
    let (code, message) = match reason {
        TokenRefusal::Unknown => (
            ErrorCode::TokenUnknown,
            "the enrollment token is not known to this server",
        ),
        // The same code as an unknown token (agents know it), with the reason.
        TokenRefusal::WrongKind => (
            ErrorCode::TokenUnknown,
            "this is a SCEP challenge, not an agent enrollment token; ask IT for an enrollment token (`fleetkit token create` without --scep)",
        ),
        TokenRefusal::Revoked => (
            ErrorCode::TokenRevoked,
            "the enrollment token was revoked; ask IT for a current one",
        ),
        TokenRefusal::Expired => (
            ErrorCode::TokenExpired,
            "the enrollment token has expired; ask IT for a current one",
        ),
        TokenRefusal::Exhausted => (
            ErrorCode::TokenUsedUp,
            "the enrollment token has been used as many times as allowed; ask IT for a new one",
        ),
    };
    refuse(StatusCode::UNAUTHORIZED, code, message)
}

/// `POST /v1/enroll`.
async fn enroll(State(state): State<Arc<AppState>>, body: Body) -> Response {
    reply(StatusCode::OK, enroll_inner(&state, body).await)
}

async fn enroll_inner(state: &AppState, body: Body) -> Answer<EnrollResponse> {
    let request: EnrollRequest = read_json(body).await?;
    if !secrets::is_well_formed(&request.token, TOKEN_PREFIX) {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::TokenUnknown,
            "the enrollment token is not a fleetkit token (fkt_…); ask IT for a current one",
        ));
    }
    check_facts(&request.facts)?;
    let now = clock::now();
    let unix_now = now.unix_timestamp();
    let token_hash = secrets::hash_secret(&request.token);
    // Before signing anything or taking the write lock: a made-up, revoked or
    // expired token costs one read, not a signature and a turn at the lock that
    // check-ins wait on. The transaction below checks everything again.
    if let Some(reason) = state
        .store
        .token_refused_early(&token_hash, &request.facts.machine_id, unix_now)
        .await
        .map_err(internal)?
    {
        return Err(token_refused(reason));
    }
    let cert = issue(state, &request.csr_pem, &request.facts.machine_id, now)?;
    let enrollment = NewEnrollment {
        device: DeviceRow::enrolling(
            &request.facts,
            &state.org,
            secrets::new_id("dev").map_err(internal)?,
            &cert,
            unix_now,
        ),
        cert,
    };
    let claimed_team = request.facts.team.clone();
    let outcome = state
        .store
        .enroll(
            &token_hash,
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
    let machine_id = request.facts.machine_id;
    let cert = &enrollment.cert;
    match outcome {
        Ok(
            Enrolled::New { device_id, team }
            | Enrolled::Reenrolled { device_id, team }
            | Enrolled::Replaced { device_id, team },
        ) => Ok(enroll_response(
            state,
            device_id,
            machine_id,
            team,
            &cert.pem,
            cert.not_after,
            cert.fingerprint.clone(),
        )),
        Ok(Enrolled::Repeated {
            device_id,
            team,
            cert_pem,
            not_after,
            fingerprint,
        }) => Ok(enroll_response(
            state,
            device_id,
            machine_id,
            team,
            &cert_pem,
            not_after,
            fingerprint,
        )),
        Err(EnrollRefusal::Token(reason)) => Err(token_refused(reason)),
        Err(EnrollRefusal::Team(message)) => Err(refuse(
            StatusCode::FORBIDDEN,
            ErrorCode::TeamMismatch,
            message,
        )),
        Err(EnrollRefusal::DeviceExists) => Err(refuse(
            StatusCode::CONFLICT,
            ErrorCode::DeviceExists,
            format!(
                "machine id {machine_id:?} is already enrolled, and this request does not hold that device's key; \
                 if the machine was re-imaged, an admin removes the old device (`fleetkit devices remove`) \
                 or enrolls it with a token made with `--replace-existing`"
            ),
        )),
    }
}

/// The enrolled device presenting the request's client certificate, looked up on
/// every request (see the module comment).
pub async fn authenticate(state: &AppState, peer: Option<&Peer>) -> Answer<DeviceRow> {
    let Some(fingerprint) = peer.and_then(|p| p.certificate_fingerprint.as_deref()) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::ClientCertificateRequired,
            "device endpoints need the device's certificate as TLS client certificate; run `fleetkit agent register` first",
        ));
    };
    state
        .store
        .device_by_certificate(fingerprint)
        .await
        .map_err(internal)?
        .ok_or_else(unknown_certificate)
}

fn unknown_certificate() -> super::respond::Refusal {
    refuse(
        StatusCode::FORBIDDEN,
        ErrorCode::UnknownCertificate,
        "this certificate is not the current one of an enrolled device (the device was removed, or renewed its certificate since); register the device again",
    )
}

/// `POST /v1/renew`.
async fn renew(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<Arc<Peer>>>,
    body: Body,
) -> Response {
    let result: Answer<EnrollResponse> = async {
        let peer = peer.as_deref().map(|p| &**p);
        let device = match authenticate(&state, peer).await {
            Ok(device) => device,
            Err(refusal) if refusal.code == ErrorCode::UnknownCertificate => {
                return repeated_renewal(&state, peer, body)
                    .await
                    .and_then(|r| r.ok_or(refusal));
            }
            Err(refusal) => return Err(refusal),
        };
        let request: RenewRequest = read_json(body).await?;
        let now = clock::now();
        let cert = issue(&state, &request.csr_pem, &device.machine_id, now)?;
        // Conditional on the presented certificate still being the current one: a
        // removal or another renewal between the lookup and here wins.
        let recorded = state
            .store
            .renew(
                &device.device_id,
                &device.cert_fingerprint,
                &cert,
                now.unix_timestamp(),
            )
            .await
            .map_err(internal)?;
        if !recorded {
            return Err(unknown_certificate());
        }
        Ok(enroll_response(
            &state,
            device.device_id,
            device.machine_id,
            device.team,
            &cert.pem,
            cert.not_after,
            cert.fingerprint,
        ))
    }
    .await;
    reply(StatusCode::OK, result)
}

/// A renewal whose answer was lost, sent again: the presented certificate is the one
/// the device's last renewal superseded, and the CSR is for the key that renewal
/// certified (its self-signature proves the caller holds it). The answer is the
/// same certificate again; nothing changes. `None` when it is not such a repeat.
async fn repeated_renewal(
    state: &AppState,
    peer: Option<&Peer>,
    body: Body,
) -> Answer<Option<EnrollResponse>> {
    let Some(previous) = peer.and_then(|p| p.certificate_fingerprint.as_deref()) else {
        return Ok(None);
    };
    let Some(renewal) = state.store.renewal_of(previous).await.map_err(internal)? else {
        return Ok(None);
    };
    let request: RenewRequest = read_json(body).await?;
    let csr = pki::check_csr_pem(&request.csr_pem)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, ErrorCode::BadCsr, e.to_string()))?;
    if renewal.key_fingerprint.is_empty() || csr.key_fingerprint() != renewal.key_fingerprint {
        return Ok(None);
    }
    let device = renewal.device;
    Ok(Some(enroll_response(
        state,
        device.device_id,
        device.machine_id,
        device.team,
        &renewal.pem,
        device.cert_not_after,
        device.cert_fingerprint,
    )))
}

/// `POST /v1/checkin`.
async fn checkin(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<Arc<Peer>>>,
    body: Body,
) -> Response {
    let result: Answer<CheckinResponse> = async {
        let device = authenticate(&state, peer.as_deref().map(|p| &**p)).await?;
        let request: CheckinRequest = read_json(body).await?;
        check_facts(&request.facts)?;
        if request.facts.machine_id != device.machine_id {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                ErrorCode::MachineMismatch,
                "the facts name another machine than the certificate",
            ));
        }
        let current = distribution::current_bundle(&state).await?;
        let published = current.as_ref().map(|b| b.version);
        // A device cannot enforce a version nobody published: refuse the report
        // rather than store a number the inventory would show as truth.
        let policy_version = match request.policy_version {
            None => None,
            Some(v) => match i64::try_from(v) {
                Ok(v) if published.is_some_and(|p| v <= p) => Some(v),
                _ => {
                    return Err(refuse(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::BadPolicyVersion,
                        format!(
                            "the device reports policy v{v}, but the newest published version is {}",
                            published.map_or("none".to_string(), |p| format!("v{p}"))
                        ),
                    ));
                }
            },
        };
        let now = clock::now();
        let mut updated = device;
        updated.apply_facts(&request.facts);
        updated.last_seen = now.unix_timestamp();
        updated.policy_version = policy_version;
        if !state.store.check_in(&updated).await.map_err(internal)? {
            return Err(unknown_certificate());
        }
        Ok(CheckinResponse {
            team: Some(updated.team.clone()),
            device_id: updated.device_id,
            server_time: rfc3339(now),
            bundle_version: published.map(|v| v as u64),
            anchors_version: Some(
                super::rotation::current_anchors(&state, false)
                    .await?
                    .chain_version,
            ),
        })
    }
    .await;
    reply(StatusCode::OK, result)
}

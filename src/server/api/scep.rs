//! SCEP (RFC 8894) in `fleetkit serve`: machine certificates for the configuration
//! profile's certificate payload (`com.apple.security.scep`), for Jamf, Intune or any
//! SCEP client. Routes: `GET /scep?operation=GetCACaps|GetCACert|PKIOperation` and
//! `POST /scep?operation=PKIOperation` (also under `/scep/pkiclient.exe`, the path
//! some clients append).
//!
//! Who gets a certificate:
//! - a **first request** (PKCSReq signed by a self-signed certificate over the
//!   requested key) carries a challengePassword that is a SCEP challenge token
//!   (`fleetkit token create --scep`): hashed, team-bound, expiring, counted,
//!   revocable; one use per certificate;
//! - a **renewal** (RenewalReq, or a PKCSReq as Apple sends it) is signed by a
//!   certificate this server issued over SCEP that is still valid and not revoked:
//!   no challenge; the new certificate keeps the old one's team;
//! - a **repeat** of a request already answered (same transactionID, same key, same
//!   certificate renewed; a client whose answer was lost) gets the same certificate
//!   again and spends nothing; the same transactionID with another key is refused.
//!
//! The certificate comes from our template, whatever the request asks: subject
//! `CN=<the request's CN>` (plus its serialNumber attribute, if any) and `O=<org>`;
//! subjectAltName DNS names, e-mail addresses and URIs the request names, checked;
//! CA:FALSE; keyUsage digitalSignature + keyEncipherment; extendedKeyUsage clientAuth;
//! the org's machine certificate lifetime. A request for a CA certificate or a key
//! under 2048 bits is refused.
//!
//! Every refusal of a readable message is a CertRep FAILURE with its failInfo (never
//! HTTP 500); a message too broken to answer is HTTP 400 with a stable code in a
//! text body (`scep_bad_message: …`). No TLS client certificate is asked for here
//! (see `server::tls`: a certificate that does not verify counts as none).

use super::AppState;
use super::respond::read_body;
use crate::pki::ScepTemplate;
use crate::pki::scep_ra::{ScepRa, ScepRas};
use crate::scep::request::{Recipient, ScepCsr};
use crate::scep::{self, CertRepStatus, FailInfo, Header, MessageType, RequestError, reply};
use crate::server::secrets;
use crate::server::store::scep::Prior;
use crate::server::store::{NewScepCert, ScepRecorded, TokenRefusal, TokenRow, rfc3339_of, unix};
use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use std::sync::Arc;

/// The SCEP service's own state: the RAs and the single-DES switch.
pub struct ScepService {
    /// The RA GetCACert hands out.
    pub current: Ra,
    /// The RA it replaced, while that one's certificate lives: requests encrypted to
    /// it (a device that fetched GetCACert before the rotation) still open.
    pub previous: Option<Ra>,
    /// Accept single DES envelopes (RFC 8894 forbids it; off unless the server was
    /// started with `--scep-allow-des` for an old client).
    pub allow_single_des: bool,
}

/// One RA: its keys and its certificate, parsed once.
pub struct Ra {
    pub keys: ScepRa,
    pub cert: x509_cert::Certificate,
}

impl Ra {
    fn new(keys: ScepRa) -> Option<Self> {
        let cert = scep::request::certificate(keys.cert_der())?;
        Some(Self { keys, cert })
    }

    /// The RA as the recipient that decrypts a request.
    pub fn recipient(&self) -> Recipient<'_> {
        Recipient {
            key: self.keys.key(),
            cert: &self.cert,
        }
    }

    /// The RA as the signer of a reply.
    pub fn signer(&self) -> reply::Signer<'_> {
        reply::Signer {
            key: self.keys.key(),
            ring: self.keys.ring_key(),
            cert_der: self.keys.cert_der(),
        }
    }
}

impl ScepService {
    pub fn new(ras: ScepRas, allow_single_des: bool) -> Option<Self> {
        let previous = match ras.previous {
            Some(keys) => Some(Ra::new(keys)?),
            None => None,
        };
        Some(Self {
            current: Ra::new(ras.current)?,
            previous,
            allow_single_des,
        })
    }

    /// The RA that answers `message`: the previous one when the request is encrypted
    /// to it (the client verifies the answer with the RA it fetched), else the
    /// current one.
    fn answering(&self, message: &scep::PkiMessage) -> &Ra {
        match &self.previous {
            Some(previous)
                if message.addressed_to(&[self.current.recipient(), previous.recipient()])
                    == Some(1) =>
            {
                previous
            }
            _ => &self.current,
        }
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/scep", get(get_scep).post(post_scep))
        .route("/scep/pkiclient.exe", get(get_scep).post(post_scep))
}

/// A plain-text HTTP refusal with a stable code (SCEP clients do not read JSON).
fn http_refusal(status: StatusCode, code: &str, reason: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{code}: {reason}\n"),
    )
        .into_response()
}

/// The query's `operation` and `message`, decoded leniently: macOS sends base64 in
/// `message` without escaping `+` and `/`, so `+` is never read as a space.
fn query_params(raw: Option<&str>) -> (Option<String>, Option<String>) {
    let (mut operation, mut message) = (None, None);
    for pair in raw.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8_lossy()
            .into_owned();
        match key {
            "operation" => operation = Some(value),
            "message" => message = Some(value),
            _ => {}
        }
    }
    (operation, message)
}

async fn get_scep(State(state): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    let (operation, message) = query_params(raw.as_deref());
    match operation.as_deref() {
        Some("GetCACaps") => (
            [(header::CONTENT_TYPE, "text/plain")],
            scep::CA_CAPS.join("\n"),
        )
            .into_response(),
        Some("GetCACert") => get_ca_cert(&state),
        Some("PKIOperation") => {
            let Some(message) = message else {
                return http_refusal(
                    StatusCode::BAD_REQUEST,
                    "scep_bad_message",
                    "PKIOperation by GET needs a base64 `message` parameter",
                );
            };
            if message.len() > scep::MAX_MESSAGE_BYTES * 4 / 3 + 4 {
                return http_refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "scep_too_large",
                    "the message is larger than the limit",
                );
            }
            let cleaned: String = message.chars().filter(|c| !c.is_whitespace()).collect();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(cleaned.as_bytes())
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(cleaned.trim_end_matches('='))
                });
            match decoded {
                Ok(der) => pki_operation(&state, &der).await,
                Err(_) => http_refusal(
                    StatusCode::BAD_REQUEST,
                    "scep_bad_encoding",
                    "the `message` parameter is not base64",
                ),
            }
        }
        _ => unknown_operation(),
    }
}

async fn post_scep(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let (operation, _) = query_params(raw.as_deref());
    if operation.as_deref() != Some("PKIOperation") {
        return unknown_operation();
    }
    // Refused from its announced length, before a byte of the body is read (a
    // client waiting for `100 Continue` never sends it).
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > scep::MAX_MESSAGE_BYTES as u64) {
        return too_large();
    }
    let body = match read_body(body, scep::MAX_MESSAGE_BYTES).await {
        Ok(body) => body,
        Err(_) => return too_large(),
    };
    pki_operation(&state, &body).await
}

fn too_large() -> Response {
    http_refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        "scep_too_large",
        &format!(
            "the message is larger than {} bytes",
            scep::MAX_MESSAGE_BYTES
        ),
    )
}

fn unknown_operation() -> Response {
    http_refusal(
        StatusCode::BAD_REQUEST,
        "scep_unknown_operation",
        "use operation=GetCACaps, GetCACert or PKIOperation",
    )
}

fn get_ca_cert(state: &AppState) -> Response {
    let Some(service) = state.scep.as_ref() else {
        return not_enabled();
    };
    match reply::ca_certs(&[service.current.keys.cert_der(), state.ca.cert_der()]) {
        Ok(der) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-x509-ca-ra-cert"),
            )],
            der,
        )
            .into_response(),
        Err(_) => http_refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the CA certificates cannot be encoded",
        ),
    }
}

fn not_enabled() -> Response {
    http_refusal(
        StatusCode::NOT_FOUND,
        "scep_disabled",
        "this server has no SCEP registration authority",
    )
}

/// A CertRep as an HTTP answer.
fn cert_rep_response(ra: &Ra, to: &Header, status: CertRepStatus<'_>) -> Response {
    match reply::cert_rep(&ra.signer(), to, status) {
        Ok(der) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-pki-message"),
            )],
            der,
        )
            .into_response(),
        Err(_) => http_refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the reply cannot be made",
        ),
    }
}

/// A FAILURE CertRep; the reason goes in the `X-Fleetkit-Reason` header (the client
/// reads only the failInfo; the library never prints).
fn failure(ra: &Ra, to: &Header, info: FailInfo, reason: &str) -> Response {
    with_reason(
        cert_rep_response(ra, to, CertRepStatus::Failure(info)),
        reason,
    )
}

async fn pki_operation(state: &AppState, der: &[u8]) -> Response {
    let Some(service) = state.scep.as_ref() else {
        return not_enabled();
    };
    let message = match scep::parse(der) {
        Ok(m) => m,
        Err(RequestError::Unreadable { code, reason }) => {
            return http_refusal(StatusCode::BAD_REQUEST, code, &reason);
        }
        Err(RequestError::Failure {
            header,
            fail_info,
            reason,
        }) => return failure(&service.current, &header, fail_info, &reason),
    };
    let ra = service.answering(&message);
    match enroll(state, service, ra, &message).await {
        Ok(response) => response,
        Err((info, reason)) => failure(ra, &message.header, info, &reason),
    }
}

/// Adds the reason of a FAILURE as a header, for people reading the traffic (the
/// SCEP client only reads the failInfo).
fn with_reason(mut response: Response, reason: &str) -> Response {
    let clean: String = reason
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect();
    if let Ok(value) = HeaderValue::from_str(&clean) {
        response.headers_mut().insert("x-fleetkit-reason", value);
    }
    response
}

type Refused = (FailInfo, String);

async fn enroll(
    state: &AppState,
    service: &ScepService,
    ra: &Ra,
    message: &scep::PkiMessage,
) -> Result<Response, Refused> {
    let header = &message.header;
    match header.message_type {
        MessageType::PkcsReq | MessageType::RenewalReq => {}
        MessageType::CertPoll => return poll(state, service, ra, message).await,
        other => {
            return Err((
                FailInfo::BadRequest,
                format!("{} is not supported by this server", other.name()),
            ));
        }
    }
    let (plain, cipher) = match message.decrypt(&ra.recipient(), service.allow_single_des) {
        Ok(x) => x,
        Err(RequestError::Failure {
            fail_info, reason, ..
        }) => return Err((fail_info, reason)),
        Err(RequestError::Unreadable { reason, .. }) => {
            return Err((FailInfo::BadMessageCheck, reason));
        }
    };
    // What follows the decryption answers "does not open" and "opens to no signed
    // request" alike (see `request::SEALED`): no padding oracle.
    let csr = scep::request::read_csr(&plain)?;
    if csr.asks_for_ca {
        return Err((
            FailInfo::BadRequest,
            "the request asks for a CA certificate; SCEP issues end-entity certificates only"
                .into(),
        ));
    }
    let now = crate::clock::now();
    let now_unix = now.unix_timestamp();

    // A renewal: signed by a certificate we issued over SCEP.
    let signer_fingerprint = crate::pki::fingerprint_der(&message.signer_cert_der);
    let renewing = state
        .store
        .scep_by_fingerprint(&signer_fingerprint)
        .await
        .map_err(internal)?;
    let renewal = match (&renewing, header.message_type) {
        (Some(old), _) if old.revoked_at.is_some() => {
            return Err((
                FailInfo::BadRequest,
                "the certificate signing the renewal was revoked".into(),
            ));
        }
        (Some(old), _) if old.not_after > now_unix => Some(old.clone()),
        (Some(old), MessageType::RenewalReq) => {
            return Err((
                FailInfo::BadTime,
                format!(
                    "the certificate signing the renewal expired at {}; enroll again with the challenge",
                    rfc3339_of(old.not_after)
                ),
            ));
        }
        (None, MessageType::RenewalReq) => {
            return Err((
                FailInfo::BadCertId,
                "a RenewalReq must be signed by a certificate this server issued over SCEP".into(),
            ));
        }
        _ => None,
    };
    if renewal.is_none()
        && renewing.is_none()
        && message.signer_key_fingerprint != csr.key_fingerprint
    {
        return Err((
            FailInfo::BadMessageCheck,
            "the message is signed by another key than the one the request certifies".into(),
        ));
    }

    // A valid challenge of another team moves the Mac: an enrollment in that team
    // (the challenge checked and spent), not a renewal of the old team's lineage.
    let renewal = match renewal {
        Some(old) => match challenge_token(state, &csr, now_unix).await? {
            Some(Ok(token)) if token.team != old.team => None,
            _ => Some(old),
        },
        None => None,
    };

    // A repeat of a request already answered.
    let renewed_from = renewal.as_ref().map(|r| r.fingerprint.clone());
    match state
        .store
        .scep_prior(
            &header.transaction_id,
            &csr.key_fingerprint,
            renewed_from.as_deref(),
            now_unix,
        )
        .await
        .map_err(internal)?
    {
        Prior::Taken => return Err(transaction_taken()),
        Prior::Repeat(row) => return success(ra, message, &row.cert_pem, cipher),
        Prior::None => {}
    }
    if let Some(old) = &renewal
        && old.superseded_by.is_some()
    {
        return Err(superseded());
    }

    // Who allows it: the renewed certificate, or the challenge. A renewal keeps the
    // renewed certificate's name, whatever the request asks.
    let (team, token_id, token_hash, template) = match &renewal {
        Some(old) => (
            old.team.clone(),
            old.token_id.clone(),
            None,
            ScepTemplate {
                common_name: old.device_serial.clone().unwrap_or_default(),
                org: state.org.clone(),
                lifetime: state.cert_lifetime,
                now,
            },
        ),
        None => match challenge_token(state, &csr, now_unix).await? {
            None => {
                return Err((
                    FailInfo::BadRequest,
                    "the request has no challengePassword; put the SCEP challenge in the profile"
                        .into(),
                ));
            }
            Some(Err(reason)) => return Err(token_refused(reason)),
            Some(Ok(token)) => (
                token.team,
                Some(token.id),
                csr.challenge.as_deref().map(secrets::hash_secret),
                template(&csr, &state.org, state.cert_lifetime, now)?,
            ),
        },
    };

    let issued = state
        .ca
        .issue_scep(&csr.spki_der, &template)
        .map_err(|e| (FailInfo::BadRequest, format!("cannot issue: {e}")))?;
    let record = NewScepCert {
        serial: issued.serial.clone(),
        fingerprint: issued.fingerprint.clone(),
        subject: template.subject_text(),
        device_serial: Some(template.common_name.clone()),
        key_fingerprint: csr.key_fingerprint.clone(),
        transaction_id: header.transaction_id.clone(),
        team,
        token_id,
        renewed_from,
        not_before: unix(issued.not_before),
        not_after: unix(issued.not_after),
        issued_at: now_unix,
        cert_pem: issued.pem.clone(),
        revoked_at: None,
        superseded_by: None,
    };
    match state
        .store
        .scep_record(&record, token_hash.as_deref(), now_unix)
        .await
        .map_err(internal)?
    {
        ScepRecorded::Issued => success(ra, message, &issued.pem, cipher),
        ScepRecorded::Repeat(row) => success(ra, message, &row.cert_pem, cipher),
        ScepRecorded::TransactionTaken => Err(transaction_taken()),
        ScepRecorded::Superseded => Err(superseded()),
        ScepRecorded::Token(reason) => Err(token_refused(reason)),
    }
}

/// CertPoll (GetCertInitial): we never answer PENDING, so a poll is a client whose
/// answer was lost; it gets the certificate recorded for its transactionID and key.
async fn poll(
    state: &AppState,
    service: &ScepService,
    ra: &Ra,
    message: &scep::PkiMessage,
) -> Result<Response, Refused> {
    let now = crate::clock::now().unix_timestamp();
    let (_, cipher) = message
        .decrypt(&ra.recipient(), service.allow_single_des)
        .map_err(|e| match e {
            RequestError::Failure {
                fail_info, reason, ..
            } => (fail_info, reason),
            RequestError::Unreadable { reason, .. } => (FailInfo::BadMessageCheck, reason),
        })?;
    match state
        .store
        .scep_prior(
            &message.header.transaction_id,
            &message.signer_key_fingerprint,
            None,
            now,
        )
        .await
        .map_err(internal)?
    {
        Prior::Repeat(row) => success(ra, message, &row.cert_pem, cipher),
        _ => Err((
            FailInfo::BadCertId,
            "no certificate was issued for this transaction".into(),
        )),
    }
}

fn success(
    ra: &Ra,
    message: &scep::PkiMessage,
    cert_pem: &str,
    cipher: scep::ContentCipher,
) -> Result<Response, Refused> {
    let der = crate::agent::identity::pem_certificates(cert_pem)
        .ok()
        .and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)))
        .ok_or_else(|| internal("a recorded certificate is not PEM"))?;
    Ok(cert_rep_response(
        ra,
        &message.header,
        CertRepStatus::Success {
            issued_cert_der: &der,
            recipient_cert_der: &message.signer_cert_der,
            cipher,
        },
    ))
}

fn superseded() -> Refused {
    (
        FailInfo::BadRequest,
        "the certificate signing the renewal was already renewed; renew with the current one"
            .into(),
    )
}

fn transaction_taken() -> Refused {
    (
        FailInfo::BadRequest,
        "this transactionID was used with another key".into(),
    )
}

/// The request's challenge as a SCEP token: `None` without a challenge, else the
/// token or why it cannot be used.
async fn challenge_token(
    state: &AppState,
    csr: &ScepCsr,
    now: i64,
) -> Result<Option<Result<TokenRow, TokenRefusal>>, Refused> {
    let Some(challenge) = csr.challenge.as_deref() else {
        return Ok(None);
    };
    if !secrets::is_well_formed(challenge, secrets::TOKEN_PREFIX) {
        return Ok(Some(Err(TokenRefusal::Unknown)));
    }
    state
        .store
        .scep_challenge_refused(&secrets::hash_secret(challenge), now)
        .await
        .map(Some)
        .map_err(internal)
}

/// One answer for every unusable challenge: the endpoint is unauthenticated, and a
/// stranger holding a leaked string must not learn whether it is a live token of
/// some kind without spending a use. `fleetkit token list` tells the admin which.
fn token_refused(_reason: TokenRefusal) -> Refused {
    (
        FailInfo::BadRequest,
        "the challenge is not a usable SCEP challenge (unknown, revoked, expired, used up, or not a SCEP challenge; `fleetkit token list` says which)".into(),
    )
}

fn internal(_e: impl std::fmt::Display) -> Refused {
    // A store failure is not the client's fault, but SCEP has no "try later" status
    // short of PENDING; badRequest is the honest one. The detail stays inside.
    (
        FailInfo::BadRequest,
        "the server could not complete the request; try again".into(),
    )
}

/// The CN of a SCEP certificate: 1 to 64 printable ASCII characters, none of which
/// reads as structure in a subject (`, = + ; " \ < > #`): a serial number or a host
/// name, never a look-alike of another field or a bidi trick.
fn common_name_ok(cn: &str) -> bool {
    (1..=64).contains(&cn.len())
        && cn
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && !b",=+;\"\\<>#".contains(&b))
}

/// What the certificate will say. The request contributes its CN and nothing else:
/// requested subjectAltNames, serialNumber and other attributes are not carried
/// (a requester must not choose names that relying parties map to identities).
fn template(
    csr: &ScepCsr,
    org: &str,
    lifetime: time::Duration,
    now: time::OffsetDateTime,
) -> Result<ScepTemplate, Refused> {
    let bad = |m: String| (FailInfo::BadRequest, m);
    let common_name = csr
        .subject
        .iter()
        .find(|(k, _)| k == "CN")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| bad("the request's subject has no CN".into()))?;
    // Apple sends the variable itself when the profile was not installed through
    // an MDM that substitutes it.
    if common_name.starts_with('$') {
        return Err(bad(format!(
            "the subject CN is the unsubstituted variable {common_name:?}; install the profile through Jamf (which fills it) or give a real name"
        )));
    }
    if !common_name_ok(&common_name) {
        return Err(bad(
            "the subject CN must be 1 to 64 printable ASCII characters without , = + ; \" \\ < > #"
                .into(),
        ));
    }
    Ok(ScepTemplate {
        common_name,
        org: org.to_string(),
        lifetime,
        now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_are_plain() {
        assert!(common_name_ok("C02XYZ123AB"));
        assert!(common_name_ok("mac-01.corp.example"));
        assert!(!common_name_ok("a, serialNumber=x"));
        assert!(!common_name_ok("evil\u{202e}gpj"));
        assert!(!common_name_ok(""));
    }

    #[test]
    fn query_keeps_plus_and_slash_of_unescaped_base64() {
        let (op, msg) = query_params(Some("operation=PKIOperation&message=ab+c/d=="));
        assert_eq!(op.as_deref(), Some("PKIOperation"));
        assert_eq!(msg.as_deref(), Some("ab+c/d=="));
        let (_, msg) = query_params(Some("operation=PKIOperation&message=ab%2Bc%2Fd%3D%3D"));
        assert_eq!(msg.as_deref(), Some("ab+c/d=="));
    }
}

//! Answers and refusals: every refusal is an [`ApiError`] with its [`ErrorCode`] and
//! the HTTP status that goes with it, and request bodies are read with a size cap and
//! parsed strictly.

use crate::protocol::{ApiError, ErrorCode, MAX_REQUEST_BYTES};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A refusal: status, stable code, sentence.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Ask for a bearer credential (401 of the admin API).
    pub challenge: bool,
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

pub fn refuse(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
        challenge: false,
    }
}

pub fn internal(e: impl std::fmt::Display) -> Refusal {
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        format!("the server failed: {e}"),
    )
}

pub type Answer<T> = Result<T, Refusal>;

/// A handler's result as a response: `ok` status with the JSON, or the refusal.
pub fn reply<T: serde::Serialize>(ok: StatusCode, result: Answer<T>) -> Response {
    match result {
        Ok(answer) => (ok, Json(answer)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

pub async fn read_body(body: Body, max: usize) -> Answer<Bytes> {
    axum::body::to_bytes(body, max).await.map_err(|_| {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("the request body is larger than {max} bytes (or was cut short)"),
        )
    })
}

pub async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Answer<T> {
    let bytes = read_body(body, MAX_REQUEST_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

/// `GET /v1/health`: for load balancers; says nothing about devices.
pub async fn health() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

pub async fn not_found() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint; see the protocol table in the fleetkit docs",
    )
    .into_response()
}

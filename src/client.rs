//! What fleetkit's two HTTPS clients share — the device's (`agent::client`) and the
//! admin's (`server::admin_client`): the error type, the reading of the server's
//! refusals into [`ErrorCode`]s, and the rule that no redirect is followed. Kept out
//! of `server` so that the device side needs nothing of the server.

use crate::protocol::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server refused ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("the server's answer is not what fleetkit expects: {0}")]
    BadAnswer(String),
    #[error("the root CA certificate cannot be used: {0}")]
    BadRoot(String),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A refusal: the server's `{code, message}`, or the start of whatever it sent.
pub fn refusal(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => ClientError::Refused {
            status,
            code: e.code,
            message: e.message,
        },
        Err(_) => ClientError::Refused {
            status,
            code: ErrorCode::Unknown,
            message: String::from_utf8_lossy(body).chars().take(200).collect(),
        },
    }
}

/// fleetkit's clients follow no redirect (DESIGN.md rule 11: no redirect leaves https
/// or the server's origin). Following only same-origin https redirects was the
/// alternative; it buys nothing, since fleetkit's server never redirects, and every
/// rule about which redirect is safe (scheme, host, port, a POST body re-sent, a
/// bearer credential forwarded) is a rule that can be got wrong. So both clients (the
/// agent's and this one) are built with `max_redirects(0)` and `https_only(true)`,
/// and any 3xx the caller did not ask for (a 304 answers a conditional GET) becomes
/// this refusal ([`ErrorCode::RedirectRefused`]), naming where the answer pointed and
/// the only origin fleetkit talks to. The agent keeps the code
/// (`refused:redirect_refused` in `agent status`).
pub fn redirect_refusal(base_url: &str, status: u16, location: Option<&str>) -> ClientError {
    let origin = url::Url::parse(base_url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            let port = u.port_or_known_default()?;
            Some(format!("{}://{host}:{port}", u.scheme()))
        })
        .unwrap_or_else(|| base_url.to_string());
    // The Location header is the server's text: keep it short and printable.
    let to: String = location
        .unwrap_or("(no Location header)")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    ClientError::Refused {
        status,
        code: ErrorCode::RedirectRefused,
        message: format!(
            "the server redirected to {to} (HTTP {status}); fleetkit never follows redirects off {origin}"
        ),
    }
}

/// The `Location` of a redirect answer, when it has a readable one.
pub fn location<B>(response: &ureq::http::Response<B>) -> Option<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

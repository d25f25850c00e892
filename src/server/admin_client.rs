//! The admin side's client of the server's admin API (`fleetkit token …`, `fleetkit
//! devices list`, `fleetkit policy publish`): HTTPS that trusts only the org root CA,
//! with the admin credential as bearer token.

use crate::protocol::*;
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// Largest answer read (an inventory of 100,000 devices is about 80 MB of JSON; the
/// admin API is for people and scripts, so allow a generous cap).
const MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;

pub use crate::client::{ClientError, Result, location, redirect_refusal, refusal};

/// A client of one server.
pub struct AdminClient {
    agent: ureq::Agent,
    base: String,
    authorization: String,
}

impl AdminClient {
    /// `base_url` like `https://fleet.example:8443`; `root_ca_pem` the org root
    /// certificate(s) from the trust anchors.
    pub fn new(base_url: &str, root_ca_pem: &[String], credential: &str) -> Result<Self> {
        let mut roots = Vec::new();
        for pem in root_ca_pem {
            let cert = Certificate::from_pem(pem.as_bytes())
                .map_err(|e| ClientError::BadRoot(e.to_string()))?;
            roots.push(cert);
        }
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            // Never follow a redirect: see `redirect_refusal`.
            .https_only(true)
            .max_redirects(0)
            .build()
            .into();
        Ok(Self {
            agent,
            base: base_url.trim_end_matches('/').to_string(),
            authorization: format!("{ADMIN_AUTH_SCHEME} {credential}"),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        sent: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let mut response = sent.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            return Err(redirect_refusal(
                &self.base,
                status,
                location(&response).as_deref(),
            ));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(refusal(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    pub fn create_token(&self, request: &TokenCreate) -> Result<TokenCreated> {
        let url = self.url("/v1/admin/tokens");
        let sent = self
            .agent
            .post(&url)
            .header("Authorization", &self.authorization)
            .send_json(request);
        self.answer(&url, sent)
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let url = self.url("/v1/admin/tokens");
        let sent = self
            .agent
            .get(&url)
            .header("Authorization", &self.authorization)
            .call();
        self.answer(&url, sent)
    }

    pub fn revoke_token(&self, id: &str) -> Result<TokenInfo> {
        self.revoke_token_and(id, false)
    }

    /// Revokes a token; with `certificates`, also the SCEP certificates it admitted.
    pub fn revoke_token_and(&self, id: &str, certificates: bool) -> Result<TokenInfo> {
        let mut url = self.url(&format!("/v1/admin/tokens/{}/revoke", url_escape(id)));
        if certificates {
            url.push_str("?certificates=true");
        }
        let sent = self
            .agent
            .post(&url)
            .header("Authorization", &self.authorization)
            .send_empty();
        self.answer(&url, sent)
    }

    pub fn list_devices(
        &self,
        team: Option<&str>,
        stale_secs: Option<u64>,
    ) -> Result<Vec<DeviceRecord>> {
        let url = self.url("/v1/admin/devices");
        let mut request = self
            .agent
            .get(&url)
            .header("Authorization", &self.authorization);
        if let Some(team) = team {
            request = request.query("team", team);
        }
        if let Some(secs) = stale_secs {
            request = request.query("stale_secs", secs.to_string());
        }
        self.answer(&url, request.call())
    }

    /// `GET /v1/admin/audit` with the given query parameters.
    pub fn audit_list(&self, query: &[(&str, String)]) -> Result<AuditPage> {
        self.get_with_query("/v1/admin/audit", query)
    }

    /// `GET /v1/admin/audit/stats` with the given query parameters.
    pub fn audit_stats(&self, query: &[(&str, String)]) -> Result<AuditStats> {
        self.get_with_query("/v1/admin/audit/stats", query)
    }

    /// `GET /v1/admin/audit/requests` with the given query parameters.
    pub fn audit_requests(&self, query: &[(&str, String)]) -> Result<RecordedRequests> {
        self.get_with_query("/v1/admin/audit/requests", query)
    }

    fn get_with_query<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let url = self.url(path);
        let mut request = self
            .agent
            .get(&url)
            .header("Authorization", &self.authorization);
        for (k, v) in query {
            request = request.query(*k, v);
        }
        self.answer(&url, request.call())
    }

    pub fn remove_device(&self, id: &str) -> Result<DeviceRecord> {
        let url = self.url(&format!("/v1/admin/devices/{}", url_escape(id)));
        let sent = self
            .agent
            .delete(&url)
            .header("Authorization", &self.authorization)
            .call();
        self.answer(&url, sent)
    }

    /// `PUT /v1/admin/rotations`: one rotation envelope (`rotations/anchors-v<N>.json`).
    pub fn publish_rotation(&self, envelope: &[u8]) -> Result<RotationPublished> {
        let url = self.url("/v1/admin/rotations");
        let sent = self
            .agent
            .put(&url)
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/json")
            .send(envelope);
        self.answer(&url, sent)
    }

    pub fn publish_bundle(&self, bytes: &[u8]) -> Result<Published> {
        let url = self.url("/v1/admin/bundle");
        let sent = self
            .agent
            .put(&url)
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/json")
            .send(bytes);
        self.answer(&url, sent)
    }
}

/// Percent-encodes a path segment.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

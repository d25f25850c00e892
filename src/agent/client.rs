//! The device's HTTPS client of the server: trusts only the root CA of the installed
//! anchors (never the system store, never what the server offers), presents the
//! device certificate once there is one, and maps every answer to a typed result.
//!
//! It follows no redirect: any 3xx (but the 304 of a conditional bundle poll) is
//! refused as `redirect_refused`, naming where it pointed (see
//! [`redirect_refusal`]), so nothing the device sends or fetches can be moved off
//! https or off the server's origin.

use super::identity::{Identity, pem_certificates};
use crate::bundle::MAX_BUNDLE_BYTES;
pub use crate::client::ClientError;
use crate::client::{location, redirect_refusal, refusal};
use crate::protocol::*;
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
use zeroize::Zeroizing;

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Largest JSON answer read (enroll, renew, check-in answers are a few KB).
const MAX_JSON_ANSWER: u64 = 256 * 1024;

/// Largest rotation chain read: far more steps than an org makes in its lifetime
/// (each envelope is a few KB, at most `anchors::MAX_ANCHORS_BYTES`).
const MAX_ROTATIONS_ANSWER: u64 = 16 * 1024 * 1024;

/// A bundle download.
#[derive(Debug)]
pub enum BundleAnswer {
    /// 304: what we hold (by ETag) is still the published bundle.
    NotModified,
    /// The published bundle's exact bytes and their ETag.
    Bundle {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
}

/// The certificates a client trusts: those of `roots_pem`, and with
/// `public_roots` Mozilla's list of public roots (built in).
fn trusted_roots(roots_pem: &[String], public_roots: bool) -> Result<Vec<Certificate<'static>>> {
    let public: &[rustls::pki_types::CertificateDer<'static>] = if public_roots {
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
    } else {
        &[]
    };
    let mut roots: Vec<Certificate<'static>> = public
        .iter()
        .map(|der| Certificate::from_der(der).to_owned())
        .collect();
    for pem in roots_pem {
        for der in pem_certificates(pem).map_err(ClientError::BadRoot)? {
            roots.push(Certificate::from_der(&der).to_owned());
        }
    }
    if roots.is_empty() {
        return Err(ClientError::BadRoot(
            "the trust anchors hold no root CA certificate".into(),
        ));
    }
    Ok(roots)
}

/// A client of one server. Cloning shares its connections (ureq's agent).
#[derive(Clone)]
pub struct DeviceClient {
    agent: ureq::Agent,
    base: String,
}

impl DeviceClient {
    /// `roots_pem`: the root CA certificates of the installed anchors; `identity`:
    /// the device key and chain, for the device endpoints.
    pub fn new(base_url: &str, roots_pem: &[String], identity: Option<&Identity>) -> Result<Self> {
        Self::with_roots(base_url, roots_pem, false, identity)
    }

    /// A client of another service (the SIEM): no device certificate, and
    /// `public_roots` (Mozilla's, built in) trusted besides `roots_pem`.
    pub fn for_service(base_url: &str, roots_pem: &[String], public_roots: bool) -> Result<Self> {
        Self::with_roots(base_url, roots_pem, public_roots, None)
    }

    fn with_roots(
        base_url: &str,
        roots_pem: &[String],
        public_roots: bool,
        identity: Option<&Identity>,
    ) -> Result<Self> {
        let roots = trusted_roots(roots_pem, public_roots)?;
        let mut tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(roots)));
        if let Some(id) = identity {
            let chain: Vec<Certificate<'static>> = pem_certificates(&id.chain_pem)
                .map_err(ClientError::BadRoot)?
                .iter()
                .map(|d| Certificate::from_der(d).to_owned())
                .collect();
            let key_pem = Zeroizing::new(id.key.serialize_pem());
            let key = PrivateKey::from_pem(key_pem.as_bytes())
                .map_err(|e| ClientError::BadRoot(format!("device key: {e}")))?
                .to_owned();
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            // No redirect is followed, and no plain-http request is ever made.
            .https_only(true)
            .max_redirects(0)
            .user_agent(format!("fleetkit-agent/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self {
            agent,
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(url: &str, e: ureq::Error) -> ClientError {
        ClientError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        }
    }

    fn read(
        &self,
        url: &str,
        sent: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        limit: u64,
    ) -> Result<(u16, Option<String>, Vec<u8>)> {
        let mut response = sent.map_err(|e| Self::unreachable(url, e))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            return Err(redirect_refusal(
                &self.base,
                status,
                location(&response).as_deref(),
            ));
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        Ok((status, etag, body))
    }

    fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let url = self.url(path);
        let sent = self.agent.post(&url).send_json(body);
        let (status, _, bytes) = self.read(&url, sent, MAX_JSON_ANSWER)?;
        if !(200..300).contains(&status) {
            return Err(refusal(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    pub fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse> {
        self.post_json("/v1/enroll", request)
    }

    pub fn renew(&self, request: &RenewRequest) -> Result<EnrollResponse> {
        self.post_json("/v1/renew", request)
    }

    pub fn checkin(&self, request: &CheckinRequest) -> Result<CheckinResponse> {
        self.post_json("/v1/checkin", request)
    }

    /// POSTs `body` to the base URL itself (the SIEM's bulk endpoint; this client is
    /// then built with the SIEM's trusted roots and no identity): the status and up
    /// to `limit` bytes of the answer. `authorization`: the header's whole value.
    pub fn post_raw(
        &self,
        content_type: &str,
        authorization: Option<&str>,
        body: &[u8],
        limit: u64,
    ) -> Result<(u16, Vec<u8>)> {
        let mut request = self
            .agent
            .post(&self.base)
            .header("Content-Type", content_type);
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let (status, _, bytes) = self.read(&self.base, request.send(body), limit)?;
        Ok((status, bytes))
    }

    /// `POST /v1/audit`: records of the device's chain, as written.
    pub fn audit(&self, upload: &AuditUpload) -> Result<AuditAck> {
        self.post_json("/v1/audit", upload)
    }

    /// `GET /v1/rotations?after=N`: the rotation envelopes after anchors version
    /// `after`, oldest first, each as the exact bytes the server holds. Nothing is
    /// checked here: the caller walks them from the anchors it trusts.
    pub fn rotations(&self, after: u64) -> Result<Vec<Vec<u8>>> {
        let url = self.url(&format!("/v1/rotations?after={after}"));
        let sent = self.agent.get(&url).call();
        let (status, _, bytes) = self.read(&url, sent, MAX_ROTATIONS_ANSWER)?;
        if status != 200 {
            return Err(refusal(status, &bytes));
        }
        let chain: Vec<Box<serde_json::value::RawValue>> = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::BadAnswer(format!("the rotation chain: {e}")))?;
        Ok(chain
            .into_iter()
            .map(|raw| raw.get().as_bytes().to_vec())
            .collect())
    }

    /// `GET /v1/bundle`, conditional on the ETag we hold. Reads at most one byte
    /// more than the bundle size cap, so that an oversized answer is refused by the
    /// verifier's own size check and never buffered whole.
    pub fn bundle(&self, etag: Option<&str>) -> Result<BundleAnswer> {
        let url = self.url("/v1/bundle");
        let mut request = self.agent.get(&url);
        if let Some(tag) = etag {
            request = request.header("If-None-Match", tag);
        }
        let sent = request.call();
        let mut response = sent.map_err(|e| Self::unreachable(&url, e))?;
        let status = response.status().as_u16();
        if status == 304 {
            return Ok(BundleAnswer::NotModified);
        }
        if (300..400).contains(&status) {
            return Err(redirect_refusal(
                &self.base,
                status,
                location(&response).as_deref(),
            ));
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        use std::io::Read;
        response
            .body_mut()
            .as_reader()
            .take(MAX_BUNDLE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        if status != 200 {
            return Err(refusal(status, &bytes));
        }
        Ok(BundleAnswer::Bundle { bytes, etag })
    }
}

// The test listener borrows the server's TLS set-up, which only the admin build has.
#[cfg(all(test, feature = "admin"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn public_roots_are_trusted_only_when_asked_and_the_given_ones_always() {
        let now = crate::clock::now();
        let root = crate::pki::OrgCa::generate("acme-corp", now)
            .unwrap()
            .root_cert_pem();
        let pinned = trusted_roots(std::slice::from_ref(&root), false).unwrap();
        assert_eq!(pinned.len(), 1);
        let public = trusted_roots(std::slice::from_ref(&root), true).unwrap();
        assert!(public.len() > 100, "{}", public.len());
        assert!(public.iter().any(|c| c.der() == pinned[0].der()));
        assert!(trusted_roots(&[], false).is_err());
    }

    /// A TLS listener with a certificate from a fresh org's issuing CA, answering
    /// each request with `status` and `extra` headers; returns the URL and the root.
    fn answering(status: &str, extra: &'static str) -> (String, String) {
        let now = crate::clock::now();
        let ca = crate::pki::OrgCa::generate("acme-corp", now)
            .unwrap()
            .into_issuing();
        let config =
            crate::server::tls::server_config(&ca, &["localhost".into()], "acme-corp", now)
                .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let status = status.to_string();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let _ = write!(
                    tls,
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.flush();
            }
        });
        (url, ca.root_cert_pem().to_string())
    }

    #[test]
    fn bundle_redirects_are_refused_and_304_is_not_a_redirect() {
        let (url, root) = answering("304 Not Modified", "ETag: \"v1\"\r\n");
        let client = DeviceClient::new(&url, &[root], None).unwrap();
        assert!(matches!(
            client.bundle(Some("\"v1\"")).unwrap(),
            BundleAnswer::NotModified
        ));
        for status in [
            "301 Moved Permanently",
            "307 Temporary Redirect",
            "308 Permanent Redirect",
        ] {
            let (url, root) = answering(status, "Location: http://127.0.0.1:9/v1/bundle\r\n");
            let client = DeviceClient::new(&url, &[root], None).unwrap();
            match client.bundle(None) {
                Err(ClientError::Refused { code, message, .. }) => {
                    assert_eq!(code, ErrorCode::RedirectRefused, "{status}");
                    assert!(
                        message.contains("http://127.0.0.1:9/v1/bundle")
                            && message.contains(&format!("never follows redirects off {url}")),
                        "{status}: {message}"
                    );
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }
}

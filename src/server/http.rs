//! The HTTPS front: a TLS accept loop that records each connection's client
//! certificate, and the axum router of `protocol`'s endpoints.
//!
//! A connection's device is looked up once, at its first device request, and kept
//! for the connection's life: a poll over keep-alive costs no database query.

use super::api::{self, AppState};
use crate::pki::fingerprint_der;
use axum::Router;
use axum::routing::{delete, get, post, put};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// What the TLS layer learnt about the client, shared by all requests of a connection.
#[derive(Debug, Default)]
pub struct Peer {
    /// `sha256:<hex>` of the client certificate, when one was presented.
    pub certificate_fingerprint: Option<String>,
    /// The device behind that certificate, looked up on first use.
    pub device: tokio::sync::OnceCell<Option<crate::server::store::DeviceRow>>,
}

/// The router of every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/enroll", post(api::enroll))
        .route("/v1/renew", post(api::renew))
        .route("/v1/checkin", post(api::checkin))
        .route("/v1/bundle", get(api::bundle))
        .route(
            "/v1/admin/tokens",
            post(api::create_token).get(api::list_tokens),
        )
        .route("/v1/admin/tokens/{id}/revoke", post(api::revoke_token))
        .route("/v1/admin/devices", get(api::list_devices))
        .route("/v1/admin/devices/{id}", delete(api::remove_device))
        .route("/v1/admin/bundle", put(api::publish_bundle))
        .route("/v1/health", get(api::health))
        .fallback(api::not_found)
        .with_state(state)
}

/// Accepts TLS connections on `listener` and serves `router` on each until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, _remote): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let peer = Arc::new(Peer {
                certificate_fingerprint: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(|leaf| fingerprint_der(leaf)),
                device: tokio::sync::OnceCell::new(),
            });
            let service = hyper::service::service_fn(move |mut request| {
                request.extensions_mut().insert(peer.clone());
                router.clone().call(request)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

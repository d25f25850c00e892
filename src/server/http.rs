//! The HTTPS front: a TLS accept loop that records each connection's client
//! certificate for the router of `api`.
//!
//! Only the certificate is kept per connection, never the device it belongs to: the
//! device is looked up on every request, so that a removal or a renewal takes effect
//! on connections already open (DESIGN.md rule 8).

use crate::pki::fingerprint_der;
use axum::Router;
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

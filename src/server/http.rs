//! The HTTPS front: a TLS accept loop that records each connection's client
//! certificate, and the axum router of `protocol`'s endpoints.
//!
//! Only the certificate is kept per connection, never the device it belongs to: the
//! device is looked up on every request, so that a removal or a renewal takes effect
//! on connections already open (DESIGN.md rule 8).
//!
//! Slow and greedy clients (DESIGN.md security rule 11) meet three bounds here, so no
//! handler has to think about them:
//!
//! - **deadlines**: the TLS handshake within 10 s, a request's headers within 15 s
//!   (hyper; this also bounds an idle keep-alive connection), and its body within
//!   [`Limits::request_timeout`] (30 s) of the headers. A body that does not arrive
//!   in time ends the request with `408 request_timeout` and the connection closes.
//!   A write that stalls that long (the client stopped reading its answers) ends the
//!   connection, and an anonymous connection lives at most a request's worth of
//!   deadlines twice over;
//! - **a connection cap**, [`Limits::max_connections`], of which a reserve
//!   ([`Limits::device_reserve`], a quarter) only serves devices: a connection counts
//!   as *anonymous* while in its handshake and afterwards when it presented no client
//!   certificate. Anonymous connections share `max − reserve` slots, at most
//!   [`Limits::per_ip`] from one source (an IPv6 source is its /64). When the
//!   anonymous slots are full a new connection may still do its handshake on the
//!   reserve (at most two per source, at most half the reserve at once), with a
//!   shorter deadline, and stays only if it presents the current certificate of an
//!   enrolled device (asked of the store once per connection; a removed device's or
//!   a superseded certificate counts as none), and one certificate holds at most
//!   four connections: enrolled devices keep being served while anonymous clients
//!   are turned away;
//! - **refusal at once**: a connection over its limit is closed on accept, before any
//!   TLS work.

use crate::pki::fingerprint_der;
use crate::protocol::ApiError;
use crate::server::store::Store;
use axum::Router;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tower::Service;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The handshake deadline of a connection admitted on the device reserve: a device
/// on any working network completes TLS in a few round trips, and a reserve slot held
/// by a stalled handshake is one a device cannot use.
const RESERVE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections one device certificate may hold at once: the agent uses one at a
/// time; a few allow for a retry overlapping a connection the server has not yet
/// seen close. A certificate (even a live one, copied off a device) never gets
/// more than this, so it cannot take the reserve.
const MAX_CONNECTIONS_PER_DEVICE: usize = 4;
/// Connections from one source that may be in their handshake on the device reserve
/// at once, while the anonymous slots are full: enough for a device behind the same
/// NAT as others, too few for one source to fill the reserve with stalled
/// handshakes.
const RESERVE_HANDSHAKES_PER_SOURCE: usize = 2;

/// Default of `fleetkit serve --max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of `fleetkit serve --max-connections-per-ip`: a few dozen, so that one
/// office behind NAT can enroll a batch of machines at once while one attacker
/// cannot take more than a sliver of the anonymous slots.
pub const DEFAULT_PER_IP: usize = 32;
/// Default time to receive a request's body once its headers are in.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds on connections and requests (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, of every kind.
    pub max_connections: usize,
    /// Of those, how many only connections with a client certificate may use.
    pub device_reserve: usize,
    /// Anonymous connections (in their handshake, or without a client certificate)
    /// from one source address (IPv6: one /64).
    pub per_ip: usize,
    /// Time to receive a request's body once its headers are in; the header deadline
    /// is the shorter of this and 15 s.
    pub request_timeout: Duration,
}

impl Limits {
    /// `max_connections` (at least 2) with a quarter (at least 1) kept for devices,
    /// and `per_ip` (at least 1) anonymous connections per source.
    pub fn new(max_connections: usize, per_ip: usize, request_timeout: Duration) -> Self {
        let max_connections = max_connections.max(2);
        Self {
            max_connections,
            device_reserve: (max_connections / 4).max(1),
            per_ip: per_ip.max(1),
            request_timeout,
        }
    }

    fn anonymous_max(&self) -> usize {
        self.max_connections.saturating_sub(self.device_reserve)
    }

    fn header_timeout(&self) -> Duration {
        self.request_timeout.min(HEADER_READ_TIMEOUT)
    }

    /// Reserve slots that may be in their handshake at once: half, so that stalled
    /// handshakes never fill the reserve.
    fn reserve_handshakes_max(&self) -> usize {
        (self.device_reserve / 2).max(1)
    }

    /// How long an anonymous connection may live, whatever it does: a request's
    /// headers and body and its answer, twice over. Enrollment and the admin API
    /// need seconds; a client pipelining requests while reading the answers a byte
    /// at a time would otherwise hold its slot for as long as it likes.
    fn anonymous_lifetime(&self) -> Duration {
        self.header_timeout() + self.request_timeout * 2
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(
            DEFAULT_MAX_CONNECTIONS,
            DEFAULT_PER_IP,
            DEFAULT_REQUEST_TIMEOUT,
        )
    }
}

/// What the TLS layer learnt about the client, shared by all requests of a connection.
#[derive(Debug, Default)]
pub struct Peer {
    /// `sha256:<hex>` of the client certificate, when one was presented.
    pub certificate_fingerprint: Option<String>,
}

// ----- admission ----------------------------------------------------------------------

/// Where anonymous connections are counted: the address, or an IPv6 source's /64 (one
/// host usually holds a whole /64, so counting single addresses would not limit it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.into()),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The connection counts, shared by the accept loop and every connection's [`Slot`].
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    anonymous: usize,
    per_source: HashMap<Source, usize>,
    /// Reserve slots still in their handshake.
    reserve_handshakes: usize,
    /// Connections per live device certificate (by fingerprint).
    per_device: HashMap<String, usize>,
}

/// Admits or refuses new connections against [`Limits`].
#[derive(Debug)]
struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
}

/// How a connection was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// On an anonymous slot: may stay without a client certificate.
    Anonymous,
    /// On the device reserve: must present a client certificate.
    Reserve,
}

impl Admission {
    fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: every update is a
        // single increment or decrement.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `ip`, or `None`: close it at once.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let source = Source::of(ip);
        let mut counts = self.lock();
        let from_source = counts.per_source.get(&source).copied().unwrap_or(0);
        if counts.total >= self.limits.max_connections || from_source >= self.limits.per_ip {
            return None;
        }
        let pool = if counts.anonymous < self.limits.anonymous_max() {
            counts.anonymous += 1;
            Pool::Anonymous
        } else if from_source < RESERVE_HANDSHAKES_PER_SOURCE
            && counts.reserve_handshakes < self.limits.reserve_handshakes_max()
        {
            counts.reserve_handshakes += 1;
            Pool::Reserve
        } else {
            return None;
        };
        counts.total += 1;
        *counts.per_source.entry(source).or_insert(0) += 1;
        Some(Slot {
            admission: self.clone(),
            source,
            pool,
            anonymous: true,
            device: None,
        })
    }
}

/// One admitted connection's share of the counts, given back when it is dropped.
#[derive(Debug)]
struct Slot {
    admission: Arc<Admission>,
    source: Source,
    pool: Pool,
    /// Still counted per source (and, on [`Pool::Anonymous`], as anonymous; on
    /// [`Pool::Reserve`], as a reserve handshake).
    anonymous: bool,
    /// The live device certificate this connection is counted under.
    device: Option<String>,
}

impl Slot {
    /// The connection presented the current certificate of an enrolled device
    /// (`fingerprint`): it leaves the anonymous counts and is counted under that
    /// device instead. `false` when the device already holds
    /// [`MAX_CONNECTIONS_PER_DEVICE`]: close it.
    fn authenticated(&mut self, fingerprint: &str) -> bool {
        if !self.anonymous {
            return true;
        }
        let admission = self.admission.clone();
        let mut counts = admission.lock();
        let held = counts.per_device.get(fingerprint).copied().unwrap_or(0);
        if held >= MAX_CONNECTIONS_PER_DEVICE {
            return false;
        }
        *counts
            .per_device
            .entry(fingerprint.to_string())
            .or_insert(0) += 1;
        self.device = Some(fingerprint.to_string());
        self.release_anonymous(&mut counts);
        true
    }

    fn release_anonymous(&mut self, counts: &mut Counts) {
        match self.pool {
            Pool::Anonymous => counts.anonymous -= 1,
            Pool::Reserve => counts.reserve_handshakes -= 1,
        }
        if let Some(n) = counts.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                counts.per_source.remove(&self.source);
            }
        }
        self.anonymous = false;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let admission = self.admission.clone();
        let mut counts = admission.lock();
        if self.anonymous {
            self.release_anonymous(&mut counts);
        }
        if let Some(device) = self.device.take()
            && let Some(n) = counts.per_device.get_mut(&device)
        {
            *n -= 1;
            if *n == 0 {
                counts.per_device.remove(&device);
            }
        }
        counts.total -= 1;
    }
}

// ----- request deadline ---------------------------------------------------------------

/// A request body that must be complete by a deadline. Past it, the next read fails
/// and `expired` is set, so that the service answers `408 request_timeout` whatever
/// the handler made of the failed read. Data that arrived in time is always handed
/// over, even when the handler reads it late.
struct DeadlineBody {
    inner: Incoming,
    sleep: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

/// The error a late body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(BodyTimedOut.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request whose body came too late; the connection closes after it.
fn request_timeout_response(timeout: Duration) -> Response {
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(ApiError {
            code: crate::protocol::ErrorCode::RequestTimeout,
            message: format!(
                "the request body did not arrive within {} s of its headers",
                timeout.as_secs()
            ),
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

// ----- accept loop --------------------------------------------------------------------

/// Accepts TLS connections on `listener` and serves `router` on each, within
/// `limits`, until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    acceptor: super::tls::Acceptor,
    router: Router,
    limits: Limits,
    store: Store,
    shutdown: impl Future<Output = ()>,
) {
    let admission = Admission::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
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
        // Over its limit: closed here, before any TLS work is spent on it, with a
        // reset, so that a flood of refusals leaves no TIME_WAIT sockets behind.
        let Some(slot) = admission.admit(remote.ip()) else {
            let _ = tcp.set_zero_linger();
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let limits = admission.limits.clone();
        let store = store.clone();
        tokio::spawn(serve_connection(tcp, slot, acceptor, router, limits, store));
    }
}

/// One connection: the handshake, then HTTP/1.1 until the client or a deadline ends
/// it. The slot is given back when this returns.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    mut slot: Slot,
    acceptor: super::tls::Acceptor,
    router: Router,
    limits: Limits,
    store: Store,
) {
    let handshake_timeout = match slot.pool {
        Pool::Anonymous => HANDSHAKE_TIMEOUT,
        Pool::Reserve => RESERVE_HANDSHAKE_TIMEOUT,
    };
    let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.tls.accept(tcp)).await
    else {
        return;
    };
    // The handshake proved the key; the chain to the org root is checked here (a
    // certificate that does not verify counts as none: see `tls`), so a presented
    // certificate is one we issued. Whether it is still the current one of an
    // enrolled device is the store's to say: a removed device's certificate, or one
    // superseded by a renewal, counts as no certificate here.
    let certificate_fingerprint = tls
        .get_ref()
        .1
        .peer_certificates()
        .filter(|certs| acceptor.client_check.verifies(certs))
        .and_then(|certs| certs.first())
        .map(|leaf| fingerprint_der(leaf));
    let live = match &certificate_fingerprint {
        Some(fingerprint) => matches!(
            tokio::time::timeout(handshake_timeout, store.device_by_certificate(fingerprint)).await,
            Ok(Ok(Some(_)))
        ),
        None => false,
    };
    match (&certificate_fingerprint, live, slot.pool) {
        (Some(fingerprint), true, _) => {
            if !slot.authenticated(fingerprint) {
                return;
            }
        }
        (_, _, Pool::Anonymous) => {}
        // The reserve is for devices only. The slot is given back before the socket
        // closes, so a client that sees the close can count on the slot being free.
        (_, _, Pool::Reserve) => {
            drop(slot);
            return;
        }
    }
    let anonymous = slot.anonymous;
    let peer = Arc::new(Peer {
        certificate_fingerprint,
    });
    let request_timeout = limits.request_timeout;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(peer.clone());
        let expired = Arc::new(AtomicBool::new(false));
        let body = DeadlineBody {
            inner: body,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now() + request_timeout)),
            expired: expired.clone(),
        };
        let call = router
            .clone()
            .call(Request::from_parts(parts, axum::body::Body::new(body)));
        async move {
            let response = call.await?;
            if expired.load(Ordering::Relaxed) {
                return Ok(request_timeout_response(request_timeout));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout())
        .keep_alive(true)
        .serve_connection(
            TokioIo::new(StallDeadline::new(tls, limits.request_timeout)),
            service,
        );
    if anonymous {
        // Dropping the connection closes it: the slot comes back with `slot`.
        let _ = tokio::time::timeout(limits.anonymous_lifetime(), connection).await;
    } else {
        let _ = connection.await;
    }
    drop(slot);
}

// ----- write deadline -----------------------------------------------------------------

/// A stream whose writes may not stall: once a write (or flush) has been pending for
/// `limit` — the client stopped reading its answers — it fails, and the connection
/// with it. hyper's header timer only runs while it reads a request, so without this
/// a client that never reads holds its connection, and its slot, for ever.
struct StallDeadline<T> {
    inner: T,
    limit: Duration,
    stalled_since: Option<Pin<Box<Sleep>>>,
}

impl<T> StallDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled_since: None,
        }
    }

    /// `Pending` from the inner stream starts (or keeps) the clock; past the limit
    /// the write fails. Anything else stops the clock.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match polled {
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self
                    .stalled_since
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading its answers",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled_since = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn anonymous_connections_stop_short_of_the_device_reserve() {
        // 8 connections, 2 for devices, 4 anonymous per source.
        let admission = Admission::new(Limits::new(8, 4, DEFAULT_REQUEST_TIMEOUT));
        let a: Vec<Slot> = (0..4)
            .filter_map(|_| admission.admit(ip("10.0.0.1")))
            .collect();
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|s| s.pool == Pool::Anonymous));
        assert!(admission.admit(ip("10.0.0.1")).is_none(), "per source");
        let b: Vec<Slot> = (0..2)
            .filter_map(|_| admission.admit(ip("10.0.0.2")))
            .collect();
        // The anonymous slots (6) are full: the next one may only handshake as a device.
        let mut d = admission.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(d.pool, Pool::Reserve);
        // Half the reserve (1) may be in its handshake at once.
        assert!(
            admission.admit(ip("10.0.0.5")).is_none(),
            "reserve handshakes"
        );
        assert!(d.authenticated("sha256:d"));
        let e = admission.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(e.pool, Pool::Reserve);
        assert!(admission.admit(ip("10.0.0.4")).is_none(), "total reached");
        drop((a, b, d, e));
        let counts = admission.lock();
        assert_eq!((counts.total, counts.anonymous), (0, 0));
        assert_eq!(counts.reserve_handshakes, 0);
        assert!(counts.per_source.is_empty());
        assert!(counts.per_device.is_empty());
    }

    #[test]
    fn one_device_certificate_never_takes_the_reserve() {
        let admission = Admission::new(Limits::new(64, 64, DEFAULT_REQUEST_TIMEOUT));
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_DEVICE {
            let mut slot = admission.admit(ip("10.0.0.9")).unwrap();
            assert!(slot.authenticated("sha256:copied"));
            held.push(slot);
        }
        let mut one_more = admission.admit(ip("10.0.0.9")).unwrap();
        assert!(!one_more.authenticated("sha256:copied"), "per device");
        let mut other = admission.admit(ip("10.0.0.9")).unwrap();
        assert!(other.authenticated("sha256:another"));
        drop((held, one_more, other));
        assert!(admission.lock().per_device.is_empty());
    }

    #[test]
    fn a_source_holding_anonymous_slots_gets_no_reserve() {
        // 8 connections: 6 anonymous, 2 reserve; 8 per source.
        let admission = Admission::new(Limits::new(8, 8, DEFAULT_REQUEST_TIMEOUT));
        let a: Vec<Slot> = (0..6)
            .filter_map(|_| admission.admit(ip("10.0.0.1")))
            .collect();
        assert_eq!(a.len(), 6);
        assert!(
            admission.admit(ip("10.0.0.1")).is_none(),
            "the source filling the anonymous slots gets no reserve handshake"
        );
        assert_eq!(admission.admit(ip("10.0.0.2")).unwrap().pool, Pool::Reserve);
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
    }
}

//! HTTPS endpoints for the tests that play another party (a SIEM, a redirecting
//! server): a loopback listener with a certificate from the test org's issuing CA,
//! made by the same code as `fleetkit serve`'s, and one request answered per
//! connection.

use super::Org;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use time::OffsetDateTime;

/// A bound loopback listener and the TLS configuration to answer on it.
pub struct HttpsListener {
    pub listener: TcpListener,
    pub config: Arc<rustls::ServerConfig>,
    pub port: u16,
}

impl HttpsListener {
    /// A free loopback port, with a `localhost` certificate from `org`'s CA.
    pub fn bind(org: &Org) -> Self {
        let ca = fleetkit::pki::IssuingCa::load(&org.path().join("keys")).unwrap();
        let config = fleetkit::server::tls::server_config(
            &ca,
            &["localhost".into()],
            "acme-corp",
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        Self {
            listener,
            config: Arc::new(config),
            port,
        }
    }
}

/// Reads one request on `tcp` over TLS (head and body: a socket closed with
/// unread bytes resets the connection, which a client could see before the
/// answer) and writes the whole response `respond(head, body)` returns, then
/// closes. Nothing when the request does not arrive whole.
pub fn answer_one(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    respond: impl FnOnce(&str, &[u8]) -> String,
) {
    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let Some((head, body)) = read_request(&mut tls) else {
        return;
    };
    let response = respond(&head, &body);
    let _ = tls.write_all(response.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// Reads one HTTP/1.1 request: its head (request line and headers) and its body
/// (by Content-Length).
pub fn read_request<S: Read>(tls: &mut S) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tls.read(&mut byte).ok()? != 1 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).ok()?;
    Some((head, body))
}

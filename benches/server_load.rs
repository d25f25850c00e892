//! Load generator for `fleetkit serve` on loopback: enrollments per second (SQLite,
//! and PostgreSQL when FLEETKIT_TEST_POSTGRES is set), 304 bundle polls per second,
//! and SCEP enrollments per second side by side with Debian's `scepserver`
//! (see `server_load/scep.rs`).
//!
//! `cargo bench --bench server_load [-- --enrollments N --polls-secs S --connections C]`
//! `cargo bench --bench server_load -- --only scep [--scep-enrollments N
//!  --scep-concurrency 1,8,32 --scep-keys K --scep-rounds R --scep-profile N
//!  --scep-strict]`
//!
//! The server runs as its own process (the release binary); the generator is one
//! async thread holding C keep-alive TLS connections, each sending requests back to
//! back. Device keys and CSRs are made before the clock starts: the figure is the
//! server's, not the generator's key generation.

use fleetkit::protocol::{EnrollRequest, EnrollResponse, TokenCreate};
use fleetkit::server::admin_client::AdminClient;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use scratch_postgres::ScratchDb;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[path = "server_load/scep.rs"]
mod scep;
#[path = "fixtures/scratch_postgres.rs"]
mod scratch_postgres;

const BIN: &str = env!("CARGO_BIN_EXE_fleetkit");

struct Options {
    enrollments: usize,
    polls_secs: u64,
    connections: usize,
    /// Scenarios to run (`--only enroll,poll,scep`; all by default).
    only: Vec<String>,
    scep: scep::ScepOptions,
}

impl Options {
    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let get = |name: &str, default: u64| {
        value(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}"))
            })
            .unwrap_or(default)
    };
    let list = |name: &str| -> Vec<String> {
        value(name)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    };
    let only = list("--only");
    for s in &only {
        assert!(
            ["enroll", "poll", "scep"].contains(&s.as_str()),
            "--only takes enroll, poll and scep, not {s:?}"
        );
    }
    let mut concurrency: Vec<usize> = list("--scep-concurrency")
        .iter()
        .map(|c| c.parse().expect("--scep-concurrency takes numbers: 8,32"))
        .collect();
    if concurrency.is_empty() {
        concurrency = vec![1, 8, 32];
    }
    Options {
        enrollments: get("--enrollments", 5000) as usize,
        polls_secs: get("--polls-secs", 5),
        connections: get("--connections", 32) as usize,
        only,
        scep: scep::ScepOptions {
            enrollments: get("--scep-enrollments", 2000) as usize,
            concurrency,
            keys: get("--scep-keys", 32).max(1) as usize,
            rounds: get("--scep-rounds", 1).max(1) as usize,
            profile: get("--scep-profile", 200) as usize,
            strict: args.iter().any(|a| a == "--scep-strict"),
        },
    }
}

fn fleetkit(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(ws: &str, db: &str) -> Server {
    let mut child = Command::new(BIN)
        .args([
            "--workspace",
            ws,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db,
            // Every load connection comes from 127.0.0.1: lift the per-source share
            // of anonymous connections, which is not what this bench measures.
            "--max-connections-per-ip",
            "1000000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .split_once("127.0.0.1:")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("server did not start: {line}"));
    Server { child, port }
}

fn csr(key: &rcgen::KeyPair, cn: &str) -> String {
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn facts(i: usize) -> fleetkit::protocol::DeviceFacts {
    fleetkit::protocol::DeviceFacts {
        machine_id: format!("m-load-{i}"),
        hostname: format!("host-{i}"),
        platform: "linux-x86_64".into(),
        os_name: "Debian".into(),
        os_version: "12".into(),
        arch: "x86_64".into(),
        serial: None,
        user: "alice".into(),
        agent_version: "0.1.0".into(),
        team: Some("platform".into()),
        department: None,
        environment: None,
        compliance_zone: None,
    }
}

fn tls_connector(
    root_pem: &str,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let (_, block) = x509_parser::pem::parse_x509_pem(root_pem.as_bytes()).unwrap();
    roots.add(CertificateDer::from(block.contents)).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(port: u16, tls: &TlsConnector) -> Sender {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends every body in `bodies` as POST /v1/enroll over `c` connections; returns the
/// elapsed time and the successful answers.
async fn enroll_all(
    port: u16,
    tls: TlsConnector,
    bodies: Vec<Vec<u8>>,
    c: usize,
) -> (Duration, usize) {
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let queue = queue.clone();
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(port, &tls).await;
            let mut ok = 0usize;
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    break;
                };
                let request = hyper::Request::post("/v1/enroll")
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                if status == 200 && serde_json::from_slice::<EnrollResponse>(&body).is_ok() {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    (start.elapsed(), ok)
}

/// Polls with one connection per device (`devices[i]` on connection i): the server
/// allows a device certificate only a few connections, as a real fleet has.
async fn poll_for(
    port: u16,
    devices: Vec<TlsConnector>,
    etag: String,
    secs: u64,
) -> (Duration, usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for tls in devices {
        let etag = etag.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(port, &tls).await;
            let mut n = 0usize;
            while Instant::now() < deadline {
                let request = hyper::Request::get("/v1/bundle")
                    .header("host", "localhost")
                    .header("if-none-match", &etag)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 304);
                let _ = response.into_body().collect().await;
                n += 1;
            }
            n
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    (start.elapsed(), n)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us with no
    // arguments: keep that a quick smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let mut opts = options();
    if smoke {
        opts = Options {
            enrollments: 50,
            polls_secs: 1,
            connections: 4,
            only: opts.only,
            scep: scep::ScepOptions {
                enrollments: 20,
                concurrency: vec![4],
                keys: 2,
                rounds: 1,
                profile: 5,
                strict: opts.scep.strict,
            },
        };
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("acme");
    let ws = ws.to_str().unwrap();
    fleetkit(&["init", ws, "--org", "acme-corp"]);
    fleetkit(&["--workspace", ws, "policy", "sign"]);
    let root_pem = std::fs::read_to_string(format!("{ws}/keys/root-ca.pem")).unwrap();

    // Keys and CSRs first, outside the measurement.
    let device_keys = opts.runs("enroll") || opts.runs("poll");
    let keys: Vec<rcgen::KeyPair> = (0..if device_keys { opts.enrollments } else { 0 })
        .map(|_| rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap())
        .collect();
    let csrs: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| csr(k, &format!("m-load-{i}")))
        .collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if opts.runs("enroll") {
        let mut databases = vec![(
            "SQLite",
            format!("sqlite://{}/fleet.db", dir.path().display()),
        )];
        let scratch = ScratchDb::create("fleetkit_bench");
        if let Some(db) = &scratch {
            databases.push(("PostgreSQL", db.url.clone()));
        }

        for (name, db) in databases {
            let server = start_server(ws, &db);
            let credential =
                std::fs::read_to_string(format!("{ws}/keys/admin-credential")).unwrap();
            let admin = AdminClient::new(
                &format!("https://localhost:{}", server.port),
                std::slice::from_ref(&root_pem),
                credential.trim(),
            )
            .unwrap();
            let token = admin
                .create_token(&TokenCreate {
                    team: "platform".into(),
                    max_uses: opts.enrollments as u32,
                    expires_in_secs: 3600,
                    note: Some("load test".into()),
                    replace_existing: false,
                    kind: fleetkit::protocol::TokenKind::Agent,
                })
                .unwrap()
                .token;
            let bodies: Vec<Vec<u8>> = csrs
                .iter()
                .enumerate()
                .map(|(i, csr)| {
                    serde_json::to_vec(&EnrollRequest {
                        token: token.clone(),
                        csr_pem: csr.clone(),
                        facts: facts(i),
                    })
                    .unwrap()
                })
                .collect();
            let tls = tls_connector(&root_pem, None);
            let (elapsed, ok) =
                runtime.block_on(enroll_all(server.port, tls, bodies, opts.connections));
            assert_eq!(ok, opts.enrollments, "every enrollment must succeed");
            println!(
                "enroll ({name}): {ok} enrollments over {} connections in {:.2} s = {:.0}/s",
                opts.connections,
                elapsed.as_secs_f64(),
                ok as f64 / elapsed.as_secs_f64()
            );
            drop(server);
        }
    }

    if opts.runs("poll") {
        // Polls: one enrolled device per connection, each with its own certificate.
        let (_, db) = (
            "SQLite",
            format!("sqlite://{}/polls.db", dir.path().display()),
        );
        let server = start_server(ws, &db);
        let credential = std::fs::read_to_string(format!("{ws}/keys/admin-credential")).unwrap();
        let admin = AdminClient::new(
            &format!("https://localhost:{}", server.port),
            std::slice::from_ref(&root_pem),
            credential.trim(),
        )
        .unwrap();
        let pollers = opts.connections.min(keys.len());
        let token = admin
            .create_token(&TokenCreate {
                team: "platform".into(),
                max_uses: pollers as u32,
                expires_in_secs: 3600,
                note: None,
                replace_existing: false,
                kind: fleetkit::protocol::TokenKind::Agent,
            })
            .unwrap()
            .token;
        let anonymous = tls_connector(&root_pem, None);
        let mut devices = Vec::with_capacity(pollers);
        for (i, key) in keys.iter().enumerate().take(pollers) {
            let body = serde_json::to_vec(&EnrollRequest {
                token: token.clone(),
                csr_pem: csrs[i].clone(),
                facts: facts(i),
            })
            .unwrap();
            let answer: EnrollResponse = runtime.block_on(async {
                let mut sender = connect(server.port, &anonymous).await;
                let request = hyper::Request::post("/v1/enroll")
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                serde_json::from_slice(&bytes).unwrap()
            });
            let chain: Vec<CertificateDer<'static>> =
                x509_parser::pem::Pem::iter_from_buffer(answer.certificate_chain_pem.as_bytes())
                    .map(|p| CertificateDer::from(p.unwrap().contents))
                    .collect();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            devices.push(tls_connector(&root_pem, Some((chain, key))));
        }
        let etag = {
            let tls = devices[0].clone();
            runtime.block_on(async move {
                let mut sender = connect(server.port, &tls).await;
                let request = hyper::Request::get("/v1/bundle")
                    .header("host", "localhost")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                response.headers()["etag"].to_str().unwrap().to_string()
            })
        };
        let (elapsed, n) = runtime.block_on(poll_for(server.port, devices, etag, opts.polls_secs));
        println!(
            "poll 304: {n} polls over {} connections (one device each) in {:.2} s = {:.0}/s",
            pollers,
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64()
        );
    }

    if opts.runs("scep") {
        scep::run(&runtime, dir.path(), ws, &root_pem, &opts.scep);
    }
}

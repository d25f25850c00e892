//! The SCEP scenario of the server load bench: `fleetkit serve` and Debian's
//! `scepserver` (micromdm's reference server, 2.1.0) answer the same PKCSReq load,
//! side by side in one run, at each concurrency.
//!
//! A request (RFC 8894): a PKCS#10 request for an RSA-2048 key carrying the
//! challengePassword, in EnvelopedData (AES-128-CBC, its key by RSA PKCS#1 v1.5) to
//! the server's recipient certificate — fleetkit's RA (`keys/scep-ra.pem`, one of the
//! two certificates its GetCACert returns), scepserver's CA (the one certificate its
//! GetCACert returns) — in SignedData signed with SHA-256 by a self-signed
//! certificate over the same key, with messageType PKCSReq, a transactionID and a
//! senderNonce. RSA key generation is slow, so the keys come from a pool and are
//! reused; every request is a device of its own (its own CN and transactionID),
//! which both servers take as a new enrollment (fleetkit refuses a transactionID
//! only when it comes back with another key; scepserver checks neither key nor
//! transactionID). Every message is built before the clock starts.
//!
//! Each run starts its server empty: fleetkit with a new SQLite database and a new
//! challenge (`fleetkit token create --scep`), scepserver with a new depot holding
//! one RSA-2048 CA made once (its default is RSA-4096; 2048 is the size of
//! fleetkit's RA key). scepserver gets a static `-challenge` and `-allowrenew 0`.
//!
//! An answer counts when it is HTTP 200 and a CertRep with pkiStatus SUCCESS, our
//! transactionID and our senderNonce as its recipientNonce. The first answers of
//! each run are also checked in depth after the clock stops: the CertRep signature
//! (with fleetkit's own parser), the envelope opened with the client key, and the
//! certificate inside certifying the requested key. Any other answer fails the
//! bench, with one exception: scepserver 2.1.0's file depot takes no lock between
//! reading the serial file and writing the certificate and the next serial, so with
//! more than one request in flight it refuses some (a FAILURE CertRep, badRequest;
//! its log says why, and the bench prints it). Those are counted out of its figure
//! and tolerated unless `--scep-strict`; at one in flight, where they cannot happen,
//! they fail the bench.
//!
//! Both servers get the same client: one thread holding C keep-alive HTTP/1.1
//! connections opened and warmed (one request each) before the clock, each sending
//! its next request as soon as the previous answer is in. fleetkit speaks only HTTPS
//! (TLS 1.3 here); scepserver only plain HTTP. Beside rates and latencies the table
//! shows each server's CPU time per answer (from /proc), which other work on the
//! machine does not change. A last figure runs fleetkit's handler in process,
//! without network or TLS, and splits its CPU time into stages.

use super::{Sender, connect, start_server, tls_connector};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo,
    RecipientInfos,
};
use cms::signed_data::{
    CertificateSet, DigestAlgorithmIdentifiers, EncapsulatedContentInfo, SignedData,
    SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Null, ObjectIdentifier, OctetString, PrintableStringRef, SetOfVec, Utf8StringRef};
use der::{Any, Decode, Encode};
use fleetkit::scep::{ContentCipher, DigestAlg, oid};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rcgen::SigningKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rustls::pki_types::PrivatePkcs8KeyDer;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;

const CHALLENGE_OID: &[u64] = &[1, 2, 840, 113549, 1, 9, 7];
/// scepserver's static challenge (`-challenge`).
const SCEPSERVER_CHALLENGE: &str = "bench-challenge-0123456789";
/// The content cipher of every request: both servers take it, and Apple's client
/// picks it when the server advertises AES.
const CIPHER: ContentCipher = ContentCipher::Aes128Cbc;
/// Answers per run checked in depth after the clock stops.
const DEEP_CHECKS: usize = 3;

pub struct ScepOptions {
    /// Enrollments per server and concurrency.
    pub enrollments: usize,
    pub concurrency: Vec<usize>,
    /// RSA-2048 client keys, reused across requests.
    pub keys: usize,
    /// Every run this many times, the servers alternating (the table shows the
    /// median of each).
    pub rounds: usize,
    /// Requests of the in-process handler profile (0: none).
    pub profile: usize,
    /// A refusal by scepserver fails the bench at any concurrency (by default only at
    /// 1 in flight: see [`Refusals`]).
    pub strict: bool,
}

// ----- the client side of SCEP: keys, requests, answers ------------------------------

/// A requester's RSA-2048 key, a ring signer over it, and its self-signed
/// certificate.
pub struct ClientKey {
    index: usize,
    rsa: rsa::PrivateKey,
    signer: rcgen::KeyPair,
    cert: Certificate,
    spki_der: Vec<u8>,
}

impl ClientKey {
    fn generate(index: usize) -> Self {
        let rsa = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let pkcs8 = rsa.to_pkcs8_der().unwrap();
        let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
            &rcgen::PKCS_RSA_SHA256,
        )
        .unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("bench-key-{index}"));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(2);
        let cert_der = params.self_signed(&signer).unwrap().der().to_vec();
        let cert = Certificate::from_der(&cert_der).unwrap();
        let spki_der = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap();
        Self {
            index,
            rsa,
            signer,
            cert,
            spki_der,
        }
    }

    /// A PKCS#10 request for this key, subject `CN=<name>`, with `challenge` as its
    /// challengePassword (UTF8String).
    fn csr(&self, name: &str, challenge: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let values = SetOfVec::try_from(vec![
            Any::encode_from(&Utf8StringRef::new(challenge).unwrap()).unwrap(),
        ])
        .unwrap()
        .to_der()
        .unwrap();
        params
            .serialize_request_with_attributes(
                &self.signer,
                vec![rcgen::Attribute {
                    oid: CHALLENGE_OID,
                    values,
                }],
            )
            .unwrap()
            .der()
            .to_vec()
    }
}

/// Makes `n` keys on every core (RSA key generation takes a while).
fn generate_keys(n: usize) -> Vec<ClientKey> {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let next = AtomicUsize::new(0);
    let mut keys: Vec<ClientKey> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break mine;
                        }
                        mine.push(ClientKey::generate(i));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    keys.sort_by_key(|k| k.index);
    keys
}

/// One prepared PKCSReq.
pub struct Request {
    body: Vec<u8>,
    transaction_id: String,
    nonce: Vec<u8>,
    /// Index into the key pool.
    key: usize,
}

fn issuer_and_serial(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate().issuer().clone(),
        serial_number: cert.tbs_certificate().serial_number().clone(),
    }
}

fn rsa_encryption() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: oid::RSA_ENCRYPTION,
        parameters: Some(Any::encode_from(&Null).unwrap()),
    }
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Attribute {
    Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).unwrap(),
    }
}

fn printable(s: &str) -> Any {
    Any::encode_from(&PrintableStringRef::new(s).unwrap()).unwrap()
}

fn content_info(
    content_type: ObjectIdentifier,
    content: &(impl der::Tagged + der::EncodeValue),
) -> Vec<u8> {
    ContentInfo {
        content_type,
        content: Any::encode_from(content).unwrap(),
    }
    .to_der()
    .unwrap()
}

/// A PKCSReq pkiMessage: `csr_der` enveloped to `recipient`, signed by `key`.
fn pkcs_req(
    key: &ClientKey,
    csr_der: &[u8],
    recipient: &Certificate,
    transaction_id: &str,
) -> Request {
    // The envelope: AES-128-CBC under a fresh key, the key by RSA PKCS#1 v1.5.
    let spki = recipient.tbs_certificate().subject_public_key_info();
    let public = rsa::PublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes()).unwrap();
    let fleetkit::scep::Sealed {
        key: cek,
        iv,
        ciphertext,
    } = CIPHER.encrypt(csr_der).unwrap();
    let enveloped = content_info(
        oid::ENVELOPED_DATA,
        &EnvelopedData {
            version: CmsVersion::V0,
            originator_info: None,
            recip_infos: RecipientInfos(
                SetOfVec::try_from(vec![RecipientInfo::Ktri(KeyTransRecipientInfo {
                    version: CmsVersion::V0,
                    rid: RecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(recipient)),
                    key_enc_alg: rsa_encryption(),
                    enc_key: OctetString::new(public.pkcs1v15_encrypt(&cek).unwrap()).unwrap(),
                })])
                .unwrap(),
            ),
            encrypted_content: EncryptedContentInfo {
                content_type: oid::DATA,
                content_enc_alg: AlgorithmIdentifierOwned {
                    oid: CIPHER.oid(),
                    parameters: Some(Any::encode_from(&OctetString::new(iv).unwrap()).unwrap()),
                },
                encrypted_content: Some(OctetString::new(ciphertext).unwrap()),
            },
            unprotected_attrs: None,
        },
    );

    // The signature: SHA-256, over the SCEP attributes.
    let mut nonce = vec![0u8; 16];
    getrandom::fill(&mut nonce).unwrap();
    let digest = DigestAlg::Sha256;
    let signed_attrs = SetOfVec::try_from(vec![
        attribute(oid::CONTENT_TYPE, Any::encode_from(&oid::DATA).unwrap()),
        attribute(
            oid::MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(digest.digest(&enveloped)).unwrap()).unwrap(),
        ),
        attribute(oid::MESSAGE_TYPE, printable("19")),
        attribute(oid::TRANSACTION_ID, printable(transaction_id)),
        attribute(
            oid::SENDER_NONCE,
            Any::encode_from(&OctetString::new(nonce.clone()).unwrap()).unwrap(),
        ),
    ])
    .unwrap();
    // ring: PKCS#1 v1.5 with SHA-256 over the DER of the attributes.
    let signature = key.signer.sign(&signed_attrs.to_der().unwrap()).unwrap();
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: DigestAlgorithmIdentifiers::try_from(vec![AlgorithmIdentifierOwned {
            oid: digest.oid(),
            parameters: None,
        }])
        .unwrap(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: oid::DATA,
            econtent: Some(Any::encode_from(&OctetString::new(enveloped).unwrap()).unwrap()),
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(key.cert.clone())]).unwrap(),
        )),
        crls: None,
        signer_infos: SignerInfos(
            SetOfVec::try_from(vec![SignerInfo {
                version: CmsVersion::V1,
                sid: SignerIdentifier::IssuerAndSerialNumber(issuer_and_serial(&key.cert)),
                digest_alg: AlgorithmIdentifierOwned {
                    oid: digest.oid(),
                    parameters: None,
                },
                signed_attrs: Some(signed_attrs),
                signature_algorithm: rsa_encryption(),
                signature: OctetString::new(signature).unwrap(),
                unsigned_attrs: None,
            }])
            .unwrap(),
        ),
    };
    Request {
        body: content_info(oid::SIGNED_DATA, &signed),
        transaction_id: transaction_id.to_string(),
        nonce,
        key: key.index,
    }
}

/// `n` requests for one server, built on every core: request i has transactionID
/// and subject CN `<prefix>-<i>` (a device of its own), and the pool's key
/// `i mod keys`.
fn build_requests(
    keys: &[ClientKey],
    challenge: &str,
    recipient: &Certificate,
    prefix: &str,
    n: usize,
) -> Vec<Request> {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let mut out: Vec<(usize, Request)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let key = &keys[i % keys.len()];
                            let id = format!("{prefix}-{i}");
                            let csr = key.csr(&id, challenge);
                            (i, pkcs_req(key, &csr, recipient, &id))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Why an answer does not count.
#[derive(Debug)]
enum Bad {
    /// A well-formed CertRep FAILURE to this very request.
    Refused(String),
    /// Anything else: a transport or HTTP error, an unreadable answer, or one that
    /// is not ours.
    Broken(String),
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Refused(why) => write!(f, "refused: {why}"),
            Bad::Broken(why) => write!(f, "{why}"),
        }
    }
}

/// The SCEP attributes of a CertRep (a light DER read, done for every answer).
fn check_answer(der: &[u8], request: &Request) -> Result<(), Bad> {
    let broken = |why: String| Bad::Broken(why);
    let info =
        ContentInfo::from_der(der).map_err(|e| broken(format!("not a CMS ContentInfo ({e})")))?;
    if info.content_type != oid::SIGNED_DATA {
        return Err(broken("not SignedData".into()));
    }
    let signed: SignedData = info
        .content
        .decode_as()
        .map_err(|e| broken(format!("bad SignedData ({e})")))?;
    let [signer] = signed.signer_infos.0.as_slice() else {
        return Err(broken("not exactly one signer".into()));
    };
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| broken("no signed attributes".into()))?;
    let find = |wanted: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == wanted)
            .and_then(|a| a.values.iter().next())
    };
    let text = |wanted| find(wanted).and_then(|a| std::str::from_utf8(a.value()).ok());
    let octets = |wanted| {
        find(wanted)
            .and_then(|a| a.decode_as::<OctetString>().ok())
            .map(|o| o.as_bytes().to_vec())
    };
    if text(oid::MESSAGE_TYPE) != Some("3") {
        return Err(broken(format!(
            "messageType {:?}, not CertRep",
            text(oid::MESSAGE_TYPE)
        )));
    }
    if text(oid::TRANSACTION_ID) != Some(request.transaction_id.as_str()) {
        return Err(broken("the transactionID is not ours".into()));
    }
    if octets(oid::RECIPIENT_NONCE).as_deref() != Some(request.nonce.as_slice()) {
        return Err(broken("the recipientNonce is not our senderNonce".into()));
    }
    match text(oid::PKI_STATUS) {
        Some("0") => {}
        Some(status @ ("2" | "3")) => {
            return Err(Bad::Refused(format!(
                "pkiStatus {} (failInfo {})",
                if status == "2" { "FAILURE" } else { "PENDING" },
                text(oid::FAIL_INFO).unwrap_or("none")
            )));
        }
        other => return Err(broken(format!("pkiStatus {other:?}"))),
    }
    if signed.encap_content_info.econtent.is_none() {
        return Err(broken("SUCCESS without content".into()));
    }
    Ok(())
}

/// The in-depth check of one answer: its signature (fleetkit's parser), its
/// envelope opened with the client key, the certificate certifying our key.
/// Returns the reply's content cipher.
fn check_deeply(der: &[u8], key: &ClientKey) -> Result<ContentCipher, String> {
    let message = fleetkit::scep::parse(der).map_err(|e| format!("{e:?}"))?;
    let recipient = fleetkit::scep::request::Recipient {
        key: &key.rsa,
        cert: &key.cert,
    };
    // scepserver answers with single DES (its default); let the check read it.
    let (plain, cipher) = message
        .decrypt(&recipient, true)
        .map_err(|e| format!("{e:?}"))?;
    let info = ContentInfo::from_der(&plain).map_err(|e| format!("inner content: {e}"))?;
    let certs: SignedData = info
        .content
        .decode_as()
        .map_err(|e| format!("inner SignedData: {e}"))?;
    let issued = certs
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .find_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c),
            _ => None,
        })
        .ok_or("no certificate in the reply")?;
    let spki = issued
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    if spki != key.spki_der {
        return Err("the certificate is for another key".into());
    }
    Ok(cipher)
}

// ----- the load ------------------------------------------------------------------

/// Where a server listens and how to reach it.
#[derive(Clone)]
enum Target {
    Https { port: u16, tls: TlsConnector },
    Http { port: u16 },
}

impl Target {
    async fn sender(&self) -> Sender {
        match self {
            Target::Https { port, tls } => connect(*port, tls).await,
            Target::Http { port } => {
                let tcp = TcpStream::connect(("127.0.0.1", *port)).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                sender
            }
        }
    }

    fn host(&self) -> &'static str {
        match self {
            Target::Https { .. } => "localhost",
            Target::Http { .. } => "127.0.0.1",
        }
    }
}

async fn send(
    sender: &mut Sender,
    target: &Target,
    method: hyper::Method,
    uri: &str,
    body: Vec<u8>,
) -> Result<(hyper::StatusCode, Bytes), String> {
    let request = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", target.host())
        .header("content-type", "application/x-pki-message")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

async fn get(target: &Target, uri: &str) -> Result<(hyper::StatusCode, Bytes), String> {
    let mut sender = target.sender().await;
    send(&mut sender, target, hyper::Method::GET, uri, Vec::new()).await
}

const PKI_OPERATION: &str = "/scep?operation=PKIOperation";

/// POSTs one PKCSReq and reads the answer.
async fn enroll(sender: &mut Sender, target: &Target, request: &Request) -> Result<Bytes, Bad> {
    let (status, body) = send(
        sender,
        target,
        hyper::Method::POST,
        PKI_OPERATION,
        request.body.clone(),
    )
    .await
    .map_err(|e| Bad::Broken(format!("transport: {e}")))?;
    if status != 200 {
        return Err(Bad::Broken(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    check_answer(&body, request)?;
    Ok(body)
}

/// What one run measured.
struct RunResult {
    elapsed: Duration,
    /// Every answer's latency, sorted.
    latencies: Vec<Duration>,
    /// (request index, why) of every answer that is not a SUCCESS CertRep; index
    /// `None` for a warm-up request.
    failures: Vec<(Option<usize>, Bad)>,
    /// The first answers, for the in-depth check.
    samples: Vec<(usize, Bytes)>,
    /// Server and client CPU time over the timed part.
    server_cpu: Duration,
    client_cpu: Duration,
}

impl RunResult {
    fn succeeded(&self) -> usize {
        self.latencies.len() - self.failures.iter().filter(|(i, _)| i.is_some()).count()
    }

    fn rate(&self) -> f64 {
        self.succeeded() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Opens `c` connections, sends one warm-up request on each, then (clock on) sends
/// every request of `requests` over them, each connection back to back. A
/// connection that fails is replaced.
async fn drive(
    target: Target,
    server_pid: u32,
    warmup: Vec<Request>,
    requests: Vec<Request>,
    c: usize,
) -> RunResult {
    let mut senders = Vec::with_capacity(c);
    for _ in 0..c {
        senders.push(target.sender().await);
    }
    let mut failures = Vec::new();
    for (sender, w) in senders.iter_mut().zip(&warmup) {
        if let Err(e) = enroll(sender, &target, w).await {
            failures.push((None, e));
            *sender = target.sender().await;
        }
    }
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let server_cpu_before = cpu_time(&format!("/proc/{server_pid}/stat"));
    let client_cpu_before = cpu_time("/proc/self/stat");
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(c);
    for mut sender in senders {
        let (requests, next, target) = (requests.clone(), next.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    break;
                };
                let t0 = Instant::now();
                let answer = enroll(&mut sender, &target, request).await;
                latencies.push(t0.elapsed());
                match answer {
                    Ok(body) if i < DEEP_CHECKS => samples.push((i, body)),
                    Ok(_) => {}
                    Err(e) => {
                        if matches!(e, Bad::Broken(_)) {
                            sender = target.sender().await;
                        }
                        failures.push((Some(i), e));
                    }
                }
            }
            (latencies, failures, samples)
        }));
    }
    let mut latencies = Vec::new();
    let mut samples = Vec::new();
    for t in tasks {
        let (l, f, s) = t.await.unwrap();
        latencies.extend(l);
        failures.extend(f);
        samples.extend(s);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    RunResult {
        elapsed,
        latencies,
        failures,
        samples,
        server_cpu: cpu_time(&format!("/proc/{server_pid}/stat")) - server_cpu_before,
        client_cpu: cpu_time("/proc/self/stat") - client_cpu_before,
    }
}

/// User + system CPU time of a process, from /proc/<pid>/stat (all its threads).
fn cpu_time(stat_path: &str) -> Duration {
    let text = std::fs::read_to_string(stat_path).unwrap_or_default();
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 3, utime 14, stime 15.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// CPU time of this thread or this process (`clock`: CLOCK_THREAD_CPUTIME_ID or
/// CLOCK_PROCESS_CPUTIME_ID): what a stage costs, whatever else the machine runs.
fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

// ----- the servers ------------------------------------------------------------------

fn scepserver_binary() -> PathBuf {
    std::env::var_os("FLEETKIT_BENCH_SCEPSERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/scepserver"))
}

fn scepserver_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("-version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// The certificates of a certs-only SignedData (GetCACert's answer).
fn certs_only(der: &[u8]) -> Vec<Certificate> {
    let info = ContentInfo::from_der(der).unwrap();
    let signed: SignedData = info.content.decode_as().unwrap();
    signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// A server under test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fleetkit,
    ScepServer,
}

/// scepserver's process, killed on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The process of a server, stopped on drop.
enum Process {
    Fleetkit(super::Server),
    ScepServer(ChildGuard),
}

/// A server process started for one run, with an empty store.
struct Live {
    process: Process,
    target: Target,
    /// The certificate requests are encrypted to.
    recipient: Certificate,
    challenge: String,
    /// scepserver's log (one line per request, and why it refused).
    log: Option<PathBuf>,
}

impl Live {
    fn pid(&self) -> u32 {
        match &self.process {
            Process::Fleetkit(s) => s.child.id(),
            Process::ScepServer(c) => c.0.id(),
        }
    }
}

struct Servers<'a> {
    runtime: &'a tokio::runtime::Runtime,
    dir: &'a Path,
    ws: &'a str,
    root_pem: &'a str,
    /// scepserver's binary and its CA (made once: `ca.pem`, `ca.key`), when installed.
    scepserver: Option<(PathBuf, PathBuf)>,
}

impl Servers<'_> {
    /// Starts `kind` with an empty store: fleetkit with a new SQLite database and a
    /// new SCEP challenge (`fleetkit token create --scep`), scepserver with a new
    /// depot holding the same CA. scepserver's file depot reads its whole index.txt
    /// on every request, so its cost grows with the certificates issued: every run
    /// starting empty keeps the runs comparable.
    fn start(&self, kind: Kind, run: usize) -> Live {
        match kind {
            Kind::Fleetkit => self.start_fleetkit(run),
            Kind::ScepServer => self.start_scepserver(run),
        }
    }

    fn start_fleetkit(&self, run: usize) -> Live {
        let db = format!("sqlite://{}/scep-run-{run}.db", self.dir.display());
        let server = start_server(self.ws, &db);
        let out = Command::new(super::BIN)
            .args(["--workspace", self.ws, "token", "create", "--scep"])
            .args(["--team", "bench", "--uses", "100000", "--expires", "1d"])
            .args([
                "--json",
                "--server",
                &format!("https://localhost:{}", server.port),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "token create --scep: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let challenge = created["token"].as_str().unwrap().to_string();
        let target = Target::Https {
            port: server.port,
            tls: tls_connector(self.root_pem, None),
        };
        // GetCACert answers [RA, issuing CA]; the RA is keys/scep-ra.pem.
        let ra_pem = std::fs::read(format!("{}/keys/scep-ra.pem", self.ws)).unwrap();
        let (_, ra_block) = x509_parser::pem::parse_x509_pem(&ra_pem).unwrap();
        let ra = Certificate::from_der(&ra_block.contents).unwrap();
        let (status, body) = self
            .runtime
            .block_on(get(&target, "/scep?operation=GetCACert"))
            .unwrap();
        assert_eq!(status, 200, "fleetkit GetCACert");
        let certs = certs_only(&body);
        assert_eq!(certs.len(), 2, "fleetkit's GetCACert: RA and issuing CA");
        assert!(certs.contains(&ra), "GetCACert lacks keys/scep-ra.pem");
        Live {
            process: Process::Fleetkit(server),
            target,
            recipient: ra,
            challenge,
            log: None,
        }
    }

    fn start_scepserver(&self, run: usize) -> Live {
        let (bin, ca) = self.scepserver.as_ref().unwrap();
        let depot = self.dir.join(format!("scepserver-run-{run}"));
        std::fs::create_dir_all(&depot).unwrap();
        for f in ["ca.pem", "ca.key"] {
            std::fs::copy(ca.join(f), depot.join(f)).unwrap();
        }
        // scepserver takes a port, not an address: find a free one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = depot.join("scepserver.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = ChildGuard(
            Command::new(bin)
                .arg("-depot")
                .arg(&depot)
                .args([
                    "-port",
                    &port.to_string(),
                    "-challenge",
                    SCEPSERVER_CHALLENGE,
                    // Never refuse a CN it has seen (every request here has its own
                    // CN anyway).
                    "-allowrenew",
                    "0",
                ])
                .stdout(Stdio::from(file.try_clone().unwrap()))
                .stderr(Stdio::from(file))
                .spawn()
                .unwrap(),
        );
        let target = Target::Http { port };
        let recipient = self.runtime.block_on(async {
            for _ in 0..100 {
                if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    let (status, body) = get(&target, "/scep?operation=GetCACert").await.unwrap();
                    assert_eq!(status, 200, "scepserver GetCACert");
                    return Certificate::from_der(&body).expect("GetCACert: one DER certificate");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("scepserver did not start on port {port}");
        });
        Live {
            process: Process::ScepServer(child),
            target,
            recipient,
            challenge: SCEPSERVER_CHALLENGE.into(),
            log: Some(log),
        }
    }
}

/// Why scepserver refused, from its log: the distinct errors and how often.
fn scepserver_reasons(log: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        let Some((_, err)) = line.split_once("err=\"") else {
            continue;
        };
        let err = err.split('"').next().unwrap_or_default();
        let reason = if err.ends_with(".pem: file exists") {
            "a certificate file <CN>.<serial>.pem already exists: two requests took the same serial"
                .to_string()
        } else if err.ends_with("/serial: file exists") {
            "the serial file already exists: two requests rewrote it at once".to_string()
        } else if err.starts_with("could not convert  to serial number") {
            "the serial file was empty: read while another request rewrote it".to_string()
        } else {
            err.chars().take(160).collect()
        };
        match counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => counts.push((reason, 1)),
        }
    }
    counts
}

// ----- the scenario ----------------------------------------------------------------

/// One run's figures.
struct Row {
    kind: Kind,
    c: usize,
    result: RunResult,
    /// The content cipher of the answers (from the in-depth check).
    cipher: String,
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    ws: &str,
    root_pem: &str,
    opts: &ScepOptions,
) {
    let bin = scepserver_binary();
    let scepserver = if bin.exists() {
        // One RSA-2048 CA for every run (scepserver's default is 4096): the same
        // private-key size as fleetkit's RA.
        let ca = dir.join("scepserver-ca");
        let out = Command::new(&bin)
            .args(["ca", "-init", "-keySize", "2048", "-organization", "bench"])
            .arg("-depot")
            .arg(&ca)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scepserver ca -init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some((bin.clone(), ca))
    } else {
        println!(
            "scep: {} is missing (apt-get install scep): measuring fleetkit alone, no side-by-side figure",
            bin.display()
        );
        None
    };
    let version = scepserver_version(&bin);
    let name = |k: Kind| match k {
        Kind::Fleetkit => "fleetkit serve".to_string(),
        Kind::ScepServer => format!("scepserver {version}"),
    };
    let transport = |k: Kind| match k {
        Kind::Fleetkit => "HTTPS (TLS 1.3)",
        Kind::ScepServer => "HTTP",
    };
    let mut kinds = vec![Kind::Fleetkit];
    if scepserver.is_some() {
        kinds.push(Kind::ScepServer);
    }
    let servers = Servers {
        runtime,
        dir,
        ws,
        root_pem,
        scepserver,
    };
    let load_before = load_average();

    let t = Instant::now();
    let keys = generate_keys(opts.keys);
    println!(
        "scep: {} RSA-2048 client keys in {:.1} s",
        keys.len(),
        t.elapsed().as_secs_f64()
    );

    let mut rows: Vec<Row> = Vec::new();
    let mut fatal = Vec::new();
    let mut run_no = 0;
    for _round in 0..opts.rounds {
        for &c in &opts.concurrency {
            for &kind in &kinds {
                run_no += 1;
                let live = servers.start(kind, run_no);
                // The messages, before the clock (the last `c` warm the connections).
                let mut requests = build_requests(
                    &keys,
                    &live.challenge,
                    &live.recipient,
                    &format!("bench-{}-{run_no}", std::process::id()),
                    opts.enrollments + c,
                );
                let warmup = requests.split_off(opts.enrollments);
                let request_keys: Vec<usize> = requests.iter().map(|r| r.key).collect();
                let mut result =
                    runtime.block_on(drive(live.target.clone(), live.pid(), warmup, requests, c));
                // The in-depth check, clock off.
                let mut cipher = "?".to_string();
                for (i, body) in std::mem::take(&mut result.samples) {
                    match check_deeply(&body, &keys[request_keys[i]]) {
                        Ok(found) => cipher = found.name().to_string(),
                        Err(e) => result
                            .failures
                            .push((Some(i), Bad::Broken(format!("in-depth check: {e}")))),
                    }
                }
                if cipher == "?" && result.failures.is_empty() {
                    result
                        .failures
                        .push((None, Bad::Broken("no answer was checked in depth".into())));
                }
                if !result.failures.is_empty() {
                    let refused = result
                        .failures
                        .iter()
                        .filter(|(_, b)| matches!(b, Bad::Refused(_)))
                        .count();
                    let broken = result.failures.len() - refused;
                    println!(
                        "scep: {} at {c} in flight: {} of {} answers are not a SUCCESS CertRep ({refused} refused, {broken} broken)",
                        name(kind),
                        result.failures.len(),
                        result.latencies.len() + c,
                    );
                    for (i, why) in result.failures.iter().take(3) {
                        let at = i.map_or("warm-up".to_string(), |i| format!("request {i}"));
                        println!("  {at}: {why}");
                    }
                    if let Some(log) = &live.log {
                        for (reason, n) in scepserver_reasons(log) {
                            println!("  its log, {n}x: {reason}");
                        }
                    }
                    // scepserver 2.1.0's file depot takes no lock between reading the
                    // serial and writing the certificate and the next serial, so
                    // concurrent requests refuse each other; one at a time it cannot.
                    let tolerated =
                        kind == Kind::ScepServer && c > 1 && broken == 0 && !opts.strict;
                    if tolerated {
                        println!(
                            "  (tolerated: its depot is not safe for concurrent requests; the figure counts only its successes; --scep-strict fails instead)"
                        );
                    } else {
                        fatal.push(format!(
                            "{} at {c} in flight: {refused} refused, {broken} broken",
                            name(kind)
                        ));
                    }
                }
                drop(live);
                rows.push(Row {
                    kind,
                    c,
                    result,
                    cipher,
                });
            }
        }
    }

    println!();
    println!(
        "SCEP enrollments: PKCSReq, RSA-2048 keys (a pool of {}), one CN and transactionID per request, AES-128-CBC + SHA-256;",
        keys.len()
    );
    println!(
        "{} per run, each server started empty per run; C keep-alive connections opened and warmed (1 request each) before the clock;",
        opts.enrollments
    );
    println!(
        "one client thread; {} cores; {} round(s){}; load average {load_before} before, {} after",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        opts.rounds,
        if opts.rounds > 1 {
            ", medians shown"
        } else {
            ""
        },
        load_average()
    );
    println!(
        "{:<18} {:<16} {:>9} {:>11} {:>9} {:>8} {:>8} {:>12} {:>12} {:>11}",
        "server",
        "transport",
        "in flight",
        "succeeded",
        "enroll/s",
        "p50 ms",
        "p99 ms",
        "server CPU",
        "client CPU",
        "reply"
    );
    let mut rates = Vec::new();
    for &c in &opts.concurrency {
        for &kind in &kinds {
            let runs: Vec<&Row> = rows.iter().filter(|r| r.kind == kind && r.c == c).collect();
            let of =
                |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(|r| f(&r.result)).collect());
            let per_answer = |d: Duration, r: &RunResult| ms(d) / r.latencies.len().max(1) as f64;
            let rate = of(&|r| r.rate());
            rates.push((kind, c, rate));
            println!(
                "{:<18} {:<16} {:>9} {:>11} {:>9.1} {:>8.1} {:>8.1} {:>9.2} ms {:>9.2} ms {:>11}",
                name(kind),
                transport(kind),
                c,
                format!(
                    "{}/{}",
                    runs.iter().map(|r| r.result.succeeded()).sum::<usize>(),
                    runs.iter().map(|r| r.result.latencies.len()).sum::<usize>()
                ),
                rate,
                of(&|r| ms(percentile(&r.latencies, 50))),
                of(&|r| ms(percentile(&r.latencies, 99))),
                of(&|r| per_answer(r.server_cpu, r)),
                of(&|r| per_answer(r.client_cpu, r)),
                runs.last().map_or("?", |r| r.cipher.as_str()),
            );
            if opts.rounds > 1 {
                let each: Vec<String> = runs
                    .iter()
                    .map(|r| format!("{:.1}", r.result.rate()))
                    .collect();
                println!("{:<18} rounds: {}", "", each.join(", "));
            }
        }
    }
    println!(
        "(server CPU, client CPU: CPU time per answer of the server process, all threads, and of this load client; from /proc)"
    );
    if kinds.len() == 2 {
        for &c in &opts.concurrency {
            let rate = |k: Kind| {
                rates
                    .iter()
                    .find(|(rk, rc, _)| *rk == k && *rc == c)
                    .map_or(0.0, |(_, _, r)| *r)
            };
            println!(
                "at {c:>2} in flight: fleetkit / scepserver = {:.2}x enrollments per second",
                rate(Kind::Fleetkit) / rate(Kind::ScepServer).max(f64::MIN_POSITIVE)
            );
        }
    }

    if opts.profile > 0 {
        runtime.block_on(profile_in_process(dir, ws, &keys, opts.profile));
    }

    assert!(
        fatal.is_empty(),
        "SCEP enrollments failed:\n{}",
        fatal.join("\n")
    );
}

// ----- fleetkit's handler in process --------------------------------------------------

/// fleetkit's SCEP route in this process (no network, no TLS), one request at a
/// time over `n` new enrollments; then each stage of the handler alone, over the
/// same messages; and the RA's RSA-2048 private operation with the `rsa` crate and
/// with ring. Medians: the figures should not move with other work on the machine.
async fn profile_in_process(dir: &Path, ws: &str, keys: &[ClientKey], n: usize) {
    use fleetkit::server::{api, secrets, store};
    use tower::ServiceExt;
    let ws = Path::new(ws);
    let org = "acme-corp";
    let keys_dir = fleetkit::workspace::paths::keys(ws);
    let now = fleetkit::clock::now();
    let ca = fleetkit::pki::IssuingCa::load(&keys_dir).unwrap();
    let (ras, _) =
        fleetkit::pki::scep_ra::ScepRa::load_or_create(&keys_dir, &ca, org, now).unwrap();
    let store = store::Store::open(
        &format!("sqlite://{}/scep-in-process.db", dir.display()),
        org,
        8,
    )
    .await
    .unwrap();
    let challenge = secrets::new_secret(secrets::TOKEN_PREFIX).unwrap();
    store
        .insert_token(
            &store::TokenRow {
                id: secrets::new_id("tok").unwrap(),
                team: "bench".into(),
                max_uses: 1_000_000,
                uses: 0,
                created_at: now.unix_timestamp(),
                expires_at: now.unix_timestamp() + 86_400,
                revoked_at: None,
                note: None,
                replace_existing: false,
                kind: fleetkit::protocol::TokenKind::Scep,
            },
            &secrets::hash_secret(&challenge),
        )
        .await
        .unwrap();
    let state = Arc::new(api::AppState {
        store,
        ca,
        anchors: fleetkit::anchors::load(&fleetkit::workspace::paths::anchors(ws)).unwrap(),
        org: org.into(),
        cert_lifetime: time::Duration::days(90),
        admin_credential_hash: [0; 32],
        bundle_cache: api::BundleCache::default(),
        anchors_cache: api::rotation::AnchorsCache::default(),
        scep: Some(api::scep::ScepService::new(ras, false).unwrap()),
    });
    let router = api::router(state.clone());
    let service = state.scep.as_ref().unwrap();
    let ra = &service.current;
    let ra_cert = ra.cert.clone();
    let requests = build_requests(
        keys,
        &challenge,
        &ra_cert,
        &format!("in-process-{}", std::process::id()),
        n,
    );

    // The whole handler, through the router: wall time, and CPU time of the whole
    // process (SQLite runs on sqlx's own threads).
    let mut whole = Vec::with_capacity(n);
    let mut whole_cpu = Vec::with_capacity(n);
    for r in &requests {
        let request = hyper::Request::post(PKI_OPERATION)
            .header("content-type", "application/x-pki-message")
            .body(axum::body::Body::from(r.body.clone()))
            .unwrap();
        let (t0, c0) = (Instant::now(), process_cpu());
        let response = router.clone().oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        whole_cpu.push(process_cpu() - c0);
        whole.push(t0.elapsed());
        check_answer(&body, r).unwrap_or_else(|e| panic!("in process: {e}"));
    }

    // Each stage alone, over the same messages (nothing stored): CPU time of this
    // thread.
    let recipient = ra.recipient();
    let signer = ra.signer();
    let mut stages: [Vec<Duration>; 5] = Default::default();
    for r in &requests {
        let t0 = thread_cpu();
        let message = fleetkit::scep::parse(&r.body).unwrap();
        let t1 = thread_cpu();
        let (plain, cipher) = message.decrypt(&recipient, false).unwrap();
        let t2 = thread_cpu();
        let csr = fleetkit::scep::request::read_csr(&plain).unwrap();
        let t3 = thread_cpu();
        let template = fleetkit::pki::ScepTemplate {
            common_name: r.transaction_id.clone(),
            org: org.into(),
            lifetime: time::Duration::days(90),
            now: fleetkit::clock::now(),
        };
        let issued = state.ca.issue_scep(&csr.spki_der, &template).unwrap();
        let t4 = thread_cpu();
        let cert_der = fleetkit::agent::identity::pem_certificates(&issued.pem).unwrap()[0].clone();
        fleetkit::scep::reply::cert_rep(
            &signer,
            &message.header,
            fleetkit::scep::CertRepStatus::Success {
                issued_cert_der: &cert_der,
                recipient_cert_der: &message.signer_cert_der,
                cipher,
            },
        )
        .unwrap();
        let t5 = thread_cpu();
        for (slot, d) in stages
            .iter_mut()
            .zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4])
        {
            slot.push(d);
        }
    }

    // The RA's private operation alone: rsa (what the server uses) and ring.
    let ops = 50;
    let hash = DigestAlg::Sha256.digest(b"bench");
    let mut rsa_sign = Vec::with_capacity(ops);
    for _ in 0..ops {
        let t0 = thread_cpu();
        DigestAlg::Sha256.sign(ra.keys.key(), &hash).unwrap();
        rsa_sign.push(thread_cpu() - t0);
    }
    let key_pem = std::fs::read_to_string(keys_dir.join("scep-ra.key")).unwrap();
    let pkcs8 = rsa::PrivateKey::from_pkcs8_pem(&key_pem)
        .unwrap()
        .to_pkcs8_der()
        .unwrap();
    let ring_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let mut ring_sign = Vec::with_capacity(ops);
    for _ in 0..ops {
        let t0 = thread_cpu();
        ring_key.sign(b"bench").unwrap();
        ring_sign.push(thread_cpu() - t0);
    }

    let p50 = |v: &mut Vec<Duration>| {
        v.sort();
        percentile(v, 50)
    };
    let whole_p50 = p50(&mut whole);
    let whole_cpu_p50 = p50(&mut whole_cpu);
    let mut staged = Duration::ZERO;
    println!();
    println!(
        "fleetkit's SCEP handler in process (router to CertRep: no network, no TLS), one request at a time, {n} enrollments, medians:"
    );
    println!(
        "  {:<46} {:>6.2} ms CPU ({:.2} ms wall) = {:.0} enrollments/s per core",
        "whole handler",
        ms(whole_cpu_p50),
        ms(whole_p50),
        1.0 / whole_cpu_p50.as_secs_f64()
    );
    for (name, mut d) in [
        "parse + verify the signature (RSA public)",
        "decrypt the envelope (RA RSA-2048 private)",
        "read the CSR + verify it (RSA public)",
        "issue (ECDSA P-256 issuing CA)",
        "CertRep (RA RSA-2048 signature + envelope)",
    ]
    .into_iter()
    .zip(stages)
    {
        let d = p50(&mut d);
        staged += d;
        println!("  {name:<46} {:>6.2} ms CPU", ms(d));
    }
    println!(
        "  {:<46} {:>6.2} ms CPU",
        "store and the rest (whole - stages)",
        ms(whole_cpu_p50.saturating_sub(staged))
    );
    println!(
        "  one RSA-2048 PKCS#1 v1.5 signature with the RA key: rsa crate {:.2} ms CPU, ring {:.2} ms CPU",
        ms(p50(&mut rsa_sign)),
        ms(p50(&mut ring_sign))
    );
}

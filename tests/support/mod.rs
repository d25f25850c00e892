//! Shared by the server test suites: an org workspace, a `fleetkit serve` process on
//! a free loopback port (SQLite, or a fresh PostgreSQL database), simulated devices
//! that enroll with their own keys, and an admin client.
#![allow(dead_code)]

pub mod agent;
pub mod executables;
pub mod https;
pub mod scep;
pub mod siem;
pub mod wine;

use fleetkit::protocol::*;
use fleetkit::server::admin_client::AdminClient;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

pub const BIN: &str = env!("CARGO_BIN_EXE_fleetkit");

/// Runs an external tool that must succeed; its stdout.
pub fn tool(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A test signing identity made by openssl in `dir`: an RSA root CA and a leaf with
/// `subject` (e.g. `/CN=Developer ID Installer: Acme Corp (TEAM123456)`) that it
/// signed; returns (identity PEM path: PKCS#8 key, leaf, CA; CA certificate path).
/// The files `ca.key`, `ca.pem`, `leaf.key` and `leaf.pem` stay in `dir`.
pub fn openssl_identity(dir: &Path, subject: &str) -> (PathBuf, PathBuf) {
    let run = |args: &str, subject: Option<&str>| {
        let mut cmd = Command::new("openssl");
        cmd.args(args.split_whitespace()).current_dir(dir);
        if let Some(subject) = subject {
            cmd.arg("-subj").arg(subject);
        }
        tool(&mut cmd)
    };
    run(
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30",
        Some("/CN=Test Signing Root"),
    );
    run(
        "req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr",
        Some(subject),
    );
    run(
        "x509 -req -in leaf.csr -sha256 -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 30",
        None,
    );
    let mut pem = String::new();
    for part in ["leaf.key", "leaf.pem", "ca.pem"] {
        pem.push_str(&std::fs::read_to_string(dir.join(part)).unwrap());
    }
    let path = dir.join("identity.pem");
    std::fs::write(&path, pem).unwrap();
    (path, dir.join("ca.pem"))
}

/// Runs openssl: whether it succeeded, and stdout + stderr.
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs the fleetkit binary; panics with its output when it fails.
pub fn fleetkit(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run fleetkit");
    assert!(
        out.status.success(),
        "fleetkit {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The real agent cross-built for `platform` (`fleetkit-<platform>[.exe]` in the
/// folder FLEETKIT_TEST_AGENTS names; scripts/test.sh builds them with
/// scripts/build-agents.sh). `None`, said on stderr, when the variable is unset;
/// with FLEETKIT_TEST_AGENTS_REQUIRED=1 a missing agent fails the test instead.
pub fn real_agent(platform: &str) -> Option<PathBuf> {
    let required = std::env::var("FLEETKIT_TEST_AGENTS_REQUIRED").is_ok_and(|v| v == "1");
    let file = fleetkit::platform::Platform::parse(platform)
        .expect("a platform name")
        .agent_file_name();
    let found = std::env::var_os("FLEETKIT_TEST_AGENTS")
        .map(|dir| PathBuf::from(dir).join(&file))
        .filter(|path| path.is_file());
    if found.is_none() {
        assert!(
            !required,
            "FLEETKIT_TEST_AGENTS_REQUIRED=1 but {file} is not in FLEETKIT_TEST_AGENTS; run scripts/build-agents.sh {platform}"
        );
        eprintln!(
            "skipped: no real {platform} agent (set FLEETKIT_TEST_AGENTS to target/agents after scripts/build-agents.sh)"
        );
    }
    found
}

/// The one package with extension `ext` (`deb`, `rpm`) a build wrote into `out/linux`.
pub fn built_package(out: &Path, ext: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(out.join("linux"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// Every file under `dir`, recursively, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A gpg keyring of its own, driven as an admin would (batch mode, the passphrase
/// given on the command line).
pub struct Gpg {
    pub home: PathBuf,
    passphrase: String,
}

impl Gpg {
    pub fn new(dir: &Path, name: &str, passphrase: &str) -> Self {
        let home = dir.join(format!("gnupg-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        Self {
            home,
            passphrase: passphrase.into(),
        }
    }

    pub fn run(&self, args: &[&str]) -> String {
        tool(
            Command::new("gpg")
                .arg("--homedir")
                .arg(&self.home)
                .args([
                    "--batch",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    &self.passphrase,
                ])
                .args(args),
        )
    }

    /// The primary key's fingerprint.
    pub fn fingerprint(&self) -> String {
        self.run(&["--with-colons", "--list-secret-keys"])
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }

    /// Exports (secret key file, public key file) into `dir`.
    pub fn export(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let secret = dir.join(format!("{name}.secret.asc"));
        let public = dir.join(format!("{name}.public.asc"));
        std::fs::write(&secret, self.run(&["--armor", "--export-secret-keys"])).unwrap();
        std::fs::write(&public, self.run(&["--armor", "--export"])).unwrap();
        (secret, public)
    }
}

/// A signing key made by gpg in a keyring of its own: (secret key file, public key
/// file). `algo` as `gpg --quick-gen-key` takes it.
pub fn gpg_key(dir: &Path, algo: &str, passphrase: &str) -> (PathBuf, PathBuf) {
    let gpg = Gpg::new(dir, algo, passphrase);
    let uid = format!("Acme packages {algo} <it@acme.example>");
    gpg.run(&["--quick-gen-key", &uid, algo, "sign", "2y"]);
    gpg.export(dir, algo)
}

/// A fresh org workspace with a signed policy (bundle v1).
pub struct Org {
    pub dir: tempfile::TempDir,
}

impl Org {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("acme");
        fleetkit(&["init", ws.to_str().unwrap(), "--org", "acme-corp"]);
        fleetkit(&["--workspace", ws.to_str().unwrap(), "policy", "sign"]);
        Self { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("acme")
    }

    pub fn ws(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    /// `fleetkit build ARGS --out OUT --agent PLATFORM=PATH…` on this workspace, at a
    /// fixed build time; the caller runs it and judges the outcome.
    pub fn build_command(&self, out: &Path, args: &[&str], agents: &[(&str, &Path)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["--workspace", &self.ws(), "build"])
            .args(args)
            .arg("--out")
            .arg(out)
            .env("SOURCE_DATE_EPOCH", "1764547200");
        for (platform, path) in agents {
            cmd.arg("--agent")
                .arg(format!("{platform}={}", path.display()));
        }
        cmd
    }

    /// Runs [`Org::build_command`], which must succeed.
    pub fn build(&self, out: &Path, args: &[&str], agents: &[(&str, &Path)]) {
        let r = self.build_command(out, args, agents).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }

    pub fn root_ca_pem(&self) -> String {
        std::fs::read_to_string(self.path().join("keys/root-ca.pem")).unwrap()
    }

    pub fn issuing_ca_pem(&self) -> String {
        std::fs::read_to_string(self.path().join("keys/issuing-ca.pem")).unwrap()
    }

    /// Adds `tool` to the workspace policy's `blocked_tools` (signed at the next
    /// [`Org::sign_next`]): a decision that tells two policy versions apart.
    pub fn block_tool(&self, tool: &str, reason: &str) {
        let policy = self.path().join("policy.yaml");
        let text = std::fs::read_to_string(&policy).unwrap();
        assert!(
            text.contains("blocked_tools:\n"),
            "the starter policy blocks tools"
        );
        let entry = format!("blocked_tools:\n  - name: {tool}\n    reason: \"{reason}\"\n");
        std::fs::write(&policy, text.replacen("blocked_tools:\n", &entry, 1)).unwrap();
    }

    /// Signs the next policy version; returns the bundle path.
    pub fn sign_next(&self) -> PathBuf {
        let out = fleetkit(&["--workspace", &self.ws(), "policy", "sign"]);
        let _ = out;
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path().join("state.json")).unwrap())
                .unwrap();
        let v = state["policy_version"].as_u64().unwrap();
        self.path().join(format!("bundles/policy-v{v}.json"))
    }
}

/// The databases the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// SQLite always; PostgreSQL when FLEETKIT_TEST_POSTGRES names a server (the test
/// command starts one and sets FLEETKIT_TEST_POSTGRES_REQUIRED, so that a missing
/// PostgreSQL fails the suite instead of skipping half of it).
pub fn databases() -> Vec<Db> {
    let mut dbs = vec![Db::Sqlite];
    if std::env::var("FLEETKIT_TEST_POSTGRES").is_ok_and(|v| !v.is_empty()) {
        dbs.push(Db::Postgres);
    } else {
        assert!(
            std::env::var("FLEETKIT_TEST_POSTGRES_REQUIRED").is_err(),
            "FLEETKIT_TEST_POSTGRES_REQUIRED is set but FLEETKIT_TEST_POSTGRES is not: run scripts/postgres.sh"
        );
    }
    dbs
}

/// A database URL for one server: a file in `dir`, or a new PostgreSQL database.
pub fn database_url(db: Db, dir: &Path) -> String {
    match db {
        Db::Sqlite => format!("sqlite://{}", dir.join("fleet.db").display()),
        Db::Postgres => {
            let base = std::env::var("FLEETKIT_TEST_POSTGRES").unwrap();
            let name = format!("fleetkit_t_{}", hex::encode(rand_bytes::<6>()));
            let status = Command::new("psql")
                .args([&base, "-q", "-c", &format!("CREATE DATABASE {name}")])
                .status()
                .expect("psql");
            assert!(status.success(), "cannot create database {name}");
            let (prefix, _) = base.rsplit_once('/').unwrap();
            format!("{prefix}/{name}")
        }
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

/// A running `fleetkit serve`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub db_url: String,
    pub ws: String,
}

impl Server {
    pub fn start(org: &Org, db: Db) -> Self {
        let url = database_url(db, org.dir.path());
        Self::start_with(org, &url)
    }

    pub fn start_with(org: &Org, db_url: &str) -> Self {
        Self::start_on(org, db_url, 0)
    }

    /// With extra `fleetkit serve` flags.
    pub fn start_args(org: &Org, db: Db, args: &[&str]) -> Self {
        let url = database_url(db, org.dir.path());
        Self::spawn(org, 0, Some(&url), args)
    }

    /// On a given loopback port (0: any free one).
    pub fn start_on(org: &Org, db_url: &str, port: u16) -> Self {
        Self::spawn(org, port, Some(db_url), &[])
    }

    /// On a given database URL, with extra `fleetkit serve` flags.
    pub fn start_with_args(org: &Org, db_url: &str, args: &[&str]) -> Self {
        Self::spawn(org, 0, Some(db_url), args)
    }

    /// Without `--db`: the default database, server/fleet.db in the workspace.
    pub fn start_default_db(org: &Org) -> Self {
        Self::spawn(org, 0, None, &[])
    }

    /// On a given database URL with extra `fleetkit serve` flags, run under
    /// `prefix` (a command that runs the rest of its line, such as `prlimit
    /// --nofile=256:256 --`; empty for none). Also returns what the server printed
    /// on stderr before it said it listens.
    pub fn start_logged(org: &Org, prefix: &[&str], db_url: &str, args: &[&str]) -> (Self, String) {
        let log = org
            .dir
            .path()
            .join(format!("serve-{}.stderr", hex::encode(rand_bytes::<4>())));
        let file = std::fs::File::create(&log).unwrap();
        let server = Self::spawn_under(org, prefix, 0, Some(db_url), args, Stdio::from(file));
        let stderr = std::fs::read_to_string(&log).unwrap();
        (server, stderr)
    }

    fn spawn(org: &Org, port: u16, db_url: Option<&str>, args: &[&str]) -> Self {
        Self::spawn_under(org, &[], port, db_url, args, Stdio::null())
    }

    fn spawn_under(
        org: &Org,
        prefix: &[&str],
        port: u16,
        db_url: Option<&str>,
        args: &[&str],
        stderr: Stdio,
    ) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(BIN);
                cmd
            }
            None => Command::new(BIN),
        };
        cmd.args(["--workspace", &org.ws(), "serve", "--listen", &listen])
            .env_remove("FLEETKIT_DB");
        if let Some(url) = db_url {
            cmd.args(["--db", url]);
        }
        let mut child = cmd
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start fleetkit serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .split_once("127.0.0.1:")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("server did not start: {line:?}"));
        Self {
            child,
            port,
            db_url: db_url.map_or_else(
                || format!("sqlite://{}", org.path().join("server/fleet.db").display()),
                str::to_string,
            ),
            ws: org.ws(),
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn admin(&self, org: &Org) -> AdminClient {
        let credential = std::fs::read_to_string(org.path().join("keys/admin-credential")).unwrap();
        AdminClient::new(&self.url(), &[org.root_ca_pem()], credential.trim()).unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A simulated device: its own key, CSR and facts.
pub struct Device {
    pub key: rcgen::KeyPair,
    pub facts: DeviceFacts,
    pub chain_pem: Option<String>,
}

impl Device {
    pub fn new(machine_id: &str, team: Option<&str>) -> Self {
        Self {
            key: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            facts: DeviceFacts {
                machine_id: machine_id.into(),
                hostname: format!("host-{machine_id}"),
                platform: "linux-x86_64".into(),
                os_name: "Debian GNU/Linux".into(),
                os_version: "12".into(),
                arch: "x86_64".into(),
                serial: None,
                user: "alice".into(),
                agent_version: "0.1.0".into(),
                team: team.map(str::to_string),
                department: Some("engineering".into()),
                environment: Some("development".into()),
                compliance_zone: None,
            },
            chain_pem: None,
        }
    }

    pub fn csr_pem(&self, cn: &str, ask_ca: bool) -> String {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if ask_ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params.serialize_request(&self.key).unwrap().pem().unwrap()
    }

    pub fn enroll_request(&self, token: &str) -> EnrollRequest {
        EnrollRequest {
            token: token.into(),
            csr_pem: self.csr_pem(&self.facts.machine_id, false),
            facts: self.facts.clone(),
        }
    }
}

/// An HTTPS client trusting only the org root, optionally presenting a device's
/// certificate.
pub fn client(org: &Org, device: Option<&Device>) -> ureq::Agent {
    let roots = vec![Certificate::from_pem(org.root_ca_pem().as_bytes()).unwrap()];
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(roots)));
    if let Some(d) = device
        && let Some(chain) = &d.chain_pem
    {
        let certs: Vec<Certificate<'static>> =
            x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
                .map(|p| Certificate::from_der(&p.unwrap().contents).to_owned())
                .collect();
        let key = PrivateKey::from_pem(d.key.serialize_pem().as_bytes()).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&certs, key)));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// An HTTP answer: status, body, ETag.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub etag: Option<String>,
}

impl Answer {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn code(&self) -> String {
        self.json::<ApiError>().code.as_str().to_string()
    }
}

pub fn answer(sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = sent.expect("request sent");
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.body_mut().read_to_vec().unwrap_or_default();
    Answer { status, body, etag }
}

/// POST /v1/enroll with a raw JSON body.
pub fn post_enroll(server: &Server, org: &Org, body: &[u8]) -> Answer {
    answer(
        client(org, None)
            .post(format!("{}/v1/enroll", server.url()))
            .header("content-type", "application/json")
            .send(body),
    )
}

/// Enrolls `device` with `token`; on success keeps its chain.
pub fn enroll(server: &Server, org: &Org, device: &mut Device, token: &str) -> Answer {
    let body = serde_json::to_vec(&device.enroll_request(token)).unwrap();
    let a = post_enroll(server, org, &body);
    if a.status == 200 {
        device.chain_pem = Some(a.json::<EnrollResponse>().certificate_chain_pem);
    }
    a
}

pub fn create_token(server: &Server, org: &Org, team: &str, uses: u32, secs: u64) -> TokenCreated {
    create_token_of_kind(server, org, team, uses, secs, TokenKind::Agent)
}

fn create_token_of_kind(
    server: &Server,
    org: &Org,
    team: &str,
    uses: u32,
    secs: u64,
    kind: TokenKind,
) -> TokenCreated {
    server
        .admin(org)
        .create_token(&TokenCreate {
            team: team.into(),
            max_uses: uses,
            expires_in_secs: secs,
            note: None,
            replace_existing: false,
            kind,
        })
        .unwrap()
}

/// A SCEP challenge (`fleetkit token create --scep`).
pub fn create_scep_token(
    server: &Server,
    org: &Org,
    team: &str,
    uses: u32,
    secs: u64,
) -> TokenCreated {
    create_token_of_kind(server, org, team, uses, secs, TokenKind::Scep)
}

pub fn inventory(server: &Server, org: &Org) -> Vec<DeviceRecord> {
    server.admin(org).list_devices(None, None).unwrap()
}

/// `bundle` (signed by the workspace `ws`) with its payload's version set to `version`
/// and signed again with the workspace's policy keys: a bundle fleetkit itself would
/// refuse to sign, as an attacker holding the org key (or an older fleetkit) makes it.
pub fn resign_with_version(ws: &Path, bundle: &[u8], version: u64) -> Vec<u8> {
    use fleetkit::bundle::{POLICY_PAYLOAD_TYPE, dsse::Envelope};
    let decoded = Envelope::from_json(bundle).unwrap().decode().unwrap();
    let mut payload: serde_json::Value = serde_json::from_slice(&decoded.payload).unwrap();
    payload["version"] = serde_json::Value::from(version);
    let keys: Vec<fleetkit::pki::PolicyKey> = std::fs::read_dir(ws.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("policy-") && n.ends_with(".key"))
        })
        .map(|p| fleetkit::pki::PolicyKey::load(&p).unwrap())
        .collect();
    assert!(!keys.is_empty(), "no policy key in {}", ws.display());
    let signers: Vec<&fleetkit::pki::PolicyKey> = keys.iter().collect();
    Envelope::sign(
        POLICY_PAYLOAD_TYPE,
        &serde_json::to_vec(&payload).unwrap(),
        &signers,
    )
    .to_json()
    .unwrap()
}

/// One raw HTTP/1.1-over-TLS connection of [`Raw`].
pub type RawConn = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Raw HTTP/1.1-over-TLS connections for the connection-limit tests: from a chosen
/// loopback source address (127.0.0.2, … stand for other hosts), with or without a
/// device's certificate, held open as long as the test keeps them. Every wait is
/// bounded, so a server that misbehaves fails the test instead of hanging it.
pub struct Raw {
    pub rt: tokio::runtime::Runtime,
    port: u16,
    roots: Arc<rustls::RootCertStore>,
}

/// Longest wait for any single network step of [`Raw`].
const RAW_STEP_LIMIT: Duration = Duration::from_secs(60);

impl Raw {
    pub fn new(org: &Org, server: &Server) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for pem in x509_parser::pem::Pem::iter_from_buffer(org.root_ca_pem().as_bytes()) {
            roots
                .add(rustls::pki_types::CertificateDer::from(
                    pem.unwrap().contents,
                ))
                .unwrap();
        }
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            port: server.port,
            roots: Arc::new(roots),
        }
    }

    /// A TLS client trusting the org root, presenting `device`'s certificate if given.
    pub fn connector(&self, device: Option<&Device>) -> tokio_rustls::TlsConnector {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(self.roots.clone());
        let mut config = match device {
            None => builder.with_no_client_auth(),
            Some(d) => {
                let chain = d.chain_pem.as_ref().expect("an enrolled device");
                let certs = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
                    .map(|p| rustls::pki_types::CertificateDer::from(p.unwrap().contents))
                    .collect();
                let key = rustls::pki_types::PrivateKeyDer::Pkcs8(d.key.serialize_der().into());
                builder.with_client_auth_cert(certs, key).unwrap()
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Connects from `source` until a connection is admitted and answers a health
    /// check (up to 5 s: a slot freed by a close comes back asynchronously).
    pub fn connect_when_free(
        &self,
        source: &str,
        connector: &tokio_rustls::TlsConnector,
    ) -> Option<RawConn> {
        (0..50).find_map(|_| {
            let conn = self
                .connect(source, connector)
                .and_then(|mut c| self.request(&mut c, "GET", "/v1/health", b"").map(|_| c));
            if conn.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            conn
        })
    }

    /// Connects from `source` and completes the TLS handshake; `None` when the server
    /// closed the connection first.
    pub fn connect(&self, source: &str, connector: &tokio_rustls::TlsConnector) -> Option<RawConn> {
        let source: std::net::IpAddr = source.parse().unwrap();
        let port = self.port;
        self.rt.block_on(async {
            let attempt = async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind((source, 0).into())?;
                let tcp = socket.connect(([127, 0, 0, 1], port).into()).await?;
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                connector.connect(name, tcp).await
            };
            tokio::time::timeout(RAW_STEP_LIMIT, attempt)
                .await
                .expect("handshake neither finished nor failed")
                .ok()
        })
    }

    /// Writes `bytes`; false when the connection is gone.
    pub fn send(&self, conn: &mut RawConn, bytes: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        self.rt.block_on(async {
            tokio::time::timeout(RAW_STEP_LIMIT, async {
                conn.write_all(bytes).await?;
                conn.flush().await
            })
            .await
            .expect("write stalled")
            .is_ok()
        })
    }

    /// Reads one response: status and body; `None` when the connection closed first.
    pub fn response(&self, conn: &mut RawConn) -> Option<(u16, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        self.rt.block_on(async {
            tokio::time::timeout(RAW_STEP_LIMIT, async {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < head_end + length {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                Some((status, buf[head_end..head_end + length].to_vec()))
            })
            .await
            .expect("response neither came nor the connection closed")
        })
    }

    /// Sends one request and reads its response; `None` when the connection is gone.
    pub fn request(
        &self,
        conn: &mut RawConn,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Option<(u16, Vec<u8>)> {
        let mut bytes = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        if !self.send(conn, &bytes) {
            return None;
        }
        self.response(conn)
    }

    /// `n` plain TCP connections from `source` that never start their TLS handshake:
    /// the ones the server keeps, and how many it closed at once. All are opened
    /// before any is judged, so the server meets them in order; a kept connection is
    /// one still open `settle` later (a refused one is reset within milliseconds).
    pub fn stalled_handshakes(
        &self,
        source: &str,
        n: usize,
        settle: Duration,
    ) -> (Vec<tokio::net::TcpStream>, usize) {
        use tokio::io::AsyncReadExt;
        let source: std::net::IpAddr = source.parse().unwrap();
        let port = self.port;
        self.rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind((source, 0).into()).unwrap();
                // A reset may already be there when the connect completes.
                let Ok(mut tcp) = socket.connect(([127, 0, 0, 1], port).into()).await else {
                    tasks.spawn(async move { (i, None) });
                    continue;
                };
                tasks.spawn(async move {
                    let mut byte = [0u8; 1];
                    let kept = tokio::time::timeout(settle, tcp.read(&mut byte))
                        .await
                        .is_err();
                    (i, kept.then_some(tcp))
                });
            }
            let mut kept: Vec<(usize, tokio::net::TcpStream)> = Vec::new();
            let mut refused = 0;
            while let Some(joined) = tasks.join_next().await {
                match joined.unwrap() {
                    (i, Some(tcp)) => kept.push((i, tcp)),
                    (_, None) => refused += 1,
                }
            }
            kept.sort_by_key(|(i, _)| *i);
            (kept.into_iter().map(|(_, tcp)| tcp).collect(), refused)
        })
    }

    /// Whether the server has closed `conn`: reads until end of stream (or an error)
    /// within `limit`; false if the connection is still open then.
    pub fn closed_within<S: tokio::io::AsyncRead + Unpin>(
        &self,
        conn: &mut S,
        limit: Duration,
    ) -> bool {
        use tokio::io::AsyncReadExt;
        self.rt.block_on(async {
            tokio::time::timeout(limit, async {
                let mut sink = [0u8; 4096];
                loop {
                    match conn.read(&mut sink).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await
            .is_ok()
        })
    }
}

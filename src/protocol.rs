//! The wire protocol between `fleetkit agent` and `fleetkit serve`: JSON bodies over
//! HTTPS, shared by both sides so that they cannot drift apart.
//!
//! | method and path | who may call | body → answer |
//! |---|---|---|
//! | `POST /v1/enroll` | anyone holding an enrollment token; an existing machine id only with its current key, or a `replace_existing` token | [`EnrollRequest`] → [`EnrollResponse`] (the same again for a repeated request) |
//! | `POST /v1/renew` | a device (client certificate) | [`RenewRequest`] → [`EnrollResponse`] |
//! | `POST /v1/checkin` | a device | [`CheckinRequest`] → [`CheckinResponse`] |
//! | `GET /v1/bundle` | a device | the current bundle's exact bytes, `ETag`; `304` on `If-None-Match` |
//! | `POST /v1/admin/tokens` | admin (bearer credential) | [`TokenCreate`] → [`TokenCreated`] |
//! | `GET /v1/admin/tokens` | admin | → `[`[`TokenInfo`]`]` |
//! | `POST /v1/admin/tokens/{id}/revoke` | admin | → [`TokenInfo`] |
//! | `GET /v1/admin/devices` | admin | `?team=&stale_secs=` → `[`[`DeviceRecord`]`]` |
//! | `DELETE /v1/admin/devices/{id}` | admin | → the removed [`DeviceRecord`]; its certificates authenticate nothing any more |
//! | `PUT /v1/admin/bundle` | admin | the bundle's bytes (verified by the server first) → [`Published`] |
//! | `PUT /v1/admin/rotations` | admin | one rotation envelope, stored if it extends the server's anchors → [`RotationPublished`] |
//! | `GET /v1/rotations?after=N` | a device | the stored rotation envelopes above anchors version `N`, oldest first, as one JSON array |
//! | `POST /v1/audit` | a device | [`AuditUpload`] (consecutive records of its chain, as written) → [`AuditAck`]; a record sent again is acknowledged, not stored twice |
//! | `GET /v1/admin/audit` | admin | `?team=&user=&device=&decision=&rule=&event=&since=&until=&limit=` (times in Unix ms) → [`AuditPage`], newest first |
//! | `GET /v1/admin/audit/stats` | admin | `?team=&since=&until=` → [`AuditStats`] |
//! | `GET /v1/admin/audit/requests` | admin | `?team=&since=&until=` → [`RecordedRequests`]: the distinct recorded commands, counted (what `policy impact` replays) |
//!
//! Every refusal is an [`ApiError`] with a stable `code`, so that the agent and the CLI
//! can say exactly why. Times are RFC 3339 strings in UTC.

use serde::{Deserialize, Serialize};

/// Largest request body the server reads (enroll, renew and check-in bodies are a few
/// KB; a published bundle is capped by [`crate::bundle::MAX_BUNDLE_BYTES`]).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest `POST /v1/audit` body; the agent sends at most [`MAX_AUDIT_UPLOAD_RECORDS`]
/// records and this many bytes at a time.
pub const MAX_AUDIT_UPLOAD_BYTES: usize = 1024 * 1024;
pub const MAX_AUDIT_UPLOAD_RECORDS: usize = 500;
/// Most records one `GET /v1/admin/audit` returns.
pub const MAX_AUDIT_PAGE: u32 = 10_000;

/// The header carrying the admin credential: `Authorization: Bearer <credential>`.
pub const ADMIN_AUTH_SCHEME: &str = "Bearer";

/// What a device says about itself when it enrolls and at every check-in. The org
/// assignment fields come from install-time settings; the rest from the system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFacts {
    /// Stable per device and org (see `agent::identity`).
    pub machine_id: String,
    pub hostname: String,
    /// `<os>-<arch>` as in the ADR-002 manifest, e.g. `darwin-arm64`, `linux-x86_64`.
    pub platform: String,
    pub os_name: String,
    pub os_version: String,
    pub arch: String,
    /// Hardware serial or platform UUID where the platform exposes one.
    #[serde(default)]
    pub serial: Option<String>,
    /// The device's primary (console) user.
    pub user: String,
    pub agent_version: String,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub compliance_zone: Option<String>,
}

/// Machine ids name certificates and rows: a short, plain alphabet (1–128 of
/// `A-Z a-z 0-9 . _ -`, starting with a letter or digit). The agent makes them so
/// and the server refuses anything else.
pub fn is_valid_machine_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `POST /v1/enroll`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token, as given to the installer. Never logged, stored hashed.
    pub token: String,
    /// PKCS#10 request made on the device with its own key.
    pub csr_pem: String,
    pub facts: DeviceFacts,
}

/// Answer to enroll and renew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollResponse {
    /// The server's id for this device (stable across renewals and re-enrollments of
    /// the same machine id).
    pub device_id: String,
    pub machine_id: String,
    /// The team the device belongs to: the token's team.
    pub team: String,
    /// Leaf certificate first, then the issuing CA; the root CA is not sent (the device
    /// holds it in its anchors and trusts nothing else).
    pub certificate_chain_pem: String,
    pub not_after: String,
    /// `sha256:<hex>` of the leaf certificate's DER.
    pub certificate_fingerprint: String,
}

/// `POST /v1/renew`: a fresh CSR, authenticated by the current certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub csr_pem: String,
}

/// `POST /v1/checkin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    /// The policy bundle version the device enforces, if any.
    pub policy_version: Option<u64>,
    pub facts: DeviceFacts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinResponse {
    pub device_id: String,
    /// The team the server holds the device in (its enrollment token's team).
    #[serde(default)]
    pub team: Option<String>,
    pub server_time: String,
    /// The newest published bundle version, so the agent knows whether to pull.
    pub bundle_version: Option<u64>,
    /// The newest anchors version of the rotation chain the server serves, so the
    /// agent knows whether to fetch rotations (`None` from older servers).
    #[serde(default)]
    pub anchors_version: Option<u64>,
}

/// `POST /v1/admin/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    pub team: String,
    pub max_uses: u32,
    /// Lifetime in seconds from now.
    pub expires_in_secs: u64,
    #[serde(default)]
    pub note: Option<String>,
    /// Enrollments with this token may replace an existing device of the same
    /// machine id (re-imaged machines). Off by default: an enrollment never takes
    /// over a device otherwise.
    #[serde(default)]
    pub replace_existing: bool,
    /// What the token is for: registering an agent, or the challenge of SCEP
    /// enrollments (a configuration profile's certificate payload). One kind never
    /// works as the other: a challenge sits in a profile every Mac of a scope can read.
    #[serde(default)]
    pub kind: TokenKind,
}

/// What an enrollment token is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// `fleetkit agent register`.
    #[default]
    Agent,
    /// The challenge of SCEP enrollments (`/scep`).
    Scep,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Scep => "scep",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(Self::Agent),
            "scep" => Some(Self::Scep),
            _ => None,
        }
    }
}

/// The one answer that carries the token itself; the server keeps only its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreated {
    pub token: String,
    pub info: TokenInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInfo {
    /// Public id (not the secret): used to list and revoke.
    pub id: String,
    pub team: String,
    pub max_uses: u32,
    pub uses: u32,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub note: Option<String>,
    #[serde(default)]
    pub replace_existing: bool,
    #[serde(default)]
    pub kind: TokenKind,
}

/// One row of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRecord {
    pub device_id: String,
    pub machine_id: String,
    pub org: String,
    pub team: String,
    pub department: Option<String>,
    pub environment: Option<String>,
    pub compliance_zone: Option<String>,
    pub hostname: String,
    pub platform: String,
    pub os_name: String,
    pub os_version: String,
    pub serial: Option<String>,
    pub user: String,
    pub agent_version: String,
    pub registered_at: String,
    pub last_seen: String,
    pub policy_version: Option<u64>,
    pub certificate_fingerprint: String,
    pub certificate_not_after: String,
    /// The newest certificate this Mac enrolled through the configuration profile's
    /// SCEP payload (same team, subject naming the device's serial number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_certificate: Option<ProfileCertificate>,
}

/// A certificate issued over SCEP, as the inventory shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileCertificate {
    /// Hex serial number.
    pub serial: String,
    pub subject: String,
    pub fingerprint: String,
    pub not_after: String,
    pub issued_at: String,
}

/// `PUT /v1/admin/bundle` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub version: u64,
    pub etag: String,
    pub expires_at: String,
}

/// `PUT /v1/admin/rotations` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPublished {
    /// The server's anchors version now.
    pub anchors_version: u64,
}

/// Every refusal: a stable machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// The refusal codes of the wire protocol: defined once, produced by the server,
/// matched by the agent and the CLI. A code this build does not know (a newer
/// server) reads as [`ErrorCode::Unknown`] rather than failing the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not the expected JSON, or a query parameter is wrong.
    BadRequest,
    /// The body is over the endpoint's size cap.
    TooLarge,
    /// The request (headers and body) did not arrive within the server's deadline.
    RequestTimeout,
    /// A device fact is missing, too long or malformed.
    BadFacts,
    /// The CSR does not parse, does not verify, or uses a refused algorithm or key.
    BadCsr,
    TokenUnknown,
    TokenRevoked,
    TokenExpired,
    TokenUsedUp,
    /// The token is bound to another team than the device claims.
    TeamMismatch,
    /// Another device is enrolled under this machine id and the caller does not hold
    /// its key: enrollment never takes over an existing device.
    DeviceExists,
    ClientCertificateRequired,
    /// The client certificate is not the current one of an enrolled device (never
    /// issued, superseded by a renewal, or its device was removed).
    UnknownCertificate,
    /// The check-in's facts name another machine than the certificate.
    MachineMismatch,
    /// The check-in reports a policy version that was never published.
    BadPolicyVersion,
    NoBundle,
    AdminCredentialRequired,
    NoSuchToken,
    NoSuchDevice,
    /// A published bundle did not verify against the server's anchors; the
    /// message names the verifier's reason.
    BundleRefused,
    AlreadyPublished,
    /// A rotation envelope did not extend the server's chain of anchors.
    RotationRefused,
    NotFound,
    Internal,
    /// Never sent by the server: fleetkit's own clients refused a redirect (they
    /// follow none; DESIGN.md rule 11).
    RedirectRefused,
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it travels on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::RequestTimeout => "request_timeout",
            Self::BadFacts => "bad_facts",
            Self::BadCsr => "bad_csr",
            Self::TokenUnknown => "token_unknown",
            Self::TokenRevoked => "token_revoked",
            Self::TokenExpired => "token_expired",
            Self::TokenUsedUp => "token_used_up",
            Self::TeamMismatch => "team_mismatch",
            Self::DeviceExists => "device_exists",
            Self::ClientCertificateRequired => "client_certificate_required",
            Self::UnknownCertificate => "unknown_certificate",
            Self::MachineMismatch => "machine_mismatch",
            Self::BadPolicyVersion => "bad_policy_version",
            Self::NoBundle => "no_bundle",
            Self::AdminCredentialRequired => "admin_credential_required",
            Self::NoSuchToken => "no_such_token",
            Self::NoSuchDevice => "no_such_device",
            Self::BundleRefused => "bundle_refused",
            Self::AlreadyPublished => "already_published",
            Self::RotationRefused => "rotation_refused",
            Self::NotFound => "not_found",
            Self::Internal => "internal",
            Self::RedirectRefused => "redirect_refused",
            Self::Unknown => "unknown",
        }
    }

    /// True for the codes that say the enrollment token itself cannot be used.
    pub fn is_token_problem(self) -> bool {
        matches!(
            self,
            Self::TokenUnknown | Self::TokenRevoked | Self::TokenExpired | Self::TokenUsedUp
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/audit`: records of the device's audit chain, consecutive, oldest first,
/// each exactly the line the device wrote (so the server can check the hashes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditUpload {
    pub records: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditAck {
    /// Every record up to this seq is held by the server: send from the next one.
    pub acknowledged_seq: u64,
    /// Records stored by this request.
    pub stored: u64,
    /// Records the server already held (a repeat after a lost answer).
    pub duplicates: u64,
    /// Where the chain the server holds for this device breaks (a record whose
    /// `prev` is not the hash of the one before, a gap, a checkpoint that does not
    /// verify). Stored anyway: evidence is kept, and the admin is told.
    pub chain_breaks: Vec<String>,
}

/// One stored audit record as the admin API shows it. `team` is the team the
/// server holds the device in, not what the record claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub id: String,
    pub device_id: String,
    pub seq: u64,
    /// RFC 3339 with milliseconds.
    pub time: String,
    pub event: String,
    pub team: String,
    pub user: Option<String>,
    pub policy_version: Option<u64>,
    pub mode: Option<String>,
    pub source: Option<String>,
    pub decision: Option<String>,
    pub applied: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub command: Option<String>,
    pub command_sha256: Option<String>,
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPage {
    pub records: Vec<AuditEntry>,
    /// True when more records match than were returned (narrow the filter, or page
    /// with `until` = the oldest time returned).
    pub more: bool,
}

/// `GET /v1/admin/audit/stats`: decisions counted over a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditStats {
    /// Every decision in the window (`by_team_rule` lists the most frequent
    /// groups only).
    pub decisions: u64,
    /// Decisions by team, rule and verdict, most frequent first.
    pub by_team_rule: Vec<TeamRuleCount>,
    /// The commands denied most often (by the hash of the whole command).
    pub top_denied: Vec<CommandCount>,
    /// Devices that decided under an audit-only policy in the window (a dry run
    /// still in the field).
    pub audit_only_devices: Vec<AuditOnlyDevice>,
    /// The server's audit retention removed the records before this time (RFC
    /// 3339), `pruned_records` of them in all: a window reaching further back is
    /// counted from what is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_before: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pruned_records: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamRuleCount {
    pub team: String,
    pub rule: String,
    pub decision: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCount {
    pub command: String,
    pub command_sha256: String,
    pub count: u64,
    pub devices: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditOnlyDevice {
    pub device_id: String,
    pub team: String,
    pub decisions: u64,
    /// Decisions the policy would have denied or asked about.
    pub would_block: u64,
    pub last: String,
}

/// `GET /v1/admin/audit/requests`: the recorded command requests in a window, one
/// entry per distinct (command, folder, team, recorded verdict).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequests {
    pub requests: Vec<RecordedRequestCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequestCount {
    pub team: String,
    pub command: String,
    pub cwd: Option<String>,
    pub decision: String,
    pub count: u64,
}

/// For `skip_serializing_if`: a count of nothing is left out.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

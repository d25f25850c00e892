//! What a target produces ([`Artefact`], [`OutFile`]) and what every target builds
//! it with: the build dispatch over [`super::TARGETS`], the template environment
//! with its escaping filters, and the payload files the Linux targets share.

use super::Target;
use super::msi;
use super::{escape, intunewin};
use crate::build::payload::Payload;
use crate::platform::Os;
use minijinja::{Environment, UndefinedBehavior};
use std::sync::Arc;

/// Mode of generated text and data files.
pub const FILE_MODE: u32 = 0o644;
/// Mode of agent binaries and scripts.
pub const EXEC_MODE: u32 = 0o755;

/// A file's bytes: generated text, bytes a target made (an installer, a signed
/// profile; hashed while they are written), or a payload file shared by several
/// artefacts (read and hashed once).
#[derive(Debug, Clone)]
pub enum Contents {
    Text(String),
    Built(Arc<Vec<u8>>),
    Shared { bytes: Arc<Vec<u8>>, sha256: String },
}

impl Contents {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Text(s) => s.as_bytes(),
            Self::Built(bytes) | Self::Shared { bytes, .. } => bytes,
        }
    }
}

/// One file of an artefact, by its path inside the artefact.
#[derive(Debug, Clone)]
pub struct OutFile {
    pub path: String,
    pub contents: Contents,
    pub mode: u32,
}

/// What a target built: files under `dir` in the output.
#[derive(Debug, Clone)]
pub struct Artefact {
    pub target: Target,
    pub files: Vec<OutFile>,
    /// What the person building should know (e.g. "unsigned").
    pub notes: Vec<String>,
}

impl Artefact {
    /// Directory of the artefact in the output (`ansible`, `puppet/fleetkit`, …).
    pub fn dir(&self) -> &'static str {
        self.target.spec().dir
    }

    pub fn size(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.contents.bytes().len() as u64)
            .sum()
    }
}

/// Why a target could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no {os} agent binary is available (the build host is {host})")]
    MissingAgent {
        os: Os,
        host: crate::platform::Platform,
    },
    #[error(
        "the {platform} agent is this fleetkit, the full admin build; the {target} target ships only the lean device agent"
    )]
    AdminBuildAsAgent {
        platform: crate::platform::Platform,
        target: &'static str,
    },
    #[error("template {name}: {reason}")]
    Template { name: String, reason: String },
    #[error(transparent)]
    Codesign(#[from] crate::pki::codesign::CodesignError),
    /// A `fleetkit build` option this target cannot build with.
    #[error("{flag}: {reason}")]
    Option {
        flag: &'static str,
        reason: String,
        help: String,
    },
    /// A fleetkit.yaml setting this target cannot build with.
    #[error("fleetkit.yaml: {field}: {reason}")]
    Setting {
        field: &'static str,
        reason: String,
        help: String,
    },
}

impl TargetError {
    pub fn help(&self) -> String {
        match self {
            Self::MissingAgent { os, .. } => {
                let platforms: Vec<_> = os.platforms().collect();
                let files: Vec<String> = platforms.iter().map(|p| p.agent_file_name()).collect();
                let first = platforms.first().map(|p| p.name()).unwrap_or_default();
                format!(
                    "put it in <workspace>/agents/ as {}: `scripts/build-agents.sh` builds them into target/agents/; or set `agents: {{{first}: PATH}}` in fleetkit.yaml, or pass --agent {first}=PATH",
                    files.join(" or ")
                )
            }
            Self::AdminBuildAsAgent { platform, .. } => format!(
                "build it with `scripts/build-agents.sh {platform}` and copy target/agents/ into the workspace as agents/, or pass --agent {platform}=PATH"
            ),
            Self::Template { .. } => "this is a fleetkit bug; please report it".into(),
            Self::Codesign(_) => {
                "give darwin agents built for macOS (scripts/build-agents.sh darwin-arm64 darwin-x86_64)".into()
            }
            Self::Setting { help, .. } | Self::Option { help, .. } => help.clone(),
        }
    }
}

pub type Result<T, E = TargetError> = std::result::Result<T, E>;

/// Checks, before anything is built, that `target` can be built with the
/// payload's settings.
pub fn check(target: Target, payload: &Payload) -> Result<()> {
    (target.spec().check)(payload)
}

/// Builds one target.
pub fn build(target: Target, payload: &Payload) -> Result<Artefact> {
    Builder::default().build(target, payload)
}

/// Builds targets in turn, sharing work between them: the `.intunewin` wraps the
/// MSI built for the msi target instead of building (and compressing) it again.
#[derive(Default)]
pub struct Builder {
    msi: Option<Vec<msi::BuiltMsi>>,
}

impl Builder {
    pub fn build(&mut self, target: Target, payload: &Payload) -> Result<Artefact> {
        (target.spec().build)(self, payload)
    }

    /// The msi target: one MSI per Windows agent given.
    pub(super) fn msi(&mut self, payload: &Payload) -> Result<Artefact> {
        Ok(Artefact {
            target: Target::Msi,
            files: self
                .msis(payload)?
                .iter()
                .map(msi::BuiltMsi::out_file)
                .collect(),
            notes: vec![],
        })
    }

    /// The intunewin target: each MSI wrapped.
    pub(super) fn intunewin(&mut self, payload: &Payload) -> Result<Artefact> {
        let mut files = Vec::new();
        for m in self.msis(payload)? {
            files.extend(intunewin::build(payload, &m.name, &m.bytes, &m.codes)?.files);
        }
        Ok(Artefact {
            target: Target::Intunewin,
            files,
            notes: vec![],
        })
    }

    fn msis(&mut self, payload: &Payload) -> Result<&[msi::BuiltMsi]> {
        if self.msi.is_none() {
            self.msi = Some(msi::build_all(payload)?);
        }
        Ok(self.msi.as_deref().unwrap_or_default())
    }
}

/// Which delimiters fleetkit's own templates use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `{{ }}` / `{% %}`: for outputs whose language has no such syntax (ERB, EPP).
    Jinja,
    /// `[[ ]]` / `[% %]` / `[# #]`: for outputs that are themselves Jinja (Ansible),
    /// so that the role's own `{{ … }}` passes through untouched.
    Brackets,
}

/// A template environment with the escaping filters and strict undefined values
/// (a misspelt variable is an error, not an empty string).
pub fn environment(
    templates: &[(&'static str, &'static str)],
    syntax: Syntax,
) -> Result<Environment<'static>> {
    let mut env = Environment::new();
    let mut builder = minijinja::syntax::SyntaxConfig::builder();
    builder.keep_trailing_newline(true);
    if syntax == Syntax::Brackets {
        builder
            .block_delimiters("[%", "%]")
            .variable_delimiters("[[", "]]")
            .comment_delimiters("[#", "#]");
    }
    let config = builder.build().map_err(|e| TargetError::Template {
        name: "syntax".into(),
        reason: e.to_string(),
    })?;
    env.set_syntax(config);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("yaml", |s: String| escape::yaml(&s));
    env.add_filter("ansible", |s: String| escape::ansible(&s));
    env.add_filter("ruby", |s: String| escape::ruby(&s));
    env.add_filter("puppet", |s: String| escape::puppet(&s));
    env.add_filter("json", |s: String| escape::json(&s));
    env.add_filter("shell", |s: String| escape::shell(&s));
    env.add_filter("comment", |s: String| escape::comment(&s));
    env.add_filter("xml", |s: String| escape::xml(&s));
    for (name, source) in templates {
        env.add_template(name, source)
            .map_err(|e| TargetError::Template {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
    }
    Ok(env)
}

/// Renders `name` with `ctx`.
pub fn render(env: &Environment<'_>, name: &str, ctx: &minijinja::Value) -> Result<String> {
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| TargetError::Template {
            name: name.to_string(),
            reason: format!("{e:#}"),
        })
}

/// A generated text file.
pub fn text(path: &str, contents: String) -> OutFile {
    OutFile {
        path: path.to_string(),
        contents: Contents::Text(contents),
        mode: FILE_MODE,
    }
}

/// A payload file shared with other artefacts.
pub fn shared(path: &str, bytes: &Arc<Vec<u8>>, sha256: &str, mode: u32) -> OutFile {
    OutFile {
        path: path.to_string(),
        contents: Contents::Shared {
            bytes: Arc::clone(bytes),
            sha256: sha256.to_string(),
        },
        mode,
    }
}

/// The payload files every configuration-management target ships, under `prefix`:
/// the bundle, the anchors, the root CA and the Linux agents
/// (`fleetkit-linux-x86_64`, …).
pub fn payload_files(payload: &Payload, prefix: &str) -> Result<Vec<OutFile>> {
    let linux = payload.agents_for(Os::Linux);
    if linux.is_empty() {
        return Err(TargetError::MissingAgent {
            os: Os::Linux,
            host: crate::platform::Platform::host(),
        });
    }
    let mut files = vec![
        shared(
            &format!("{prefix}bundle.json"),
            &payload.bundle,
            &payload.bundle_sha256,
            FILE_MODE,
        ),
        shared(
            &format!("{prefix}anchors.json"),
            &payload.anchors_json,
            &crate::build::payload::sha256(&payload.anchors_json),
            FILE_MODE,
        ),
        text(&format!("{prefix}root-ca.pem"), payload.root_ca_pem.clone()),
        text(
            &format!("{prefix}{}", crate::build::inspect::DESCRIPTION_FILE),
            crate::build::inspect::describe(payload, Os::Linux),
        ),
    ];
    for agent in linux {
        files.push(shared(
            &format!("{prefix}{}", agent.platform.agent_file_name()),
            &agent.bytes,
            agent.sha256(),
            EXEC_MODE,
        ));
    }
    Ok(files)
}

/// A UUID made from a SHA-256 digest, with the version-5 and RFC 4122 variant bits
/// set: identifiers that must be stable (profile payloads, MSI components and
/// product codes) or follow the content (the MSI package code) derive from it.
pub fn uuid_from_digest(digest: &[u8]) -> uuid::Uuid {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b)
}

/// A lowercase identifier made of the org name (`acme-corp` → `acme_corp`), for
/// the places that allow only `[a-z0-9_]` (Galaxy namespaces, Puppet authors).
pub fn org_slug(org: &str) -> String {
    let mut s: String = org
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    // Short enough for every place it lands (file names, 120-column lines).
    let s: String = s.trim_matches('_').chars().take(40).collect();
    let s = s.trim_end_matches('_').to_string();
    match s.chars().next() {
        Some(c) if c.is_ascii_lowercase() => s,
        Some(_) => format!("org_{s}"),
        None => "org".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::settings::{AgentSettings, Assignment};
    use crate::workspace::config::OfflineMode;
    use std::collections::BTreeMap;

    fn payload_without_agents() -> Payload {
        Payload {
            org: "acme".into(),
            display_name: "Acme".into(),
            identifier_prefix: "com.acme".into(),
            server_url: "https://fleet.acme.example".into(),
            maintainer: "fleetkit <fleetkit@fleet.acme.example>".into(),
            macos_enrollment: crate::workspace::config::MacosEnrollment::Scep,
            scep: None,
            settings: AgentSettings {
                org: "acme".into(),
                server_url: "https://fleet.acme.example".into(),
                assignment: Assignment::default(),
                offline_mode: OfflineMode::CachedWithExpiry,
                offline_max_age_hours: 24,
                renew_at_percent: 66,
                managed_preferences_domain: None,
                claude_code_settings: Default::default(),
                siem_credential_file: None,
                siem_ca_file: None,
                siem_public_roots: false,
                siem_spool_max_records: crate::agent::siem::MAX_UNSENT,
            },
            bundle: Arc::new(b"{}".to_vec()),
            bundle_version: 1,
            bundle_expires_at: time::OffsetDateTime::UNIX_EPOCH,
            bundle_sha256: "sha256:00".into(),
            policy: Arc::new(
                serde_json::from_str(
                    r#"{"version":"1.0","organization":"acme-corp","effective_date":"2025-12-01"}"#,
                )
                .unwrap(),
            ),
            anchors_json: Arc::new(b"{}".to_vec()),
            anchor_keyids: vec![],
            root_ca_pem: String::new(),
            root_ca_fingerprint: String::new(),
            agents: BTreeMap::new(),
            agent_version: "0.1.0".into(),
            build_time: time::OffsetDateTime::UNIX_EPOCH,
            installer_identity: None,
            notes: vec![],
            codesign_identity: None,
            package_signing_key: None,
            apt_repo: false,
        }
    }

    #[test]
    fn a_missing_agent_names_the_setting_to_fill() {
        let p = payload_without_agents();
        for target in [Target::Ansible, Target::Chef, Target::Puppet] {
            let e = build(target, &p).unwrap_err();
            assert!(
                matches!(e, TargetError::MissingAgent { os: Os::Linux, .. }),
                "{e}"
            );
            let help = e.help();
            assert!(
                help.starts_with(
                    "put it in <workspace>/agents/ as fleetkit-linux-x86_64 or fleetkit-linux-arm64: `scripts/build-agents.sh`"
                ) && help.contains("agents:")
                    && help.contains("--agent linux-x86_64=PATH"),
                "{help}"
            );
        }
    }

    #[test]
    fn org_slugs_fit_identifiers() {
        assert_eq!(org_slug("acme-corp"), "acme_corp");
        assert_eq!(org_slug("42 \"Corp\" ü"), "org_42_corp");
        assert_eq!(org_slug(&"x".repeat(100)).len(), 40);
    }
}

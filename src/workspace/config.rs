//! `fleetkit.yaml`: the org workspace settings (org, server, enrollment, offline mode,
//! policy lifetime, targets), parsed from the located YAML tree into a validated
//! [`Config`]. Unknown keys are errors with a suggestion, like the policy.

use crate::diag::{Diagnostics, SourceFile};
use crate::platform::Platform;
use crate::targets::Target;
use crate::yaml::{self, Limits, Node, Reader, join};
use serde::Serialize;
use std::path::Path;

/// The workspace settings file name.
pub const CONFIG_FILE: &str = "fleetkit.yaml";

/// Validated workspace settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The org as the policy and bundles name it (`organization` in policy.yaml).
    pub org: String,
    /// Human-readable org name for installers and profiles.
    pub display_name: String,
    /// Reverse-DNS prefix for package and profile identifiers (`com.acme-corp`).
    pub identifier_prefix: String,
    pub server: Server,
    pub enrollment: Enrollment,
    pub offline: Offline,
    pub policy: PolicySettings,
    pub targets: Vec<Target>,
    /// Agent binaries for platforms other than the build host's, by platform
    /// (`linux-x86_64`, `linux-arm64`, `darwin-arm64`, `darwin-x86_64`,
    /// `windows-x86_64`, `windows-arm64`), as paths relative to the workspace.
    pub agents: std::collections::BTreeMap<Platform, String>,
    pub packages: Packages,
}

/// Settings of the Linux packages (`packages:`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Packages {
    /// `Name <address>` for the .deb's Maintainer and the .rpm's Packager; `None`:
    /// `fleetkit <fleetkit@SERVER-HOST>`.
    pub maintainer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Server {
    /// Base URL devices enroll with and pull bundles from (https only).
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Enrollment {
    pub certificate_lifetime_days: u64,
    /// Renew once this share of the certificate lifetime has passed.
    pub renew_at_percent: u64,
    /// How macOS devices get their machine certificate through the profile.
    pub macos_method: MacosEnrollment,
}

/// The profile's machine-certificate payload (`enrollment.macos_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MacosEnrollment {
    /// `com.apple.security.scep` against the server's `/scep` (the default).
    Scep,
    /// `com.apple.security.acme`. Still accepted here so that a workspace that
    /// chose it keeps loading, but the server does not serve ACME yet: building
    /// the profile with it is refused.
    Acme,
    /// No certificate payload: the org enrolls machine certificates with its own
    /// PKI through Jamf.
    None,
}

impl MacosEnrollment {
    /// As fleetkit.yaml spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scep => "scep",
            Self::Acme => "acme",
            Self::None => "none",
        }
    }
}

/// What a device does when it cannot reach the server (DESIGN.md security rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OfflineMode {
    FailClosed,
    CachedWithExpiry,
    CachedIndefinite,
    DefaultPolicy,
}

impl OfflineMode {
    pub const NAMES: [&'static str; 4] = [
        "fail-closed",
        "cached-with-expiry",
        "cached-indefinite",
        "default-policy",
    ];
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "fail-closed" => Self::FailClosed,
            "cached-with-expiry" => Self::CachedWithExpiry,
            "cached-indefinite" => Self::CachedIndefinite,
            "default-policy" => Self::DefaultPolicy,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Offline {
    pub mode: OfflineMode,
    /// For cached-with-expiry: how long a cached bundle stays usable.
    pub max_age_hours: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicySettings {
    /// The policy file, relative to the workspace.
    pub file: String,
    /// Default lifetime of a signed bundle.
    pub lifetime_days: u64,
}

const TOP_KEYS: &[&str] = &[
    "org",
    "display_name",
    "identifier_prefix",
    "server",
    "enrollment",
    "offline",
    "policy",
    "targets",
    "agents",
    "packages",
];

/// Reads and validates a `fleetkit.yaml`.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    let (src, node) = yaml::load_file(
        path,
        Limits {
            max_bytes: 1024 * 1024,
            ..Limits::default()
        },
    )?;
    parse(&src, &node)
}

/// Validates an already parsed `fleetkit.yaml`, reporting every finding.
pub fn parse(src: &SourceFile, node: &Node) -> Result<Config, Diagnostics> {
    let mut r = Reader::new(src);
    let config = read_config(&mut r, node);
    let diags = r.finish();
    match config {
        Some(c) if diags.is_empty() => Ok(c),
        _ => Err(diags),
    }
}

fn read_config(r: &mut Reader<'_>, node: &Node) -> Option<Config> {
    let top = r.map(node, "", TOP_KEYS)?;
    let org = top
        .required(r, "org", "name the organisation, e.g. `org: acme-corp`")
        .and_then(|n| org_name(r, n, "org"));
    let display_name = match top.get("display_name") {
        // Same rules as the org name: it lands in XML, plists and scripts.
        Some(n) => org_name(r, n, "display_name"),
        None => org.clone(),
    };
    let identifier_prefix = match top.get("identifier_prefix") {
        Some(n) => reverse_dns(r, n, "identifier_prefix"),
        None => org.as_deref().map(default_identifier_prefix),
    };
    let server = top
        .required(
            r,
            "server",
            "give the enrollment server: `server: {url: https://…}`",
        )
        .and_then(|n| read_server(r, n));
    let enrollment = match top.get("enrollment") {
        Some(n) => read_enrollment(r, n),
        None => Some(Enrollment::default()),
    };
    let offline = match top.get("offline") {
        Some(n) => read_offline(r, n),
        None => Some(Offline::default()),
    };
    let policy = match top.get("policy") {
        Some(n) => read_policy(r, n),
        None => Some(PolicySettings::default()),
    };
    let targets = match top.get("targets") {
        Some(n) => read_targets(r, n),
        None => Some(Target::all()),
    };
    let agents = match top.get("agents") {
        Some(n) => read_agents(r, n),
        None => Some(Default::default()),
    };
    let packages = match top.get("packages") {
        Some(n) => read_packages(r, n),
        None => Some(Packages::default()),
    };
    Some(Config {
        org: org?,
        display_name: display_name?,
        identifier_prefix: identifier_prefix?,
        server: server?,
        enrollment: enrollment?,
        offline: offline?,
        policy: policy?,
        targets: targets?,
        agents: agents?,
        packages: packages?,
    })
}

fn read_agents(
    r: &mut Reader<'_>,
    n: &Node,
) -> Option<std::collections::BTreeMap<Platform, String>> {
    let m = r.map(n, "agents", &Platform::ALL.map(Platform::name))?;
    let mut out = std::collections::BTreeMap::new();
    let mut ok = true;
    for (key, _, value) in m.entries() {
        let field = format!("agents.{key}");
        // `map` reported every key that is not a platform.
        let Some(platform) = Platform::parse(key) else {
            ok = false;
            continue;
        };
        match r.non_empty_str(value, &field) {
            Some(path) => {
                out.insert(platform, path.to_string());
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_packages(r: &mut Reader<'_>, n: &Node) -> Option<Packages> {
    let m = r.map(n, "packages", &["maintainer"])?;
    let maintainer = match m.get("maintainer") {
        None => None,
        Some(node) => {
            let s = r.non_empty_str(node, "packages.maintainer")?;
            if !is_mailbox(s) {
                r.error(
                    node,
                    "packages.maintainer",
                    format!("`{}` is not `Name <address>`", s.escape_debug()),
                    "write e.g. `maintainer: Acme IT <it@acme.example>` (one line, no <, >, \" or , in the name)",
                );
                return None;
            }
            Some(s.to_string())
        }
    };
    Some(Packages { maintainer })
}

/// `Name <local@domain>` as Debian's Maintainer field and RPM's Packager take it:
/// printable, one line, the name without the characters that end it.
pub fn is_mailbox(s: &str) -> bool {
    let Some((name, rest)) = s.split_once(" <") else {
        return false;
    };
    let Some(address) = rest.strip_suffix('>') else {
        return false;
    };
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let clean = |t: &str, extra: &[char]| {
        !t.is_empty() && t.chars().all(|c| !c.is_control() && !extra.contains(&c))
    };
    s.len() <= 200
        && clean(name.trim(), &['<', '>', ',', '"'])
        && clean(local, &['<', '>', '@', ' ', ','])
        && clean(domain, &['<', '>', '@', ' ', ','])
        && domain.contains('.')
}

/// An org name may hold any printable text (it is escaped wherever it is rendered),
/// but not be empty, huge, or carry control characters other than newline.
fn org_name(r: &mut Reader<'_>, n: &Node, field: &str) -> Option<String> {
    let s = r.non_empty_str(n, field)?;
    if s.chars().count() > 128 {
        r.error(
            n,
            field,
            "the org name is longer than 128 characters",
            "shorten it",
        );
        return None;
    }
    if s.chars().any(|c| c.is_control() && c != '\n') {
        r.error(
            n,
            field,
            "the org name contains a control character",
            "use printable text",
        );
        return None;
    }
    Some(s.to_string())
}

fn reverse_dns(r: &mut Reader<'_>, n: &Node, field: &str) -> Option<String> {
    let s = r.non_empty_str(n, field)?;
    if !is_reverse_dns(s) {
        r.error(
            n,
            field,
            format!("`{s}` is not a reverse-DNS prefix"),
            "use dot-separated labels of letters, digits and hyphens, e.g. `com.acme-corp`",
        );
        return None;
    }
    Some(s.to_string())
}

/// `com.acme-corp`: at least two labels of ASCII letters, digits and inner hyphens.
pub fn is_reverse_dns(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// `com.` + the org name reduced to a DNS label.
pub fn default_identifier_prefix(org: &str) -> String {
    let mut label = String::new();
    for c in org.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            label.push(c);
        } else if !label.ends_with('-') && !label.is_empty() {
            label.push('-');
        }
    }
    let label = label.trim_matches('-');
    let label: String = label.chars().take(63).collect();
    let label = label.trim_end_matches('-');
    if label.is_empty() {
        "com.example".into()
    } else {
        format!("com.{label}")
    }
}

/// Checks an https URL with a host: `Ok(normalised)` or a message saying why not.
pub fn check_https_url(s: &str) -> Result<String, String> {
    let u = url::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if u.scheme() != "https" {
        return Err(format!(
            "`{s}` uses {}://; devices only talk to the server over https://",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "`{s}` carries credentials; they would be copied into every artefact"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn read_server(r: &mut Reader<'_>, n: &Node) -> Option<Server> {
    let m = r.map(n, "server", &["url"])?;
    let url_node = m.required(r, "url", "e.g. `url: https://fleet.example.com:8443`")?;
    let s = r.non_empty_str(url_node, "server.url")?;
    match check_https_url(s) {
        Ok(url) => Some(Server { url }),
        Err(msg) => {
            r.error(
                url_node,
                "server.url",
                msg,
                "write an https:// URL, e.g. https://fleet.example.com:8443",
            );
            None
        }
    }
}

impl Default for Enrollment {
    fn default() -> Self {
        Self {
            certificate_lifetime_days: 90,
            renew_at_percent: 66,
            macos_method: MacosEnrollment::Scep,
        }
    }
}

fn bounded(r: &mut Reader<'_>, n: &Node, field: &str, lo: u64, hi: u64) -> Option<u64> {
    let v = r.uint(n, field)?;
    if !(lo..=hi).contains(&v) {
        r.error(
            n,
            field,
            format!("`{field}` is {v}; it must be between {lo} and {hi}"),
            format!("give a value from {lo} to {hi}"),
        );
        return None;
    }
    Some(v)
}

fn read_enrollment(r: &mut Reader<'_>, n: &Node) -> Option<Enrollment> {
    let m = r.map(
        n,
        "enrollment",
        &[
            "certificate_lifetime_days",
            "renew_at_percent",
            "macos_method",
        ],
    )?;
    let mut e = Enrollment::default();
    let mut ok = true;
    if let Some(v) = m.get("certificate_lifetime_days") {
        match bounded(
            r,
            v,
            &join("enrollment", "certificate_lifetime_days"),
            1,
            825,
        ) {
            Some(d) => e.certificate_lifetime_days = d,
            None => ok = false,
        }
    }
    if let Some(v) = m.get("renew_at_percent") {
        match bounded(r, v, &join("enrollment", "renew_at_percent"), 10, 95) {
            Some(p) => e.renew_at_percent = p,
            None => ok = false,
        }
    }
    if let Some(v) = m.get("macos_method") {
        let field = join("enrollment", "macos_method");
        match r.str(v, &field) {
            Some("scep") => e.macos_method = MacosEnrollment::Scep,
            Some("acme") => e.macos_method = MacosEnrollment::Acme,
            Some("none") => e.macos_method = MacosEnrollment::None,
            Some(other) => {
                r.error(
                    v,
                    &field,
                    format!("unknown macOS enrollment method `{other}`"),
                    "use `scep` (the server's /scep), or `none` (your own PKI through Jamf)",
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(e)
}

impl Default for Offline {
    fn default() -> Self {
        Self {
            mode: OfflineMode::CachedWithExpiry,
            max_age_hours: 24,
        }
    }
}

fn read_offline(r: &mut Reader<'_>, n: &Node) -> Option<Offline> {
    let m = r.map(n, "offline", &["mode", "max_age_hours"])?;
    let mut o = Offline::default();
    let mut ok = true;
    if let Some(v) = m.get("mode") {
        let field = "offline.mode";
        match r.str(v, field) {
            Some(s) => match OfflineMode::parse(s) {
                Some(mode) => o.mode = mode,
                None => {
                    let help = match crate::diag::did_you_mean(s, &OfflineMode::NAMES) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("use one of: {}", OfflineMode::NAMES.join(", ")),
                    };
                    r.error(v, field, format!("unknown offline mode `{s}`"), help);
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    if let Some(v) = m.get("max_age_hours") {
        match bounded(r, v, "offline.max_age_hours", 1, 24 * 365) {
            Some(h) => o.max_age_hours = h,
            None => ok = false,
        }
    }
    ok.then_some(o)
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            file: "policy.yaml".into(),
            lifetime_days: 30,
        }
    }
}

fn read_policy(r: &mut Reader<'_>, n: &Node) -> Option<PolicySettings> {
    let m = r.map(n, "policy", &["file", "lifetime_days"])?;
    let mut p = PolicySettings::default();
    let mut ok = true;
    if let Some(v) = m.get("file") {
        match r.non_empty_str(v, "policy.file") {
            Some(f) if Path::new(f).is_absolute() || f.split(['/', '\\']).any(|c| c == "..") => {
                r.error(
                    v,
                    "policy.file",
                    "the policy file must be inside the workspace",
                    "give a relative path such as `policy.yaml`",
                );
                ok = false;
            }
            Some(f) => p.file = f.to_string(),
            None => ok = false,
        }
    }
    if let Some(v) = m.get("lifetime_days") {
        match bounded(r, v, "policy.lifetime_days", 1, 3650) {
            Some(d) => p.lifetime_days = d,
            None => ok = false,
        }
    }
    ok.then_some(p)
}

fn read_targets(r: &mut Reader<'_>, n: &Node) -> Option<Vec<Target>> {
    let items = r.str_list(n, "targets")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, (name, node)) in items.into_iter().enumerate() {
        let field = yaml::index("targets", i);
        match Target::parse(name) {
            Some(t) if out.contains(&t) => {
                r.error(
                    node,
                    &field,
                    format!("target `{name}` is listed twice"),
                    "list each target once",
                );
                ok = false;
            }
            Some(t) => out.push(t),
            None => {
                let help = match crate::diag::did_you_mean(name, &Target::names()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("targets are: {}", Target::names().join(", ")),
                };
                r.error(node, &field, format!("unknown target `{name}`"), help);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Renders a starting `fleetkit.yaml`. Every user value is written as a YAML
/// double-quoted scalar, so any org name stays one value.
pub fn starter_config(org: &str, server_url: &str) -> String {
    let q = |s: &str| yaml_quote(s);
    format!(
        "# fleetkit workspace settings. Validate with `fleetkit policy check` (it checks this\n\
         # file too); unknown keys are errors.\n\
         \n\
         # The organisation, exactly as `organization:` in policy.yaml.\n\
         org: {org}\n\
         # Shown in installers and profiles.\n\
         display_name: {org}\n\
         # Reverse-DNS prefix for package, profile and payload identifiers.\n\
         identifier_prefix: {prefix}\n\
         \n\
         server:\n\
         \x20 # Devices enroll here and pull signed bundles from here (https only).\n\
         \x20 url: {url}\n\
         \n\
         enrollment:\n\
         \x20 certificate_lifetime_days: 90\n\
         \x20 # Devices renew their machine certificate after this share of its lifetime.\n\
         \x20 renew_at_percent: 66\n\
         \x20 # The profile's macOS machine-certificate payload:\n\
         \x20 #   scep  enroll with the server's /scep (build the profile with\n\
         \x20 #         --scep-challenge-file, from `fleetkit token create --scep`)\n\
         \x20 #   none  no certificate payload (you enroll machine certificates with\n\
         \x20 #         your own PKI through Jamf)\n\
         \x20 #   acme  not served by fleetkit's server yet: the profile build refuses it\n\
         \x20 macos_method: scep\n\
         \n\
         offline:\n\
         \x20 # fail-closed | cached-with-expiry | cached-indefinite | default-policy\n\
         \x20 mode: cached-with-expiry\n\
         \x20 max_age_hours: 24\n\
         \n\
         policy:\n\
         \x20 file: policy.yaml\n\
         \x20 # Signed bundles expire after this many days unless `policy sign --expires` says otherwise.\n\
         \x20 lifetime_days: 30\n\
         \n\
         # What `fleetkit build` produces.\n\
         targets: [{targets}]\n\
         \n\
         # Agent binaries: `fleetkit build` reads agents/fleetkit-<platform>[.exe] beside\n\
         # this file (scripts/build-agents.sh builds them into target/agents/); entries\n\
         # here, relative to this file's directory, take precedence over that folder:\n\
         # agents:\n\
         #   linux-arm64: agents/fleetkit-linux-arm64\n\
         #   darwin-arm64: agents/fleetkit-darwin-arm64\n\
         #   windows-x86_64: agents/fleetkit-windows-x86_64.exe\n\
         \n\
         # The Linux packages (deb): who maintains them (default: fleetkit <fleetkit@SERVER-HOST>).\n\
         # packages:\n\
         #   maintainer: Acme IT <it@acme.example>\n",
        org = q(org),
        prefix = q(&default_identifier_prefix(org)),
        url = q(server_url),
        targets = Target::names().join(", "),
    )
}

/// A YAML double-quoted scalar holding exactly `s`.
pub fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || c == '\u{feff}'
                || c == '\u{2028}'
                || c == '\u{2029}'
                || c == '\u{85}' =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Config, Diagnostics> {
        let src = SourceFile::new("fleetkit.yaml", text);
        let node = yaml::parse(&src, Limits::default())?;
        parse(&src, &node)
    }

    #[test]
    fn starter_config_round_trips_any_org_name() {
        let org = "Ac\"me' $(rm -rf /) `id` \\ \n Çà 株式会社";
        let c = parse_text(&starter_config(org, "https://fleet.example.com:8443")).unwrap();
        assert_eq!(c.org, org);
        assert_eq!(c.identifier_prefix, "com.ac-me-rm-rf-id");
        assert_eq!(c.targets, Target::all());
        assert_eq!(c.offline.mode, OfflineMode::CachedWithExpiry);
        assert_eq!(c.enrollment.macos_method, MacosEnrollment::Scep);
    }

    #[test]
    fn macos_method_defaults_to_scep_and_takes_acme_and_none() {
        let base = "org: acme\nserver: {url: https://fleet.example}\n";
        let c = parse_text(base).unwrap();
        assert_eq!(c.enrollment.macos_method, MacosEnrollment::Scep);
        for (name, method) in [
            ("scep", MacosEnrollment::Scep),
            // Still parses; the profile build is what refuses it.
            ("acme", MacosEnrollment::Acme),
            ("none", MacosEnrollment::None),
        ] {
            let c = parse_text(&format!("{base}enrollment: {{macos_method: {name}}}\n")).unwrap();
            assert_eq!(c.enrollment.macos_method, method, "{name}");
        }
        let d = parse_text(&format!("{base}enrollment: {{macos_method: est}}\n")).unwrap_err();
        assert_eq!(d.0[0].field, "enrollment.macos_method");
        assert!(d.0[0].message.contains("`est`"), "{}", d.0[0].message);
    }

    #[test]
    fn every_error_is_reported() {
        let d = parse_text(
            "org: acme\nserver: {url: http://x.example}\noffline: {mode: cached-forever}\ntargets: [msi, dmg]\nextra: 1\n",
        )
        .unwrap_err();
        let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            ["server.url", "offline.mode", "targets[1]", "extra"]
        );
        assert!(d.0[0].message.contains("https://"));
    }

    #[test]
    fn prefixes() {
        assert!(is_reverse_dns("com.acme-corp"));
        assert!(!is_reverse_dns("acme"));
        assert!(!is_reverse_dns("com..x"));
        assert_eq!(default_identifier_prefix("Acme Corp"), "com.acme-corp");
        assert_eq!(default_identifier_prefix("\"$`"), "com.example");
    }
}

//! The device manifest: every field of the ADR-002 "Machine manifest", written
//! atomically as YAML to the agent's data directory, and mirrored where each
//! configuration-management tool reads facts: an Ansible local fact
//! (`ansible_local.fleetkit`), a Puppet external fact (`$facts['fleetkit']`) and a
//! Chef Ohai hint (`node['hints']['fleetkit']`). The Jamf extension attribute reads
//! the YAML itself.
//!
//! Beyond the contract's fields the manifest says what IT asks next: the server's
//! device id, enrollment state, OS, serial, certificate expiry and the last sync.

use super::paths::AgentPaths;
use crate::clock::rfc3339;
use crate::fsutil::{self, PUBLIC_MODE};
use crate::workspace::config::yaml_quote;
use time::OffsetDateTime;

/// The manifest's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    // ADR-002 fields, in the contract's order.
    pub machine_id: String,
    pub organization: String,
    pub user: String,
    pub hostname: String,
    pub platform: String,
    /// The cmdai version found on the device, if cmdai is installed.
    pub cmdai_version: Option<String>,
    /// The fleetkit agent (the enterprise plugin) version.
    pub enterprise_plugin_version: String,
    pub registered_at: Option<OffsetDateTime>,
    pub certificate_fingerprint: Option<String>,
    pub department: Option<String>,
    pub team: Option<String>,
    pub environment: Option<String>,
    pub compliance_zone: Option<String>,
    /// Registered, and a verified policy is in force.
    pub provisioned: bool,
    pub policy_version: Option<u64>,
    pub last_policy_update: Option<OffsetDateTime>,
    // fleetkit additions.
    pub device_id: Option<String>,
    /// `registered` or `pending`.
    pub enrollment: String,
    pub os_name: String,
    pub os_version: String,
    pub serial: Option<String>,
    pub certificate_not_after: Option<OffsetDateTime>,
    pub last_sync: Option<OffsetDateTime>,
    /// `ok` or the reason code of the last failed sync.
    pub last_sync_result: Option<String>,
}

/// One value of the manifest.
enum Value<'a> {
    Str(Option<&'a str>),
    Time(Option<OffsetDateTime>),
    Int(Option<u64>),
    Bool(bool),
}

impl Manifest {
    fn fields(&self) -> Vec<(&'static str, Value<'_>)> {
        use Value::*;
        fn s(v: &Option<String>) -> Value<'_> {
            Value::Str(v.as_deref())
        }
        vec![
            ("machine_id", Str(Some(&self.machine_id))),
            ("organization", Str(Some(&self.organization))),
            ("user", Str(Some(&self.user))),
            ("hostname", Str(Some(&self.hostname))),
            ("platform", Str(Some(&self.platform))),
            ("cmdai_version", s(&self.cmdai_version)),
            (
                "enterprise_plugin_version",
                Str(Some(&self.enterprise_plugin_version)),
            ),
            ("registered_at", Time(self.registered_at)),
            ("certificate_fingerprint", s(&self.certificate_fingerprint)),
            ("department", s(&self.department)),
            ("team", s(&self.team)),
            ("environment", s(&self.environment)),
            ("compliance_zone", s(&self.compliance_zone)),
            ("provisioned", Bool(self.provisioned)),
            ("policy_version", Int(self.policy_version)),
            ("last_policy_update", Time(self.last_policy_update)),
            ("device_id", s(&self.device_id)),
            ("enrollment", Str(Some(&self.enrollment))),
            ("os_name", Str(Some(&self.os_name))),
            ("os_version", Str(Some(&self.os_version))),
            ("serial", s(&self.serial)),
            ("certificate_not_after", Time(self.certificate_not_after)),
            ("last_sync", Time(self.last_sync)),
            ("last_sync_result", s(&self.last_sync_result)),
        ]
    }

    /// The manifest as YAML: every string double-quoted and escaped, so no value can
    /// break the document or be read as another type.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from(
            "# fleetkit device manifest (ADR-002 machine manifest), written by `fleetkit agent`.\n",
        );
        for (key, value) in self.fields() {
            let text = match value {
                Value::Str(Some(s)) => yaml_quote(s),
                Value::Time(Some(t)) => yaml_quote(&rfc3339(t)),
                Value::Int(Some(n)) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Str(None) | Value::Time(None) | Value::Int(None) => "null".into(),
            };
            out.push_str(&format!("{key}: {text}\n"));
        }
        out
    }

    /// The manifest as a JSON object (the fact mirrors).
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (key, value) in self.fields() {
            let v = match value {
                Value::Str(s) => s.map_or(serde_json::Value::Null, |s| s.into()),
                Value::Time(t) => t.map_or(serde_json::Value::Null, |t| rfc3339(t).into()),
                Value::Int(n) => n.map_or(serde_json::Value::Null, |n| n.into()),
                Value::Bool(b) => b.into(),
            };
            map.insert(key.to_string(), v);
        }
        serde_json::Value::Object(map)
    }

    /// Writes the manifest and its three mirrors, each atomically. The manifest
    /// comes first: it is the record; the mirrors are copies for other tools.
    pub fn write(&self, paths: &AgentPaths) -> Result<(), fsutil::FsError> {
        fsutil::write_atomic(&paths.manifest, self.to_yaml().as_bytes(), PUBLIC_MODE)?;
        let json = self.to_json();
        let pretty = |v: &serde_json::Value| {
            let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
            b.push(b'\n');
            b
        };
        // Ansible reads a `.fact` file as one JSON object: ansible_local.fleetkit.
        if let Some(fact) = &paths.ansible_fact {
            fsutil::write_atomic(fact, &pretty(&json), PUBLIC_MODE)?;
        }
        // Facter reads every top-level key of an external JSON fact: $facts['fleetkit'].
        let puppet = serde_json::json!({ "fleetkit": json });
        fsutil::write_atomic(&paths.puppet_fact, &pretty(&puppet), PUBLIC_MODE)?;
        // Ohai's hints plugin exposes the file's object as node['hints']['fleetkit'].
        fsutil::write_atomic(&paths.chef_hint, &pretty(&json), PUBLIC_MODE)?;
        Ok(())
    }
}

/// The cmdai version, when a `cmdai` binary is on the PATH.
pub fn cmdai_version() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    let exe = std::env::split_paths(&path)
        .map(|d| d.join(if cfg!(windows) { "cmdai.exe" } else { "cmdai" }))
        .find(|p| p.is_file())?;
    let out = std::process::Command::new(exe)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().last()?.trim_start_matches('v');
    (out.status.success() && !version.is_empty() && version.len() < 64)
        .then(|| version.chars().filter(|c| !c.is_control()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_single_yaml_strings() {
        let m = Manifest {
            machine_id: "m-1".into(),
            organization: "a\"b'c: $(x) `y` #z ü\\".into(),
            user: "null".into(),
            team: Some("- [x]".into()),
            ..Default::default()
        };
        let y = m.to_yaml();
        assert!(y.contains("user: \"null\"\n"), "{y}");
        assert!(y.contains("policy_version: null\n"));
        assert_eq!(m.to_json()["organization"], "a\"b'c: $(x) `y` #z ü\\");
    }
}

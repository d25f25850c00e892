//! What the device says about itself: system facts from sysinfo, the console user,
//! a hardware/serial id where the platform exposes one, and the stable machine id.
//!
//! The machine id is `<short host>-<12 hex>`, the hex being SHA-256 over the org and
//! the platform's hardware id (Linux `/etc/machine-id`, macOS `IOPlatformUUID`,
//! Windows `MachineGuid`). The same machine therefore keeps its id across
//! reinstalls, two orgs see unrelated ids, and the hardware id itself is never sent.
//! Where no hardware id can be read (a container, a root prefix without one), a
//! random id is made once and kept in the agent's data directory.

use super::paths::{AgentPaths, Platform};
use super::settings::Assignment;
use crate::fsutil::{self, PUBLIC_MODE};
use crate::protocol::DeviceFacts;
use sha2::{Digest, Sha256};
use std::process::Command;

/// The agent version reported in facts and the manifest.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Gathers the facts of this device for `org` with the given assignment.
pub fn gather(
    paths: &AgentPaths,
    org: &str,
    assignment: &Assignment,
) -> Result<DeviceFacts, fsutil::FsError> {
    let hostname = clean(sysinfo::System::host_name().unwrap_or_default())
        .unwrap_or_else(|| "unknown-host".into());
    let arch = normalise_arch(&sysinfo::System::cpu_arch());
    let platform = Platform::current();
    let os_tag = match platform {
        Platform::Linux => "linux",
        Platform::Macos => "darwin",
        Platform::Windows => "windows",
    };
    let machine_id = machine_id(paths, org, &hostname)?;
    Ok(DeviceFacts {
        machine_id,
        hostname,
        platform: format!("{os_tag}-{arch}"),
        os_name: clean(sysinfo::System::name().unwrap_or_default())
            .unwrap_or_else(|| os_tag.into()),
        os_version: clean(sysinfo::System::os_version().unwrap_or_default())
            .unwrap_or_else(|| "unknown".into()),
        arch,
        serial: if paths.is_real_root() {
            serial_number()
        } else {
            None
        },
        user: console_user().unwrap_or_else(|| "unknown".into()),
        agent_version: AGENT_VERSION.into(),
        team: assignment.team.clone(),
        department: assignment.department.clone(),
        environment: assignment.environment.clone(),
        compliance_zone: assignment.compliance_zone.clone(),
    })
}

/// The stable machine id of this device in `org`.
pub fn machine_id(
    paths: &AgentPaths,
    org: &str,
    hostname: &str,
) -> Result<String, fsutil::FsError> {
    let hardware = match hardware_id(paths) {
        Some(id) => id,
        None => local_random_id(paths)?,
    };
    let mut h = Sha256::new();
    h.update(b"fleetkit machine id\0");
    h.update(org.as_bytes());
    h.update(b"\0");
    h.update(hardware.as_bytes());
    let digest = hex::encode(h.finalize());
    Ok(format!("{}-{}", short_host(hostname), &digest[..12]))
}

/// The first label of the host name, reduced to the machine-id alphabet.
fn short_host(hostname: &str) -> String {
    let label = hostname.split('.').next().unwrap_or_default();
    let mut s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    s = s.trim_matches('-').to_string();
    if s.is_empty() { "device".into() } else { s }
}

/// The platform's hardware id, if it has one to read.
fn hardware_id(paths: &AgentPaths) -> Option<String> {
    if let Some(file) = &paths.platform_machine_id {
        let text = std::fs::read_to_string(file).ok()?;
        return clean(text);
    }
    if !paths.is_real_root() {
        return None;
    }
    match Platform::current() {
        Platform::Macos => ioreg_value("IOPlatformUUID"),
        Platform::Windows => {
            use super::windows::{Hklm, MachineRegistry};
            Hklm.get_string(r"SOFTWARE\Microsoft\Cryptography", "MachineGuid")
                .and_then(clean)
        }
        Platform::Linux => None,
    }
}

/// A random id made once for this device and kept in the data directory.
fn local_random_id(paths: &AgentPaths) -> Result<String, fsutil::FsError> {
    if let Ok(text) = std::fs::read_to_string(&paths.local_machine_id)
        && let Some(id) = clean(text)
    {
        return Ok(id);
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        fsutil::FsError::new(
            "cannot get random bytes for",
            &paths.local_machine_id,
            std::io::Error::other(e.to_string()),
        )
    })?;
    let id = hex::encode(bytes);
    fsutil::write_atomic(&paths.local_machine_id, id.as_bytes(), PUBLIC_MODE)?;
    Ok(id)
}

/// The hardware serial number (macOS) or product serial (Linux, readable by root).
fn serial_number() -> Option<String> {
    match Platform::current() {
        Platform::Macos => ioreg_value("IOPlatformSerialNumber"),
        Platform::Linux => std::fs::read_to_string("/sys/class/dmi/id/product_serial")
            .ok()
            .and_then(clean)
            .filter(|s| !s.eq_ignore_ascii_case("not specified") && s != "0"),
        Platform::Windows => None,
    }
}

fn ioreg_value(key: &str) -> Option<String> {
    let out = Command::new("/usr/sbin/ioreg")
        .args(["-rd1", "-c", "IOPlatformExpertDevice"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains(&format!("\"{key}\"")))?;
    let value = line.rsplit_once('=')?.1.trim().trim_matches('"');
    clean(value.to_string())
}

/// The person using the device: the console user on macOS, the user who ran sudo
/// or the login user elsewhere. Installers run as root; the owner of the console is
/// who the device belongs to.
fn console_user() -> Option<String> {
    if Platform::current() == Platform::Macos
        && let Ok(out) = Command::new("/usr/bin/stat")
            .args(["-f", "%Su", "/dev/console"])
            .output()
        && let Some(u) = clean(String::from_utf8_lossy(&out.stdout).into_owned())
        && u != "root"
    {
        return Some(u);
    }
    ["SUDO_USER", "USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(clean))
}

/// Trimmed, without control characters, non-empty, at most 200 bytes.
fn clean(s: String) -> Option<String> {
    let t: String = s.trim().chars().filter(|c| !c.is_control()).collect();
    let t = t.trim();
    if t.is_empty() {
        return None;
    }
    let mut end = t.len().min(200);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    Some(t[..end].to_string())
}

/// `aarch64` → `arm64` (the ADR-002 spelling), others as the platform names them.
fn normalise_arch(arch: &str) -> String {
    match arch {
        "aarch64" => "arm64".into(),
        "x86_64" | "amd64" => "x86_64".into(),
        "" => "unknown".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn machine_id_is_stable_per_hardware_and_org_and_passes_the_server_rules() {
        let dir = tempfile::tempdir().unwrap();
        let paths = AgentPaths::new(dir.path(), Platform::Linux);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/machine-id"), "0123456789abcdef\n").unwrap();
        let a = machine_id(&paths, "acme", "Alice's MacBook.local").unwrap();
        assert_eq!(
            a,
            machine_id(&paths, "acme", "Alice's MacBook.local").unwrap()
        );
        assert!(a.starts_with("alice-s-macbook-"), "{a}");
        assert_ne!(
            a,
            machine_id(&paths, "globex", "Alice's MacBook.local").unwrap()
        );
        assert!(crate::protocol::is_valid_machine_id(&a));
    }

    #[test]
    fn without_a_hardware_id_a_random_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = AgentPaths::new(dir.path(), Platform::Linux);
        let a = machine_id(&paths, "acme", "h").unwrap();
        assert_eq!(a, machine_id(&paths, "acme", "h").unwrap());
        assert!(Path::new(&paths.local_machine_id).exists());
        assert_eq!(short_host("--"), "device");
    }
}

//! What the agent does only on Windows, where the MSI hands over its values:
//!
//! - reads the enrollment values the MSI wrote from its public properties
//!   (`HKLM\SOFTWARE\fleetkit\Enrollment`: Team, Department, Environment, Token;
//!   the key is readable by SYSTEM and Administrators only);
//! - records the device for detection and reporting
//!   (`HKLM\SOFTWARE\fleetkit\Device`: MachineId, DeviceId, Enrollment,
//!   PolicyVersion), a key the MSI does not own, so it outlives an uninstall as the
//!   manifest does;
//! - puts the org's root CA in the machine's Root store (`certutil -addstore`).
//!
//! Why the registry rather than the custom action's command line: Windows Installer
//! pastes a property into a command line as it is, so a value holding `"` would
//! split the arguments. Registry values are written as typed, whatever they hold.
//!
//! The parsing is plain code, tested on every platform; the registry and certutil
//! calls exist only in Windows builds.

use super::settings::{Assignment, check_label};
use zeroize::Zeroizing;

/// The MSI's key: Version, ProductCode, PolicyVersion (the shipped bundle).
pub const PRODUCT_KEY: &str = r"SOFTWARE\fleetkit";
/// The values the MSI takes from its public properties.
pub const ENROLLMENT_KEY: &str = r"SOFTWARE\fleetkit\Enrollment";
/// What the agent records about the device.
pub const DEVICE_KEY: &str = r"SOFTWARE\fleetkit\Device";
/// The MSI writes every enrollment value behind this prefix: Windows Installer
/// would take a value starting with `#` for a number, and an empty one for "delete
/// the value". Values set another way (Group Policy, Intune's registry settings)
/// may leave it out.
pub const VALUE_PREFIX: &str = "v=";

/// The enrollment values an installer left.
#[derive(Debug, Default)]
pub struct InstallerValues {
    pub assignment: Assignment,
    pub token: Option<Zeroizing<String>>,
}

/// Reads the enrollment values through `get` (a registry value by name).
pub fn parse_installer_values(
    get: impl Fn(&str) -> Option<String>,
) -> Result<InstallerValues, String> {
    let value = |name: &str| -> Option<String> {
        let raw = get(name)?;
        Some(raw.strip_prefix(VALUE_PREFIX).unwrap_or(&raw).to_string())
    };
    let label = |name: &str, field: &str| {
        check_label(field, value(name)).map_err(|reason| {
            format!(r"HKLM\{ENROLLMENT_KEY}\{name}: {reason}; correct the FLEETKIT_* property given to the installer")
        })
    };
    let token = value("Token")
        .map(|t| Zeroizing::new(t.trim().to_string()))
        .filter(|t| !t.is_empty());
    Ok(InstallerValues {
        assignment: Assignment {
            team: label("Team", "team")?,
            department: label("Department", "department")?,
            environment: label("Environment", "environment")?,
            compliance_zone: None,
        },
        token,
    })
}

/// What the agent records about the device in [`DEVICE_KEY`].
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    pub machine_id: String,
    pub device_id: Option<String>,
    /// `registered` or `pending`.
    pub enrollment: String,
    pub policy_version: Option<u64>,
}

impl DeviceRecord {
    /// The values, by name, as written (all REG_SZ, so detection scripts compare
    /// strings).
    pub fn values(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MachineId", self.machine_id.clone()),
            ("DeviceId", self.device_id.clone().unwrap_or_default()),
            ("Enrollment", self.enrollment.clone()),
            (
                "PolicyVersion",
                self.policy_version
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ),
        ]
    }
}

/// The installer's enrollment values, if it left any.
#[cfg(windows)]
pub fn read_installer_values() -> Result<Option<InstallerValues>, String> {
    let Ok(key) = windows_registry::LOCAL_MACHINE.open(ENROLLMENT_KEY) else {
        return Ok(None);
    };
    parse_installer_values(|name| key.get_string(name).ok()).map(Some)
}

/// The installer's enrollment values, if it left any (none off Windows).
#[cfg(not(windows))]
pub fn read_installer_values() -> Result<Option<InstallerValues>, String> {
    Ok(None)
}

/// Removes the enrollment token once it has been used.
#[cfg(windows)]
pub fn forget_token() {
    if let Ok(key) = windows_registry::LOCAL_MACHINE
        .options()
        .read()
        .write()
        .open(ENROLLMENT_KEY)
    {
        let _ = key.remove_value("Token");
    }
}

#[cfg(not(windows))]
pub fn forget_token() {}

/// Writes `record` to [`DEVICE_KEY`].
#[cfg(windows)]
pub fn record_device(record: &DeviceRecord) -> Result<(), String> {
    let key = windows_registry::LOCAL_MACHINE
        .create(DEVICE_KEY)
        .map_err(|e| format!(r"HKLM\{DEVICE_KEY}: {e}"))?;
    for (name, value) in record.values() {
        key.set_string(name, &value)
            .map_err(|e| format!(r"HKLM\{DEVICE_KEY}\{name}: {e}"))?;
    }
    Ok(())
}

#[cfg(not(windows))]
pub fn record_device(_record: &DeviceRecord) -> Result<(), String> {
    Ok(())
}

/// Adds the root CA in `pem` to the machine's Root store (idempotent: certutil
/// replaces an existing entry).
#[cfg(windows)]
pub fn trust_root_ca(pem: &std::path::Path) -> Result<(), String> {
    let system_root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
    let certutil = std::path::Path::new(&system_root).join(r"System32\certutil.exe");
    let out = std::process::Command::new(&certutil)
        .args(["-f", "-addstore", "Root"])
        .arg(pem)
        .output()
        .map_err(|e| format!("{}: {e}", certutil.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "certutil -addstore Root failed: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

#[cfg(not(windows))]
pub fn trust_root_ca(_pem: &std::path::Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parse(values: &[(&str, &str)]) -> Result<InstallerValues, String> {
        let map: BTreeMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_installer_values(|name| map.get(name).cloned())
    }

    #[test]
    fn values_come_back_exactly_without_the_prefix() {
        let team = "Plat\"form 'ü' $x `y` #1 [~] %PATH%";
        let v = parse(&[
            ("Team", &format!("v={team}")),
            ("Department", "v=#42"),
            ("Environment", "v="),
            ("Token", "v=tok\"en $x"),
        ])
        .unwrap();
        assert_eq!(v.assignment.team.as_deref(), Some(team));
        assert_eq!(v.assignment.department.as_deref(), Some("#42"));
        assert_eq!(v.assignment.environment, None, "empty means not given");
        assert_eq!(v.token.as_deref().map(String::as_str), Some("tok\"en $x"));
    }

    #[test]
    fn values_set_by_policy_need_no_prefix() {
        let v = parse(&[("Team", "ops")]).unwrap();
        assert_eq!(v.assignment.team.as_deref(), Some("ops"));
        assert!(v.token.is_none());
    }

    #[test]
    fn a_control_character_is_refused_naming_the_value() {
        let e = parse(&[("Department", "v=a\nb")]).unwrap_err();
        assert!(
            e.contains(r"SOFTWARE\fleetkit\Enrollment\Department"),
            "{e}"
        );
    }

    #[test]
    fn the_device_record_is_strings() {
        let r = DeviceRecord {
            machine_id: "pc-1".into(),
            device_id: None,
            enrollment: "pending".into(),
            policy_version: Some(3),
        };
        assert_eq!(
            r.values(),
            [
                ("MachineId", "pc-1".to_string()),
                ("DeviceId", String::new()),
                ("Enrollment", "pending".into()),
                ("PolicyVersion", "3".into())
            ]
        );
    }
}

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
//! The logic is plain code over a small registry trait, tested on every platform
//! with an in-memory registry; only the `Hklm` adapter (the windows-registry crate)
//! and the certutil call exist only in Windows builds.

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

/// The registry operations the agent needs, on `HKLM`. The logic above them is
/// plain code, tested everywhere with an in-memory registry; only [`Hklm`] talks to
/// Windows.
pub trait MachineRegistry {
    /// A REG_SZ value; `None` when the key or the value does not exist.
    fn get_string(&self, key: &str, name: &str) -> Option<String>;
    /// Creates the key if needed and sets a REG_SZ value.
    fn set_string(&self, key: &str, name: &str, value: &str) -> Result<(), String>;
    /// Removes a value, if there.
    fn remove_value(&self, key: &str, name: &str);
}

/// The installer's enrollment values in `registry`, if it left any.
pub fn installer_values(registry: &dyn MachineRegistry) -> Result<Option<InstallerValues>, String> {
    const NAMES: [&str; 4] = ["Team", "Department", "Environment", "Token"];
    if NAMES
        .iter()
        .all(|n| registry.get_string(ENROLLMENT_KEY, n).is_none())
    {
        return Ok(None);
    }
    parse_installer_values(|name| registry.get_string(ENROLLMENT_KEY, name)).map(Some)
}

/// Removes the enrollment token once it has been used.
pub fn forget_token_in(registry: &dyn MachineRegistry) {
    registry.remove_value(ENROLLMENT_KEY, "Token");
}

/// Writes `record` to [`DEVICE_KEY`].
pub fn record_device_in(
    registry: &dyn MachineRegistry,
    record: &DeviceRecord,
) -> Result<(), String> {
    for (name, value) in record.values() {
        registry.set_string(DEVICE_KEY, name, &value)?;
    }
    Ok(())
}

/// `HKEY_LOCAL_MACHINE`, 64-bit view (the MSI's components are 64-bit).
pub struct Hklm;

#[cfg(windows)]
impl MachineRegistry for Hklm {
    fn get_string(&self, key: &str, name: &str) -> Option<String> {
        windows_registry::LOCAL_MACHINE
            .open(key)
            .ok()?
            .get_string(name)
            .ok()
    }

    fn set_string(&self, key: &str, name: &str, value: &str) -> Result<(), String> {
        windows_registry::LOCAL_MACHINE
            .create(key)
            .and_then(|k| k.set_string(name, value))
            .map_err(|e| format!(r"HKLM\{key}\{name}: {e}"))
    }

    fn remove_value(&self, key: &str, name: &str) {
        if let Ok(k) = windows_registry::LOCAL_MACHINE
            .options()
            .read()
            .write()
            .open(key)
        {
            let _ = k.remove_value(name);
        }
    }
}

/// Off Windows there is no machine registry: nothing is there, nothing is kept.
#[cfg(not(windows))]
impl MachineRegistry for Hklm {
    fn get_string(&self, _key: &str, _name: &str) -> Option<String> {
        None
    }

    fn set_string(&self, _key: &str, _name: &str, _value: &str) -> Result<(), String> {
        Ok(())
    }

    fn remove_value(&self, _key: &str, _name: &str) {}
}

/// The installer's enrollment values on this machine, if it left any.
pub fn read_installer_values() -> Result<Option<InstallerValues>, String> {
    installer_values(&Hklm)
}

/// Removes this machine's enrollment token once it has been used.
pub fn forget_token() {
    forget_token_in(&Hklm);
}

/// Records the device in this machine's registry.
pub fn record_device(record: &DeviceRecord) -> Result<(), String> {
    record_device_in(&Hklm, record)
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

    /// An in-memory HKLM.
    #[derive(Default)]
    struct Memory(std::cell::RefCell<BTreeMap<(String, String), String>>);

    impl MachineRegistry for Memory {
        fn get_string(&self, key: &str, name: &str) -> Option<String> {
            self.0.borrow().get(&(key.into(), name.into())).cloned()
        }
        fn set_string(&self, key: &str, name: &str, value: &str) -> Result<(), String> {
            self.0
                .borrow_mut()
                .insert((key.into(), name.into()), value.into());
            Ok(())
        }
        fn remove_value(&self, key: &str, name: &str) {
            self.0.borrow_mut().remove(&(key.into(), name.into()));
        }
    }

    #[test]
    fn installer_values_are_read_and_the_token_forgotten() {
        let reg = Memory::default();
        assert!(installer_values(&reg).unwrap().is_none(), "no key: none");
        reg.set_string(ENROLLMENT_KEY, "Team", "v=Plat\"form ü")
            .unwrap();
        reg.set_string(ENROLLMENT_KEY, "Token", "v=#t$k").unwrap();
        let v = installer_values(&reg).unwrap().unwrap();
        assert_eq!(v.assignment.team.as_deref(), Some("Plat\"form ü"));
        assert_eq!(v.token.as_deref().map(String::as_str), Some("#t$k"));
        forget_token_in(&reg);
        let v = installer_values(&reg).unwrap().unwrap();
        assert!(v.token.is_none());
        assert_eq!(v.assignment.team.as_deref(), Some("Plat\"form ü"));
    }

    #[test]
    fn the_device_is_recorded_under_the_device_key() {
        let reg = Memory::default();
        let r = DeviceRecord {
            machine_id: "pc-1".into(),
            device_id: Some("dev_1".into()),
            enrollment: "registered".into(),
            policy_version: Some(7),
        };
        record_device_in(&reg, &r).unwrap();
        assert_eq!(
            reg.get_string(DEVICE_KEY, "MachineId").as_deref(),
            Some("pc-1")
        );
        assert_eq!(
            reg.get_string(DEVICE_KEY, "PolicyVersion").as_deref(),
            Some("7")
        );
        assert!(reg.get_string(ENROLLMENT_KEY, "MachineId").is_none());
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

//! The platforms fleetkit ships an agent for: an OS and a processor, with the
//! spelling each format needs in one place (deb `amd64`/`arm64`, rpm
//! `x86_64`/`aarch64`, Mach-O `x86_64`/`arm64`, MSI `x64`/`Arm64`), so that no target
//! compares or builds platform strings of its own.
//!
//! The name (`linux-x86_64`, …) is what users write (`--agent`, `agents:` in
//! fleetkit.yaml), what `scripts/build-agents.sh` takes, and what the agent file is
//! called (`fleetkit-<name>`, `.exe` on Windows).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The operating system of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Os {
    Linux,
    Darwin,
    Windows,
}

impl Os {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Darwin => "darwin",
            Self::Windows => "windows",
        }
    }

    /// The platforms of this OS, in [`Platform::ALL`] order.
    pub fn platforms(self) -> impl Iterator<Item = Platform> {
        Platform::ALL.into_iter().filter(move |p| p.os == self)
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The processor of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    X86_64,
    Arm64,
}

/// One agent platform. Ordered by name, as the string keys it replaces were (so
/// `build.json` lists agents as it always did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: Os,
    pub arch: Arch,
}

impl Platform {
    pub const LINUX_X86_64: Self = Self::new(Os::Linux, Arch::X86_64);
    pub const LINUX_ARM64: Self = Self::new(Os::Linux, Arch::Arm64);
    pub const DARWIN_ARM64: Self = Self::new(Os::Darwin, Arch::Arm64);
    pub const DARWIN_X86_64: Self = Self::new(Os::Darwin, Arch::X86_64);
    pub const WINDOWS_X86_64: Self = Self::new(Os::Windows, Arch::X86_64);
    pub const WINDOWS_ARM64: Self = Self::new(Os::Windows, Arch::Arm64);

    /// Every platform, in the order help texts list them.
    pub const ALL: [Self; 6] = [
        Self::LINUX_X86_64,
        Self::LINUX_ARM64,
        Self::DARWIN_ARM64,
        Self::DARWIN_X86_64,
        Self::WINDOWS_X86_64,
        Self::WINDOWS_ARM64,
    ];

    pub const fn new(os: Os, arch: Arch) -> Self {
        Self { os, arch }
    }

    /// `linux-x86_64`, `darwin-arm64`, …
    pub const fn name(self) -> &'static str {
        match (self.os, self.arch) {
            (Os::Linux, Arch::X86_64) => "linux-x86_64",
            (Os::Linux, Arch::Arm64) => "linux-arm64",
            (Os::Darwin, Arch::X86_64) => "darwin-x86_64",
            (Os::Darwin, Arch::Arm64) => "darwin-arm64",
            (Os::Windows, Arch::X86_64) => "windows-x86_64",
            (Os::Windows, Arch::Arm64) => "windows-arm64",
        }
    }

    /// The platform this binary was built for.
    pub const fn host() -> Self {
        let os = if cfg!(target_os = "macos") {
            Os::Darwin
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        };
        let arch = if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::X86_64
        };
        Self::new(os, arch)
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Every name, for help texts (`linux-x86_64, linux-arm64, …`).
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    /// The agent's file name, as `scripts/build-agents.sh` writes it and `fleetkit
    /// build` looks for it in the workspace's `agents/`: `fleetkit-<platform>`, with
    /// `.exe` for Windows.
    pub fn agent_file_name(self) -> String {
        let exe = if self.os == Os::Windows { ".exe" } else { "" };
        format!("fleetkit-{}{exe}", self.name())
    }

    /// Debian's architecture name (`Architecture:` of a .deb).
    pub const fn deb_arch(self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// RPM's architecture name (the package's arch, `%{_arch}`).
    pub const fn rpm_arch(self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// Apple's architecture name (`hostArchitectures`, `lipo`).
    pub const fn apple_arch(self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Windows Installer's platform name (the summary's Template: `x64`, `Arm64`).
    pub const fn msi_arch(self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "x64",
            Arch::Arm64 => "Arm64",
        }
    }
}

impl Ord for Platform {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Platform {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown platform `{name}` (platforms are: {})",
                Self::names()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_every_format_has_a_spelling() {
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.name()), Some(p));
            assert!(p.name().starts_with(p.os.name()));
            assert!(!p.deb_arch().is_empty() && !p.rpm_arch().is_empty());
        }
        assert_eq!(Platform::LINUX_ARM64.deb_arch(), "arm64");
        assert_eq!(Platform::LINUX_ARM64.rpm_arch(), "aarch64");
        assert_eq!(Platform::LINUX_X86_64.deb_arch(), "amd64");
        assert_eq!(
            Platform::WINDOWS_X86_64.agent_file_name(),
            "fleetkit-windows-x86_64.exe"
        );
        assert_eq!(Platform::parse("linux-amd64"), None);
        assert_eq!(
            serde_json::to_string(&Platform::DARWIN_ARM64).unwrap(),
            "\"darwin-arm64\""
        );
    }
}

//! Agent binaries are checked before they ship: a file given as the agent of a
//! platform must be an executable of that platform, or the build stops naming the
//! file, what it is and what was expected. Only the headers are read (with the
//! `object` crate), never the code:
//!
//! ```text
//! linux-*    ELF, 64-bit: ET_EXEC, or ET_DYN that is a PIE (a PT_INTERP, or DF_1_PIE
//!            when static); e_machine x86_64 | aarch64 (little-endian)
//! darwin-*   thin Mach-O, 64-bit (MH_MAGIC_64), MH_EXECUTE, readable load commands;
//!            cputype x86_64 | arm64. A universal (fat) file is refused: the pkg
//!            target makes one from the checked slices
//! windows-*  "MZ" DOS header → "PE\0\0", PE32+ optional header, characteristics
//!            IMAGE_FILE_EXECUTABLE_IMAGE and not IMAGE_FILE_DLL; machine AMD64 | ARM64
//! ```

use crate::platform::{Os, Platform};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::read::macho::{FatArch, MachHeader, MachOFatFile32, MachOFatFile64};
use object::read::pe::ImageNtHeaders;
use object::{FileKind, elf, macho, pe};
use std::fmt;

/// The three executable formats agents come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Elf,
    MachO,
    Pe,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Elf => "ELF",
            Self::MachO => "Mach-O",
            Self::Pe => "PE",
        })
    }
}

/// What the agent of a platform must be: a 64-bit executable of this format for
/// this architecture (named as the format names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub format: Format,
    pub arch: &'static str,
}

impl Expected {
    /// The expectation for a platform's agent.
    pub fn of(platform: Platform) -> Self {
        match platform.os {
            // ELF and RPM name the processors alike (x86_64, aarch64).
            Os::Linux => Self {
                format: Format::Elf,
                arch: platform.rpm_arch(),
            },
            Os::Darwin => Self {
                format: Format::MachO,
                arch: platform.apple_arch(),
            },
            Os::Windows => Self {
                format: Format::Pe,
                arch: match platform.arch {
                    crate::platform::Arch::X86_64 => "AMD64",
                    crate::platform::Arch::Arm64 => "ARM64",
                },
            },
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binary = Binary {
            format: self.format,
            bits: 64,
            kind: EXECUTABLE.into(),
            arch: self.arch.into(),
        };
        binary.fmt(f)
    }
}

const EXECUTABLE: &str = "executable";

/// An ELF, Mach-O or PE file, as far as shipping it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub format: Format,
    pub bits: u8,
    /// `executable`, or what it is instead (`DLL`, `dylib`, `shared library`, …).
    pub kind: String,
    /// The architecture as the format names it (`x86_64`, `aarch64`, `arm64`, `AMD64`).
    pub arch: String,
}

impl Binary {
    fn satisfies(&self, expected: Expected) -> bool {
        self.format == expected.format
            && self.bits == 64
            && self.kind == EXECUTABLE
            && self.arch == expected.arch
    }
}

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = if self.bits == 64 {
            String::new()
        } else {
            format!("{}-bit ", self.bits)
        };
        let article = if bits.is_empty() && self.format == Format::Elf {
            "an"
        } else {
            "a"
        };
        write!(
            f,
            "{article} {bits}{} {} for {}",
            self.format, self.kind, self.arch
        )
    }
}

/// What a file given as an agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Empty,
    /// Not an ELF, Mach-O or PE file: its first bytes.
    Unknown(Vec<u8>),
    /// A universal Mach-O: its slices' architectures.
    Fat(Vec<String>),
    Binary(Binary),
    /// Starts like one of the formats but its headers do not read.
    Damaged {
        format: Format,
        reason: String,
    },
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("an empty file"),
            Self::Unknown(start) => {
                let hex: Vec<String> = start.iter().map(|b| format!("{b:02x}")).collect();
                write!(f, "not an executable: starts with bytes {}", hex.join(" "))
            }
            Self::Fat(arches) => write!(f, "a universal (fat) Mach-O of {}", arches.join(" and ")),
            Self::Binary(b) => b.fmt(f),
            Self::Damaged { format, reason } => write!(f, "a damaged {format} file ({reason})"),
        }
    }
}

impl Found {
    /// The platform this file is the agent of, if it is one.
    pub fn platform(&self) -> Option<Platform> {
        let Self::Binary(binary) = self else {
            return None;
        };
        Platform::ALL
            .into_iter()
            .find(|p| binary.satisfies(Expected::of(*p)))
    }
}

/// Why a file cannot be a platform's agent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refused {
    #[error("given as the {platform} agent, but it is {found} (expected: {expected})")]
    Mismatch {
        platform: Platform,
        found: Found,
        expected: Expected,
    },
}

impl Refused {
    /// What to do about it.
    pub fn help(&self) -> String {
        let Self::Mismatch {
            platform, found, ..
        } = self;
        let platform = *platform;
        if let Found::Fat(_) = found {
            return "give each architecture as its own agent, darwin-arm64 and darwin-x86_64 (`lipo FILE -thin arm64 -output fleetkit-darwin-arm64` takes one out): the pkg target makes the universal binary from them".into();
        }
        let build = if platform == Platform::WINDOWS_ARM64 {
            "build the lean agent (`cargo build --no-default-features --profile agent`) for aarch64-pc-windows-msvc on a machine that can link it (scripts/build-agents.sh cannot)".to_string()
        } else {
            format!(
                "build it with `scripts/build-agents.sh {platform}` and put target/agents/{} in the workspace's agents/ folder",
                platform.agent_file_name()
            )
        };
        match found.platform() {
            Some(other) => format!(
                "this is the {other} agent: give it as {other} (agents/{}); for {platform}, {build}",
                other.agent_file_name()
            ),
            None => build,
        }
    }
}

/// Checks that `bytes` are an executable for `platform`.
pub fn check(platform: Platform, bytes: &[u8]) -> Result<(), Refused> {
    let expected = Expected::of(platform);
    match identify(bytes) {
        Found::Binary(b) if b.satisfies(expected) => Ok(()),
        found => Err(Refused::Mismatch {
            platform,
            found,
            expected,
        }),
    }
}

/// What `bytes` are.
pub fn identify(bytes: &[u8]) -> Found {
    if bytes.is_empty() {
        return Found::Empty;
    }
    let read = match FileKind::parse(bytes) {
        Ok(FileKind::Elf64) => elf::<elf::FileHeader64<object::Endianness>>(bytes, 64),
        Ok(FileKind::Elf32) => elf::<elf::FileHeader32<object::Endianness>>(bytes, 32),
        Ok(FileKind::MachO64) => mach_o::<macho::MachHeader64<object::Endianness>>(bytes, 64),
        Ok(FileKind::MachO32) => mach_o::<macho::MachHeader32<object::Endianness>>(bytes, 32),
        Ok(FileKind::MachOFat32) => MachOFatFile32::parse(bytes)
            .map(|f| fat(f.arches()))
            .map_err(|e| (Format::MachO, e)),
        Ok(FileKind::MachOFat64) => MachOFatFile64::parse(bytes)
            .map(|f| fat(f.arches()))
            .map_err(|e| (Format::MachO, e)),
        Ok(FileKind::Pe64) => pe::<pe::ImageNtHeaders64>(bytes, 64),
        Ok(FileKind::Pe32) => pe::<pe::ImageNtHeaders32>(bytes, 32),
        _ => return Found::Unknown(bytes.iter().take(4).copied().collect()),
    };
    read.unwrap_or_else(|(format, e)| Found::Damaged {
        format,
        reason: e.to_string(),
    })
}

type Read = Result<Found, (Format, object::read::Error)>;

fn binary(format: Format, bits: u8, kind: String, arch: String) -> Read {
    Ok(Found::Binary(Binary {
        format,
        bits,
        kind,
        arch,
    }))
}

fn elf<H: FileHeader<Endian = object::Endianness>>(bytes: &[u8], bits: u8) -> Read {
    let damaged = |e| (Format::Elf, e);
    let header = H::parse(bytes).map_err(damaged)?;
    let endian = header.endian().map_err(damaged)?;
    let mut interpreter = false;
    let mut pie_flag = false;
    for ph in header.program_headers(endian, bytes).map_err(damaged)? {
        interpreter |= ph.p_type(endian) == elf::PT_INTERP;
        for d in ph.dynamic(endian, bytes).map_err(damaged)?.unwrap_or(&[]) {
            pie_flag |= d.d_tag(endian).into() == u64::from(elf::DT_FLAGS_1)
                && d.d_val(endian).into() & u64::from(elf::DF_1_PIE) != 0;
        }
    }
    let kind = match header.e_type(endian) {
        elf::ET_EXEC => EXECUTABLE.into(),
        elf::ET_DYN if interpreter || pie_flag => EXECUTABLE.into(),
        elf::ET_DYN => "shared library".into(),
        elf::ET_REL => "relocatable object".into(),
        elf::ET_CORE => "core dump".into(),
        other => format!("file of type {other}"),
    };
    let arch = match (header.e_machine(endian), header.is_little_endian()) {
        (elf::EM_X86_64, _) => "x86_64".into(),
        (elf::EM_AARCH64, true) => "aarch64".into(),
        (elf::EM_AARCH64, false) => "aarch64_be".into(),
        (elf::EM_386, _) => "i386".into(),
        (elf::EM_ARM, _) => "arm".into(),
        (elf::EM_RISCV, _) => "riscv".into(),
        (elf::EM_PPC64, _) => "ppc64".into(),
        (other, _) => format!("machine {other}"),
    };
    binary(Format::Elf, bits, kind, arch)
}

fn mach_o<H: MachHeader<Endian = object::Endianness>>(bytes: &[u8], bits: u8) -> Read {
    let damaged = |e| (Format::MachO, e);
    let header = H::parse(bytes, 0).map_err(damaged)?;
    let endian = header.endian().map_err(damaged)?;
    // Every load command must read (a truncated file fails here).
    let mut commands = header.load_commands(endian, bytes, 0).map_err(damaged)?;
    while commands.next().map_err(damaged)?.is_some() {}
    let kind = match header.filetype(endian) {
        macho::MH_EXECUTE => EXECUTABLE.into(),
        macho::MH_DYLIB => "dylib".into(),
        macho::MH_OBJECT => "object file".into(),
        macho::MH_BUNDLE => "bundle".into(),
        macho::MH_CORE => "core file".into(),
        other => format!("file of type {other}"),
    };
    binary(Format::MachO, bits, kind, cpu_name(header.cputype(endian)))
}

fn fat<A: FatArch>(arches: &[A]) -> Found {
    Found::Fat(arches.iter().map(|a| cpu_name(a.cputype())).collect())
}

fn cpu_name(cputype: u32) -> String {
    match cputype {
        macho::CPU_TYPE_X86_64 => "x86_64".into(),
        macho::CPU_TYPE_ARM64 => "arm64".into(),
        macho::CPU_TYPE_ARM64_32 => "arm64_32".into(),
        macho::CPU_TYPE_X86 => "i386".into(),
        macho::CPU_TYPE_ARM => "arm".into(),
        macho::CPU_TYPE_POWERPC => "ppc".into(),
        macho::CPU_TYPE_POWERPC64 => "ppc64".into(),
        other => format!("cputype {other:#x}"),
    }
}

fn pe<H: ImageNtHeaders>(bytes: &[u8], bits: u8) -> Read {
    let damaged = |e| (Format::Pe, e);
    let dos = pe::ImageDosHeader::parse(bytes).map_err(damaged)?;
    let mut offset = dos.nt_headers_offset().into();
    let (nt, _) = H::parse(bytes, &mut offset).map_err(damaged)?;
    let header = nt.file_header();
    let characteristics = header.characteristics.get(object::LittleEndian);
    let kind = if characteristics & pe::IMAGE_FILE_DLL != 0 {
        "DLL"
    } else if characteristics & pe::IMAGE_FILE_EXECUTABLE_IMAGE != 0 {
        EXECUTABLE
    } else {
        "image not marked executable"
    };
    let arch = match header.machine.get(object::LittleEndian) {
        pe::IMAGE_FILE_MACHINE_AMD64 => "AMD64".into(),
        pe::IMAGE_FILE_MACHINE_ARM64 => "ARM64".into(),
        pe::IMAGE_FILE_MACHINE_ARM64EC => "ARM64EC".into(),
        pe::IMAGE_FILE_MACHINE_I386 => "i386".into(),
        pe::IMAGE_FILE_MACHINE_ARMNT => "ARM".into(),
        other => format!("machine {other:#06x}"),
    };
    binary(Format::Pe, bits, kind.into(), arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_read_as_the_issue_asks() {
        let b = |format, bits, kind: &str, arch: &str| Binary {
            format,
            bits,
            kind: kind.into(),
            arch: arch.into(),
        };
        assert_eq!(
            b(Format::Elf, 64, EXECUTABLE, "x86_64").to_string(),
            "an ELF executable for x86_64"
        );
        assert_eq!(
            b(Format::Pe, 64, "DLL", "AMD64").to_string(),
            "a PE DLL for AMD64"
        );
        assert_eq!(
            b(Format::Elf, 32, EXECUTABLE, "i386").to_string(),
            "a 32-bit ELF executable for i386"
        );
        assert_eq!(
            Found::Unknown(b"#!/b".to_vec()).to_string(),
            "not an executable: starts with bytes 23 21 2f 62"
        );
        assert_eq!(
            Expected::of(Platform::DARWIN_ARM64).to_string(),
            "a Mach-O executable for arm64"
        );
    }

    #[test]
    fn every_agent_platform_expects_an_executable_of_its_own() {
        let all: Vec<Expected> = Platform::ALL.into_iter().map(Expected::of).collect();
        for (i, e) in all.iter().enumerate() {
            assert!(!all[..i].contains(e), "{e} is expected of two platforms");
        }
    }

    #[test]
    fn short_and_empty_files_are_refused() {
        assert_eq!(identify(b""), Found::Empty);
        assert_eq!(identify(b"\x7fELF"), Found::Unknown(b"\x7fELF".to_vec()));
        // The ELF magic with a truncated header.
        assert!(matches!(
            identify(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0"),
            Found::Damaged {
                format: Format::Elf,
                ..
            }
        ));
    }
}

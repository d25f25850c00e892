//! Stand-in agent binaries: the smallest files that are, structurally, executables
//! of a platform (what `fleetkit build` checks before it ships an agent), padded
//! with bytes of that platform's own so that no two platforms' stand-ins are equal.
//!
//! ```text
//! linux-*    ELF64 header + one PT_LOAD program header, ET_EXEC
//! darwin-*   Mach-O 64 header, MH_EXECUTE, __TEXT (one __text section: the
//!            padding) and __LINKEDIT, the least that code signing accepts
//! windows-*  DOS header → "PE\0\0" + COFF header (EXECUTABLE_IMAGE) + PE32+ optional
//!            header + one .text section whose entry point returns 1, so that Wine
//!            runs it as an agent that fails
//! ```
//!
//! Also used by benches/build.rs (through `#[path]`), hence no `crate::` paths.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;
pub const CPU_TYPE_X86_64: u32 = 0x0100_0007;
pub const CPU_TYPE_ARM64: u32 = 0x0100_000c;
pub const MH_EXECUTE: u32 = 2;
pub const MH_DYLIB: u32 = 6;
pub const MACHINE_AMD64: u16 = 0x8664;
pub const MACHINE_ARM64: u16 = 0xaa64;
/// IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_LARGE_ADDRESS_AWARE.
pub const PE_EXE: u16 = 0x0022;
/// The same with IMAGE_FILE_DLL.
pub const PE_DLL: u16 = 0x2022;

/// A stand-in agent for `platform` (`linux-x86_64`, …, `windows-arm64`) of at
/// least `size` bytes.
pub fn executable(platform: &str, size: usize) -> Vec<u8> {
    let mut out = match platform {
        "linux-x86_64" => elf(EM_X86_64, ET_EXEC),
        "linux-arm64" => elf(EM_AARCH64, ET_EXEC),
        "darwin-x86_64" => mach_o(CPU_TYPE_X86_64, MH_EXECUTE),
        "darwin-arm64" => mach_o(CPU_TYPE_ARM64, MH_EXECUTE),
        "windows-x86_64" => pe(MACHINE_AMD64, PE_EXE),
        "windows-arm64" => pe(MACHINE_ARM64, PE_EXE),
        other => panic!("no stand-in for platform {other}"),
    };
    pad(&mut out, platform, size);
    // A Mach-O's head says how long the file is.
    if let Some(cputype) = platform.strip_prefix("darwin-").map(|arch| match arch {
        "x86_64" => CPU_TYPE_X86_64,
        _ => CPU_TYPE_ARM64,
    }) {
        let head = mach_o_head(cputype, MH_EXECUTE, out.len());
        out[..head.len()].copy_from_slice(&head);
    }
    out
}

/// Writes [`executable`] as `dir/fleetkit-<platform>[.exe]` (the name
/// scripts/build-agents.sh gives it); its path.
pub fn write_executable(dir: &Path, platform: &str, size: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(
        fleetkit::platform::Platform::parse(platform)
            .expect("a platform name")
            .agent_file_name(),
    );
    std::fs::write(&path, executable(platform, size)).unwrap();
    path
}

/// Appends `platform`'s name, then a byte stream seeded by it, up to `size`.
fn pad(out: &mut Vec<u8>, platform: &str, size: usize) {
    out.extend_from_slice(format!("fleetkit stand-in agent for {platform}\n").as_bytes());
    let mut x = platform
        .bytes()
        .fold(0x9e37_79b9u32, |h, b| h.rotate_left(5) ^ u32::from(b))
        | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(x as u8);
    }
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn u64le(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A little-endian ELF64 file header and one PT_LOAD program header.
pub fn elf(machine: u16, e_type: u16) -> Vec<u8> {
    let mut out = b"\x7fELF\x02\x01\x01".to_vec();
    out.resize(16, 0);
    u16le(&mut out, e_type);
    u16le(&mut out, machine);
    u32le(&mut out, 1); // e_version
    u64le(&mut out, 0x40_0078); // e_entry
    u64le(&mut out, 64); // e_phoff
    u64le(&mut out, 0); // e_shoff
    u32le(&mut out, 0); // e_flags
    for v in [64, 56, 1, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        u16le(&mut out, v);
    }
    u32le(&mut out, 1); // PT_LOAD
    u32le(&mut out, 5); // R+X
    for v in [0, 0x40_0000, 0x40_0000, 120, 120, 0x1000] {
        // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        u64le(&mut out, v);
    }
    out
}

/// Where a stand-in Mach-O's code starts: after the header, two load commands and
/// room for the LC_CODE_SIGNATURE that code signing adds.
pub const MACH_O_CODE_OFFSET: usize = 32 + (72 + 80) + 72 + 32;

/// The head ([`MACH_O_CODE_OFFSET`] bytes) of a little-endian Mach-O 64 file of `len`
/// bytes that code signing accepts: a `__TEXT` segment whose `__text` section holds
/// the bytes after the head, but for the last 16, which are the `__LINKEDIT`
/// segment (code signing appends the signature there).
pub fn mach_o_head(cputype: u32, filetype: u32, len: usize) -> Vec<u8> {
    const BASE: u64 = 0x1_0000_0000;
    const PAGE: u64 = 0x4000;
    let len = len.max(MACH_O_CODE_OFFSET) as u64;
    let linkedit_off = len - (len - MACH_O_CODE_OFFSET as u64).min(16);
    let text_vmsize = linkedit_off.div_ceil(PAGE) * PAGE;
    let mut out = Vec::new();
    let subtype = if cputype == CPU_TYPE_X86_64 { 3 } else { 0 };
    // magic, cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags (NOUNDEFS |
    // DYLDLINK | TWOLEVEL | PIE), reserved
    for v in [
        0xfeed_facf,
        cputype,
        subtype,
        filetype,
        2,
        72 + 80 + 72,
        0x20_0085,
        0,
    ] {
        u32le(&mut out, v);
    }
    let name16 = |out: &mut Vec<u8>, name: &[u8]| {
        let mut b = name.to_vec();
        b.resize(16, 0);
        out.extend_from_slice(&b);
    };
    // LC_SEGMENT_64 __TEXT (r-x) with one section: vmaddr, vmsize, fileoff, filesize;
    // maxprot, initprot, nsects, flags.
    u32le(&mut out, 0x19);
    u32le(&mut out, 72 + 80);
    name16(&mut out, b"__TEXT");
    for v in [BASE, text_vmsize, 0, linkedit_off] {
        u64le(&mut out, v);
    }
    for v in [5, 5, 1, 0] {
        u32le(&mut out, v);
    }
    // section_64 __text: addr, size; offset, align 2^2, reloff, nreloc, flags (pure
    // instructions), reserved1-3.
    name16(&mut out, b"__text");
    name16(&mut out, b"__TEXT");
    let code = MACH_O_CODE_OFFSET as u64;
    for v in [BASE + code, linkedit_off - code] {
        u64le(&mut out, v);
    }
    for v in [code as u32, 2, 0, 0, 0x8000_0400, 0, 0, 0] {
        u32le(&mut out, v);
    }
    // LC_SEGMENT_64 __LINKEDIT (r--), the file's tail.
    u32le(&mut out, 0x19);
    u32le(&mut out, 72);
    name16(&mut out, b"__LINKEDIT");
    for v in [BASE + text_vmsize, PAGE, linkedit_off, len - linkedit_off] {
        u64le(&mut out, v);
    }
    for v in [1, 1, 0, 0] {
        u32le(&mut out, v);
    }
    out.resize(MACH_O_CODE_OFFSET, 0);
    out
}

/// A Mach-O file that is only its head ([`mach_o_head`]).
pub fn mach_o(cputype: u32, filetype: u32) -> Vec<u8> {
    mach_o_head(cputype, filetype, 0)
}

/// A PE32+ image with one `.text` section whose entry point returns 1.
pub fn pe(machine: u16, characteristics: u16) -> Vec<u8> {
    let mut out = b"MZ".to_vec();
    out.resize(0x3c, 0);
    u32le(&mut out, 0x40); // e_lfanew
    out.extend_from_slice(b"PE\0\0");
    // COFF header: machine, one section, no time, no symbols, optional header size.
    u16le(&mut out, machine);
    u16le(&mut out, 1);
    for _ in 0..3 {
        u32le(&mut out, 0);
    }
    u16le(&mut out, 240);
    u16le(&mut out, characteristics);
    // PE32+ optional header.
    u16le(&mut out, 0x20b);
    out.extend_from_slice(&[14, 0]); // linker version
    for v in [0x200, 0, 0, 0x1000, 0x1000] {
        // SizeOfCode, initialised, uninitialised data, entry point, BaseOfCode
        u32le(&mut out, v);
    }
    u64le(&mut out, 0x1_4000_0000); // ImageBase
    u32le(&mut out, 0x1000); // SectionAlignment
    u32le(&mut out, 0x200); // FileAlignment
    for v in [6, 0, 0, 0, 6, 0] {
        // OS, image, subsystem versions
        u16le(&mut out, v);
    }
    for v in [0, 0x2000, 0x200, 0] {
        // Win32VersionValue, SizeOfImage, SizeOfHeaders, CheckSum
        u32le(&mut out, v);
    }
    u16le(&mut out, 3); // console subsystem
    u16le(&mut out, 0x8100); // NX compatible, terminal-server aware
    for v in [0x10_0000, 0x1000, 0x10_0000, 0x1000] {
        // stack and heap reserve and commit
        u64le(&mut out, v);
    }
    u32le(&mut out, 0); // LoaderFlags
    u32le(&mut out, 16); // NumberOfRvaAndSizes
    out.resize(out.len() + 16 * 8, 0);
    // The section header.
    out.extend_from_slice(b".text\0\0\0");
    for v in [0x10, 0x1000, 0x200, 0x200, 0, 0] {
        // VirtualSize, VirtualAddress, SizeOfRawData, PointerToRawData, relocations,
        // line numbers
        u32le(&mut out, v);
    }
    u32le(&mut out, 0); // relocation and line-number counts
    u32le(&mut out, 0x6000_0020); // code, execute, read
    out.resize(0x200, 0);
    // mov eax, 1; ret  |  mov w0, #1; ret
    let code: &[u8] = if machine == MACHINE_ARM64 {
        &[0x20, 0x00, 0x80, 0x52, 0xc0, 0x03, 0x5f, 0xd6]
    } else {
        &[0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3]
    };
    out.extend_from_slice(code);
    out.resize(0x400, 0);
    out
}

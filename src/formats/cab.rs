//! `CabWriter`: a Microsoft cabinet (MS-CAB) with one MSZIP folder, the way an MSI
//! embeds its files, with the 32 KiB blocks compressed in parallel.
//!
//! Why not the cab crate: it compresses with zlib at `Compression::best()` on one
//! thread and offers no other level, which made the MSI target slower than wixl.
//! The layout written here is the one gcab (wixl's cabinet library) writes: every
//! CFDATA block an independent raw-deflate stream behind the `CK` signature. The
//! blocks being independent, they are compressed on every core (with libdeflate,
//! faster and tighter than zlib at the same level), and the bytes do not depend on
//! the number of threads.
//!
//! ```text
//! CFHEADER  "MSCF" | 0 | cbCabinet u32 | 0 | coffFiles u32 | 0 | 3, 1 (version) |
//!           cFolders u16 = 1 | cFiles u16 | flags u16 = 0 | setID u16 | iCabinet 0
//! CFFOLDER  coffCabStart u32 | cCFData u16 | typeCompress u16 = 1 (MSZIP)
//! CFFILE    cbFile u32 | uoffFolderStart u32 | iFolder u16 = 0 | date u16 |
//!           time u16 | attribs u16 | name, NUL-terminated   (one per file)
//! CFDATA    csum u32 | cbData u16 | cbUncomp u16 | "CK" deflate   (one per block)
//! ```
//!
//! All integers little-endian. Tested against gcab, 7z, msiextract and the cab
//! crate's reader (tests/formats_cab.rs).

use libdeflater::{CompressionLvl, Compressor};

/// Uncompressed bytes per CFDATA block (the MSZIP maximum).
const BLOCK: usize = 0x8000;
/// libdeflate's level 6: smaller blocks than zlib's default level (what gcab
/// uses), in less time.
const LEVEL: i32 = 6;
const HEADER_LEN: usize = 36;
const FOLDER_LEN: usize = 8;
const DATA_HEADER_LEN: usize = 8;
/// `_A_ARCH`: the archive attribute, as cabinet makers set it.
const ATTRIB_ARCHIVE: u16 = 0x20;
/// `_A_NAME_IS_UTF`: the name is UTF-8.
const ATTRIB_NAME_IS_UTF: u16 = 0x80;

/// Why a cabinet cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum CabError {
    #[error("a cabinet holds at most 65,535 files, {0} were given")]
    TooManyFiles(usize),
    #[error("`{0}` is larger than a cabinet file can be (4 GiB)")]
    FileTooLarge(String),
    #[error("the files add up to more than a cabinet folder can hold (65,535 blocks of 32 KiB)")]
    TooLarge,
    #[error("the file name `{0}` is empty or holds a NUL")]
    BadName(String),
    #[error("deflate failed: {0}")]
    Deflate(String),
}

/// A file to put in the cabinet.
#[derive(Debug, Clone, Copy)]
pub struct CabFile<'a> {
    /// The name in the cabinet (for an MSI, the File table key).
    pub name: &'a str,
    pub data: &'a [u8],
}

/// Writes a cabinet of `files`, every file dated `time` (MS-DOS date and time,
/// local time as cabinets have no zone). `threads` bounds the compression threads
/// (0: every available core).
pub fn write(
    files: &[CabFile<'_>],
    time: time::PrimitiveDateTime,
    threads: usize,
) -> Result<Vec<u8>, CabError> {
    if files.len() > usize::from(u16::MAX) {
        return Err(CabError::TooManyFiles(files.len()));
    }
    for f in files {
        if f.name.is_empty() || f.name.contains('\0') {
            return Err(CabError::BadName(f.name.to_string()));
        }
        if u32::try_from(f.data.len()).is_err() {
            return Err(CabError::FileTooLarge(f.name.to_string()));
        }
    }
    let total: usize = files.iter().map(|f| f.data.len()).sum();
    if u32::try_from(total).is_err() || total.div_ceil(BLOCK) > usize::from(u16::MAX) {
        return Err(CabError::TooLarge);
    }
    let blocks = compress_blocks(files, total, threads)?;

    let (date, dos_time) = dos_date_time(time);
    let names_len: usize = files.iter().map(|f| 16 + f.name.len() + 1).sum();
    let data_start = HEADER_LEN + FOLDER_LEN + names_len;
    let data_len: usize = blocks.iter().map(|b| DATA_HEADER_LEN + b.len()).sum();
    let cabinet_len = data_start + data_len;
    let cabinet_len32 = u32::try_from(cabinet_len).map_err(|_| CabError::TooLarge)?;

    let mut out = Vec::with_capacity(cabinet_len);
    out.extend_from_slice(b"MSCF");
    put32(&mut out, 0);
    put32(&mut out, cabinet_len32);
    put32(&mut out, 0);
    put32(&mut out, (HEADER_LEN + FOLDER_LEN) as u32);
    put32(&mut out, 0);
    out.extend_from_slice(&[3, 1]);
    put16(&mut out, 1);
    put16(&mut out, files.len() as u16);
    put16(&mut out, 0);
    put16(&mut out, 0);
    put16(&mut out, 0);

    put32(&mut out, data_start as u32);
    put16(&mut out, blocks.len() as u16);
    put16(&mut out, 1);

    let mut offset = 0u32;
    for f in files {
        put32(&mut out, f.data.len() as u32);
        put32(&mut out, offset);
        put16(&mut out, 0);
        put16(&mut out, date);
        put16(&mut out, dos_time);
        let utf = if f.name.is_ascii() {
            0
        } else {
            ATTRIB_NAME_IS_UTF
        };
        put16(&mut out, ATTRIB_ARCHIVE | utf);
        out.extend_from_slice(f.name.as_bytes());
        out.push(0);
        offset += f.data.len() as u32;
    }

    let mut uncompressed_left = total;
    for b in &blocks {
        let uncompressed = uncompressed_left.min(BLOCK);
        uncompressed_left -= uncompressed;
        let sizes = [
            (b.len() as u16).to_le_bytes(),
            (uncompressed as u16).to_le_bytes(),
        ]
        .concat();
        put32(&mut out, checksum(&sizes, checksum(b, 0)));
        out.extend_from_slice(&sizes);
        out.extend_from_slice(b);
    }
    debug_assert_eq!(out.len(), cabinet_len);
    Ok(out)
}

/// Every 32 KiB block of the files laid end to end, MSZIP-compressed, in order.
fn compress_blocks(
    files: &[CabFile<'_>],
    total: usize,
    threads: usize,
) -> Result<Vec<Vec<u8>>, CabError> {
    let count = total.div_ceil(BLOCK);
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
    .clamp(1, count.max(1));
    // Threads take runs of a few blocks from a shared counter until none are
    // left, so a thread slowed by other work does not hold the others up. The
    // result is the same for any thread count: every block is compressed on its
    // own and put back in its place.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<Numbered>, CabError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| compress_claimed(files, count, &next)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(CabError::Deflate("a compression thread failed".into()))
                })
            })
            .collect()
    });
    let mut blocks = vec![Vec::new(); count];
    for r in results {
        for (index, block) in r? {
            blocks[index] = block;
        }
    }
    Ok(blocks)
}

/// A compressed block and its place in the folder.
type Numbered = (usize, Vec<u8>);

/// Blocks claimed at a time from the shared counter.
const RUN: usize = 8;

/// Compresses runs of blocks claimed from `next` until all `count` are taken.
fn compress_claimed(
    files: &[CabFile<'_>],
    count: usize,
    next: &std::sync::atomic::AtomicUsize,
) -> Result<Vec<Numbered>, CabError> {
    let level = CompressionLvl::new(LEVEL)
        .map_err(|e| CabError::Deflate(format!("level {LEVEL}: {e:?}")))?;
    let mut compressor = Compressor::new(level);
    let mut scratch = Vec::with_capacity(BLOCK);
    let mut out = Vec::new();
    loop {
        let start = next.fetch_add(RUN, std::sync::atomic::Ordering::Relaxed);
        if start >= count {
            return Ok(out);
        }
        for index in start..(start + RUN).min(count) {
            let block = gather(files, index * BLOCK, &mut scratch);
            out.push((index, mszip_block(&mut compressor, block)));
        }
    }
}

/// The bytes `at..at + BLOCK` of the files laid end to end: a slice of one file
/// when the block lies within it, else copied into `scratch`.
fn gather<'r>(files: &[CabFile<'r>], at: usize, scratch: &'r mut Vec<u8>) -> &'r [u8] {
    let mut file_start = 0;
    let mut first = None;
    for (i, f) in files.iter().enumerate() {
        if at < file_start + f.data.len() {
            first = Some((i, at - file_start));
            break;
        }
        file_start += f.data.len();
    }
    let Some((i, offset)) = first else {
        return &[];
    };
    let data = files[i].data;
    if offset + BLOCK <= data.len() {
        return &data[offset..offset + BLOCK];
    }
    scratch.clear();
    scratch.extend_from_slice(&data[offset..]);
    for f in &files[i + 1..] {
        let want = BLOCK - scratch.len();
        scratch.extend_from_slice(&f.data[..want.min(f.data.len())]);
        if scratch.len() == BLOCK {
            break;
        }
    }
    scratch
}

/// One MSZIP block: `CK` and a complete raw-deflate stream of `data`; a stored
/// deflate block when compression does not pay (MSZIP allows 32 KiB + 12 bytes).
fn mszip_block(compressor: &mut Compressor, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 2 + data.len() + 5];
    out[..2].copy_from_slice(b"CK");
    match compressor.deflate_compress(data, &mut out[2..]) {
        Ok(n) => out.truncate(2 + n),
        // No room: it would not be smaller than the data itself.
        Err(_) => {
            out.truncate(2);
            out.push(1); // final block, stored
            out.extend_from_slice(&(data.len() as u16).to_le_bytes());
            out.extend_from_slice(&(!(data.len() as u16)).to_le_bytes());
            out.extend_from_slice(data);
        }
    }
    out
}

/// The CFDATA checksum (MS-CAB 2.6): little-endian 32-bit words XORed, the 1 to 3
/// trailing bytes folded in most-significant first.
fn checksum(data: &[u8], seed: u32) -> u32 {
    let mut sum = seed;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        sum ^= u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    }
    let rest = words.remainder();
    let mut tail = 0u32;
    for &b in rest {
        tail = (tail << 8) | u32::from(b);
    }
    sum ^ tail
}

/// MS-DOS date and time (2-second resolution; years 1980 to 2107).
fn dos_date_time(t: time::PrimitiveDateTime) -> (u16, u16) {
    let year = t.year().clamp(1980, 2107) as u16;
    let date = ((year - 1980) << 9) | (u16::from(u8::from(t.month())) << 5) | u16::from(t.day());
    let time =
        (u16::from(t.hour()) << 11) | (u16::from(t.minute()) << 5) | u16::from(t.second() / 2);
    (date, time)
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_folds_the_tail_most_significant_first() {
        assert_eq!(checksum(&[1, 2, 3, 4], 0), 0x0403_0201);
        assert_eq!(
            checksum(&[1, 2, 3, 4, 5, 6, 7], 0),
            0x0403_0201 ^ 0x0005_0607
        );
        assert_eq!(checksum(&[9], 0x10), 0x10 ^ 9);
    }

    #[test]
    fn dos_time_packs_fields() {
        let t = time::macros::datetime!(2024-03-05 13:45:58);
        assert_eq!(
            dos_date_time(t),
            ((44 << 9) | (3 << 5) | 5, (13 << 11) | (45 << 5) | 29)
        );
    }

    #[test]
    fn bytes_do_not_depend_on_the_thread_count() {
        let a: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b = b"small".to_vec();
        let files = [
            CabFile {
                name: "a",
                data: &a,
            },
            CabFile {
                name: "b",
                data: &b,
            },
        ];
        let t = time::macros::datetime!(2024-01-01 00:00:00);
        let one = write(&files, t, 1).unwrap();
        assert_eq!(one, write(&files, t, 3).unwrap());
        assert_eq!(one, write(&files, t, 8).unwrap());
    }

    #[test]
    fn bad_names_are_refused() {
        let t = time::macros::datetime!(2024-01-01 00:00:00);
        let files = [CabFile {
            name: "",
            data: b"x",
        }];
        assert!(matches!(write(&files, t, 1), Err(CabError::BadName(_))));
    }
}

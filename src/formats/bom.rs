//! `BomWriter`: the bill of materials (`Bom`) of a macOS component package, in
//! mkbom's layout, so that Installer (and `lsbom`) know every payload path with
//! its type, mode, owner, size and checksum.
//!
//! ```text
//! header      "BOMStore" | version u32 = 1 | non-null blocks u32 |
//!             blocks index offset u32, length u32 | vars index offset u32, length u32
//!             (big-endian, padded to 512 bytes as mkbom does)
//! blocks      the data of every block, then:
//! index       block count u32, then (offset u32, length u32) per block (block 0 is
//!             null), then an empty free list (count u32 = 0)
//! vars        count u32, then (block u32, name length u8, name) for BomInfo,
//!             Paths, HLIndex, VIndex, Size64
//! ```
//!
//! `Paths` is a tree (`"tree"`, version 1, root paths block, block size 4096, path
//! count) whose leaves list `(path info block, file block)` pairs; a path info block
//! holds the path id and the block of its record (type, mode, uid, gid, mtime,
//! size, checksum), and a file block the parent's path id and the name. Paths are
//! relative to the payload root `.` (the first path, id 1). Leaves hold up to 256
//! entries, linked to each other, under one index node when there are several.
//! HLIndex and Size64 are empty trees; VIndex points to an empty tree.

use std::collections::BTreeMap;

/// Entries per leaf paths block.
const LEAF_ENTRIES: usize = 256;
const BLOCK_SIZE: u32 = 4096;

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    File,
    Directory,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: PathKind,
    mode: u16,
    uid: u32,
    gid: u32,
    size: u32,
    checksum: u32,
}

/// Collects payload paths and writes the Bom.
#[derive(Debug, Clone)]
pub struct BomWriter {
    /// Relative paths without the `./` prefix; `""` is the root.
    entries: BTreeMap<String, Entry>,
    mtime: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BomError {
    #[error("bad path `{0}`: use relative paths of non-empty components")]
    BadPath(String),
    #[error("`{0}` is larger than 4 GiB, which a Bom cannot record")]
    TooLarge(String),
}

impl BomWriter {
    /// An empty Bom (just the root `.`, root:wheel 0755) whose paths carry `mtime`.
    pub fn new(mtime: time::OffsetDateTime) -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(String::new(), dir_entry(0o755));
        Self {
            entries,
            mtime: mtime.unix_timestamp().clamp(0, u32::MAX as i64) as u32,
        }
    }

    /// Records a directory (its parents are added as root:wheel 0755 if missing).
    pub fn add_directory(
        &mut self,
        path: &str,
        mode: u16,
        uid: u32,
        gid: u32,
    ) -> Result<(), BomError> {
        self.add_parents(path)?;
        self.entries.insert(
            path.to_string(),
            Entry {
                kind: PathKind::Directory,
                mode,
                uid,
                gid,
                size: 0,
                checksum: 0,
            },
        );
        Ok(())
    }

    /// Records a file with its content (for size and checksum).
    pub fn add_file(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u16,
        uid: u32,
        gid: u32,
    ) -> Result<(), BomError> {
        self.add_parents(path)?;
        let size = u32::try_from(data.len()).map_err(|_| BomError::TooLarge(path.into()))?;
        self.entries.insert(
            path.to_string(),
            Entry {
                kind: PathKind::File,
                mode,
                uid,
                gid,
                size,
                checksum: posix_cksum(data),
            },
        );
        Ok(())
    }

    fn add_parents(&mut self, path: &str) -> Result<(), BomError> {
        let parts: Vec<&str> = path.split('/').collect();
        if path.is_empty()
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(BomError::BadPath(path.into()));
        }
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            self.entries
                .entry(parent)
                .or_insert_with(|| dir_entry(0o755));
        }
        Ok(())
    }

    /// The Bom's bytes.
    pub fn finish(&self) -> Vec<u8> {
        let mut blocks: Vec<Vec<u8>> = vec![Vec::new()]; // block 0: null
        let push = |data: Vec<u8>, blocks: &mut Vec<Vec<u8>>| -> u32 {
            blocks.push(data);
            (blocks.len() - 1) as u32
        };

        // Paths in an order where every parent precedes its children: sorted by
        // components ("a" < "a/b" < "a-b"), the root first.
        let mut paths: Vec<&String> = self.entries.keys().collect();
        paths.sort_by(|a, b| {
            let ka: Vec<&str> = if a.is_empty() {
                vec![]
            } else {
                a.split('/').collect()
            };
            let kb: Vec<&str> = if b.is_empty() {
                vec![]
            } else {
                b.split('/').collect()
            };
            ka.cmp(&kb)
        });

        let info = push(Vec::new(), &mut blocks); // filled below
        let paths_tree = push(Vec::new(), &mut blocks);

        // One (record, file, info index) triple per path.
        let mut ids: BTreeMap<&str, u32> = BTreeMap::new();
        let mut leaf_entries: Vec<(u32, u32)> = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let id = (i + 1) as u32;
            ids.insert(path.as_str(), id);
            let e = &self.entries[*path];
            let mut record = Vec::with_capacity(31);
            record.push(match e.kind {
                PathKind::File => 1,
                PathKind::Directory => 2,
            });
            record.push(1);
            record.extend_from_slice(&3u16.to_be_bytes()); // architecture-independent
            record.extend_from_slice(&(e.mode & 0o7777 | type_bits(e.kind)).to_be_bytes());
            record.extend_from_slice(&e.uid.to_be_bytes());
            record.extend_from_slice(&e.gid.to_be_bytes());
            record.extend_from_slice(&self.mtime.to_be_bytes());
            record.extend_from_slice(&e.size.to_be_bytes());
            record.push(1);
            record.extend_from_slice(&e.checksum.to_be_bytes());
            record.extend_from_slice(&0u32.to_be_bytes()); // no link name
            let record_block = push(record, &mut blocks);

            let (parent_id, name) = match path.rsplit_once('/') {
                Some((parent, name)) => (ids[parent], name.to_string()),
                None if path.is_empty() => (0, ".".to_string()),
                None => (ids[""], path.to_string()),
            };
            let mut file = parent_id.to_be_bytes().to_vec();
            file.extend_from_slice(name.as_bytes());
            file.push(0);
            let file_block = push(file, &mut blocks);

            let mut index = id.to_be_bytes().to_vec();
            index.extend_from_slice(&record_block.to_be_bytes());
            let index_block = push(index, &mut blocks);
            leaf_entries.push((index_block, file_block));
        }

        // Leaves, linked; an index node over them when there is more than one.
        let chunks: Vec<&[(u32, u32)]> = leaf_entries.chunks(LEAF_ENTRIES).collect();
        let first_leaf = blocks.len() as u32;
        let leaf_count = chunks.len() as u32;
        for (i, chunk) in chunks.iter().enumerate() {
            let this = first_leaf + i as u32;
            let next = if (i as u32) + 1 < leaf_count {
                this + 1
            } else {
                0
            };
            let prev = if i > 0 { this - 1 } else { 0 };
            push(paths_block(1, chunk, next, prev), &mut blocks);
        }
        let root = if leaf_count == 1 {
            first_leaf
        } else {
            let index: Vec<(u32, u32)> = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| (first_leaf + i as u32, c.last().map_or(0, |e| e.1)))
                .collect();
            push(paths_block(0, &index, 0, 0), &mut blocks)
        };
        blocks[paths_tree as usize] = tree_block(root, paths.len() as u32);

        // BomInfo: version, number of paths, no architecture entries.
        let mut bom_info = 1u32.to_be_bytes().to_vec();
        bom_info.extend_from_slice(&(paths.len() as u32).to_be_bytes());
        bom_info.extend_from_slice(&0u32.to_be_bytes());
        blocks[info as usize] = bom_info;

        let empty_tree = |blocks: &mut Vec<Vec<u8>>| -> u32 {
            let leaf = push(paths_block(1, &[], 0, 0), blocks);
            push(tree_block(leaf, 0), blocks)
        };
        let hl_index = empty_tree(&mut blocks);
        let v_tree = empty_tree(&mut blocks);
        let mut v_index = 1u32.to_be_bytes().to_vec();
        v_index.extend_from_slice(&v_tree.to_be_bytes());
        v_index.extend_from_slice(&0u32.to_be_bytes());
        v_index.push(0);
        let v_index = push(v_index, &mut blocks);
        let size64 = empty_tree(&mut blocks);

        // Layout: header (512), block data, blocks index, vars index.
        let mut out = vec![0u8; 512];
        let mut offsets = Vec::with_capacity(blocks.len());
        for b in &blocks {
            if b.is_empty() {
                offsets.push((0u32, 0u32));
            } else {
                offsets.push((out.len() as u32, b.len() as u32));
                out.extend_from_slice(b);
            }
        }
        let index_offset = out.len() as u32;
        out.extend_from_slice(&(blocks.len() as u32).to_be_bytes());
        for (o, l) in &offsets {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&l.to_be_bytes());
        }
        out.extend_from_slice(&0u32.to_be_bytes()); // empty free list
        let index_len = out.len() as u32 - index_offset;
        let vars_offset = out.len() as u32;
        let vars: [(&str, u32); 5] = [
            ("BomInfo", info),
            ("Paths", paths_tree),
            ("HLIndex", hl_index),
            ("VIndex", v_index),
            ("Size64", size64),
        ];
        out.extend_from_slice(&(vars.len() as u32).to_be_bytes());
        for (name, block) in vars {
            out.extend_from_slice(&block.to_be_bytes());
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
        let vars_len = out.len() as u32 - vars_offset;
        let non_null = blocks.iter().filter(|b| !b.is_empty()).count() as u32;
        let mut header = b"BOMStore".to_vec();
        for v in [1, non_null, index_offset, index_len, vars_offset, vars_len] {
            header.extend_from_slice(&v.to_be_bytes());
        }
        out[..header.len()].copy_from_slice(&header);
        out
    }
}

fn dir_entry(mode: u16) -> Entry {
    Entry {
        kind: PathKind::Directory,
        mode,
        uid: 0,
        gid: 0,
        size: 0,
        checksum: 0,
    }
}

/// The file-type bits of a record's mode (S_IFREG, S_IFDIR).
fn type_bits(kind: PathKind) -> u16 {
    match kind {
        PathKind::File => 0o100000,
        PathKind::Directory => 0o040000,
    }
}

fn tree_block(root_paths: u32, path_count: u32) -> Vec<u8> {
    let mut t = b"tree".to_vec();
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&root_paths.to_be_bytes());
    t.extend_from_slice(&BLOCK_SIZE.to_be_bytes());
    t.extend_from_slice(&path_count.to_be_bytes());
    t.push(0);
    t
}

fn paths_block(is_leaf: u16, entries: &[(u32, u32)], next: u32, prev: u32) -> Vec<u8> {
    let mut p = is_leaf.to_be_bytes().to_vec();
    p.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    p.extend_from_slice(&next.to_be_bytes());
    p.extend_from_slice(&prev.to_be_bytes());
    for (a, b) in entries {
        p.extend_from_slice(&a.to_be_bytes());
        p.extend_from_slice(&b.to_be_bytes());
    }
    p
}

/// The checksum `cksum(1)` prints (POSIX: CRC-32, polynomial 0x04C11DB7, not
/// reflected, over the data and then its length), which is what a Bom records.
pub fn posix_cksum(data: &[u8]) -> u32 {
    fn step(crc: u32, byte: u8) -> u32 {
        let mut c = crc ^ ((byte as u32) << 24);
        for _ in 0..8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
        }
        c
    }
    let mut crc = data.iter().fold(0u32, |c, &b| step(c, b));
    let mut len = data.len() as u64;
    while len > 0 {
        crc = step(crc, (len & 0xff) as u8);
        len >>= 8;
    }
    !crc
}

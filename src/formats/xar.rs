//! `XarWriter`: the xar archive format of macOS flat packages.
//!
//! ```text
//! header (28 bytes, big-endian)   "xar!" | header size u16 = 28 | version u16 = 1 |
//!                                 TOC compressed length u64 | TOC length u64 |
//!                                 checksum algorithm u32 (1 = SHA-1)
//! table of contents               zlib-compressed XML (<xar><toc>…</toc></xar>)
//! heap                            offset 0: SHA-1 of the compressed TOC (20 bytes);
//!                                 then the signatures' space, when signed;
//!                                 then every file's data
//! ```
//!
//! Each `<file>` names its data by heap offset and length, with the SHA-1 of the
//! stored bytes (`archived-checksum`) and of the extracted ones
//! (`extracted-checksum`); `application/x-gzip` data is zlib-deflated (xar's name
//! for it), `application/octet-stream` is stored as is. A signed archive reserves
//! heap space after the TOC checksum for an RSA signature and a CMS signature of
//! that checksum, and names them in the TOC (`<signature>`, `<x-signature>`) with
//! the signer's certificate chain, the way `productsign` does: the TOC checksum
//! covers the signature entries, and the signatures cover the checksum.
//!
//! Output is deterministic: entries in insertion order, fixed ids, one mtime.

use crate::targets::escape::xml as xml_escape;
use base64::Engine;
use flate2::Compression;
use flate2::write::ZlibEncoder;
use sha1::{Digest, Sha1};
use std::io::Write;

const HEADER_SIZE: u16 = 28;
const CHECKSUM_SHA1: u32 = 1;
const SHA1_LEN: u64 = 20;

/// How a file's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As is (`application/octet-stream`): already-compressed payloads.
    Stored,
    /// zlib-deflated (`application/x-gzip`).
    Zlib,
}

/// A signer of the TOC checksum: the RSA signature and the CMS SignedData of the
/// 20-byte SHA-1, and the DER certificates to name (leaf first).
pub trait XarSigner {
    /// Byte length of the RSA signature (the key's modulus size).
    fn rsa_signature_len(&self) -> usize;
    /// Byte length of the CMS signature this signer makes for any 20-byte input.
    fn cms_signature_len(&self) -> usize;
    fn sign_rsa(&self, toc_checksum: &[u8]) -> Result<Vec<u8>, String>;
    fn sign_cms(&self, toc_checksum: &[u8]) -> Result<Vec<u8>, String>;
    fn certificates_der(&self) -> Vec<Vec<u8>>;
}

#[derive(Debug, Clone)]
enum Node {
    File {
        name: String,
        data: Vec<u8>,
        mode: u32,
        encoding: Encoding,
    },
    Dir {
        name: String,
        mode: u32,
        children: Vec<Node>,
    },
}

/// Builds a xar archive in memory.
#[derive(Debug, Clone)]
pub struct XarWriter {
    root: Vec<Node>,
    /// ISO 8601 time written for every entry (and the archive).
    mtime: String,
}

#[derive(Debug, thiserror::Error)]
pub enum XarError {
    #[error("bad path `{0}`: use relative paths of non-empty components")]
    BadPath(String),
    #[error("`{0}` is both a file and a directory")]
    Conflict(String),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("the signature is {got} bytes, {reserved} were reserved")]
    SignatureSize { got: usize, reserved: usize },
    #[error("cannot compress: {0}")]
    Io(#[from] std::io::Error),
}

impl XarWriter {
    /// An empty archive whose entries all carry `mtime` (RFC 3339, UTC).
    pub fn new(mtime: time::OffsetDateTime) -> Self {
        let mtime = mtime
            .to_offset(time::UtcOffset::UTC)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
        Self {
            root: Vec::new(),
            mtime,
        }
    }

    /// Adds a file at `path` (`a/b/c`), creating its directories (mode 0755).
    pub fn add_file(
        &mut self,
        path: &str,
        data: Vec<u8>,
        mode: u32,
        encoding: Encoding,
    ) -> Result<(), XarError> {
        let parts: Vec<&str> = path.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(XarError::BadPath(path.into()));
        }
        let (file, dirs) = parts
            .split_last()
            .ok_or_else(|| XarError::BadPath(path.into()))?;
        let mut level = &mut self.root;
        for dir in dirs {
            let pos = level
                .iter()
                .position(|n| matches!(n, Node::Dir { name, .. } if name == dir));
            let pos = match pos {
                Some(p) => p,
                None => {
                    if level
                        .iter()
                        .any(|n| matches!(n, Node::File { name, .. } if name == dir))
                    {
                        return Err(XarError::Conflict(path.into()));
                    }
                    level.push(Node::Dir {
                        name: dir.to_string(),
                        mode: 0o755,
                        children: Vec::new(),
                    });
                    level.len() - 1
                }
            };
            level = match &mut level[pos] {
                Node::Dir { children, .. } => children,
                Node::File { .. } => return Err(XarError::Conflict(path.into())),
            };
        }
        if level.iter().any(|n| match n {
            Node::File { name, .. } | Node::Dir { name, .. } => name == file,
        }) {
            return Err(XarError::Conflict(path.into()));
        }
        level.push(Node::File {
            name: file.to_string(),
            data,
            mode,
            encoding,
        });
        Ok(())
    }

    /// The archive, unsigned.
    pub fn finish(&self) -> Result<Vec<u8>, XarError> {
        self.build(None)
    }

    /// The archive, signed by `signer`.
    pub fn finish_signed(&self, signer: &dyn XarSigner) -> Result<Vec<u8>, XarError> {
        self.build(Some(signer))
    }

    fn build(&self, signer: Option<&dyn XarSigner>) -> Result<Vec<u8>, XarError> {
        // Heap layout: TOC checksum, signatures, then file data.
        let (rsa_len, cms_len) = signer.map_or((0, 0), |s| {
            (s.rsa_signature_len() as u64, s.cms_signature_len() as u64)
        });
        let mut heap_data = Vec::new();
        let data_start = SHA1_LEN + rsa_len + cms_len;
        let mut id = 0u64;
        let mut files_xml = String::new();
        for node in &self.root {
            self.node_xml(node, &mut id, data_start, &mut heap_data, &mut files_xml, 2)?;
        }

        let mut toc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xar>\n <toc>\n");
        toc.push_str(&format!(
            "  <checksum style=\"sha1\">\n   <offset>0</offset>\n   <size>{SHA1_LEN}</size>\n  </checksum>\n"
        ));
        toc.push_str(&format!(
            "  <creation-time>{}</creation-time>\n",
            self.mtime
        ));
        if let Some(s) = signer {
            let certs: String = s
                .certificates_der()
                .iter()
                .map(|der| {
                    format!(
                        "     <X509Certificate>{}</X509Certificate>\n",
                        base64::engine::general_purpose::STANDARD.encode(der)
                    )
                })
                .collect();
            let key_info = format!(
                "   <KeyInfo xmlns=\"http://www.w3.org/2000/09/xmldsig#\">\n    <X509Data>\n{certs}    </X509Data>\n   </KeyInfo>\n"
            );
            toc.push_str(&format!(
                "  <signature style=\"RSA\">\n   <offset>{SHA1_LEN}</offset>\n   <size>{rsa_len}</size>\n{key_info}  </signature>\n"
            ));
            toc.push_str(&format!(
                "  <x-signature style=\"CMS\">\n   <offset>{}</offset>\n   <size>{cms_len}</size>\n{key_info}  </x-signature>\n",
                SHA1_LEN + rsa_len
            ));
        }
        toc.push_str(&files_xml);
        toc.push_str(" </toc>\n</xar>\n");

        let toc_compressed = zlib(toc.as_bytes())?;
        let checksum = Sha1::digest(&toc_compressed).to_vec();
        let mut heap = checksum.clone();
        if let Some(s) = signer {
            let rsa = s.sign_rsa(&checksum).map_err(XarError::Signing)?;
            if rsa.len() as u64 != rsa_len {
                return Err(XarError::SignatureSize {
                    got: rsa.len(),
                    reserved: rsa_len as usize,
                });
            }
            let cms = s.sign_cms(&checksum).map_err(XarError::Signing)?;
            if cms.len() as u64 != cms_len {
                return Err(XarError::SignatureSize {
                    got: cms.len(),
                    reserved: cms_len as usize,
                });
            }
            heap.extend_from_slice(&rsa);
            heap.extend_from_slice(&cms);
        }
        heap.extend_from_slice(&heap_data);

        let mut out = Vec::with_capacity(HEADER_SIZE as usize + toc_compressed.len() + heap.len());
        out.extend_from_slice(b"xar!");
        out.extend_from_slice(&HEADER_SIZE.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(toc_compressed.len() as u64).to_be_bytes());
        out.extend_from_slice(&(toc.len() as u64).to_be_bytes());
        out.extend_from_slice(&CHECKSUM_SHA1.to_be_bytes());
        out.extend_from_slice(&toc_compressed);
        out.extend_from_slice(&heap);
        Ok(out)
    }

    fn node_xml(
        &self,
        node: &Node,
        id: &mut u64,
        data_start: u64,
        heap: &mut Vec<u8>,
        out: &mut String,
        indent: usize,
    ) -> Result<(), XarError> {
        *id += 1;
        let pad = " ".repeat(indent);
        match node {
            Node::File {
                name,
                data,
                mode,
                encoding,
            } => {
                let stored = match encoding {
                    Encoding::Stored => data.clone(),
                    Encoding::Zlib => zlib(data)?,
                };
                let offset = data_start + heap.len() as u64;
                let style = match encoding {
                    Encoding::Stored => "application/octet-stream",
                    Encoding::Zlib => "application/x-gzip",
                };
                out.push_str(&format!("{pad}<file id=\"{id}\">\n"));
                out.push_str(&format!(
                    "{pad} <data>\n{pad}  <length>{}</length>\n{pad}  <offset>{offset}</offset>\n{pad}  <size>{}</size>\n{pad}  <encoding style=\"{style}\"/>\n{pad}  <extracted-checksum style=\"sha1\">{}</extracted-checksum>\n{pad}  <archived-checksum style=\"sha1\">{}</archived-checksum>\n{pad} </data>\n",
                    stored.len(),
                    data.len(),
                    hex::encode(Sha1::digest(data)),
                    hex::encode(Sha1::digest(&stored)),
                ));
                self.attributes_xml(name, "file", *mode, &pad, out);
                out.push_str(&format!("{pad}</file>\n"));
                heap.extend_from_slice(&stored);
            }
            Node::Dir {
                name,
                mode,
                children,
            } => {
                out.push_str(&format!("{pad}<file id=\"{id}\">\n"));
                self.attributes_xml(name, "directory", *mode, &pad, out);
                for child in children {
                    self.node_xml(child, id, data_start, heap, out, indent + 1)?;
                }
                out.push_str(&format!("{pad}</file>\n"));
            }
        }
        Ok(())
    }

    fn attributes_xml(&self, name: &str, kind: &str, mode: u32, pad: &str, out: &mut String) {
        out.push_str(&format!(
            "{pad} <ctime>{t}</ctime>\n{pad} <mtime>{t}</mtime>\n{pad} <atime>{t}</atime>\n{pad} <group>wheel</group>\n{pad} <gid>0</gid>\n{pad} <user>root</user>\n{pad} <uid>0</uid>\n{pad} <mode>{mode:04o}</mode>\n{pad} <type>{kind}</type>\n{pad} <name>{}</name>\n",
            xml_escape(name),
            t = self.mtime,
        ));
    }
}

fn zlib(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data)?;
    e.finish()
}

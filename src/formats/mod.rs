//! Archive formats no crate writes correctly, written here and tested against
//! independent readers (bsdtar, 7z, apple-xar, gcab, msiextract, dpkg-deb): one module
//! per format. The .deb is the exception that proves the rule: the `ar` and `tar`
//! crates write its containers, and [`deb`] only fixes their layout and headers;
//! [`apt_repo`] writes a flat apt repository's indexes (read back by apt itself).

pub mod apt_repo;
pub mod bom;
pub mod cab;
pub mod deb;
pub mod xar;

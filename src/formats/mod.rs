//! Archive formats no crate writes correctly, written here and tested against
//! independent readers (bsdtar, 7z, apple-xar, gcab, msiextract): one module per format.

pub mod bom;
pub mod cab;
pub mod xar;

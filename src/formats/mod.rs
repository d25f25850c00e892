//! Archive formats no crate writes correctly, written here and tested against
//! independent readers (bsdtar, 7z, apple-xar): one module per format.

pub mod bom;
pub mod xar;

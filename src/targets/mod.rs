//! The artefacts fleetkit builds, a closed set described once in [`spec::TARGETS`]:
//! one module and one template folder (`templates/<target>/`, embedded in the
//! binary) each. A target turns the shared payload into files in memory;
//! [`crate::build`] writes them.
//!
//! Every value that reaches a generated file goes through an [`escape`] function
//! for that file's language, as a template filter: `yaml`, `ansible` (`!unsafe`
//! YAML), `ruby`, `puppet`, `json`, `shell`, `comment`, `xml`. Templates never print a raw
//! value.
//!
//! Only the table ([`spec`]) is in the lean agent build; the targets themselves are
//! admin code.

pub mod spec;
pub use spec::{TARGETS, Target, TargetSpec};

#[cfg(feature = "admin")]
pub mod ansible;
#[cfg(feature = "admin")]
mod artefact;
#[cfg(feature = "admin")]
pub mod chef;
#[cfg(feature = "admin")]
pub mod claude_code;
#[cfg(feature = "admin")]
pub mod deb;
#[cfg(feature = "admin")]
pub mod escape;
#[cfg(feature = "admin")]
pub mod intunewin;
#[cfg(feature = "admin")]
pub mod linux_package;
#[cfg(feature = "admin")]
pub mod mobileconfig;
#[cfg(feature = "admin")]
pub mod msi;
#[cfg(feature = "admin")]
pub mod pkg;
#[cfg(feature = "admin")]
pub mod puppet;
#[cfg(feature = "admin")]
pub mod rpm;
#[cfg(feature = "admin")]
pub mod systemd;

#[cfg(feature = "admin")]
pub use artefact::*;

//! fleetkit: turn one organisation policy into signed, per-platform provisioning
//! artefacts, and keep that policy current on every machine of a fleet.
//!
//! The library never prints: every command returns values or typed errors, and the
//! binary (`src/main.rs` + `cli/`) decides what to show. Module map:
//!
//! - [`diag`], [`yaml`]: located YAML trees and file:line:column diagnostics shared by
//!   every YAML input (policy, workspace config);
//! - [`policy`]: the ADR-002 org policy schema, parsed and validated into a model;
//! - [`pki`]: the org's Ed25519 policy keys and X.509 CA (root + issuing);
//! - [`bundle`]: DSSE envelopes, signed policy bundles and their verification;
//! - [`anchors`]: the trust anchors document and its signed rotation chain;
//! - [`protocol`]: the JSON bodies exchanged by the agent and the server;
//! - [`agent`]: the device side: registration, manifest, policy sync;
//! - [`audit`]: the hash-chained audit log, its checkpoints and verification;
//! - [`server`]: enrollment, inventory and distribution over HTTPS;
//! - [`build`], [`targets`]: `fleetkit build`: the payload built once, handed to one
//!   module per artefact; `fleetkit inspect`;
//! - [`workspace`]: the org workspace on disk (`fleetkit.yaml`, keys, anchors, state);
//! - [`formats`]: archive formats written here (xar), tested against independent readers;
//! - [`fsutil`], [`clock`]: atomic writes and the one place time is read;
//! - [`fuzzing`]: the entry points of the cargo-fuzz targets in `fuzz/`.

pub mod agent;
pub mod anchors;
pub mod audit;
#[cfg(feature = "admin")]
pub mod build;
pub mod bundle;
pub mod client;
pub mod clock;
pub mod diag;
pub mod enforce;
#[cfg(feature = "admin")]
pub mod formats;
pub mod fsutil;
#[cfg(feature = "admin")]
pub mod fuzzing;
pub mod pki;
pub mod platform;
pub mod policy;
pub mod protocol;
#[cfg(feature = "admin")]
pub mod scep;
#[cfg(feature = "admin")]
pub mod server;
pub mod targets;
pub mod workspace;
pub mod yaml;

//! `fleetkit intunewin MSI`: wraps an existing MSI — typically the one fleetkit
//! built, signed afterwards with signtool or osslsigncode — for Intune's Win32 app
//! type. Signing changes the file, so the `.intunewin` must be made after it.

use super::output::{Failure, fail, say};
use clap::Args;
use fleetkit::targets::intunewin;
use std::path::PathBuf;

/// Largest MSI accepted.
const MAX_MSI_BYTES: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct IntunewinArgs {
    /// The MSI to wrap (signed or not).
    msi: PathBuf,
    /// Where to write the `.intunewin` (default: beside the MSI, same name).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: IntunewinArgs) -> Result<(), Failure> {
    let shown = args.msi.display().to_string();
    let name = args
        .msi
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.to_ascii_lowercase().ends_with(".msi"))
        .ok_or_else(|| Failure::Usage(format!("{shown}: give the path of an .msi file")))?;
    let bytes = fleetkit::fsutil::read_capped(&args.msi, MAX_MSI_BYTES)
        .map_err(|e| fail(e, "give the MSI fleetkit built (signed or not)"))?;
    let (codes, publisher) = intunewin::read_msi(&bytes).map_err(|e| {
        fail(
            format!("{shown}: {e}"),
            "give the MSI fleetkit built (signed or not)",
        )
    })?;
    let time = fleetkit::clock::build_time()
        .map_err(|e| fail(e, "unset SOURCE_DATE_EPOCH or give seconds since 1970"))?;
    let wrapped = intunewin::wrap(&name, &bytes, &codes, &publisher, time)
        .map_err(|e| fail(format!("{shown}: {e}"), ""))?;
    let out = args.out.unwrap_or_else(|| {
        args.msi
            .with_file_name(format!("{}.intunewin", &name[..name.len() - 4]))
    });
    fleetkit::fsutil::write_atomic(&out, &wrapped, fleetkit::fsutil::PUBLIC_MODE)
        .map_err(|e| fail(e, "check the output directory"))?;
    say(format!(
        "{}: ProductCode {}, version {}",
        out.display(),
        codes.product_code,
        codes.product_version
    ));
    Ok(())
}

//! Printing: stdout for results, stderr for findings and failures. A closed pipe
//! (`fleetkit … | head`) ends output quietly instead of panicking.

use fleetkit::diag::Diagnostics;
use std::io::Write;
use std::process::ExitCode;

/// Prints one line of results to stdout.
pub fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
}

/// Prints one line of progress or notes to stderr.
pub fn note(line: impl AsRef<str>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", line.as_ref());
}

/// How a command failed, which decides the message and the exit code.
// The lean agent (no `admin` feature) reports no located findings of its own.
#[cfg_attr(not(feature = "admin"), allow(dead_code))]
#[derive(Debug)]
pub enum Failure {
    /// Located findings in a user's file (exit 1).
    Diagnostics(Diagnostics),
    /// The input or an operation failed (exit 1): what happened, and what to do.
    Invalid { message: String, help: String },
    /// The command line itself is wrong in a way clap cannot see (exit 2).
    Usage(String),
    /// Already reported (e.g. as JSON on stdout); just exit 1.
    Reported,
    /// A failure with its own exit code (e.g. 75, "try again later", for an agent
    /// registration that waits for the server).
    WithCode {
        message: String,
        help: String,
        code: u8,
    },
}

impl Failure {
    pub fn invalid(message: impl Into<String>, help: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            help: help.into(),
        }
    }

    /// Prints the failure to stderr and gives the exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Diagnostics(d) => {
                note(d.to_string());
                ExitCode::from(1)
            }
            Failure::Invalid { message, help } => {
                note(format!("error: {message}"));
                if !help.is_empty() {
                    note(format!("  = help: {help}"));
                }
                ExitCode::from(1)
            }
            Failure::Usage(message) => {
                note(format!("error: {message}"));
                note("  = help: see `fleetkit --help`");
                ExitCode::from(2)
            }
            Failure::Reported => ExitCode::from(1),
            Failure::WithCode {
                message,
                help,
                code,
            } => {
                if !message.is_empty() {
                    note(format!("error: {message}"));
                }
                if !help.is_empty() {
                    note(format!("  = help: {help}"));
                }
                ExitCode::from(code)
            }
        }
    }
}

/// Any library error whose Display already says what went wrong.
#[cfg(feature = "admin")]
pub fn fail(e: impl std::fmt::Display, help: &str) -> Failure {
    Failure::invalid(e.to_string(), help)
}

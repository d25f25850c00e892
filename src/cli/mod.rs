//! The command line: one struct per subcommand. Each builds settings from its
//! arguments and calls the library; printing happens here and nowhere else.
//!
//! Exit codes: 0 success, 1 the input is invalid or an operation failed, 2 usage error
//! (clap's own, and ours for arguments clap cannot judge).

mod agent;
#[cfg(feature = "admin")]
mod audit;
mod audit_log;
#[cfg(feature = "admin")]
mod build;
#[cfg(feature = "admin")]
mod csv;
mod decide;
#[cfg(feature = "admin")]
mod demo;
#[cfg(feature = "admin")]
mod fleet;
#[cfg(feature = "admin")]
mod impact;
#[cfg(feature = "admin")]
mod init;
#[cfg(feature = "admin")]
mod intunewin;
#[cfg(feature = "admin")]
mod keys;
mod output;
#[cfg(feature = "admin")]
mod policy;
#[cfg(feature = "admin")]
mod serve;

use clap::{Parser, Subcommand};
#[cfg(feature = "admin")]
use output::Failure;
#[cfg(feature = "admin")]
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Turn one organisation policy into signed, per-platform provisioning artefacts.
#[derive(Debug, Parser)]
#[command(name = "fleetkit", version, about, long_about = None)]
pub struct Cli {
    /// The org workspace (default: found from the current directory upwards, like git).
    #[cfg(feature = "admin")]
    #[arg(long, global = true, value_name = "DIR", env = "FLEETKIT_WORKSPACE")]
    workspace: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[cfg(feature = "admin")]
    /// Create an org workspace: settings, a starting policy, keys, CA and trust anchors.
    Init(init::InitArgs),
    #[cfg(feature = "admin")]
    /// Validate, sign and verify the org policy.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    #[cfg(feature = "admin")]
    /// Manage the policy-signing keys and trust anchors.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    #[cfg(feature = "admin")]
    /// Build the artefacts: one payload, handed to each target (`build --help` lists them).
    Build(build::BuildArgs),
    #[cfg(feature = "admin")]
    /// Show what an artefact carries: bundle version and expiry, anchors, enrollment URL, agents.
    Inspect(build::InspectArgs),
    #[cfg(feature = "admin")]
    /// Wrap an MSI (e.g. after signing it) as an .intunewin for Intune's Win32 app type.
    Intunewin(intunewin::IntunewinArgs),
    #[cfg(feature = "admin")]
    /// Run the whole admin flow on the built-in example org (acme-corp).
    Demo(demo::DemoArgs),
    #[cfg(feature = "admin")]
    /// Run the enrollment, inventory and policy distribution server (HTTPS).
    Serve(serve::ServeArgs),
    #[cfg(feature = "admin")]
    /// Manage enrollment tokens on the server.
    #[command(subcommand)]
    Token(fleet::TokenCommand),
    #[cfg(feature = "admin")]
    /// Query the device inventory on the server.
    #[command(subcommand)]
    Devices(fleet::DevicesCommand),
    #[cfg(feature = "admin")]
    /// Query the fleet's audit records on the server: list, and stats.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The device side: register this machine, keep its policy current, show status.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
}

/// Parses the command line, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "admin")]
    let ctx = Context {
        workspace: cli.workspace,
    };
    let result = match cli.command {
        #[cfg(feature = "admin")]
        Command::Init(args) => init::run(&ctx, args),
        #[cfg(feature = "admin")]
        Command::Policy(cmd) => policy::run(&ctx, cmd),
        #[cfg(feature = "admin")]
        Command::Keys(cmd) => keys::run(&ctx, cmd),
        #[cfg(feature = "admin")]
        Command::Build(args) => build::run(&ctx, args),
        #[cfg(feature = "admin")]
        Command::Inspect(args) => build::inspect(args),
        #[cfg(feature = "admin")]
        Command::Intunewin(args) => intunewin::run(args),
        #[cfg(feature = "admin")]
        Command::Demo(args) => demo::run(&ctx, args),
        #[cfg(feature = "admin")]
        Command::Serve(args) => serve::run(&ctx, args),
        #[cfg(feature = "admin")]
        Command::Token(cmd) => fleet::run_token(&ctx, cmd),
        #[cfg(feature = "admin")]
        Command::Devices(cmd) => fleet::run_devices(&ctx, cmd),
        #[cfg(feature = "admin")]
        Command::Audit(cmd) => audit::run(&ctx, cmd),
        Command::Agent(cmd) => agent::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

/// What every admin command may need: where the workspace is.
#[cfg(feature = "admin")]
pub struct Context {
    workspace: Option<PathBuf>,
}

#[cfg(feature = "admin")]
impl Context {
    /// Opens the workspace given with --workspace, or the one around the current directory.
    fn open_workspace(&self) -> Result<fleetkit::workspace::Workspace, Failure> {
        use fleetkit::workspace::Workspace;
        let found = match &self.workspace {
            Some(dir) => Workspace::open(dir),
            None => Workspace::discover(Path::new(".")),
        };
        found.map_err(|e| match e {
            fleetkit::workspace::WorkspaceError::Config(d) => Failure::Diagnostics(d),
            other => Failure::invalid(other.to_string(), other.help()),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

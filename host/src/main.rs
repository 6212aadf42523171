//! `weftd`, the Weft node agent.
//!
//! Subcommands are thin layers over the `weft_host` library, one module
//! each under `cli/`.

mod cli;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

/// The Weft node agent.
#[derive(Debug, Parser)]
#[command(name = "weftd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node agent.
    Run(cli::run::RunArgs),
    /// Copy the `weft` plugin (and chained plugins) into the CNI bin dir.
    Install(cli::install::InstallArgs),
    /// Summarise the running agent: readiness, policies, pool per group, pending ADDs, recent errors.
    Status(cli::status::StatusArgs),
    /// Inspect and try policy components.
    #[command(subcommand)]
    Policy(cli::policy::PolicyCommand),
    /// Replay a pod churn trace through pool-sizing policies in virtual time.
    Simulate(cli::simulate::SimulateArgs),
    /// Remove the agent's egress rules (nftables table, fwmark rule) from the node.
    Uninstall(cli::uninstall::UninstallArgs),
}

/// The log level when `RUST_LOG` is unset: the VPC CNI's
/// `AWS_VPC_K8S_CNI_LOGLEVEL`, else `info`.
fn default_log_level() -> &'static str {
    use weft_host::compat::env::{LOG_LEVEL_VAR, log_filter};
    match std::env::var(LOG_LEVEL_VAR) {
        Ok(value) => log_filter(&value).unwrap_or_else(|error| {
            eprintln!("weftd: {error}; logging at info");
            "info"
        }),
        Err(_) => "info",
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A simulation logs every decision of every policy: warnings only,
    // unless RUST_LOG asks for more.
    let default_level = match cli.command {
        Command::Simulate(_) => "warn",
        _ => default_log_level(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    let result = match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Install(args) => cli::install::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Policy(command) => cli::policy::run(command),
        Command::Simulate(args) => cli::simulate::run(args),
        Command::Uninstall(args) => cli::uninstall::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weftd: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: many of the
/// library's errors already name their source in their own message.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

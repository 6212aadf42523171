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
    /// Inspect and try policy components.
    #[command(subcommand)]
    Policy(cli::policy::PolicyCommand),
    /// Show a running agent's readiness and policies.
    Status(cli::status::StatusArgs),
    /// Remove the agent's egress rules (nftables table, fwmark rule) from the node.
    Uninstall(cli::uninstall::UninstallArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Policy(command) => cli::policy::run(command),
        Command::Status(args) => cli::status::run(&args),
        Command::Uninstall(args) => cli::uninstall::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("weftd: {message}");
            ExitCode::FAILURE
        }
    }
}

//! `weftd run --config FILE`: the node agent.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use weft_host::agent::Agent;
use weft_host::config::AgentConfig;

/// Arguments of `weftd run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The agent's TOML configuration.
    #[arg(long, short)]
    config: PathBuf,
}

/// Runs the agent until SIGTERM or SIGINT.
pub(crate) fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let agent = Agent::start(&config).await?;
        agent.serve(&config, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Reads the configuration with the VPC CNI variables of the environment
/// applied; reports each applied one, and the unmapped ones once.
pub(crate) fn load(path: &std::path::Path) -> anyhow::Result<AgentConfig> {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    let (config, overlay) =
        AgentConfig::load_with_env(path, &|name| std::env::var(name).ok(), &names)?;
    for applied in &overlay.applied {
        tracing::info!(setting = %applied, "VPC CNI setting applied");
    }
    if !overlay.ignored.is_empty() {
        tracing::warn!(
            ignored = ?overlay.ignored,
            "VPC CNI settings that Weft does not implement are ignored"
        );
    }
    Ok(config)
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop weftd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}

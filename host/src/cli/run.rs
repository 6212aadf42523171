//! `weftd run --config FILE`: the node agent.

use clap::Args;
use std::path::PathBuf;
use weft_host::agent::Agent;
use weft_host::config::AgentConfig;

/// Arguments of `weftd run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent's TOML configuration.
    #[arg(long, short)]
    config: PathBuf,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(args: RunArgs) -> Result<(), String> {
    let config = AgentConfig::load(&args.config).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async {
        let agent = Agent::start(&config).await.map_err(|e| e.to_string())?;
        agent
            .serve(&config, shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!("stopped");
        Ok(())
    })
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

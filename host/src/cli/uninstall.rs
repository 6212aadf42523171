//! `weftd uninstall --config FILE`: removes what the agent put on the node
//! outside pods: its nftables table and its `fwmark` rule. The agent keeps
//! them across restarts (pods keep their traffic while it is down), so they
//! go only when Weft is being removed from the node.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use weft_host::config::AgentConfig;
use weft_host::plumbing::Plumbing;

/// Arguments of `weftd uninstall`.
#[derive(Debug, Args)]
pub(crate) struct UninstallArgs {
    /// The agent's TOML configuration (for the node namespace and the mark).
    #[arg(long, short)]
    config: PathBuf,
}

/// Removes the egress rules of the node the configuration names.
pub(crate) fn run(args: UninstallArgs) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut plumbing = config.plumbing.clone();
        // Removing rules needs no forwarding change.
        plumbing.enable_ip_forward = false;
        let plumbing = Plumbing::new(plumbing).await?;
        plumbing.remove_egress(config.egress.connmark).await?;
        eprintln!("weftd: removed the nftables table ip weft and the fwmark rule");
        Ok(())
    })
}

//! `weftd uninstall --config FILE`: removes what the agent put on the node
//! outside pods: its nftables table and its `fwmark` rule. The agent keeps
//! them across restarts (pods keep their traffic while it is down), so they
//! go only when Weft is being removed from the node.

use clap::Args;
use std::path::PathBuf;
use weft_host::config::AgentConfig;
use weft_host::plumbing::Plumbing;

/// Arguments of `weftd uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The agent's TOML configuration (for the node namespace and the mark).
    #[arg(long, short)]
    config: PathBuf,
}

/// Removes the egress rules of the node the configuration names.
pub fn run(args: UninstallArgs) -> Result<(), String> {
    let config = AgentConfig::load(&args.config).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async {
        let mut plumbing = config.plumbing.plumbing_config();
        // Removing rules needs no forwarding change.
        plumbing.enable_ip_forward = false;
        let plumbing = Plumbing::new(plumbing).await.map_err(|e| e.to_string())?;
        plumbing
            .remove_egress(config.egress.connmark)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("weftd: removed the nftables table ip weft and the fwmark rule");
        Ok(())
    })
}

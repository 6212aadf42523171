//! `weftd install`: copies the plugin into the CNI bin dir (an init
//! container's job, as aws-node's). The conflist is the running agent's job,
//! written once it can answer ADDs.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use weft_host::config::CniSection;
use weft_host::install;

/// Arguments of `weftd install`.
#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// The agent's configuration (its `[cni]` table and the VPC CNI
    /// variables); the defaults when unset.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The directory holding `weft` (and `portmap`); the directory of this
    /// `weftd` when unset.
    #[arg(long)]
    source: Option<PathBuf>,
    /// The CNI bin dir; `[cni] bin-dir` when unset.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// Installs the plugins.
pub(crate) fn run(args: InstallArgs) -> anyhow::Result<()> {
    let mut cni = match &args.config {
        Some(path) => super::run::load(path)?.cni,
        None => CniSection::default(),
    };
    if let Some(dir) = args.bin_dir {
        cni.bin_dir = dir;
    }
    let source = match args.source {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("finding weftd's own directory; pass --source")?
            .parent()
            .map(PathBuf::from)
            .context("weftd's own path has no directory; pass --source")?,
    };
    let installed = install::install_plugins(&source, &cni.bin_dir, &install::plugins(&cni))?;
    for path in installed {
        println!("installed {}", path.display());
    }
    Ok(())
}

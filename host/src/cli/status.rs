//! `weftd status`: a running agent's readiness, warnings and, per role, the
//! policy in force (`GET /v1/status`, `GET /v1/policies`).

use clap::Args;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_cni::api::{PATH_STATUS, StatusResponse};
use weft_cni::client::Client;
use weft_host::api::PATH_POLICIES;
use weft_host::policy::view::{PoliciesView, RoleView};

/// Arguments of `weftd status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent's API socket.
    #[arg(long, default_value = weft_cni::netconf::DEFAULT_SOCKET)]
    socket: PathBuf,
}

/// Prints the agent's status; the error is the message to print.
pub fn run(args: &StatusArgs) -> Result<(), String> {
    let client = Client::new(&args.socket, Duration::from_secs(10));
    let ask = |e: weft_cni::CniError| format!("asking weftd at {}: {e}", args.socket.display());
    let status: StatusResponse = client
        .call::<(), _>("GET", PATH_STATUS, None)
        .map_err(ask)?;
    let policies: PoliciesView = client
        .call::<(), _>("GET", PATH_POLICIES, None)
        .map_err(ask)?;
    match &status.reason {
        None => println!("weftd at {}: ready", args.socket.display()),
        Some(reason) => println!("weftd at {}: NOT READY: {reason}", args.socket.display()),
    }
    for warning in &status.warnings {
        println!("warning: {warning}");
    }
    if let Some(dir) = &policies.dir {
        println!("policy directory: {}", dir.display());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for role in &policies.roles {
        print_role(role, now);
    }
    Ok(())
}

fn print_role(role: &RoleView, now: u64) {
    let module = role
        .module
        .as_ref()
        .map_or_else(|| "native".to_owned(), |m| m.display().to_string());
    println!(
        "{:<17} {} ({} {module})",
        role.role, role.policy, role.source
    );
    if let (Some(sha), Some(world)) = (&role.sha256, &role.world) {
        println!("  sha256 {sha}, world {world}");
    }
    println!(
        "  in force for {}s; {} decisions, {} failures, {} fallbacks; on failure: {:?}",
        now.saturating_sub(role.loaded_at),
        role.decisions,
        role.failures,
        role.fallbacks,
        role.on_failure
    );
    if let Some(l) = &role.latency_us {
        println!(
            "  latency p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
            l.p50, l.p90, l.p99
        );
    }
    if let Some(e) = &role.load_error {
        println!("  NOT LOADED: {e}");
    }
    if let Some(r) = &role.last_refusal {
        println!(
            "  last refusal {}s ago: {}",
            now.saturating_sub(r.at),
            r.message
        );
    }
    if let Some(s) = &role.shadow {
        println!(
            "  shadow {} ({}): {} decisions, {} disagreements",
            s.policy,
            s.module.display(),
            s.decisions,
            s.disagreements
        );
        for d in &s.recent {
            println!("    {}: active {} / shadow {}", d.input, d.active, d.shadow);
        }
    }
}

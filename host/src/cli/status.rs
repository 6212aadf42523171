//! `weftd status`: a human-readable summary from the running agent, read
//! over its socket: readiness, the pool per security-group set, pending
//! ADDs, pods and the most recent failed requests.

use clap::Args;
use serde::de::DeserializeOwned;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;
use weft_cni::api::{PATH_STATUS, StatusResponse};
use weft_cni::client::Client;
use weft_host::api::{ErrorView, PATH_ERRORS, PATH_PODS, PATH_POOL, PodView, PoolView};

/// Arguments of `weftd status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent's API socket.
    #[arg(long, default_value = weft_cni::netconf::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Only check readiness: exit 1 unless the agent can answer ADDs (the
    /// DaemonSet's readiness probe).
    #[arg(long)]
    check_ready: bool,
}

fn get<R: DeserializeOwned>(client: &Client, path: &str) -> Result<R, String> {
    client
        .call::<(), R>("GET", path, None)
        .map_err(|e| format!("GET {path}: {}", e.msg))
}

/// Prints the summary.
pub fn run(args: StatusArgs) -> Result<(), String> {
    let client = Client::new(&args.socket, Duration::from_secs(5));
    let status: StatusResponse = get(&client, PATH_STATUS)?;
    if args.check_ready {
        return match status.reason {
            _ if status.ready => Ok(()),
            reason => Err(format!("not ready: {}", reason.unwrap_or_default())),
        };
    }
    let pool: PoolView = get(&client, PATH_POOL)?;
    let pods: Vec<PodView> = get(&client, PATH_PODS)?;
    let errors: Vec<ErrorView> = get(&client, PATH_ERRORS)?;
    print!("{}", render(&args.socket, &status, &pool, &pods, &errors));
    Ok(())
}

fn render(
    socket: &std::path::Path,
    status: &StatusResponse,
    pool: &PoolView,
    pods: &[PodView],
    errors: &[ErrorView],
) -> String {
    let mut out = String::new();
    let readiness = match &status.reason {
        _ if status.ready => "ready".to_owned(),
        Some(reason) => format!("NOT ready: {reason}"),
        None => "NOT ready".to_owned(),
    };
    let _ = writeln!(out, "weftd at {}: {readiness}", socket.display());
    if let Some(limits) = pool.groups.first().map(|g| &g.limits) {
        let _ = writeln!(
            out,
            "limits: {} ENIs x {} addresses, max pods {}{}",
            limits.max_enis,
            limits.ipv4_per_eni,
            limits.max_pods,
            if limits.prefix_delegation {
                ", prefixes"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(out, "pool (per security-group set):");
    for group in &pool.groups {
        let sum =
            |f: fn(&weft_policy_sdk::pool::Eni) -> u32| -> u32 { group.enis.iter().map(f).sum() };
        let _ = writeln!(
            out,
            "  {}{}: {} ENIs, {} addresses: {} assigned, {} cooling, {} free; {} ADDs pending",
            group.group.join(","),
            if group.default_group {
                " (default)"
            } else {
                ""
            },
            group.enis.len(),
            sum(|e| e.addresses()),
            sum(|e| e.assigned),
            sum(|e| e.cooling),
            sum(|e| e.free()),
            group.pending_adds,
        );
    }
    let _ = writeln!(out, "pods: {}", pods.len());
    if errors.is_empty() {
        let _ = writeln!(out, "recent errors: none");
    } else {
        let _ = writeln!(out, "recent errors (oldest first):");
        for e in errors {
            let _ = writeln!(
                out,
                "  [{}] {} code {}: {}",
                e.at, e.command, e.code, e.message
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_policy_sdk::pool::{Activity, Eni, InstanceLimits, PoolState};

    #[test]
    fn the_summary_names_each_group_and_error() {
        let group = PoolState {
            group: vec!["sg-1".into()],
            default_group: true,
            enis: vec![Eni {
                id: "eni-1".into(),
                device_index: 0,
                subnet_id: "subnet-1".into(),
                ips: 9,
                prefixes: 0,
                assigned: 3,
                cooling: 1,
                age_seconds: 5,
            }],
            node_enis: 1,
            node_addresses: 9,
            node_assigned: 3,
            limits: InstanceLimits {
                max_enis: 3,
                ipv4_per_eni: 10,
                prefix_delegation: false,
                max_pods: 29,
            },
            pending_adds: 2,
            activity: Activity::default(),
        };
        let text = render(
            std::path::Path::new("/s"),
            &StatusResponse {
                ready: true,
                reason: None,
            },
            &PoolView {
                groups: vec![group],
            },
            &[],
            &[ErrorView {
                at: 7,
                command: "ADD".into(),
                code: 11,
                message: "no address".into(),
            }],
        );
        assert!(text.contains("weftd at /s: ready"), "{text}");
        assert!(
            text.contains(
                "sg-1 (default): 1 ENIs, 9 addresses: 3 assigned, 1 cooling, 5 free; 2 ADDs pending"
            ),
            "{text}"
        );
        assert!(text.contains("[7] ADD code 11: no address"), "{text}");
    }
}

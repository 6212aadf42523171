//! `weftd status`: a human-readable summary from the running agent, read
//! over its socket: readiness and warnings, per role the policy in force,
//! the pool per security-group set, pending ADDs, pods and the most recent
//! failed requests (`GET /v1/status`, `/v1/policies`, `/v1/pool`,
//! `/v1/pods`, `/v1/errors`).

use anyhow::Context;
use clap::Args;
use serde::de::DeserializeOwned;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_cni::api::{PATH_STATUS, StatusResponse};
use weft_cni::client::Client;
use weft_host::api::{
    ErrorView, PATH_ERRORS, PATH_PODS, PATH_POLICIES, PATH_POOL, PodView, PoolView,
};
use weft_host::policy::view::{PoliciesView, RoleView};

/// Arguments of `weftd status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The agent's API socket.
    #[arg(long, default_value = weft_cni::netconf::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Only check readiness: exit 1 unless the agent can answer ADDs (the
    /// DaemonSet's readiness probe).
    #[arg(long)]
    check_ready: bool,
}

/// What the running agent told `weftd status`.
struct Report {
    status: StatusResponse,
    policies: PoliciesView,
    pool: PoolView,
    pods: Vec<PodView>,
    errors: Vec<ErrorView>,
}

/// Prints the summary.
pub(crate) fn run(args: StatusArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.socket, Duration::from_secs(5));
    let socket = args.socket.as_path();
    let status: StatusResponse = get(&client, socket, PATH_STATUS)?;
    if args.check_ready {
        return match status.reason {
            _ if status.ready => Ok(()),
            reason => Err(anyhow::anyhow!("not ready: {}", reason.unwrap_or_default())),
        };
    }
    let report = Report {
        status,
        policies: get(&client, socket, PATH_POLICIES)?,
        pool: get(&client, socket, PATH_POOL)?,
        pods: get(&client, socket, PATH_PODS)?,
        errors: get(&client, socket, PATH_ERRORS)?,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    print!("{}", render(socket, &report, now));
    Ok(())
}

fn get<R: DeserializeOwned>(client: &Client, socket: &Path, path: &str) -> anyhow::Result<R> {
    client
        .call::<(), R>("GET", path, None)
        .with_context(|| format!("asking weftd at {} for {path}", socket.display()))
}

fn render(socket: &Path, report: &Report, now: u64) -> String {
    let mut out = String::new();
    let status = &report.status;
    let readiness = match &status.reason {
        _ if status.ready => "ready".to_owned(),
        Some(reason) => format!("NOT READY: {reason}"),
        None => "NOT READY".to_owned(),
    };
    let _ = writeln!(out, "weftd at {}: {readiness}", socket.display());
    for warning in &status.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    if let Some(dir) = &report.policies.dir {
        let _ = writeln!(out, "policy directory: {}", dir.display());
    }
    for role in &report.policies.roles {
        render_role(&mut out, role, now);
    }
    render_pool(&mut out, &report.pool);
    let _ = writeln!(out, "pods: {}", report.pods.len());
    if report.errors.is_empty() {
        let _ = writeln!(out, "recent errors: none");
    } else {
        let _ = writeln!(out, "recent errors (oldest first):");
        for e in &report.errors {
            let _ = writeln!(
                out,
                "  {}s ago: {} code {}: {}",
                now.saturating_sub(e.at),
                e.command,
                e.code,
                e.message
            );
        }
    }
    out
}

fn render_pool(out: &mut String, pool: &PoolView) {
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
}

fn render_role(out: &mut String, role: &RoleView, now: u64) {
    let module = role
        .module
        .as_ref()
        .map_or_else(|| "native".to_owned(), |m| m.display().to_string());
    let _ = writeln!(
        out,
        "{:<17} {} ({} {module})",
        role.role, role.policy, role.source
    );
    if let (Some(sha), Some(world)) = (&role.sha256, &role.world) {
        let _ = write!(out, "  sha256 {sha}, world {world}");
        if role.from_image == Some(false) {
            let why = role.no_image.as_deref().unwrap_or("no image");
            let _ = write!(out, "; configure runs in every decision ({why})");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "  in force for {}s; {} decisions, {} failures, {} fallbacks; on failure: {:?}",
        now.saturating_sub(role.loaded_at),
        role.decisions,
        role.failures,
        role.fallbacks,
        role.on_failure
    );
    if let Some(l) = &role.latency_us {
        let _ = writeln!(
            out,
            "  latency p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
            l.p50, l.p90, l.p99
        );
    }
    if let Some(e) = &role.load_error {
        let _ = writeln!(out, "  NOT LOADED: {e}");
    }
    if let Some(r) = &role.last_refusal {
        let _ = writeln!(
            out,
            "  last refusal {}s ago: {}",
            now.saturating_sub(r.at),
            r.message
        );
    }
    if let Some(s) = &role.shadow {
        let _ = writeln!(
            out,
            "  shadow {} ({}): {} decisions, {} disagreements",
            s.policy,
            s.module.display(),
            s.decisions,
            s.disagreements
        );
        for d in &s.recent {
            let _ = writeln!(
                out,
                "    {}: active {} / shadow {}",
                d.input, d.active, d.shadow
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_host::policy::OnFailure;
    use weft_policy_sdk::pool::{Activity, Eni, InstanceLimits, PoolState};

    #[test]
    fn the_summary_names_each_policy_group_and_error() {
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
        let role = RoleView {
            role: "security-groups".into(),
            policy: "sg-selector".into(),
            source: "builtin".into(),
            module: None,
            sha256: None,
            world: None,
            from_image: None,
            no_image: None,
            loaded_at: 90,
            load_error: None,
            on_failure: OnFailure::FailClosed,
            decisions: 4,
            failures: 0,
            fallbacks: 0,
            latency_us: None,
            last_refusal: None,
            shadow: None,
        };
        let report = Report {
            status: StatusResponse {
                ready: true,
                reason: None,
                warnings: vec!["policy file x.wasm refused".into()],
            },
            policies: PoliciesView {
                dir: None,
                refused: Vec::new(),
                roles: vec![role],
            },
            pool: PoolView {
                groups: vec![group],
            },
            pods: Vec::new(),
            errors: vec![ErrorView {
                at: 93,
                command: "ADD".into(),
                code: 11,
                message: "no address".into(),
            }],
        };
        let text = render(Path::new("/s"), &report, 100);
        assert!(text.starts_with("weftd at /s: ready\n"), "{text}");
        assert!(
            text.contains("warning: policy file x.wasm refused"),
            "{text}"
        );
        assert!(
            text.contains("security-groups   sg-selector (builtin native)"),
            "{text}"
        );
        assert!(text.contains("in force for 10s; 4 decisions"), "{text}");
        assert!(
            text.contains(
                "sg-1 (default): 1 ENIs, 9 addresses: 3 assigned, 1 cooling, 5 free; 2 ADDs pending"
            ),
            "{text}"
        );
        assert!(text.contains("7s ago: ADD code 11: no address"), "{text}");
    }
}

//! The simulated VPC fabric: a network namespace playing the VPC router.
//!
//! Every materialised ENI is a veth pair: `eth<device index>` in the node
//! namespace, and its fabric end (`v` + the ENI id's last 14 hex digits,
//! unique across nodes) in the router namespace. There the router does what
//! the VPC does:
//!
//! * each address of an ENI is routed to the ENI's link (`<primary>/32 dev
//!   <link>`, secondary addresses and /28 prefixes `via <primary> onlink`),
//!   kept in step as addresses are assigned and released, so an address
//!   released on one node and assigned on another is routed to the other;
//! * the subnet gateway (`<subnet>.1`) answers on every link, and the router
//!   answers ARP for any address it routes elsewhere (`proxy_arp`): the VPC
//!   answers for the whole subnet;
//! * strict reverse-path filtering on every link is EC2's source/destination
//!   check: a packet whose source is not an address of the ENI it leaves
//!   through is dropped.
//!
//! The router namespace itself (forwarding, the internet-gateway hop) is made
//! by whoever runs the simulation (tests, `scripts/demo`); its path is the
//! `vpc-netns` of the simulator's configuration. On a node's primary ENI the
//! fabric also does what DHCP does on an instance: the primary address and a
//! default route via the gateway.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::cloud::types::Eni;

/// The router namespace and the VPC's subnets (for each ENI's gateway).
#[derive(Debug, Clone)]
pub(super) struct Fabric {
    pub(super) router: PathBuf,
    pub(super) subnets: Vec<Ipv4Net>,
}

impl Fabric {
    /// The name of an ENI's link in the router namespace.
    pub(super) fn link_name(eni: &Eni) -> String {
        let hex = eni.id.trim_start_matches("eni-");
        format!("v{}", &hex[hex.len().saturating_sub(14)..])
    }

    /// The subnet of an ENI's primary address.
    fn subnet(&self, eni: &Eni) -> Result<Ipv4Net, String> {
        self.subnets
            .iter()
            .find(|s| s.contains(&eni.primary_ip))
            .copied()
            .ok_or_else(|| format!("{} is in none of the VPC's subnets", eni.primary_ip))
    }

    /// After the ENI's veth pair was made in `node`: moves its fabric end
    /// into the router, sets the router's side up, and (primary ENI) gives
    /// the node its address and default route.
    pub(super) fn connect(&self, node: &Path, eni: &Eni, link: &str) -> Result<(), String> {
        let subnet = self.subnet(eni)?;
        let gateway = gateway(subnet);
        let peer = Self::link_name(eni);
        let mut on_node = format!(
            "link set {peer} netns {router}\nlink set {link} up\n",
            router = self.router.display()
        );
        if eni.device_index() == Some(0) {
            on_node.push_str(&format!(
                "addr replace {}/{} dev {link}\nroute replace default via {gateway} dev {link}\n",
                eni.primary_ip,
                subnet.prefix_len()
            ));
        }
        in_netns(node, move || ip_batch(&on_node))?;
        let on_router = format!("link set {peer} up\naddr replace {gateway}/32 dev {peer}\n");
        let sysctls = [
            (format!("net/ipv4/conf/{peer}/proxy_arp"), "1"),
            (format!("net/ipv4/conf/{peer}/rp_filter"), "1"),
        ];
        in_netns(&self.router, move || {
            for (key, value) in &sysctls {
                std::fs::write(format!("/proc/sys/{key}"), value)
                    .map_err(|e| format!("sysctl {key}: {e}"))?;
            }
            ip_batch(&on_router)
        })?;
        self.route(eni)
    }

    /// Routes exactly the ENI's addresses to its link in the router.
    pub(super) fn route(&self, eni: &Eni) -> Result<(), String> {
        let peer = Self::link_name(eni);
        let primary = eni.primary_ip;
        let mut wanted: Vec<(Ipv4Net, Option<Ipv4Addr>)> = vec![(host(primary), None)];
        wanted.extend(
            eni.secondary_ips
                .iter()
                .map(|ip| (host(*ip), Some(primary))),
        );
        wanted.extend(eni.prefixes.iter().map(|p| (p.trunc(), Some(primary))));
        in_netns(&self.router, move || {
            let current = ip(&["-j", "route", "show", "dev", &peer], None)?;
            let current: Vec<serde_json::Value> =
                serde_json::from_str(current.trim()).unwrap_or_default();
            let mut batch = String::new();
            for route in current {
                let Some(dst) = route["dst"].as_str() else {
                    continue;
                };
                let net = dst
                    .parse::<Ipv4Net>()
                    .or_else(|_| dst.parse::<Ipv4Addr>().map(host));
                if let Ok(net) = net
                    && !wanted.iter().any(|(w, _)| *w == net)
                {
                    batch.push_str(&format!("route del {net} dev {peer}\n"));
                }
            }
            for (net, via) in &wanted {
                match via {
                    None => batch.push_str(&format!("route replace {net} dev {peer}\n")),
                    Some(via) => batch.push_str(&format!(
                        "route replace {net} via {via} dev {peer} onlink\n"
                    )),
                }
            }
            ip_batch(&batch)
        })
    }
}

fn host(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(ip)
}

/// The VPC router's address in a subnet: its first host address.
fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

/// Runs `work` on a new thread inside the namespace at `netns` (processes
/// it starts are in that namespace too).
fn in_netns<T: Send + 'static>(
    netns: &Path,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).map_err(|e| format!("{}: {e}", netns.display()))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {}: {e}", netns.display()))?;
        work()
    })
    .join()
    .map_err(|_| "fabric thread panicked".to_owned())?
}

fn ip_batch(commands: &str) -> Result<(), String> {
    ip(&["-batch", "-"], Some(commands)).map(drop)
}

/// Runs iproute2's `ip` (the simulator's stand-in for the VPC's control plane).
fn ip(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip (install iproute2): {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("ip: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            stdin
                .map(|s| format!(" (commands: {s:?})"))
                .unwrap_or_default()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

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
use crate::plumbing::PlumbingError;
use crate::plumbing::netns::{self, Netns};
use crate::plumbing::sysctl;

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
    fn subnet(&self, eni: &Eni) -> Result<Ipv4Net, PlumbingError> {
        self.subnets
            .iter()
            .find(|s| s.contains(&eni.primary_ip))
            .copied()
            .ok_or_else(|| {
                PlumbingError::InvalidInput(format!(
                    "{} is in none of the simulated VPC's subnets",
                    eni.primary_ip
                ))
            })
    }

    /// After the ENI's veth pair was made in `node`: moves its fabric end
    /// into the router, sets the router's side up, and (primary ENI) gives
    /// the node its address and default route.
    pub(super) async fn connect(
        &self,
        node: &Path,
        eni: &Eni,
        link: &str,
    ) -> Result<(), PlumbingError> {
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
        netns::run_in(&Netns::open(Some(node))?, move || ip_batch(&on_node)).await?;
        let on_router = format!("link set {peer} up\naddr replace {gateway}/32 dev {peer}\n");
        let sysctls = [
            (format!("net/ipv4/conf/{peer}/proxy_arp"), "1"),
            (format!("net/ipv4/conf/{peer}/rp_filter"), "1"),
            // Proxy ARP answers at once, as the VPC does (the default waits up to 0.8 s).
            (format!("net/ipv4/neigh/{peer}/proxy_delay"), "0"),
        ];
        netns::run_in(&self.router()?, move || {
            for (key, value) in &sysctls {
                sysctl::write(key, value)?;
            }
            ip_batch(&on_router)
        })
        .await?;
        self.route(eni).await
    }

    fn router(&self) -> Result<std::sync::Arc<Netns>, PlumbingError> {
        Netns::open(Some(&self.router))
    }

    /// Routes exactly the ENI's addresses to its link in the router.
    pub(super) async fn route(&self, eni: &Eni) -> Result<(), PlumbingError> {
        let peer = Self::link_name(eni);
        let primary = eni.primary_ip;
        let mut wanted: Vec<(Ipv4Net, Option<Ipv4Addr>)> = vec![(host(primary), None)];
        wanted.extend(
            eni.secondary_ips
                .iter()
                .map(|ip| (host(*ip), Some(primary))),
        );
        wanted.extend(eni.prefixes.iter().map(|p| (p.trunc(), Some(primary))));
        netns::run_in(&self.router()?, move || {
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
        .await
    }
}

fn host(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(ip)
}

/// The VPC router's address in a subnet: its first host address.
fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

fn ip_batch(commands: &str) -> Result<(), PlumbingError> {
    ip(&["-batch", "-"], Some(commands)).map(drop)
}

/// Runs iproute2's `ip` in the calling thread's namespace (the simulator's
/// stand-in for the VPC's control plane).
fn ip(args: &[&str], stdin: Option<&str>) -> Result<String, PlumbingError> {
    let what = format!("ip {}", args.join(" "));
    let io = |e| PlumbingError::io(format!("{what} (is iproute2 installed?)"), e);
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(io)?;
    }
    let out = child.wait_with_output().map_err(io)?;
    if !out.status.success() {
        return Err(PlumbingError::InvalidInput(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            stdin
                .map(|s| format!(" (commands: {s:?})"))
                .unwrap_or_default()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

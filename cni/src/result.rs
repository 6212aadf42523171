//! The CNI result: a version-neutral model, chaining onto a `prevResult`,
//! and rendering in the version the configuration asks for.
//!
//! The model's JSON keys are the spec's, so the same types read a
//! `prevResult` of any supported version and carry `weftd`'s answer on the
//! agent API. Fields this model does not name (for example a 1.1.0 route's
//! `table`, or another plugin's extensions) are kept in `extra` and written
//! back unchanged, so chaining never drops what an earlier plugin reported.

use crate::cidr::IpCidr;
use crate::version::CniVersion;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// Interfaces, addresses, routes and DNS of an attachment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkResult {
    /// Interfaces: for `weft`, the host veth first, then the pod interface.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Addresses, each pointing at its interface by index.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes inside the pod.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// DNS settings.
    #[serde(default)]
    pub dns: Dns,
}

/// One interface of the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// MTU (rendered only for 1.1.0 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The network namespace path for a pod interface; `None` on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Fields this model does not name, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One address of the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address and prefix, e.g. `10.0.1.5/32`.
    pub address: IpCidr,
    /// The default gateway for this address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into the result's `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// The 0.x `version` field; derived from the address when rendering.
    #[serde(default, rename = "version", skip_serializing)]
    pub legacy_version: Option<String>,
    /// Fields this model does not name, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IpConfig {
    /// An address with its gateway and interface index.
    pub fn new(address: IpCidr, gateway: Option<IpAddr>, interface: Option<usize>) -> IpConfig {
        IpConfig {
            address,
            gateway,
            interface,
            legacy_version: None,
            extra: Map::new(),
        }
    }
}

/// One route of the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpCidr,
    /// Next hop; `None` means the interface's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Fields this model does not name, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Route {
    /// A route to `dst`, via `gw` if given.
    pub fn new(dst: IpCidr, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            extra: Map::new(),
        }
    }
}

/// DNS settings (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether no DNS setting is present.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl NetworkResult {
    /// Appends this result to an earlier plugin's `prev`: interfaces, addresses
    /// and routes are concatenated (this result's interface indexes shifted
    /// past `prev`'s interfaces); DNS is this result's unless it has none.
    pub fn chained_onto(self, prev: NetworkResult) -> NetworkResult {
        let shift = prev.interfaces.len();
        let mut out = prev;
        out.interfaces.extend(self.interfaces);
        out.ips.extend(self.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + shift);
            ip
        }));
        out.routes.extend(self.routes);
        if !self.dns.is_empty() {
            out.dns = self.dns;
        }
        out
    }

    /// The result as the spec's JSON for `version`.
    ///
    /// Before 1.0.0 every `ips` entry carries `"version": "4"` or `"6"`;
    /// interface `mtu` exists only from 1.1.0.
    pub fn render(&self, version: CniVersion) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: CniVersion,
            interfaces: Vec<Interface>,
            ips: Vec<IpOut<'a>>,
            #[serde(skip_serializing_if = "<[Route]>::is_empty")]
            routes: &'a [Route],
            dns: &'a Dns,
        }
        #[derive(Serialize)]
        struct IpOut<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            version: Option<&'static str>,
            #[serde(flatten)]
            ip: &'a IpConfig,
        }
        let interfaces = self
            .interfaces
            .iter()
            .map(|i| Interface {
                mtu: i.mtu.filter(|_| version.interfaces_have_mtu()),
                ..i.clone()
            })
            .collect();
        let ips = self
            .ips
            .iter()
            .map(|ip| IpOut {
                version: version
                    .ips_have_version()
                    .then_some(if ip.address.addr.is_ipv4() { "4" } else { "6" }),
                ip,
            })
            .collect();
        let out = Out {
            cni_version: version,
            interfaces,
            ips,
            routes: &self.routes,
            dns: &self.dns,
        };
        // Only strings, numbers and JSON values: serialization cannot fail.
        serde_json::to_string(&out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weft_result() -> NetworkResult {
        serde_json::from_value(json!({
            "interfaces": [
                {"name": "eni0123456789a", "mac": "0a:00:00:00:00:01", "mtu": 9001},
                {"name": "eth0", "mac": "0a:00:00:00:00:02", "mtu": 9001, "sandbox": "/var/run/netns/p"}
            ],
            "ips": [{"address": "10.0.1.5/32", "gateway": "169.254.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
        }))
        .unwrap()
    }

    fn rendered(version: CniVersion) -> Value {
        serde_json::from_str(&weft_result().render(version)).unwrap()
    }

    #[test]
    fn renders_0_x_with_ip_versions_and_without_mtu() {
        for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
            assert_eq!(
                rendered(v),
                json!({
                    "cniVersion": v.as_str(),
                    "interfaces": [
                        {"name": "eni0123456789a", "mac": "0a:00:00:00:00:01"},
                        {"name": "eth0", "mac": "0a:00:00:00:00:02", "sandbox": "/var/run/netns/p"}
                    ],
                    "ips": [{"version": "4", "address": "10.0.1.5/32", "gateway": "169.254.1.1", "interface": 1}],
                    "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                    "dns": {}
                })
            );
        }
    }

    #[test]
    fn renders_1_0_without_ip_versions() {
        let out = rendered(CniVersion::V1_0_0);
        assert_eq!(out["cniVersion"], "1.0.0");
        assert_eq!(
            out["ips"],
            json!([{"address": "10.0.1.5/32", "gateway": "169.254.1.1", "interface": 1}])
        );
        assert!(out["interfaces"][1].get("mtu").is_none());
    }

    #[test]
    fn renders_1_1_with_interface_mtu() {
        let out = rendered(CniVersion::V1_1_0);
        assert_eq!(out["interfaces"][1]["mtu"], 9001);
        assert!(out["ips"][0].get("version").is_none());
    }

    #[test]
    fn ipv6_version_tag() {
        let mut r = weft_result();
        r.ips[0].address = "fd00::5/128".parse().unwrap();
        let out: Value = serde_json::from_str(&r.render(CniVersion::V0_4_0)).unwrap();
        assert_eq!(out["ips"][0]["version"], "6");
    }

    #[test]
    fn reads_a_0_x_prev_result_and_does_not_duplicate_version() {
        let prev: NetworkResult = serde_json::from_value(json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo0"}],
            "ips": [{"version": "4", "address": "192.168.0.2/24", "interface": 0}],
            "dns": {"nameservers": ["10.0.0.2"]}
        }))
        .unwrap();
        let out: Value = serde_json::from_str(&prev.render(CniVersion::V0_4_0)).unwrap();
        assert_eq!(
            out["ips"][0],
            json!({"version": "4", "address": "192.168.0.2/24", "interface": 0})
        );
        let out: Value = serde_json::from_str(&prev.render(CniVersion::V1_0_0)).unwrap();
        assert_eq!(
            out["ips"][0],
            json!({"address": "192.168.0.2/24", "interface": 0})
        );
    }

    #[test]
    fn chaining_appends_and_shifts_interface_indexes() {
        let prev: NetworkResult = serde_json::from_value(json!({
            "interfaces": [{"name": "dummy0", "sandbox": "/x"}],
            "ips": [{"address": "192.168.0.2/24", "interface": 0}],
            "routes": [{"dst": "192.168.0.0/16", "table": 100}],
            "dns": {"nameservers": ["192.168.0.1"]}
        }))
        .unwrap();
        let chained = weft_result().chained_onto(prev);
        assert_eq!(chained.interfaces.len(), 3);
        assert_eq!(chained.interfaces[2].name, "eth0");
        assert_eq!(chained.ips[0].interface, Some(0));
        assert_eq!(chained.ips[1].interface, Some(2));
        assert_eq!(chained.routes.len(), 2);
        assert_eq!(
            chained.routes[0].extra["table"], 100,
            "unknown fields survive"
        );
        assert_eq!(chained.dns.nameservers, ["192.168.0.1"], "weft had no DNS");
        let out: Value = serde_json::from_str(&chained.render(CniVersion::V1_1_0)).unwrap();
        assert_eq!(
            out["routes"][0],
            json!({"dst": "192.168.0.0/16", "table": 100})
        );
    }

    #[test]
    fn constructors_build_what_the_agent_returns() {
        let gw: IpAddr = "169.254.1.1".parse().unwrap();
        let built = NetworkResult {
            interfaces: vec![
                Interface {
                    name: "eni0123456789a".into(),
                    mac: Some("0a:00:00:00:00:01".into()),
                    mtu: Some(9001),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("0a:00:00:00:00:02".into()),
                    mtu: Some(9001),
                    sandbox: Some("/var/run/netns/p".into()),
                    ..Interface::default()
                },
            ],
            ips: vec![IpConfig::new(
                "10.0.1.5/32".parse().unwrap(),
                Some(gw),
                Some(1),
            )],
            routes: vec![Route::new("0.0.0.0/0".parse().unwrap(), Some(gw))],
            dns: Dns::default(),
        };
        assert_eq!(built, weft_result());
    }

    #[test]
    fn bad_prev_result_addresses_fail_to_parse() {
        let bad = json!({"ips": [{"address": "10.0.0.1"}]});
        assert!(serde_json::from_value::<NetworkResult>(bad).is_err());
    }
}

//! Leftovers: host veths of pods that no longer exist, and pod rules whose
//! IP no longer routes to a live veth. Finding them is pure; removing them
//! uses the same primitives as teardown.
//!
//! Only what carries Weft's marks is ever a leftover: a veth with a `weft:`
//! alias ([`names::is_weft_alias`]) and a rule with protocol
//! [`WEFT_RULE_PROTOCOL`]. The Amazon VPC CNI uses the same veth names and
//! rule priorities; a node migrated from it (or running it beside Weft)
//! keeps its pods wired.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use super::Plumbing;
use super::error::{Failures, PlumbingError};
use super::links::{self, LinkRef, LinkRemoval, LinkView};
use super::names::{self, VETH_HASH_LEN};
use super::routes::{self, MAIN_TABLE, RouteView};
use super::rules::{
    self, FROM_POD_PRIORITY, RuleView, Selector, TO_POD_PRIORITY, WEFT_RULE_PROTOCOL,
};

/// A pod rule without a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftoverRule {
    /// [`rules::TO_POD_PRIORITY`] or [`rules::FROM_POD_PRIORITY`].
    pub priority: u32,
    /// The pod IP the rule matches.
    pub ip: Ipv4Addr,
    /// The table it looks up.
    pub table: u32,
}

/// What [`Plumbing::leftovers`] found (and [`Plumbing::gc`] removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Host veth names.
    pub veths: Vec<String>,
    /// Pod rules.
    pub rules: Vec<LeftoverRule>,
}

impl Leftovers {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.veths.is_empty() && self.rules.is_empty()
    }
}

impl Plumbing {
    /// Finds leftovers on the node: Weft's veths that are not
    /// in `valid_host_veths` (the host veth names of the pods that exist,
    /// see [`Plumbing::host_veth_name`]), and pod rules whose IP has no `/32`
    /// route to a valid veth. See the module docs for what is Weft's.
    ///
    /// The caller must not run pod setups concurrently (their veths are not
    /// in `valid_host_veths` yet).
    #[cfg(feature = "testing")]
    pub async fn leftovers(
        &self,
        valid_host_veths: &HashSet<String>,
    ) -> Result<Leftovers, PlumbingError> {
        let (veths, rules) = self.scan(valid_host_veths).await?;
        Ok(Leftovers {
            veths: veths.into_iter().map(|l| l.name).collect(),
            rules,
        })
    }

    /// Removes what [`Plumbing::leftovers`] finds (rules first, then veths,
    /// waiting until they are gone) and returns it. A removal that fails
    /// does not stop the others: every failure is reported at the end.
    pub async fn gc(&self, valid_host_veths: &HashSet<String>) -> Result<Leftovers, PlumbingError> {
        let (veths, rules) = self.scan(valid_host_veths).await?;
        let mut failures = Failures::default();
        for rule in &rules {
            let selector = if rule.priority == TO_POD_PRIORITY {
                Selector::To(rule.ip)
            } else {
                Selector::From(rule.ip)
            };
            let deleted = match self.refused(&rule.ip.to_string()) {
                Ok(()) => rules::delete_all(&self.host, rule.priority, selector)
                    .await
                    .map_err(|e| {
                        PlumbingError::netlink(
                            format!("delete leftover rule {} of {}", rule.priority, rule.ip),
                            e,
                        )
                    }),
                Err(refused) => Err(refused),
            };
            failures.keep(deleted);
        }
        let removals: Vec<_> = veths
            .iter()
            .filter_map(|veth| failures.keep(self.start_removal(veth)))
            .collect();
        for removal in removals {
            failures.keep(removal.wait().await);
        }
        failures.finish()?;
        Ok(Leftovers {
            veths: veths.into_iter().map(|l| l.name).collect(),
            rules,
        })
    }

    /// Starts removing a leftover veth.
    fn start_removal(&self, veth: &LinkView) -> Result<LinkRemoval, PlumbingError> {
        self.refused(&veth.name)?;
        links::spawn_remove(&self.host_ns, LinkRef::Index(veth.index))
    }

    /// Of `host_veths`, those that do not exist on the node: pods whose
    /// wiring disappeared (a veth deleted by hand, a node namespace rebuilt).
    pub(crate) async fn missing_veths<'a>(
        &self,
        host_veths: impl IntoIterator<Item = &'a String>,
    ) -> Result<Vec<String>, PlumbingError> {
        let present: HashSet<String> = links::dump(&self.host)
            .await
            .map_err(|e| PlumbingError::netlink("list node links", e))?
            .into_iter()
            .map(|l| l.name)
            .collect();
        Ok(host_veths
            .into_iter()
            .filter(|name| !present.contains(*name))
            .cloned()
            .collect())
    }

    /// Reads the node's rules, routes and links and finds the leftovers.
    async fn scan(
        &self,
        valid: &HashSet<String>,
    ) -> Result<(Vec<LinkView>, Vec<LeftoverRule>), PlumbingError> {
        // Rules before routes: a rule seen here was added after its route,
        // so a pod set up meanwhile is never mistaken for a leftover.
        let rules = rules::dump(&self.host)
            .await
            .map_err(|e| PlumbingError::netlink("list node rules", e))?;
        let routes = routes::dump(&self.host)
            .await
            .map_err(|e| PlumbingError::netlink("list node routes", e))?;
        let links = links::dump(&self.host)
            .await
            .map_err(|e| PlumbingError::netlink("list node links", e))?;
        Ok(find(
            &self.config.veth_prefix,
            valid,
            &links,
            &routes,
            &rules,
        ))
    }
}

/// Makes one removal of [`Plumbing::gc`] fail, for tests that GC goes on
/// past a failure. A hook, not a real failure, because none can be made:
/// root deletes any veth and any rule of a namespace it owns, and a
/// leftover already gone counts as removed.
#[cfg(feature = "testing")]
impl Plumbing {
    /// GC's removal of `what` (a leftover veth's name, or the IP of
    /// leftover rules) fails from now on, as a refusal by the kernel would
    /// (`EPERM`).
    pub fn refuse_gc_removal(&self, what: &str) {
        self.gc_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(what.to_owned());
    }

    fn refused(&self, what: &str) -> Result<(), PlumbingError> {
        let refusals = self
            .gc_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match refusals.contains(what) {
            true => Err(PlumbingError::io(
                format!("delete leftover {what} (refused by the test)"),
                std::io::Error::from_raw_os_error(libc::EPERM),
            )),
            false => Ok(()),
        }
    }
}

#[cfg(not(feature = "testing"))]
impl Plumbing {
    fn refused(&self, _what: &str) -> Result<(), PlumbingError> {
        Ok(())
    }
}

/// Whether `name` has the shape of our host veth names.
fn is_our_veth_name(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|hash| {
        hash.len() == VETH_HASH_LEN && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The leftover veths and rules among the node's links, routes and rules.
pub(crate) fn find(
    prefix: &str,
    valid: &HashSet<String>,
    links: &[LinkView],
    routes: &[RouteView],
    rules: &[RuleView],
) -> (Vec<LinkView>, Vec<LeftoverRule>) {
    let (live, dead): (Vec<&LinkView>, Vec<&LinkView>) = links
        .iter()
        .filter(|link| {
            link.veth
                && is_our_veth_name(prefix, &link.name)
                && names::is_weft_alias(link.alias.as_deref())
        })
        .partition(|link| valid.contains(&link.name));
    let live_indexes: HashSet<u32> = live.iter().map(|link| link.index).collect();
    let live_ips: HashSet<Ipv4Addr> = routes
        .iter()
        .filter(|r| {
            r.table == MAIN_TABLE
                && r.prefix == 32
                && r.oif.is_some_and(|oif| live_indexes.contains(&oif))
        })
        .filter_map(|r| match r.dst {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect();
    let leftover_rules = rules
        .iter()
        .filter(|rule| rule.protocol == WEFT_RULE_PROTOCOL)
        .filter_map(|rule| {
            let ip = rule
                .host_address(TO_POD_PRIORITY, false)
                .map(|ip| (TO_POD_PRIORITY, ip))
                .or_else(|| {
                    rule.host_address(FROM_POD_PRIORITY, true)
                        .map(|ip| (FROM_POD_PRIORITY, ip))
                });
            ip.filter(|(_, ip)| !live_ips.contains(ip))
                .map(|(priority, ip)| LeftoverRule {
                    priority,
                    ip,
                    table: rule.table,
                })
        })
        .collect();
    (dead.into_iter().cloned().collect(), leftover_rules)
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::route::RouteScope;

    use super::*;

    fn veth(index: u32, name: &str) -> LinkView {
        LinkView {
            index,
            name: name.into(),
            mac: None,
            mtu: None,
            up: true,
            veth: true,
            alias: Some(names::link_alias("default", name, "eth0")),
        }
    }

    fn host_route(ip: Ipv4Addr, oif: u32) -> RouteView {
        RouteView {
            dst: ip.into(),
            prefix: 32,
            gateway: None,
            oif: Some(oif),
            table: MAIN_TABLE,
            scope: RouteScope::Link,
        }
    }

    fn rule(priority: u32, ip: Ipv4Addr, from: bool, table: u32) -> RuleView {
        let side = Some((ip, 32));
        if from {
            RuleView {
                priority,
                src: side,
                dst: None,
                table,
                protocol: WEFT_RULE_PROTOCOL,
            }
        } else {
            RuleView {
                priority,
                src: None,
                dst: side,
                table,
                protocol: WEFT_RULE_PROTOCOL,
            }
        }
    }

    #[test]
    fn finds_dead_veths_and_orphan_rules_only() {
        let (live_ip, dead_ip, gone_ip) = (
            Ipv4Addr::new(10, 0, 1, 5),
            Ipv4Addr::new(10, 0, 1, 6),
            Ipv4Addr::new(10, 0, 1, 7),
        );
        let links = [
            veth(10, "eni0123456789a"),
            veth(11, "eni0123456789b"),
            veth(12, "vethabcdef"), // not ours
            LinkView {
                veth: false,
                ..veth(13, "eni0123456789c")
            }, // not a veth
            veth(14, "enixyz"),     // wrong shape
        ];
        let routes = [host_route(live_ip, 10), host_route(dead_ip, 11)];
        let rules = [
            rule(TO_POD_PRIORITY, live_ip, false, MAIN_TABLE),
            rule(FROM_POD_PRIORITY, live_ip, true, 2),
            rule(TO_POD_PRIORITY, dead_ip, false, MAIN_TABLE),
            rule(FROM_POD_PRIORITY, gone_ip, true, 3),
            rule(1024, gone_ip, true, 3), // an ENI rule, not a pod rule
        ];
        let valid = HashSet::from(["eni0123456789a".to_owned()]);
        let (veths, leftover) = find("eni", &valid, &links, &routes, &rules);
        assert_eq!(
            veths.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["eni0123456789b"]
        );
        assert_eq!(
            leftover,
            [
                LeftoverRule {
                    priority: TO_POD_PRIORITY,
                    ip: dead_ip,
                    table: MAIN_TABLE
                },
                LeftoverRule {
                    priority: FROM_POD_PRIORITY,
                    ip: gone_ip,
                    table: 3
                },
            ]
        );
    }

    #[test]
    fn unmarked_veths_and_rules_are_not_ours() {
        let ip = Ipv4Addr::new(10, 0, 1, 9);
        // What the Amazon VPC CNI creates: same name shape, same priorities.
        let vpc_cni_veth = LinkView {
            alias: None,
            ..veth(20, "eni0123456789f")
        };
        let aliased_by_others = LinkView {
            alias: Some("aws-node".into()),
            ..veth(21, "eni0123456789e")
        };
        let vpc_cni_rules = [
            RuleView {
                protocol: 0,
                ..rule(TO_POD_PRIORITY, ip, false, MAIN_TABLE)
            },
            RuleView {
                protocol: 3,
                ..rule(FROM_POD_PRIORITY, ip, true, 2)
            },
        ];
        let (veths, rules) = find(
            "eni",
            &HashSet::new(),
            &[vpc_cni_veth, aliased_by_others],
            &[],
            &vpc_cni_rules,
        );
        assert!(veths.is_empty(), "{veths:?}");
        assert!(rules.is_empty(), "{rules:?}");
    }

    #[test]
    fn nothing_left_when_all_valid() {
        let ip = Ipv4Addr::new(10, 0, 1, 5);
        let valid = HashSet::from(["eni0123456789a".to_owned()]);
        let (veths, rules) = find(
            "eni",
            &valid,
            &[veth(10, "eni0123456789a")],
            &[host_route(ip, 10)],
            &[rule(TO_POD_PRIORITY, ip, false, MAIN_TABLE)],
        );
        assert!(veths.is_empty() && rules.is_empty());
    }
}

//! The nftables rule set of Weft's table, built from an [`EgressSpec`]
//! (pure: no `nft` is run here).
//!
//! The VPC CNI's iptables rules, translated:
//!
//! | VPC CNI (iptables) | Weft (`table ip weft`) |
//! | --- | --- |
//! | `nat POSTROUTING -j AWS-SNAT-CHAIN-0`: `-d <VPC CIDR or excluded> -j RETURN`, then `-m addrtype ! --dst-type LOCAL -j SNAT --to-source <primary IP> [--random-fully]` | chain `postrouting` (nat, srcnat): from a pod veth, `ip daddr != { VPC and excluded CIDRs }`, `fib daddr type != local`, `snat to <primary IP> [fully-random]` |
//! | `nat PREROUTING -i eni+ -j AWS-CONNMARK-CHAIN-0`: `-d <VPC or excluded> -j RETURN`, then `CONNMARK --set-xmark 0x80/0x80` | chain `prerouting` (filter, mangle): from a pod veth, `ct state new`, `ip daddr != {…}`, `ct mark set ct mark \| 0x80` |
//! | `mangle PREROUTING -i eth0 -m addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-xmark 0x80/0x80` (NodePort) | `iifname <primary> fib daddr . iif type local ct mark set ct mark \| 0x80` |
//! | `mangle PREROUTING -i eni+ -j CONNMARK --restore-mark --mask 0x80` | from a pod veth, `ct mark & 0x80 == 0x80 meta mark set meta mark \| 0x80` |
//! | `egress-cni` (IPv6 mode): `nat POSTROUTING -s 169.254.172.0/22 -j CNI-E4-…`: `-d 224.0.0.0/4 -j ACCEPT`, `-j SNAT --to-source <node IP> [--random-fully]` | chain `postrouting`, first: `ip saddr <range>`, `fib daddr type != local`, `ip daddr != { <range>, 224.0.0.0/4 }` (not to the node, nor to another pod of it), `snat to <primary IP> [fully-random]` |
//!
//! The mark sends a packet to the main table (`fwmark 0x80/0x80 lookup
//! main`, priority 1024), so it leaves through the primary ENI even when the
//! pod's address belongs to a secondary ENI: the VPC drops a packet whose
//! source is not an address of the ENI it leaves through.

use std::borrow::Cow;
use std::collections::HashSet;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{
    BinaryOperation, CT, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression,
    Payload, PayloadField, Prefix, SetItem,
};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Mangle, Match, NAT, NATFlag, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{EgressSpec, SnatRandom};

/// Weft's table; nothing else is ever touched.
pub(super) const TABLE: &str = "weft";
/// Its family: Weft's pods are IPv4.
const FAMILY: NfFamily = NfFamily::IP;
/// The chain that marks connections (filter type at the mangle priority).
pub(super) const MARK_CHAIN: &str = "prerouting";
/// The chain that SNATs (nat type at the srcnat priority).
pub(super) const SNAT_CHAIN: &str = "postrouting";
const MANGLE_PRIORITY: i32 = -150;
const SRCNAT_PRIORITY: i32 = 100;

/// Comments of Weft's rules: they say what each rule is for in `nft list`.
pub(super) const NODE_PORT_COMMENT: &str = "weft: connections to the node through its primary ENI";
/// See [`NODE_PORT_COMMENT`].
pub(super) const EGRESS_MARK_COMMENT: &str = "weft: pod connections leaving the VPC";
/// See [`NODE_PORT_COMMENT`].
pub(super) const RESTORE_COMMENT: &str = "weft: marked connections use the main table";
/// See [`NODE_PORT_COMMENT`].
pub(super) const SNAT_COMMENT: &str = "weft: SNAT pod traffic leaving the VPC";
/// See [`NODE_PORT_COMMENT`].
pub(super) const IPV4_EGRESS_COMMENT: &str =
    "weft: SNAT IPv6 pods' node-local IPv4 traffic leaving the node";

/// Whether the spec needs any rule at all (else the table is removed).
pub(crate) fn needed(spec: &EgressSpec) -> bool {
    marking(spec) || spec.ipv4_egress.is_some()
}

/// Whether the spec marks connections (SNAT of pod addresses, NodePort).
fn marking(spec: &EgressSpec) -> bool {
    spec.snat.is_some() || node_port(spec).is_some()
}

/// The primary interface when NodePort support is on and the interface is
/// known.
fn node_port(spec: &EgressSpec) -> Option<&str> {
    spec.node_port
        .then_some(spec.primary_link.as_deref())
        .flatten()
}

/// Destinations never SNATed: the VPC's CIDRs and the excluded ones, merged
/// (an anonymous interval set refuses overlapping elements).
pub(crate) fn exempt(spec: &EgressSpec) -> Vec<Ipv4Net> {
    let all: Vec<Ipv4Net> = spec
        .vpc_cidrs
        .iter()
        .chain(&spec.excluded_cidrs)
        .map(Ipv4Net::trunc)
        .collect();
    Ipv4Net::aggregate(&all)
}

/// One transaction that replaces Weft's table with the rules of `spec`
/// (creates it first so the delete never fails): applied twice, it leaves the
/// same rules; other tables are not named in it.
pub(crate) fn replace(spec: &EgressSpec) -> Nftables<'static> {
    let mut batch = removal_batch();
    batch.add(NfListObject::Table(table()));
    let mark = spec.connmark;
    let veths: Cow<'static, str> = Cow::Owned(format!("{}*", spec.pod_veth_prefix));
    let exempt = exempt(spec);
    let marking = marking(spec);
    if marking {
        batch.add(chain(
            MARK_CHAIN,
            NfChainType::Filter,
            NfHook::Prerouting,
            MANGLE_PRIORITY,
        ));
    }
    if let Some(primary) = node_port(spec) {
        batch.add(rule(
            MARK_CHAIN,
            NODE_PORT_COMMENT,
            vec![
                iifname(Cow::Owned(primary.to_owned())),
                eq(
                    Expression::Named(NamedExpression::Fib(Fib {
                        result: FibResult::Type,
                        flags: HashSet::from([FibFlag::Daddr, FibFlag::Iif]),
                    })),
                    string("local"),
                ),
                set_mark(ct_mark(), mark),
            ],
        ));
    }
    if spec.snat.is_some() {
        batch.add(rule(
            MARK_CHAIN,
            EGRESS_MARK_COMMENT,
            vec![
                iifname(veths.clone()),
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::CT(CT {
                        key: "state".into(),
                        family: None,
                        dir: None,
                    })),
                    right: string("new"),
                    op: Operator::IN,
                }),
                not_to(&exempt),
                set_mark(ct_mark(), mark),
            ],
        ));
    }
    if spec.snat.is_some() || spec.ipv4_egress.is_some() {
        batch.add(chain(
            SNAT_CHAIN,
            NfChainType::NAT,
            NfHook::Postrouting,
            SRCNAT_PRIORITY,
        ));
    }
    if let Some((range, random)) = spec.ipv4_egress {
        batch.add(rule(
            SNAT_CHAIN,
            IPV4_EGRESS_COMMENT,
            vec![
                address_match("saddr", &[range], Operator::EQ),
                not_local(),
                not_to(&[range, MULTICAST]),
                snat_to(spec, random),
            ],
        ));
    }
    if let Some(random) = spec.snat {
        batch.add(rule(
            SNAT_CHAIN,
            SNAT_COMMENT,
            vec![
                iifname(veths.clone()),
                not_to(&exempt),
                not_local(),
                snat_to(spec, random),
            ],
        ));
    }
    if marking {
        batch.add(rule(
            MARK_CHAIN,
            RESTORE_COMMENT,
            vec![
                iifname(veths),
                eq(
                    Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                        ct_mark(),
                        Expression::Number(mark),
                    ))),
                    Expression::Number(mark),
                ),
                set_mark(meta_mark(), mark),
            ],
        ));
    }
    batch.to_nftables()
}

/// One transaction that removes Weft's table if it exists.
pub(crate) fn remove() -> Nftables<'static> {
    removal_batch().to_nftables()
}

fn removal_batch() -> Batch<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch
}

fn table() -> Table<'static> {
    Table {
        family: FAMILY,
        name: TABLE.into(),
        handle: None,
    }
}

fn chain(name: &'static str, kind: NfChainType, hook: NfHook, prio: i32) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn rule(
    chain: &'static str,
    comment: &'static str,
    expr: Vec<Statement<'static>>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: FAMILY,
        table: TABLE.into(),
        chain: chain.into(),
        expr: Cow::Owned(expr),
        comment: Some(comment.into()),
        ..Rule::default()
    })
}

fn string(s: &'static str) -> Expression<'static> {
    Expression::String(Cow::Borrowed(s))
}

fn string_owned(s: String) -> Expression<'static> {
    Expression::String(Cow::Owned(s))
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

/// `iifname "<name>"` (a trailing `*` is a wildcard, as in iptables' `+`).
fn iifname(name: Cow<'static, str>) -> Statement<'static> {
    eq(
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::Iifname,
        })),
        Expression::String(name),
    )
}

/// IPv4 multicast, never SNATed (as `egress-cni`).
const MULTICAST: Ipv4Net = Ipv4Net::new_assert(std::net::Ipv4Addr::new(224, 0, 0, 0), 4);

/// `fib daddr type != local`: not to the node itself.
fn not_local() -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: HashSet::from([FibFlag::Daddr]),
        })),
        right: string("local"),
        op: Operator::NEQ,
    })
}

/// `snat to <primary IP>` with `random`'s port flags.
fn snat_to(spec: &EgressSpec, random: SnatRandom) -> Statement<'static> {
    let flags = match random {
        SnatRandom::None => None,
        SnatRandom::HashRandom => Some(HashSet::from([NATFlag::Random])),
        SnatRandom::Prng => Some(HashSet::from([NATFlag::FullyRandom])),
    };
    Statement::SNAT(Some(NAT {
        addr: Some(string_owned(spec.primary_ip.to_string())),
        family: None,
        port: None,
        flags,
    }))
}

/// `ip daddr != { <cidrs> }`.
fn not_to(cidrs: &[Ipv4Net]) -> Statement<'static> {
    address_match("daddr", cidrs, Operator::NEQ)
}

/// `ip <field> <op> { <cidrs> }`.
fn address_match(field: &'static str, cidrs: &[Ipv4Net], op: Operator) -> Statement<'static> {
    let items = cidrs
        .iter()
        .map(|net| {
            SetItem::Element(Expression::Named(NamedExpression::Prefix(Prefix {
                addr: Box::new(string_owned(net.network().to_string())),
                len: u32::from(net.prefix_len()),
            })))
        })
        .collect();
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
            PayloadField {
                protocol: "ip".into(),
                field: field.into(),
            },
        ))),
        right: Expression::Named(NamedExpression::Set(items)),
        op,
    })
}

fn ct_mark() -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: "mark".into(),
        family: None,
        dir: None,
    }))
}

fn meta_mark() -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Mark }))
}

/// `<key> set <key> | <mark>`.
fn set_mark(key: Expression<'static>, mark: u32) -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: key.clone(),
        value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
            key,
            Expression::Number(mark),
        ]))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::net::Ipv4Addr;

    fn spec() -> EgressSpec {
        EgressSpec {
            primary_ip: Ipv4Addr::new(10, 0, 0, 10),
            primary_link: Some("eth0".into()),
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            excluded_cidrs: vec![],
            snat: Some(SnatRandom::Prng),
            node_port: true,
            connmark: 0x80,
            pod_veth_prefix: "eni".into(),
            ipv4_egress: None,
        }
    }

    fn rules(doc: &Nftables) -> Vec<Value> {
        let json = serde_json::to_value(doc).unwrap();
        json["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["add"]["rule"].as_object().map(|r| json!(r)))
            .collect()
    }

    #[test]
    fn the_table_is_recreated_in_one_transaction_and_nothing_else_is_named() {
        let json = serde_json::to_value(replace(&spec())).unwrap();
        let objects = json["nftables"].as_array().unwrap();
        assert_eq!(
            objects[0],
            json!({"add": {"table": {"family": "ip", "name": "weft"}}})
        );
        assert_eq!(
            objects[1],
            json!({"delete": {"table": {"family": "ip", "name": "weft"}}})
        );
        for object in objects {
            let body = object.as_object().unwrap().values().next().unwrap();
            let inner = body.as_object().unwrap().values().next().unwrap();
            let table = inner.get("table").or_else(|| inner.get("name")).unwrap();
            assert_eq!(table, "weft", "{object}");
        }
        let comments: Vec<_> = rules(&replace(&spec()))
            .iter()
            .map(|r| r["comment"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            comments,
            [
                NODE_PORT_COMMENT,
                EGRESS_MARK_COMMENT,
                SNAT_COMMENT,
                RESTORE_COMMENT
            ]
        );
    }

    #[test]
    fn snat_goes_to_the_primary_ip_with_the_chosen_randomisation() {
        for (random, flags) in [
            (SnatRandom::Prng, Some(json!(["fully-random"]))),
            (SnatRandom::HashRandom, Some(json!(["random"]))),
            (SnatRandom::None, None),
        ] {
            let spec = EgressSpec {
                snat: Some(random),
                ..spec()
            };
            let snat = rules(&replace(&spec))
                .into_iter()
                .find(|r| r["comment"] == SNAT_COMMENT)
                .unwrap();
            let nat = snat["expr"].as_array().unwrap().last().unwrap()["snat"].clone();
            assert_eq!(nat["addr"], "10.0.0.10");
            assert_eq!(nat.get("flags").cloned(), flags);
        }
    }

    #[test]
    fn external_snat_leaves_only_the_node_port_marks() {
        let spec = EgressSpec {
            snat: None,
            ..spec()
        };
        let comments: Vec<_> = rules(&replace(&spec))
            .iter()
            .map(|r| r["comment"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(comments, [NODE_PORT_COMMENT, RESTORE_COMMENT]);
        let nothing = EgressSpec {
            node_port: false,
            ..spec
        };
        assert!(!needed(&nothing));
    }

    /// The `ip daddr != { … }` CIDRs of a rule.
    fn exempt_of(rule: &Value) -> Vec<String> {
        let expr = rule["expr"].as_array().unwrap();
        let daddr = expr
            .iter()
            .find(|e| e["match"]["left"]["payload"]["field"] == "daddr")
            .unwrap();
        daddr["match"]["right"]["set"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["prefix"]["addr"].as_str().unwrap(),
                    i["prefix"]["len"]
                )
            })
            .collect()
    }

    #[test]
    fn ipv6_pods_ipv4_egress_is_snated_first_and_even_with_external_snat() {
        let range: Ipv4Net = "169.254.172.0/22".parse().unwrap();
        let spec = EgressSpec {
            ipv4_egress: Some((range, SnatRandom::HashRandom)),
            ..spec()
        };
        let all = rules(&replace(&spec));
        let snat: Vec<_> = all.iter().filter(|r| r["chain"] == SNAT_CHAIN).collect();
        assert_eq!(snat[0]["comment"], IPV4_EGRESS_COMMENT);
        assert_eq!(snat[1]["comment"], SNAT_COMMENT);
        let expr = snat[0]["expr"].as_array().unwrap();
        assert_eq!(
            expr[0]["match"],
            json!({"left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"set": [{"prefix": {"addr": "169.254.172.0", "len": 22}}]},
                   "op": "=="})
        );
        assert_eq!(exempt_of(snat[0]), ["169.254.172.0/22", "224.0.0.0/4"]);
        assert_eq!(
            expr.last().unwrap()["snat"],
            json!({"addr": "10.0.0.10", "flags": ["random"]})
        );

        let external = EgressSpec {
            snat: None,
            node_port: false,
            ..spec
        };
        assert!(needed(&external));
        let comments: Vec<_> = rules(&replace(&external))
            .iter()
            .map(|r| r["comment"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(comments, [IPV4_EGRESS_COMMENT]);
    }

    #[test]
    fn excluded_cidrs_merge_with_the_vpc_cidrs() {
        let spec = EgressSpec {
            vpc_cidrs: vec![
                "10.0.0.0/16".parse().unwrap(),
                "100.64.0.0/16".parse().unwrap(),
            ],
            excluded_cidrs: vec![
                "10.0.3.0/24".parse().unwrap(),
                "192.168.1.7/24".parse().unwrap(),
            ],
            ..spec()
        };
        assert_eq!(
            exempt(&spec),
            ["10.0.0.0/16", "100.64.0.0/16", "192.168.1.0/24"]
                .map(|c| c.parse::<Ipv4Net>().unwrap())
        );
    }
}

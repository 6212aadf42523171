//! IPv4 policy routing rules: the pod and ENI rules, and a view of dumped ones.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, IpVersion};

use super::nl;

/// `to <pod IP> lookup main`: traffic to a pod uses the main table, where
/// its `/32` veth route lives, whatever ENI rules follow.
pub(super) const TO_POD_PRIORITY: u32 = 512;
/// `from <ENI primary IP> lookup <ENI table>`: traffic the node sources from
/// a secondary ENI's address leaves through that ENI.
pub(super) const ENI_PRIORITY: u32 = 1024;
/// `fwmark <mark>/<mark> lookup main`: packets of connections marked by the
/// egress rules (NodePort connections that came in through the primary ENI,
/// pod connections leaving the VPC) use the main table, so they leave
/// through the primary ENI whatever ENI the pod's address belongs to. The
/// VPC CNI's priority for the same rule.
pub(super) const MARKED_PRIORITY: u32 = 1024;
/// `from <pod IP> lookup <ENI table>`: traffic from a pod whose IP belongs
/// to a secondary ENI leaves through that ENI.
pub(super) const FROM_POD_PRIORITY: u32 = 1536;

/// The protocol (`FRA_PROTOCOL`) of every rule Weft adds: GC removes only
/// rules with it, never another CNI's at the same priorities. 87 is ASCII
/// `W` and is not among the protocols iproute2 names.
pub(super) const WEFT_RULE_PROTOCOL: u8 = 87;

/// Upper bound on identical rules removed in one call (duplicates can only
/// come from other tools; this keeps a misbehaving kernel from looping us).
const MAX_DUPLICATES: usize = 64;

/// Which address of a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selector {
    /// `from <ip>/32`.
    From(Ipv4Addr),
    /// `to <ip>/32`.
    To(Ipv4Addr),
    /// `fwmark <mark>/<mark>`.
    FwMark(u32),
}

/// A rule message; `table` 0 and no action make a pattern for deletion,
/// which matches a rule whatever its protocol.
fn message(priority: u32, selector: Selector, table: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.attributes.push(RuleAttribute::Priority(priority));
    match selector {
        Selector::From(ip) => {
            msg.header.src_len = 32;
            msg.attributes.push(RuleAttribute::Source(IpAddr::V4(ip)));
        }
        Selector::To(ip) => {
            msg.header.dst_len = 32;
            msg.attributes
                .push(RuleAttribute::Destination(IpAddr::V4(ip)));
        }
        Selector::FwMark(mark) => {
            msg.attributes.push(RuleAttribute::FwMark(mark));
            msg.attributes.push(RuleAttribute::FwMask(mark));
        }
    }
    if table != 0 {
        msg.header.action = RuleAction::ToTable;
        // Tables above 255 only fit the attribute; the header byte says "see attribute".
        msg.header.table = u8::try_from(table).unwrap_or(0);
        msg.attributes.push(RuleAttribute::Table(table));
        msg.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::from(
                WEFT_RULE_PROTOCOL,
            )));
    }
    msg
}

/// Adds `<selector> lookup <table>` at `priority` unless it exists already.
pub(crate) async fn add(
    handle: &Handle,
    priority: u32,
    selector: Selector,
    table: u32,
) -> Result<(), rtnetlink::Error> {
    let result = nl::request_ack(
        handle,
        RouteNetlinkMessage::NewRule(message(priority, selector, table)),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .await;
    nl::absent_ok(result, &[libc::EEXIST]).map(drop)
}

/// Deletes every rule `<selector>` at `priority`, whatever its table.
/// Returns how many were deleted.
pub(crate) async fn delete_all(
    handle: &Handle,
    priority: u32,
    selector: Selector,
) -> Result<usize, rtnetlink::Error> {
    for deleted in 0..MAX_DUPLICATES {
        let result = nl::request_ack(
            handle,
            RouteNetlinkMessage::DelRule(message(priority, selector, 0)),
            NLM_F_REQUEST | NLM_F_ACK,
        )
        .await;
        if !nl::absent_ok(result, &[libc::ENOENT])? {
            return Ok(deleted);
        }
    }
    Ok(MAX_DUPLICATES)
}

/// What the plumbing needs to know about an IPv4 rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleView {
    pub priority: u32,
    /// `from` address and prefix length.
    pub src: Option<(Ipv4Addr, u8)>,
    /// `to` address and prefix length.
    pub dst: Option<(Ipv4Addr, u8)>,
    /// Table looked up.
    pub table: u32,
    /// Who added it (`FRA_PROTOCOL`); [`WEFT_RULE_PROTOCOL`] for Weft.
    pub protocol: u8,
}

impl RuleView {
    /// Extracts the fields of an IPv4 rule message; `None` for other families.
    pub(crate) fn from_message(msg: &RuleMessage) -> Option<Self> {
        if msg.header.family != AddressFamily::Inet {
            return None;
        }
        let mut view = Self {
            priority: 0,
            src: None,
            dst: None,
            table: u32::from(msg.header.table),
            protocol: 0,
        };
        for attr in &msg.attributes {
            match attr {
                RuleAttribute::Priority(p) => view.priority = *p,
                RuleAttribute::Source(IpAddr::V4(ip)) => view.src = Some((*ip, msg.header.src_len)),
                RuleAttribute::Destination(IpAddr::V4(ip)) => {
                    view.dst = Some((*ip, msg.header.dst_len))
                }
                RuleAttribute::Table(t) => view.table = *t,
                RuleAttribute::Protocol(p) => view.protocol = u8::from(*p),
                _ => {}
            }
        }
        Some(view)
    }

    /// The address of a rule as the plumbing installs them: at `priority`,
    /// matching only `from <ip>/32` (`from` true) or only `to <ip>/32`.
    pub(crate) fn host_address(&self, priority: u32, from: bool) -> Option<Ipv4Addr> {
        if self.priority != priority {
            return None;
        }
        match (from, self.src, self.dst) {
            (true, Some((ip, 32)), None) | (false, None, Some((ip, 32))) => Some(ip),
            _ => None,
        }
    }
}

/// All IPv4 rules of the namespace `handle` is bound to.
pub(crate) async fn dump(handle: &Handle) -> Result<Vec<RuleView>, rtnetlink::Error> {
    let messages: Vec<RuleMessage> = handle
        .rule()
        .get(IpVersion::V4)
        .execute()
        .try_collect()
        .await?;
    Ok(messages.iter().filter_map(RuleView::from_message).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_view() {
        let ip = Ipv4Addr::new(10, 0, 2, 9);
        let view =
            RuleView::from_message(&message(FROM_POD_PRIORITY, Selector::From(ip), 3)).unwrap();
        assert_eq!(
            view,
            RuleView {
                priority: FROM_POD_PRIORITY,
                src: Some((ip, 32)),
                dst: None,
                table: 3,
                protocol: WEFT_RULE_PROTOCOL,
            }
        );
        assert_eq!(view.host_address(FROM_POD_PRIORITY, true), Some(ip));
        assert_eq!(view.host_address(FROM_POD_PRIORITY, false), None);
        assert_eq!(view.host_address(TO_POD_PRIORITY, true), None);

        let view =
            RuleView::from_message(&message(TO_POD_PRIORITY, Selector::To(ip), 254)).unwrap();
        assert_eq!(view.host_address(TO_POD_PRIORITY, false), Some(ip));
    }

    #[test]
    fn large_tables_use_the_attribute() {
        let msg = message(FROM_POD_PRIORITY, Selector::From(Ipv4Addr::LOCALHOST), 1000);
        assert_eq!(msg.header.table, 0);
        assert_eq!(RuleView::from_message(&msg).unwrap().table, 1000);
    }

    #[test]
    fn deletion_pattern_has_no_table_action_or_protocol() {
        let msg = message(TO_POD_PRIORITY, Selector::To(Ipv4Addr::LOCALHOST), 0);
        assert_eq!(msg.header.action, RuleAction::Unspec);
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Table(_) | RuleAttribute::Protocol(_)))
        );
    }
}

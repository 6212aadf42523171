//! Conversion of EC2 answers into the cloud layer's types, rejecting incomplete answers.

use crate::cloud::action::Ec2Action;
use crate::cloud::error::CloudError;
use crate::cloud::types::*;
use aws_sdk_ec2::types as ec2;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::str::FromStr;

fn incomplete(api: Ec2Action, what: &str, detail: impl std::fmt::Display) -> CloudError {
    CloudError::Fatal {
        api: api.name().to_owned(),
        detail: format!("EC2 answered an unusable {what}: {detail}"),
    }
}

fn required<'a>(
    api: Ec2Action,
    what: &str,
    field: &str,
    value: Option<&'a str>,
) -> Result<&'a str, CloudError> {
    value.ok_or_else(|| incomplete(api, what, format!("{field} missing")))
}

fn parse<T: FromStr>(
    api: Ec2Action,
    what: &str,
    field: &str,
    value: Option<&str>,
) -> Result<T, CloudError>
where
    T::Err: std::fmt::Display,
{
    let value = required(api, what, field, value)?;
    value
        .parse()
        .map_err(|e| incomplete(api, what, format!("{field} {value:?}: {e}")))
}

fn count(value: Option<i32>) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// EC2 tags as a map.
pub(super) fn tags(tags: &[ec2::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// A map of tags as EC2 tags.
pub(super) fn to_tags(tags: &BTreeMap<String, String>) -> Vec<ec2::Tag> {
    tags.iter()
        .map(|(k, v)| ec2::Tag::builder().key(k).value(v).build())
        .collect()
}

/// A `NetworkInterface` as an [`Eni`].
pub(super) fn eni(api: Ec2Action, ni: &ec2::NetworkInterface) -> Result<Eni, CloudError> {
    let what = "network interface";
    let id = required(api, what, "NetworkInterfaceId", ni.network_interface_id())?;
    let what = &format!("network interface {id}");
    let mut secondary_ips = Vec::new();
    for address in ni.private_ip_addresses() {
        if !address.primary().unwrap_or(false) {
            secondary_ips.push(parse(
                api,
                what,
                "PrivateIpAddress",
                address.private_ip_address(),
            )?);
        }
    }
    let prefixes = ni
        .ipv4_prefixes()
        .iter()
        .map(|p| parse(api, what, "Ipv4Prefix", p.ipv4_prefix()))
        .collect::<Result<_, _>>()?;
    let attachment = match ni.attachment() {
        Some(a) if a.attachment_id().is_some() => Some(Attachment {
            id: required(api, what, "AttachmentId", a.attachment_id())?.to_owned(),
            instance_id: a.instance_id().unwrap_or_default().to_owned(),
            device_index: count(a.device_index()),
            network_card_index: count(a.network_card_index()),
            delete_on_termination: a.delete_on_termination().unwrap_or(false),
        }),
        _ => None,
    };
    Ok(Eni {
        id: id.to_owned(),
        subnet_id: required(api, what, "SubnetId", ni.subnet_id())?.to_owned(),
        mac: parse(api, what, "MacAddress", ni.mac_address())?,
        // IPv6-only and EFA-only interfaces have no private IPv4: reported
        // (so they are listed as unmanaged), never managed.
        primary_ip: match ni.private_ip_address() {
            Some(_) => parse(api, what, "PrivateIpAddress", ni.private_ip_address())?,
            None => std::net::Ipv4Addr::UNSPECIFIED,
        },
        secondary_ips,
        prefixes,
        security_groups: ni
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        tags: tags(ni.tag_set()),
        description: ni.description().unwrap_or_default().to_owned(),
        status: EniStatus::parse(ni.status().map(|s| s.as_str()).unwrap_or("unknown")),
        attachment,
        interface_type: InterfaceType::parse(
            ni.interface_type().map(|t| t.as_str()).unwrap_or_default(),
        ),
    })
}

/// A `Subnet` as a [`Subnet`].
pub(super) fn subnet(api: Ec2Action, s: &ec2::Subnet) -> Result<Subnet, CloudError> {
    let id = required(api, "subnet", "SubnetId", s.subnet_id())?;
    let what = &format!("subnet {id}");
    Ok(Subnet {
        id: id.to_owned(),
        availability_zone: required(api, what, "AvailabilityZone", s.availability_zone())?
            .to_owned(),
        cidr: parse(api, what, "CidrBlock", s.cidr_block())?,
        free_ips: count(s.available_ip_address_count()),
        tags: tags(s.tags()),
    })
}

/// The associated IPv4 CIDR blocks of a VPC (its primary block and any
/// associated later; blocks being disassociated or that failed are left out).
pub(super) fn vpc_cidrs(api: Ec2Action, vpc: &ec2::Vpc) -> Result<Vec<Ipv4Net>, CloudError> {
    let what = &format!("VPC {}", vpc.vpc_id().unwrap_or("?"));
    let associated = vpc.cidr_block_association_set().iter().filter(|a| {
        a.cidr_block_state()
            .and_then(|s| s.state())
            .is_some_and(|s| *s == ec2::VpcCidrBlockStateCode::Associated)
    });
    let mut cidrs = associated
        .map(|a| parse(api, what, "CidrBlock", a.cidr_block()))
        .collect::<Result<Vec<Ipv4Net>, _>>()?;
    if cidrs.is_empty() {
        cidrs.push(parse(api, what, "CidrBlock", vpc.cidr_block())?);
    }
    Ok(cidrs)
}

/// An `InstanceTypeInfo` as [`InstanceLimits`].
///
/// On instances with several network cards `MaximumNetworkInterfaces` counts
/// the ENIs of all cards (p4d.24xlarge: 4 cards x 15 = 60), while Weft uses
/// the default card only: its limit is that card's `MaximumNetworkInterfaces`
/// from `NetworkCards` (see "NetworkCardInfo",
/// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_NetworkCardInfo.html).
/// /28 prefixes need the Nitro system, which bare-metal instances (no
/// hypervisor reported) are built on too.
pub(super) fn limits(
    api: Ec2Action,
    info: &ec2::InstanceTypeInfo,
) -> Result<InstanceLimits, CloudError> {
    let name = info
        .instance_type()
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default();
    let what = &format!("instance type {name}");
    let network = info
        .network_info()
        .ok_or_else(|| incomplete(api, what, "NetworkInfo missing"))?;
    let default_card = network.default_network_card_index().unwrap_or(0);
    let card_max = network
        .network_cards()
        .iter()
        .find(|c| c.network_card_index().unwrap_or(0) == default_card)
        .and_then(|c| c.maximum_network_interfaces());
    let limits = InstanceLimits {
        instance_type: name,
        max_enis: count(card_max.or(network.maximum_network_interfaces())),
        ipv4_per_eni: count(network.ipv4_addresses_per_interface()),
        ipv6_per_eni: count(network.ipv6_addresses_per_interface()),
        network_cards: count(network.maximum_network_cards()).max(1),
        prefix_delegation: info.hypervisor() == Some(&ec2::InstanceTypeHypervisor::Nitro)
            || info.bare_metal() == Some(true),
    };
    if limits.max_enis == 0 || limits.ipv4_per_eni == 0 {
        return Err(incomplete(api, what, "no ENI or IPv4 limits"));
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_interface_converts_with_secondaries_prefixes_and_attachment() {
        let api = Ec2Action::DescribeNetworkInterfaces;
        let ni = ec2::NetworkInterface::builder()
            .network_interface_id("eni-1")
            .subnet_id("subnet-1")
            .mac_address("0a:00:00:00:00:01")
            .private_ip_address("10.0.0.10")
            .private_ip_addresses(
                ec2::NetworkInterfacePrivateIpAddress::builder()
                    .private_ip_address("10.0.0.10")
                    .primary(true)
                    .build(),
            )
            .private_ip_addresses(
                ec2::NetworkInterfacePrivateIpAddress::builder()
                    .private_ip_address("10.0.0.11")
                    .primary(false)
                    .build(),
            )
            .ipv4_prefixes(
                ec2::Ipv4PrefixSpecification::builder()
                    .ipv4_prefix("10.0.0.32/28")
                    .build(),
            )
            .groups(ec2::GroupIdentifier::builder().group_id("sg-1").build())
            .tag_set(ec2::Tag::builder().key(TAG_CLUSTER).value("prod").build())
            .status(ec2::NetworkInterfaceStatus::InUse)
            .attachment(
                ec2::NetworkInterfaceAttachment::builder()
                    .attachment_id("eni-attach-1")
                    .instance_id("i-1")
                    .device_index(2)
                    .delete_on_termination(true)
                    .build(),
            )
            .build();
        let eni = eni(api, &ni).expect("complete");
        assert_eq!(
            eni.secondary_ips,
            vec!["10.0.0.11".parse::<std::net::Ipv4Addr>().expect("ip")]
        );
        assert_eq!(eni.prefixes[0].to_string(), "10.0.0.32/28");
        assert_eq!(eni.device_index(), Some(2));
        assert_eq!(eni.status, EniStatus::InUse);
        assert_eq!(eni.tags[TAG_CLUSTER], "prod");
    }

    /// An `InstanceTypeInfo` as `DescribeInstanceTypes` answers it: total
    /// ENIs, IPv4 per ENI, per-card maxima, hypervisor, bare metal.
    fn shape(
        name: &str,
        total: i32,
        ipv4: i32,
        cards: &[i32],
        nitro: bool,
        metal: bool,
    ) -> ec2::InstanceTypeInfo {
        let mut network = ec2::NetworkInfo::builder()
            .maximum_network_interfaces(total)
            .ipv4_addresses_per_interface(ipv4)
            .ipv6_addresses_per_interface(ipv4)
            .maximum_network_cards(cards.len() as i32)
            .default_network_card_index(0);
        for (index, max) in cards.iter().enumerate() {
            network = network.network_cards(
                ec2::NetworkCardInfo::builder()
                    .network_card_index(index as i32)
                    .maximum_network_interfaces(*max)
                    .build(),
            );
        }
        let mut info = ec2::InstanceTypeInfo::builder()
            .instance_type(ec2::InstanceType::from(name))
            .bare_metal(metal)
            .network_info(network.build());
        if nitro {
            info = info.hypervisor(ec2::InstanceTypeHypervisor::Nitro);
        }
        info.build()
    }

    fn limits_of(info: &ec2::InstanceTypeInfo) -> InstanceLimits {
        limits(Ec2Action::DescribeInstanceTypes, info).expect("limits")
    }

    #[test]
    fn m5_large_has_3_enis_of_10_addresses_and_prefixes() {
        let l = limits_of(&shape("m5.large", 3, 10, &[3], true, false));
        assert_eq!((l.max_enis, l.ipv4_per_eni, l.network_cards), (3, 10, 1));
        assert!(l.prefix_delegation);
        assert_eq!(l.max_pods(), 29);
    }

    #[test]
    fn p4d_24xlarge_uses_the_default_cards_15_enis_not_all_60() {
        let l = limits_of(&shape(
            "p4d.24xlarge",
            60,
            50,
            &[15, 15, 15, 15],
            true,
            false,
        ));
        assert_eq!((l.max_enis, l.network_cards), (15, 4));
        assert_eq!(l.max_pods(), 737);
    }

    #[test]
    fn c5_metal_has_no_hypervisor_and_still_takes_prefixes() {
        let l = limits_of(&shape("c5.metal", 15, 50, &[15], false, true));
        assert!(l.prefix_delegation, "bare metal is Nitro hardware");
        assert_eq!(l.max_enis, 15);
        let xen = limits_of(&shape("m4.large", 2, 10, &[2], false, false));
        assert!(!xen.prefix_delegation);
    }

    #[test]
    fn t3_nano_has_2_enis_of_2_addresses() {
        let l = limits_of(&shape("t3.nano", 2, 2, &[2], true, false));
        assert_eq!((l.max_enis, l.ipv4_per_eni), (2, 2));
        assert_eq!(l.max_pods(), 4);
    }

    #[test]
    fn an_answer_without_network_cards_falls_back_to_the_total() {
        let l = limits_of(&shape("t2.medium", 3, 6, &[], false, false));
        assert_eq!(l.max_enis, 3);
    }

    #[test]
    fn an_interface_without_ipv4_converts_and_says_so() {
        let ni = ec2::NetworkInterface::builder()
            .network_interface_id("eni-efa")
            .subnet_id("subnet-1")
            .mac_address("0a:00:00:00:00:02")
            .interface_type(ec2::NetworkInterfaceType::from("efa-only"))
            .build();
        let eni = eni(Ec2Action::DescribeNetworkInterfaces, &ni).expect("converts");
        assert!(!eni.has_ipv4());
        assert_eq!(eni.interface_type, InterfaceType::EfaOnly);
    }

    #[test]
    fn a_network_interface_without_mac_is_rejected_with_the_field_named() {
        let ni = ec2::NetworkInterface::builder()
            .network_interface_id("eni-1")
            .subnet_id("subnet-1")
            .private_ip_address("10.0.0.10")
            .build();
        let error = eni(Ec2Action::DescribeNetworkInterfaces, &ni).expect_err("no MAC");
        assert!(error.to_string().contains("MacAddress missing"), "{error}");
    }
}

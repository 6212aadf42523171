//! Conversion of EC2 answers into the cloud layer's types, rejecting incomplete answers.

use crate::cloud::api::Api;
use crate::cloud::error::CloudError;
use crate::cloud::types::*;
use aws_sdk_ec2::types as ec2;
use std::collections::BTreeMap;
use std::str::FromStr;

fn incomplete(api: Api, what: &str, detail: impl std::fmt::Display) -> CloudError {
    CloudError::Fatal {
        api: api.name().to_owned(),
        detail: format!("EC2 answered an unusable {what}: {detail}"),
    }
}

fn required<'a>(
    api: Api,
    what: &str,
    field: &str,
    value: Option<&'a str>,
) -> Result<&'a str, CloudError> {
    value.ok_or_else(|| incomplete(api, what, format!("{field} missing")))
}

fn parse<T: FromStr>(
    api: Api,
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
pub(super) fn eni(api: Api, ni: &ec2::NetworkInterface) -> Result<Eni, CloudError> {
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
        primary_ip: parse(api, what, "PrivateIpAddress", ni.private_ip_address())?,
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
    })
}

/// A `Subnet` as a [`Subnet`].
pub(super) fn subnet(api: Api, s: &ec2::Subnet) -> Result<Subnet, CloudError> {
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

/// An `InstanceTypeInfo` as [`InstanceLimits`].
pub(super) fn limits(api: Api, info: &ec2::InstanceTypeInfo) -> Result<InstanceLimits, CloudError> {
    let name = info
        .instance_type()
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default();
    let what = &format!("instance type {name}");
    let network = info
        .network_info()
        .ok_or_else(|| incomplete(api, what, "NetworkInfo missing"))?;
    let limits = InstanceLimits {
        instance_type: name,
        max_enis: count(network.maximum_network_interfaces()),
        ipv4_per_eni: count(network.ipv4_addresses_per_interface()),
        ipv6_per_eni: count(network.ipv6_addresses_per_interface()),
        network_cards: count(network.maximum_network_cards()).max(1),
        prefix_delegation: info.hypervisor() == Some(&ec2::InstanceTypeHypervisor::Nitro),
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
        let api = Api::DescribeNetworkInterfaces;
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

    #[test]
    fn a_network_interface_without_mac_is_rejected_with_the_field_named() {
        let ni = ec2::NetworkInterface::builder()
            .network_interface_id("eni-1")
            .subnet_id("subnet-1")
            .private_ip_address("10.0.0.10")
            .build();
        let error = eni(Api::DescribeNetworkInterfaces, &ni).expect_err("no MAC");
        assert!(error.to_string().contains("MacAddress missing"), "{error}");
    }
}

//! IPv6 in the simulated VPC: each subnet has a /64 of the documentation
//! range (`2001:db8:0:<subnet index>::/64`, so no simulated address can
//! ever be routable), and `AssignIpv6Addresses` with `Ipv6PrefixCount`
//! delegates /80 prefixes of it to an ENI, in order
//! (`2001:db8:0:<i>:1::/80`, `2001:db8:0:<i>:2::/80`, ...), never one
//! twice while an ENI holds it.

use super::state::SimState;
use crate::cloud::action::Ec2Action;
use crate::cloud::error::{CloudError, LimitKind};
use ipnet::Ipv6Net;
use std::net::Ipv6Addr;

/// Length of a delegated IPv6 prefix (EC2 delegates /80s).
pub(crate) const IPV6_PREFIX_LEN: u8 = 80;

/// The /64 of the subnet at `index`.
pub(super) fn subnet_ipv6(index: usize) -> Ipv6Net {
    let index = u16::try_from(index).unwrap_or(u16::MAX);
    Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0, index, 0, 0, 0, 0), 64).expect("64 fits IPv6")
}

impl SimState {
    /// The IPv6 prefixes of ENI `eni_id`.
    pub(super) fn ipv6_prefixes(&self, eni_id: &str) -> Result<Vec<Ipv6Net>, CloudError> {
        self.eni(Ec2Action::DescribeNetworkInterfaces, eni_id)?;
        Ok(self.ipv6_prefixes.get(eni_id).cloned().unwrap_or_default())
    }

    /// `AssignIpv6Addresses` with `Ipv6PrefixCount = 1` on an ENI of this node.
    pub(super) fn assign_ipv6_prefix(&mut self, eni_id: &str) -> Result<Ipv6Net, CloudError> {
        let api = Ec2Action::AssignIpv6Addresses;
        let subnet_id = self.own_eni_mut(api, eni_id)?.subnet_id.clone();
        let held = self.ipv6_prefixes.get(eni_id).map_or(0, Vec::len);
        let max = self.limits.ipv6_per_eni as usize;
        if held >= max {
            return Err(CloudError::LimitExceeded {
                api: api.name().to_owned(),
                what: LimitKind::IpsPerEni,
                detail: format!(
                    "{} allows {max} IPv6 addresses or prefixes per ENI; {held} in use",
                    self.limits.instance_type
                ),
            });
        }
        let index = self
            .subnets
            .iter()
            .position(|s| s.id == subnet_id)
            .expect("an ENI's subnet is one of the VPC's");
        let subnet = subnet_ipv6(index);
        // The next /80 after the highest one any ENI of the subnet holds.
        let next = self
            .ipv6_prefixes
            .values()
            .flatten()
            .filter(|p| subnet.contains(&p.network()))
            .map(|p| prefix_number(subnet, *p))
            .max()
            .unwrap_or(0)
            + 1;
        let network = u128::from(subnet.network()) | (u128::from(next) << 48);
        let prefix = Ipv6Net::new(Ipv6Addr::from(network), IPV6_PREFIX_LEN).expect("80 fits IPv6");
        self.ipv6_prefixes
            .entry(eni_id.to_owned())
            .or_default()
            .push(prefix);
        Ok(prefix)
    }
}

/// Which /80 of `subnet` `prefix` is (bits 64..80).
fn prefix_number(subnet: Ipv6Net, prefix: Ipv6Net) -> u16 {
    let offset = u128::from(prefix.network()) - u128::from(subnet.network());
    u16::try_from(offset >> 48).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_numbered_within_the_subnet() {
        let subnet = subnet_ipv6(2);
        assert_eq!(subnet.to_string(), "2001:db8:0:2::/64");
        let p: Ipv6Net = "2001:db8:0:2:7::/80".parse().unwrap();
        assert_eq!(prefix_number(subnet, p), 7);
    }
}

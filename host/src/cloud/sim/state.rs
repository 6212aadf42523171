//! The simulated VPC: pure state transitions that enforce EC2's rules.

use super::addresses::AddressPool;
use super::faults::Faults;
use crate::cloud::action::Ec2Action;
use crate::cloud::error::{CloudError, LimitKind};
use crate::cloud::leak;
use crate::cloud::types::*;
use ipnet::{Ipv4Net, Ipv6Net};
use rand::RngCore;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

/// An ENI someone other than Weft attached to the node (a test hook of the simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignEni {
    /// Without private IPv4 (IPv6-only or EFA-only).
    NoIpv4,
    /// Attached to network card 1.
    OtherCard,
    /// An EFA interface.
    Efa,
    /// A trunk interface (security groups for pods).
    Trunk,
    /// Tagged `node.k8s.amazonaws.com/no_manage=true`.
    NoManage,
    /// An ordinary ENI without Weft's tags.
    Untagged,
}

/// One simulated subnet.
#[derive(Debug, Clone)]
pub(super) struct SimSubnet {
    pub(super) id: String,
    pub(super) availability_zone: String,
    pub(super) tags: BTreeMap<String, String>,
    pub(super) pool: AddressPool,
}

/// Everything the simulator knows.
#[derive(Debug)]
pub(super) struct SimState {
    pub(super) rng: StdRng,
    /// The VPC's IPv4 CIDR blocks.
    pub(super) vpc_cidrs: Vec<Ipv4Net>,
    pub(super) cluster: String,
    pub(super) identity: NodeIdentity,
    pub(super) limits: InstanceLimits,
    pub(super) subnets: Vec<SimSubnet>,
    pub(super) enis: BTreeMap<String, Eni>,
    pub(super) handed_out_ips: Vec<Ipv4Addr>,
    pub(super) handed_out_prefixes: Vec<Ipv4Net>,
    /// IPv6 /80 prefixes delegated to ENIs, by ENI id (see `ipv6`).
    pub(super) ipv6_prefixes: BTreeMap<String, Vec<Ipv6Net>>,
    pub(super) faults: Faults,
    pub(super) leak_min_age: Duration,
}

fn not_found(api: Ec2Action, what: String) -> CloudError {
    CloudError::NotFound {
        api: api.name().to_owned(),
        detail: format!("{what} does not exist in the simulated VPC"),
        what,
    }
}

impl SimState {
    /// A fresh resource id like EC2's (`eni-0123456789abcdef0`).
    pub(super) fn new_id(&mut self, kind: &str) -> String {
        format!("{kind}-{:017x}", self.rng.next_u64() >> 4)
    }

    /// A fresh locally administered unicast MAC.
    pub(super) fn new_mac(&mut self) -> MacAddr {
        let mut mac = [0u8; 6];
        self.rng.fill_bytes(&mut mac);
        mac[0] = (mac[0] & 0xfc) | 0x02;
        MacAddr(mac)
    }

    /// The ENI with this id.
    pub(super) fn eni(&self, api: Ec2Action, id: &str) -> Result<&Eni, CloudError> {
        self.enis
            .get(id)
            .ok_or_else(|| not_found(api, format!("network interface {id}")))
    }

    /// The ENI with this id, which must be attached to this node.
    pub(super) fn own_eni_mut(&mut self, api: Ec2Action, id: &str) -> Result<&mut Eni, CloudError> {
        let instance = self.identity.instance_id.clone();
        let eni = self
            .enis
            .get_mut(id)
            .ok_or_else(|| not_found(api, format!("network interface {id}")))?;
        if eni.attachment.as_ref().map(|a| &a.instance_id) != Some(&instance) {
            return Err(CloudError::Fatal {
                api: api.name().to_owned(),
                detail: format!("network interface {id} is not attached to {instance}"),
            });
        }
        Ok(eni)
    }

    fn check_slots(&self, api: Ec2Action, used: u32, more: u32) -> Result<(), CloudError> {
        let max = self.limits.slots_per_eni();
        if used.saturating_add(more) > max {
            return Err(CloudError::LimitExceeded {
                api: api.name().to_owned(),
                what: LimitKind::IpsPerEni,
                detail: format!(
                    "{} allows {max} secondary addresses per ENI; {used} in use, {more} requested",
                    self.limits.instance_type
                ),
            });
        }
        Ok(())
    }

    fn check_prefix_delegation(&self, api: Ec2Action) -> Result<(), CloudError> {
        if self.limits.prefix_delegation {
            return Ok(());
        }
        Err(CloudError::Fatal {
            api: api.name().to_owned(),
            detail: format!(
                "{} is not a Nitro instance type and cannot use /28 prefixes; use secondary IPs",
                self.limits.instance_type
            ),
        })
    }

    fn take_ips(
        &mut self,
        api: Ec2Action,
        subnet_id: &str,
        count: u32,
    ) -> Result<Vec<Ipv4Addr>, CloudError> {
        let subnet = self
            .subnets
            .iter_mut()
            .find(|s| s.id == subnet_id)
            .ok_or_else(|| not_found(api, format!("subnet {subnet_id}")))?;
        let Some(ips) = subnet.pool.take_ips(count, &mut self.rng) else {
            return Err(CloudError::InsufficientAddresses {
                api: api.name().to_owned(),
                subnet: subnet_id.to_owned(),
                detail: format!("{count} requested, {} free", subnet.pool.free()),
            });
        };
        self.handed_out_ips.extend(&ips);
        Ok(ips)
    }

    fn take_prefixes(
        &mut self,
        api: Ec2Action,
        subnet_id: &str,
        count: u32,
    ) -> Result<Vec<Ipv4Net>, CloudError> {
        let subnet = self
            .subnets
            .iter_mut()
            .find(|s| s.id == subnet_id)
            .ok_or_else(|| not_found(api, format!("subnet {subnet_id}")))?;
        let Some(prefixes) = subnet.pool.take_prefixes(count, &mut self.rng) else {
            return Err(CloudError::InsufficientCidrBlocks {
                api: api.name().to_owned(),
                subnet: subnet_id.to_owned(),
                detail: format!(
                    "{count} /28 prefixes requested; {} single addresses free",
                    subnet.pool.free()
                ),
            });
        };
        self.handed_out_prefixes.extend(&prefixes);
        Ok(prefixes)
    }

    fn take_ip(&mut self, api: Ec2Action, subnet_id: &str) -> Result<Ipv4Addr, CloudError> {
        self.take_ips(api, subnet_id, 1)?
            .pop()
            .ok_or_else(|| CloudError::InsufficientAddresses {
                api: api.name().to_owned(),
                subnet: subnet_id.to_owned(),
                detail: "1 requested".into(),
            })
    }

    fn release(&mut self, subnet_id: &str, ips: &[Ipv4Addr], prefixes: &[Ipv4Net]) {
        if let Some(subnet) = self.subnets.iter_mut().find(|s| s.id == subnet_id) {
            for ip in ips {
                subnet.pool.release_ip(*ip);
            }
            for prefix in prefixes {
                subnet.pool.release_prefix(*prefix);
            }
        }
    }

    /// Creates the node's primary ENI in the node's subnet, attached at device index 0.
    pub(super) fn boot(&mut self) -> Result<(), CloudError> {
        let subnet_id = self.identity.subnet_id.clone();
        let primary_ip = self.take_ip(Ec2Action::DescribeInstances, &subnet_id)?;
        let eni = Eni {
            id: self.new_id("eni"),
            subnet_id,
            mac: self.new_mac(),
            primary_ip,
            secondary_ips: Vec::new(),
            prefixes: Vec::new(),
            security_groups: self.identity.security_groups.clone(),
            tags: BTreeMap::new(),
            description: "primary network interface".into(),
            status: EniStatus::InUse,
            attachment: Some(Attachment {
                id: self.new_id("eni-attach"),
                instance_id: self.identity.instance_id.clone(),
                device_index: 0,
                network_card_index: 0,
                delete_on_termination: true,
            }),
            interface_type: Default::default(),
        };
        self.identity.primary_eni_id = eni.id.clone();
        self.identity.mac = eni.mac;
        self.enis.insert(eni.id.clone(), eni);
        Ok(())
    }

    /// Takes the node's primary ENI from the ENIs restored from a shared VPC,
    /// if this node has one there; whether it did.
    pub(super) fn adopt_primary(&mut self) -> bool {
        let primary = self.enis.values().find(|e| {
            e.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == self.identity.instance_id && a.device_index == 0)
        });
        let Some(primary) = primary.cloned() else {
            return false;
        };
        self.identity.primary_eni_id = primary.id;
        self.identity.mac = primary.mac;
        self.identity.subnet_id = primary.subnet_id;
        true
    }

    /// `CreateNetworkInterface`: a detached ENI with its addresses and Weft's tags.
    pub(super) fn create_eni(
        &mut self,
        request: &CreateEni,
        now: SystemTime,
    ) -> Result<Eni, CloudError> {
        let api = Ec2Action::CreateNetworkInterface;
        self.check_slots(api, 0, request.addresses.slots())?;
        if let AddressRequest::Prefixes(_) = request.addresses {
            self.check_prefix_delegation(api)?;
        }
        let primary = self.take_ip(api, &request.subnet_id)?;
        let (secondary_ips, prefixes) = match request.addresses {
            AddressRequest::Ips(n) => (self.take_ips(api, &request.subnet_id, n), Ok(vec![])),
            AddressRequest::Prefixes(n) => {
                (Ok(vec![]), self.take_prefixes(api, &request.subnet_id, n))
            }
        };
        let (secondary_ips, prefixes) = match (secondary_ips, prefixes) {
            (Ok(ips), Ok(prefixes)) => (ips, prefixes),
            (Err(e), _) | (_, Err(e)) => {
                self.release(&request.subnet_id, &[primary], &[]);
                return Err(e);
            }
        };
        let mut tags = request.tags.clone();
        tags.insert(TAG_CLUSTER.into(), self.cluster.clone());
        tags.insert(TAG_INSTANCE_ID.into(), self.identity.instance_id.clone());
        tags.insert(TAG_CREATED_AT.into(), leak::created_at_tag(now));
        let eni = Eni {
            id: self.new_id("eni"),
            subnet_id: request.subnet_id.clone(),
            mac: self.new_mac(),
            primary_ip: primary,
            secondary_ips,
            prefixes,
            security_groups: request.security_groups.clone(),
            tags,
            description: format!("weft-{}", self.identity.instance_id),
            status: EniStatus::Available,
            attachment: None,
            interface_type: Default::default(),
        };
        self.enis.insert(eni.id.clone(), eni.clone());
        Ok(eni)
    }

    /// `AttachNetworkInterface` at the lowest free device index, with delete-on-termination.
    pub(super) fn attach(&mut self, eni_id: &str) -> Result<Eni, CloudError> {
        let api = Ec2Action::AttachNetworkInterface;
        let instance = self.identity.instance_id.clone();
        let used: Vec<u32> = self
            .enis
            .values()
            .filter_map(|e| e.attachment.as_ref())
            .filter(|a| a.instance_id == instance && a.network_card_index == 0)
            .map(|a| a.device_index)
            .collect();
        let index = (1..self.limits.max_enis)
            .find(|i| !used.contains(i))
            .ok_or_else(|| CloudError::LimitExceeded {
                api: api.name().to_owned(),
                what: LimitKind::Enis,
                detail: format!(
                    "{} allows {} ENIs and all are attached",
                    self.limits.instance_type, self.limits.max_enis
                ),
            })?;
        let attachment_id = self.new_id("eni-attach");
        let eni = self
            .enis
            .get_mut(eni_id)
            .ok_or_else(|| not_found(api, format!("network interface {eni_id}")))?;
        if eni.attachment.is_some() {
            return Err(CloudError::Fatal {
                api: api.name().to_owned(),
                detail: format!("network interface {eni_id} is already attached"),
            });
        }
        eni.attachment = Some(Attachment {
            id: attachment_id,
            instance_id: instance,
            device_index: index,
            network_card_index: 0,
            delete_on_termination: true,
        });
        eni.status = EniStatus::InUse;
        Ok(eni.clone())
    }

    /// Attaches an ENI someone other than Weft made (see [`ForeignEni`]) to the node.
    pub(super) fn attach_foreign(&mut self, kind: ForeignEni) -> Result<Eni, CloudError> {
        let api = Ec2Action::AttachNetworkInterface;
        let subnet_id = self.identity.subnet_id.clone();
        let (primary_ip, secondary_ips) = if kind == ForeignEni::NoIpv4 {
            (Ipv4Addr::UNSPECIFIED, Vec::new())
        } else {
            let primary = self.take_ip(api, &subnet_id)?;
            (primary, self.take_ips(api, &subnet_id, 2)?)
        };
        let mut tags = BTreeMap::new();
        if kind == ForeignEni::NoManage {
            tags.insert(
                "node.k8s.amazonaws.com/no_manage".to_owned(),
                "true".to_owned(),
            );
        }
        let interface_type = match kind {
            ForeignEni::Efa => InterfaceType::Efa,
            ForeignEni::Trunk => InterfaceType::Trunk,
            _ => InterfaceType::Interface,
        };
        let id = self.new_id("eni");
        let eni = Eni {
            id: id.clone(),
            subnet_id,
            mac: self.new_mac(),
            primary_ip,
            secondary_ips,
            prefixes: Vec::new(),
            security_groups: self.identity.security_groups.clone(),
            tags,
            description: format!("{kind:?} interface of another tenant"),
            status: EniStatus::Available,
            attachment: None,
            interface_type,
        };
        self.enis.insert(id.clone(), eni);
        if kind == ForeignEni::OtherCard {
            let attachment_id = self.new_id("eni-attach");
            let instance_id = self.identity.instance_id.clone();
            let eni = self
                .enis
                .get_mut(&id)
                .ok_or_else(|| not_found(api, format!("network interface {id}")))?;
            eni.attachment = Some(Attachment {
                id: attachment_id,
                instance_id,
                device_index: 0,
                network_card_index: 1,
                delete_on_termination: false,
            });
            eni.status = EniStatus::InUse;
            return Ok(eni.clone());
        }
        self.attach(&id)
    }

    /// `DetachNetworkInterface`; returns the ENI as it was while attached.
    pub(super) fn detach(&mut self, eni_id: &str) -> Result<Eni, CloudError> {
        let api = Ec2Action::DetachNetworkInterface;
        let eni = self
            .enis
            .get_mut(eni_id)
            .ok_or_else(|| not_found(api, format!("network interface {eni_id}")))?;
        if eni.device_index() == Some(0) {
            return Err(CloudError::Fatal {
                api: api.name().to_owned(),
                detail: format!("{eni_id} is the primary ENI and cannot be detached"),
            });
        }
        let before = eni.clone();
        eni.attachment = None;
        eni.status = EniStatus::Available;
        Ok(before)
    }

    /// `DeleteNetworkInterface` of a detached ENI; its addresses return to the subnet.
    pub(super) fn delete(&mut self, eni_id: &str) -> Result<(), CloudError> {
        let api = Ec2Action::DeleteNetworkInterface;
        let eni = self.eni(api, eni_id)?;
        if eni.attachment.is_some() {
            return Err(CloudError::Fatal {
                api: api.name().to_owned(),
                detail: format!("network interface {eni_id} is in use; detach it first"),
            });
        }
        let eni = self
            .enis
            .remove(eni_id)
            .ok_or_else(|| not_found(api, format!("network interface {eni_id}")))?;
        let mut ips = eni.secondary_ips.clone();
        ips.push(eni.primary_ip);
        self.release(&eni.subnet_id, &ips, &eni.prefixes);
        self.ipv6_prefixes.remove(eni_id);
        Ok(())
    }

    /// `AssignPrivateIpAddresses` with a secondary IP count.
    pub(super) fn assign_ips(
        &mut self,
        eni_id: &str,
        count: u32,
    ) -> Result<Vec<Ipv4Addr>, CloudError> {
        let api = Ec2Action::AssignPrivateIpAddresses;
        let eni = self.own_eni_mut(api, eni_id)?;
        let (used, subnet) = (eni.used_slots(), eni.subnet_id.clone());
        self.check_slots(api, used, count)?;
        let ips = self.take_ips(api, &subnet, count)?;
        self.own_eni_mut(api, eni_id)?.secondary_ips.extend(&ips);
        Ok(ips)
    }

    /// `AssignPrivateIpAddresses` with a prefix count.
    pub(super) fn assign_prefixes(
        &mut self,
        eni_id: &str,
        count: u32,
    ) -> Result<Vec<Ipv4Net>, CloudError> {
        let api = Ec2Action::AssignPrivateIpAddresses;
        self.check_prefix_delegation(api)?;
        let eni = self.own_eni_mut(api, eni_id)?;
        let (used, subnet) = (eni.used_slots(), eni.subnet_id.clone());
        self.check_slots(api, used, count)?;
        let prefixes = self.take_prefixes(api, &subnet, count)?;
        self.own_eni_mut(api, eni_id)?.prefixes.extend(&prefixes);
        Ok(prefixes)
    }

    /// `UnassignPrivateIpAddresses` of IPs: all or nothing, like EC2.
    pub(super) fn unassign_ips(
        &mut self,
        eni_id: &str,
        ips: &[Ipv4Addr],
    ) -> Result<(), CloudError> {
        let api = Ec2Action::UnassignPrivateIpAddresses;
        let eni = self.own_eni_mut(api, eni_id)?;
        if let Some(missing) = ips.iter().find(|ip| !eni.secondary_ips.contains(ip)) {
            return Err(CloudError::Fatal {
                api: api.name().to_owned(),
                detail: format!("{missing} is not a secondary address of {eni_id}"),
            });
        }
        eni.secondary_ips.retain(|ip| !ips.contains(ip));
        let subnet = eni.subnet_id.clone();
        self.release(&subnet, ips, &[]);
        Ok(())
    }

    /// `UnassignPrivateIpAddresses` of prefixes: all or nothing, like EC2.
    pub(super) fn unassign_prefixes(
        &mut self,
        eni_id: &str,
        prefixes: &[Ipv4Net],
    ) -> Result<(), CloudError> {
        let api = Ec2Action::UnassignPrivateIpAddresses;
        let eni = self.own_eni_mut(api, eni_id)?;
        if let Some(missing) = prefixes.iter().find(|p| !eni.prefixes.contains(p)) {
            return Err(CloudError::Fatal {
                api: api.name().to_owned(),
                detail: format!("{missing} is not a prefix of {eni_id}"),
            });
        }
        eni.prefixes.retain(|p| !prefixes.contains(p));
        let subnet = eni.subnet_id.clone();
        self.release(&subnet, &[], prefixes);
        Ok(())
    }

    /// ENIs attached to this node, by device index.
    pub(super) fn node_enis(&self) -> Vec<Eni> {
        let mut enis: Vec<Eni> = self
            .enis
            .values()
            .filter(|e| {
                e.attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == self.identity.instance_id)
            })
            .cloned()
            .collect();
        enis.sort_by_key(|e| e.device_index());
        enis
    }

    /// The VPC's subnets with their current free counts.
    pub(super) fn subnets(&self) -> Vec<Subnet> {
        self.subnets
            .iter()
            .map(|s| Subnet {
                id: s.id.clone(),
                availability_zone: s.availability_zone.clone(),
                cidr: s.pool.net(),
                free_ips: s.pool.free(),
                tags: s.tags.clone(),
            })
            .collect()
    }

    /// Leaked ENIs of this cluster at `now`.
    pub(super) fn leaked(&self, now: SystemTime) -> Vec<Eni> {
        self.enis
            .values()
            .filter(|e| leak::is_leaked(e, &self.cluster, now, self.leak_min_age))
            .cloned()
            .collect()
    }

    /// Every address currently held by any ENI, prefixes expanded.
    #[cfg(test)]
    pub(super) fn held_addresses(&self) -> Vec<Ipv4Addr> {
        self.enis
            .values()
            .flat_map(|e| {
                std::iter::once(e.primary_ip)
                    .chain(e.secondary_ips.iter().copied())
                    .chain(
                        e.prefixes
                            .iter()
                            .flat_map(|p| super::addresses::prefix_addresses(*p)),
                    )
            })
            .collect()
    }
}

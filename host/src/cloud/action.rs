//! The EC2 APIs the cloud layer calls, and the request-rate class each belongs to.

use std::fmt;

/// An EC2 API action used by Weft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ec2Action {
    /// `DescribeInstances`.
    DescribeInstances,
    /// `DescribeInstanceTypes`.
    DescribeInstanceTypes,
    /// `DescribeNetworkInterfaces`.
    DescribeNetworkInterfaces,
    /// `DescribeSubnets`.
    DescribeSubnets,
    /// `DescribeVpcs` (the VPC's CIDR blocks, for egress SNAT).
    DescribeVpcs,
    /// `CreateNetworkInterface`.
    CreateNetworkInterface,
    /// `AttachNetworkInterface`.
    AttachNetworkInterface,
    /// `ModifyNetworkInterfaceAttribute`.
    ModifyNetworkInterfaceAttribute,
    /// `AssignPrivateIpAddresses`.
    AssignPrivateIpAddresses,
    /// `UnassignPrivateIpAddresses`.
    UnassignPrivateIpAddresses,
    /// `AssignIpv6Addresses` (the /80 prefix of IPv6 mode).
    AssignIpv6Addresses,
    /// `DetachNetworkInterface`.
    DetachNetworkInterface,
    /// `DeleteNetworkInterface`.
    DeleteNetworkInterface,
}

impl Ec2Action {
    /// Every action.
    pub(crate) const ALL: [Ec2Action; 13] = [
        Ec2Action::DescribeInstances,
        Ec2Action::DescribeInstanceTypes,
        Ec2Action::DescribeNetworkInterfaces,
        Ec2Action::DescribeSubnets,
        Ec2Action::DescribeVpcs,
        Ec2Action::CreateNetworkInterface,
        Ec2Action::AttachNetworkInterface,
        Ec2Action::ModifyNetworkInterfaceAttribute,
        Ec2Action::AssignPrivateIpAddresses,
        Ec2Action::UnassignPrivateIpAddresses,
        Ec2Action::AssignIpv6Addresses,
        Ec2Action::DetachNetworkInterface,
        Ec2Action::DeleteNetworkInterface,
    ];

    /// The action named `name` as EC2 spells it.
    pub(crate) fn from_name(name: &str) -> Option<Ec2Action> {
        Ec2Action::ALL.into_iter().find(|api| api.name() == name)
    }

    /// The action name as EC2 spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ec2Action::DescribeInstances => "DescribeInstances",
            Ec2Action::DescribeInstanceTypes => "DescribeInstanceTypes",
            Ec2Action::DescribeNetworkInterfaces => "DescribeNetworkInterfaces",
            Ec2Action::DescribeSubnets => "DescribeSubnets",
            Ec2Action::DescribeVpcs => "DescribeVpcs",
            Ec2Action::CreateNetworkInterface => "CreateNetworkInterface",
            Ec2Action::AttachNetworkInterface => "AttachNetworkInterface",
            Ec2Action::ModifyNetworkInterfaceAttribute => "ModifyNetworkInterfaceAttribute",
            Ec2Action::AssignPrivateIpAddresses => "AssignPrivateIpAddresses",
            Ec2Action::UnassignPrivateIpAddresses => "UnassignPrivateIpAddresses",
            Ec2Action::AssignIpv6Addresses => "AssignIpv6Addresses",
            Ec2Action::DetachNetworkInterface => "DetachNetworkInterface",
            Ec2Action::DeleteNetworkInterface => "DeleteNetworkInterface",
        }
    }

    /// The token bucket EC2 charges this action to.
    pub(crate) fn class(self) -> ActionClass {
        match self {
            Ec2Action::DescribeInstances
            | Ec2Action::DescribeInstanceTypes
            | Ec2Action::DescribeNetworkInterfaces
            | Ec2Action::DescribeSubnets
            | Ec2Action::DescribeVpcs => ActionClass::Describe,
            Ec2Action::CreateNetworkInterface
            | Ec2Action::DeleteNetworkInterface
            | Ec2Action::ModifyNetworkInterfaceAttribute => ActionClass::EniLifecycle,
            Ec2Action::AssignPrivateIpAddresses
            | Ec2Action::UnassignPrivateIpAddresses
            | Ec2Action::AssignIpv6Addresses => ActionClass::AddressAssignment,
            Ec2Action::AttachNetworkInterface | Ec2Action::DetachNetworkInterface => {
                ActionClass::Mutating
            }
        }
    }
}

impl fmt::Display for Ec2Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request-rate class: EC2 keeps one token bucket per class and account.
///
/// Weft always filters its `Describe*` calls, so the unfiltered bucket (50 / 10 per s) is not
/// used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionClass {
    /// Filtered non-mutating calls (`Describe*`).
    Describe,
    /// `Create`/`DeleteNetworkInterface`, `ModifyNetworkInterfaceAttribute`.
    EniLifecycle,
    /// `Assign`/`UnassignPrivateIpAddresses`.
    AddressAssignment,
    /// Other mutating calls (`Attach`/`DetachNetworkInterface`).
    Mutating,
}

impl ActionClass {
    /// Every class.
    pub const ALL: [ActionClass; 4] = [
        ActionClass::Describe,
        ActionClass::EniLifecycle,
        ActionClass::AddressAssignment,
        ActionClass::Mutating,
    ];
}

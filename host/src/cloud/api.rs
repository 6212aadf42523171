//! The EC2 APIs the cloud layer calls, and the request-rate class each belongs to.

use std::fmt;

/// An EC2 API action used by Weft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
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
    /// `DetachNetworkInterface`.
    DetachNetworkInterface,
    /// `DeleteNetworkInterface`.
    DeleteNetworkInterface,
}

impl Api {
    /// Every action.
    pub const ALL: [Api; 12] = [
        Api::DescribeInstances,
        Api::DescribeInstanceTypes,
        Api::DescribeNetworkInterfaces,
        Api::DescribeSubnets,
        Api::DescribeVpcs,
        Api::CreateNetworkInterface,
        Api::AttachNetworkInterface,
        Api::ModifyNetworkInterfaceAttribute,
        Api::AssignPrivateIpAddresses,
        Api::UnassignPrivateIpAddresses,
        Api::DetachNetworkInterface,
        Api::DeleteNetworkInterface,
    ];

    /// The action named `name` as EC2 spells it.
    pub fn from_name(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.name() == name)
    }

    /// The action name as EC2 spells it.
    pub fn name(self) -> &'static str {
        match self {
            Api::DescribeInstances => "DescribeInstances",
            Api::DescribeInstanceTypes => "DescribeInstanceTypes",
            Api::DescribeNetworkInterfaces => "DescribeNetworkInterfaces",
            Api::DescribeSubnets => "DescribeSubnets",
            Api::DescribeVpcs => "DescribeVpcs",
            Api::CreateNetworkInterface => "CreateNetworkInterface",
            Api::AttachNetworkInterface => "AttachNetworkInterface",
            Api::ModifyNetworkInterfaceAttribute => "ModifyNetworkInterfaceAttribute",
            Api::AssignPrivateIpAddresses => "AssignPrivateIpAddresses",
            Api::UnassignPrivateIpAddresses => "UnassignPrivateIpAddresses",
            Api::DetachNetworkInterface => "DetachNetworkInterface",
            Api::DeleteNetworkInterface => "DeleteNetworkInterface",
        }
    }

    /// The token bucket EC2 charges this action to.
    pub fn class(self) -> ApiClass {
        match self {
            Api::DescribeInstances
            | Api::DescribeInstanceTypes
            | Api::DescribeNetworkInterfaces
            | Api::DescribeSubnets
            | Api::DescribeVpcs => ApiClass::Describe,
            Api::CreateNetworkInterface
            | Api::DeleteNetworkInterface
            | Api::ModifyNetworkInterfaceAttribute => ApiClass::EniLifecycle,
            Api::AssignPrivateIpAddresses | Api::UnassignPrivateIpAddresses => {
                ApiClass::AddressAssignment
            }
            Api::AttachNetworkInterface | Api::DetachNetworkInterface => ApiClass::Mutating,
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request-rate class: EC2 keeps one token bucket per class and account.
///
/// Weft always filters its `Describe*` calls, so the unfiltered bucket (50 / 10 per s) is not
/// used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiClass {
    /// Filtered non-mutating calls (`Describe*`).
    Describe,
    /// `Create`/`DeleteNetworkInterface`, `ModifyNetworkInterfaceAttribute`.
    EniLifecycle,
    /// `Assign`/`UnassignPrivateIpAddresses`.
    AddressAssignment,
    /// Other mutating calls (`Attach`/`DetachNetworkInterface`).
    Mutating,
}

impl ApiClass {
    /// Every class.
    pub const ALL: [ApiClass; 4] = [
        ApiClass::Describe,
        ApiClass::EniLifecycle,
        ApiClass::AddressAssignment,
        ApiClass::Mutating,
    ];
}

//! An IP address with a prefix length, written `10.0.1.5/32` in JSON.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address with a prefix length (`address/prefix`), as CNI results use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length: at most 32 for IPv4, 128 for IPv6.
    pub prefix: u8,
}

impl IpCidr {
    /// A prefix, if `prefix` fits the address family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpCidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpCidr { addr, prefix })
    }

    /// A host prefix: `/32` for IPv4, `/128` for IPv6.
    pub fn host(addr: IpAddr) -> IpCidr {
        IpCidr {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a string is not an `address/prefix`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address/prefix such as 10.0.0.5/32")]
pub struct ParseCidrError(String);

impl FromStr for IpCidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseCidrError(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
        let addr = addr.parse().map_err(|_| err())?;
        let prefix = prefix.parse().map_err(|_| err())?;
        IpCidr::new(addr, prefix).ok_or_else(err)
    }
}

impl Serialize for IpCidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpCidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in ["10.0.1.5/32", "192.168.0.0/16", "fd00::1/128", "0.0.0.0/0"] {
            let c: IpCidr = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<IpCidr>(&json).unwrap(), c);
        }
    }

    #[test]
    fn rejects_bad_prefixes() {
        for s in [
            "10.0.0.1",
            "10.0.0.1/33",
            "fd00::/129",
            "x/1",
            "10.0.0.1/-1",
            "/8",
        ] {
            assert!(s.parse::<IpCidr>().is_err(), "{s}");
        }
        assert!(serde_json::from_str::<IpCidr>("\"10.0.0.1/40\"").is_err());
    }

    #[test]
    fn host_prefix() {
        assert_eq!(IpCidr::host("10.0.0.1".parse().unwrap()).prefix, 32);
        assert_eq!(IpCidr::host("::1".parse().unwrap()).prefix, 128);
    }
}

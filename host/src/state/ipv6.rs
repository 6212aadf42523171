//! IPv6 mode's checkpoint: which pod holds which address of the primary
//! ENI's /80, rewritten atomically on every assign and release before the
//! CNI call is answered, like the IPv4 checkpoint (whose allocation format
//! it follows, with `ipv6` for `ipv4`, and `ipv4` for the node-local
//! address of the pod's IPv4 egress when that is on):
//!
//! ```json
//! {"version": "weft-ipam-ipv6/2", "prefix": "2001:db8::1:0:0:0/80", "eniId": "eni-...",
//!  "next": "3", "ipv4Egress": "169.254.172.0/22", "nextIpv4": 2,
//!  "allocations": [{"networkName": "weft", "containerID": "abc", "ifName": "eth0",
//!                   "ipv6": "2001:db8::1:0:0:1", "ipv4": "169.254.172.1",
//!                   "allocationTimestampMs": 1764000000000,
//!                   "metadata": {"k8sPodNamespace": "default", "k8sPodName": "web-0"}}]}
//! ```
//!
//! Version 1 (before IPv4 egress) files load as version 2 files without
//! IPv4 egress addresses.

use super::atomic::write_atomic;
use super::checkpoint::{Metadata, corrupt, from_ms, parse_versioned, to_ms};
use super::{CommitError, StateError};
use crate::ipam::{AssignmentKey, Ipv6Assignment, Ipv6Block, PodMeta};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The format version this build writes and reads.
pub const IPV6_CHECKPOINT_VERSION: &str = "weft-ipam-ipv6/2";
/// The versions before, whose files this build reads too.
const OLDER_VERSIONS: &[&str] = &["weft-ipam-ipv6/1"];

/// What the IPv6 checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Checkpoint {
    /// The prefix the addresses come from.
    pub prefix: Ipv6Net,
    /// The ENI it is delegated to.
    pub eni_id: String,
    /// The block's cursor.
    pub next: u128,
    /// The IPv4 egress range and its cursor, when IPv4 egress is on.
    pub ipv4_egress: Option<(Ipv4Net, u32)>,
    pub allocations: Vec<Ipv6Assignment>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    version: String,
    prefix: Ipv6Net,
    eni_id: String,
    /// A string: JSON numbers lose precision past 2^53.
    next: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipv4_egress: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_ipv4: Option<u32>,
    allocations: Vec<Allocation>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Allocation {
    network_name: String,
    #[serde(rename = "containerID")]
    container_id: String,
    if_name: String,
    ipv6: Ipv6Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipv4: Option<Ipv4Addr>,
    allocation_timestamp_ms: u64,
    metadata: Metadata,
}

impl Ipv6Checkpoint {
    /// The checkpoint of `block`, sorted by key.
    pub(crate) fn of(block: &Ipv6Block) -> Self {
        Ipv6Checkpoint {
            prefix: block.prefix(),
            eni_id: block.eni_id().to_owned(),
            next: block.next(),
            ipv4_egress: block.ipv4_egress(),
            allocations: block.assignments().cloned().collect(),
        }
    }

    /// The file's bytes.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let file = File {
            version: IPV6_CHECKPOINT_VERSION.to_owned(),
            prefix: self.prefix,
            eni_id: self.eni_id.clone(),
            next: self.next.to_string(),
            ipv4_egress: self.ipv4_egress.map(|(cidr, _)| cidr),
            next_ipv4: self.ipv4_egress.map(|(_, next)| next),
            allocations: self
                .allocations
                .iter()
                .map(|a| Allocation {
                    network_name: a.key.network.clone(),
                    container_id: a.key.container_id.clone(),
                    if_name: a.key.ifname.clone(),
                    ipv6: a.ip,
                    ipv4: a.ipv4,
                    allocation_timestamp_ms: to_ms(a.assigned_at),
                    metadata: Metadata::of(&a.pod),
                })
                .collect(),
        };
        serde_json::to_vec(&file).expect(
            "a checkpoint holds only strings, numbers and addresses, which always serialise",
        )
    }

    /// Parses the file's bytes; `path` names the file in errors.
    pub(crate) fn from_json(bytes: &[u8], path: &Path) -> Result<Self, StateError> {
        let file: File = parse_versioned(bytes, path, IPV6_CHECKPOINT_VERSION, OLDER_VERSIONS)?;
        let next = file.next.parse().map_err(|_| {
            corrupt(path)(serde::de::Error::custom(format!(
                "next {:?} is not a number",
                file.next
            )))
        })?;
        Ok(Ipv6Checkpoint {
            prefix: file.prefix,
            eni_id: file.eni_id,
            next,
            ipv4_egress: file
                .ipv4_egress
                .map(|cidr| (cidr, file.next_ipv4.unwrap_or(0))),
            allocations: file
                .allocations
                .into_iter()
                .map(|a| Ipv6Assignment {
                    key: AssignmentKey::new(a.network_name, a.container_id, a.if_name),
                    ip: a.ipv6,
                    ipv4: a.ipv4,
                    pod: a.metadata.into_pod(),
                    assigned_at: from_ms(a.allocation_timestamp_ms),
                })
                .collect(),
        })
    }

    /// Loads `path`; `None` when there is no file (first start).
    pub(crate) fn load(path: &Path) -> Result<Option<Self>, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => Ipv6Checkpoint::from_json(&bytes, path).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::io("read", path)(e)),
        }
    }

    /// Replaces `path` atomically and durably.
    pub(crate) fn save(&self, path: &Path) -> Result<(), StateError> {
        write_atomic(path, &self.to_json())
    }
}

/// An [`Ipv6Block`] whose assignments are on disk before they are answered:
/// a change is made on a copy, written, and only then adopted.
#[derive(Debug)]
pub struct DurableIpv6Block {
    block: Ipv6Block,
    path: PathBuf,
}

impl DurableIpv6Block {
    /// Wraps `block`, writing its checkpoint to `path` now (the block may
    /// differ from what the file held: another prefix, dropped entries).
    pub(crate) fn new(block: Ipv6Block, path: PathBuf) -> Result<Self, StateError> {
        Ipv6Checkpoint::of(&block).save(&path)?;
        Ok(DurableIpv6Block { block, path })
    }

    /// The block.
    pub(crate) fn block(&self) -> &Ipv6Block {
        &self.block
    }

    /// [`Ipv6Block::assign`], durable before it returns; a repeated ADD
    /// writes nothing.
    pub(crate) fn assign(
        &mut self,
        key: AssignmentKey,
        pod: PodMeta,
        now: SystemTime,
    ) -> Result<(Ipv6Assignment, bool), CommitError> {
        if let Some(held) = self.block.assignment(&key) {
            return Ok((held.clone(), false));
        }
        let mut next = self.block.clone();
        let assigned = next.assign(key, pod, now)?;
        Ipv6Checkpoint::of(&next).save(&self.path)?;
        self.block = next;
        Ok(assigned)
    }

    /// [`Ipv6Block::release`], durable before it returns; an unknown key
    /// writes nothing.
    pub(crate) fn release(
        &mut self,
        key: &AssignmentKey,
    ) -> Result<Option<Ipv6Assignment>, StateError> {
        let mut next = self.block.clone();
        let Some(released) = next.release(key) else {
            return Ok(None);
        };
        Ipv6Checkpoint::of(&next).save(&self.path)?;
        self.block = next;
        Ok(Some(released))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> AssignmentKey {
        AssignmentKey::new("weft", c, "eth0")
    }

    #[test]
    fn every_change_is_on_disk_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.json");
        let prefix: Ipv6Net = "2001:db8:0:0:1::/80".parse().unwrap();
        let block = Ipv6Block::new(prefix, "eni-1")
            .with_ipv4_egress("169.254.172.0/22".parse().unwrap(), 0);
        let mut store = DurableIpv6Block::new(block, path.clone()).unwrap();
        let pod = PodMeta {
            namespace: "default".into(),
            name: "web-0".into(),
            uid: "u1".into(),
        };
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_764_000_000_000);
        let (a, fresh) = store.assign(key("a"), pod.clone(), now).unwrap();
        assert!(fresh);
        let a = a.ip;
        store.assign(key("b"), PodMeta::default(), now).unwrap();
        store.release(&key("b")).unwrap().unwrap();
        let loaded = Ipv6Checkpoint::load(&path).unwrap().unwrap();
        assert_eq!(loaded, Ipv6Checkpoint::of(store.block()));
        assert_eq!(loaded.next, 3);
        assert_eq!(loaded.allocations.len(), 1);
        assert_eq!(
            (loaded.allocations[0].ip, &loaded.allocations[0].pod),
            (a, &pod)
        );
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(value["version"], "weft-ipam-ipv6/2");
        assert_eq!(value["allocations"][0]["ipv6"], "2001:db8::1:0:0:1");
        assert_eq!(value["allocations"][0]["ipv4"], "169.254.172.1");
        assert_eq!(
            (&value["ipv4Egress"], &value["nextIpv4"]),
            (
                &serde_json::json!("169.254.172.0/22"),
                &serde_json::json!(3)
            )
        );
        assert_eq!(value["allocations"][0]["metadata"]["k8sPodName"], "web-0");
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.json");
        let prefix: Ipv6Net = "2001:db8:0:0:1::/80".parse().unwrap();
        let mut store =
            DurableIpv6Block::new(Ipv6Block::new(prefix, "eni-1"), path.clone()).unwrap();
        // A directory where the file's temporary copy goes makes writes fail.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(
            store
                .assign(key("a"), PodMeta::default(), SystemTime::UNIX_EPOCH)
                .is_err()
        );
        assert_eq!(store.block().assignments().count(), 0);
        assert_eq!(store.block().next(), 1);
    }

    #[test]
    fn a_version_1_file_loads_without_ipv4_egress() {
        let v1 = br#"{"version":"weft-ipam-ipv6/1","prefix":"2001:db8::1:0:0:0/80","eniId":"eni-1",
            "next":"2","allocations":[{"networkName":"weft","containerID":"a","ifName":"eth0",
            "ipv6":"2001:db8::1:0:0:1","allocationTimestampMs":5,
            "metadata":{"k8sPodNamespace":"default","k8sPodName":"web-0"}}]}"#;
        let loaded = Ipv6Checkpoint::from_json(v1, Path::new("v6.json")).unwrap();
        assert_eq!((loaded.next, loaded.ipv4_egress), (2, None));
        assert_eq!(loaded.allocations[0].ipv4, None);
        assert_eq!(loaded.allocations[0].ip.to_string(), "2001:db8::1:0:0:1");
    }

    #[test]
    fn bad_files_are_refused_with_their_name() {
        let err = Ipv6Checkpoint::from_json(b"{}", Path::new("/s/v6.json")).unwrap_err();
        assert!(err.to_string().contains("/s/v6.json"), "{err}");
        let other = br#"{"version":"weft-ipam-ipv6/9","prefix":"2001:db8::/80","eniId":"e","next":"1","allocations":[]}"#;
        assert!(matches!(
            Ipv6Checkpoint::from_json(other, Path::new("x")),
            Err(StateError::UnsupportedVersion { .. })
        ));
    }
}

//! The assignment checkpoint: which pod holds which address, rewritten
//! atomically on every assign and release before the CNI call is answered.
//!
//! The format follows Amazon VPC CNI's `vpc-cni-ipam/1` file, plus the
//! pod UID, the addresses still cooling down (so a restart does not cut
//! a cooldown short), and the addresses and ENIs Weft gave back to EC2
//! within the stale-read grace period (so a stale read at a restart does
//! not bring them back; written only while there are any):
//!
//! ```json
//! {"version": "weft-ipam/1",
//!  "allocations": [{"networkName": "weft", "containerID": "abc", "ifName": "eth0",
//!                   "ipv4": "10.0.1.7", "allocationTimestampMs": 1764000000000,
//!                   "metadata": {"k8sPodNamespace": "default", "k8sPodName": "web-0",
//!                                "k8sPodUID": "..."}}],
//!  "cooling": [{"ipv4": "10.0.1.9", "releasedAtMs": 1764000000000}],
//!  "givenBack": [{"ipv4": "10.0.1.12", "givenBackAtMs": 1764000000000}],
//!  "deletedEnis": [{"eniId": "eni-0abc", "deletedAtMs": 1764000000000}]}
//! ```

use super::StateError;
use super::atomic::write_atomic;
use crate::ipam::{Assignment, AssignmentKey, CoolingAddress, Datastore, GivenBack, Now, PodMeta};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The format version this build writes and reads.
pub const CHECKPOINT_VERSION: &str = "weft-ipam/1";

/// The durable part of the datastore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Addresses held by pods.
    pub allocations: Vec<Assignment>,
    /// Released addresses still cooling down.
    pub cooling: Vec<CoolingAddress>,
    /// What Weft gave back to EC2 within the stale-read grace period.
    pub given_back: GivenBack,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    version: String,
    allocations: Vec<Allocation>,
    #[serde(default)]
    cooling: Vec<Cooling>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    given_back: Vec<GivenBackAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deleted_enis: Vec<DeletedEni>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Allocation {
    network_name: String,
    #[serde(rename = "containerID")]
    container_id: String,
    if_name: String,
    ipv4: Ipv4Addr,
    allocation_timestamp_ms: u64,
    metadata: Metadata,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Metadata {
    #[serde(rename = "k8sPodNamespace")]
    namespace: String,
    #[serde(rename = "k8sPodName")]
    name: String,
    #[serde(rename = "k8sPodUID", default)]
    uid: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Cooling {
    ipv4: Ipv4Addr,
    released_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GivenBackAddress {
    ipv4: Ipv4Addr,
    given_back_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeletedEni {
    eni_id: String,
    deleted_at_ms: u64,
}

impl Metadata {
    pub(super) fn of(pod: &PodMeta) -> Self {
        Metadata {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }
    }

    pub(super) fn into_pod(self) -> PodMeta {
        PodMeta {
            namespace: self.namespace,
            name: self.name,
            uid: self.uid,
        }
    }
}

/// A [`StateError::Corrupt`] of the file at `path`.
pub(super) fn corrupt(path: &Path) -> impl Fn(serde_json::Error) -> StateError + '_ {
    move |source| StateError::Corrupt {
        path: path.to_owned(),
        line: None,
        source,
    }
}

/// Parses a checkpoint file of version `expected` (or one of the `older`
/// versions whose files `T` reads too). The version is read first, so that
/// a file of another version is refused as such rather than as corrupt.
pub(super) fn parse_versioned<T: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    expected: &'static str,
    older: &[&str],
) -> Result<T, StateError> {
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(corrupt(path))?;
    if probe.version != expected && !older.contains(&probe.version.as_str()) {
        return Err(StateError::UnsupportedVersion {
            path: path.to_owned(),
            found: probe.version,
            expected,
        });
    }
    serde_json::from_slice(bytes).map_err(corrupt(path))
}

pub(super) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Checkpoint {
    /// The assignments, cooldowns and given-back addresses and ENIs of
    /// `store` at `now`, sorted so that the file is deterministic.
    pub fn of(store: &Datastore, now: Now) -> Self {
        let mut allocations: Vec<Assignment> = store.assignments().cloned().collect();
        allocations.sort_by(|a, b| a.key.cmp(&b.key));
        Checkpoint {
            allocations,
            cooling: store.cooling(now.mono),
            given_back: store.given_back(now),
        }
    }

    /// The file's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let file = File {
            version: CHECKPOINT_VERSION.to_owned(),
            allocations: self
                .allocations
                .iter()
                .map(|a| Allocation {
                    network_name: a.key.network.clone(),
                    container_id: a.key.container_id.clone(),
                    if_name: a.key.ifname.clone(),
                    ipv4: a.ip,
                    allocation_timestamp_ms: to_ms(a.assigned_at),
                    metadata: Metadata::of(&a.pod),
                })
                .collect(),
            cooling: self
                .cooling
                .iter()
                .map(|c| Cooling {
                    ipv4: c.ip,
                    released_at_ms: to_ms(c.released_at),
                })
                .collect(),
            given_back: self
                .given_back
                .addresses
                .iter()
                .map(|(ip, at)| GivenBackAddress {
                    ipv4: *ip,
                    given_back_at_ms: to_ms(*at),
                })
                .collect(),
            deleted_enis: self
                .given_back
                .enis
                .iter()
                .map(|(id, at)| DeletedEni {
                    eni_id: id.clone(),
                    deleted_at_ms: to_ms(*at),
                })
                .collect(),
        };
        serde_json::to_vec(&file).expect(
            "a checkpoint holds only strings, numbers and addresses, which always serialise",
        )
    }

    /// Parses the file's bytes; `path` names the file in errors. Refuses
    /// any version other than [`CHECKPOINT_VERSION`].
    pub(crate) fn from_json(bytes: &[u8], path: &Path) -> Result<Self, StateError> {
        let file: File = parse_versioned(bytes, path, CHECKPOINT_VERSION, &[])?;
        Ok(Checkpoint {
            allocations: file
                .allocations
                .into_iter()
                .map(|a| Assignment {
                    key: AssignmentKey::new(a.network_name, a.container_id, a.if_name),
                    ip: a.ipv4,
                    pod: a.metadata.into_pod(),
                    assigned_at: from_ms(a.allocation_timestamp_ms),
                })
                .collect(),
            cooling: file
                .cooling
                .into_iter()
                .map(|c| CoolingAddress {
                    ip: c.ipv4,
                    released_at: from_ms(c.released_at_ms),
                })
                .collect(),
            given_back: GivenBack {
                addresses: file
                    .given_back
                    .into_iter()
                    .map(|g| (g.ipv4, from_ms(g.given_back_at_ms)))
                    .collect(),
                enis: file
                    .deleted_enis
                    .into_iter()
                    .map(|d| (d.eni_id, from_ms(d.deleted_at_ms)))
                    .collect(),
            },
        })
    }

    /// Loads `path`; a missing file is an empty checkpoint (first start).
    /// A leftover temporary file from an interrupted write is ignored: the
    /// rename is the commit point.
    pub(crate) fn load(path: &Path) -> Result<Self, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => Checkpoint::from_json(&bytes, path),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Checkpoint::default()),
            Err(e) => Err(StateError::io("read", path)(e)),
        }
    }

    /// Replaces `path` atomically and durably.
    pub(crate) fn save(&self, path: &Path) -> Result<(), StateError> {
        write_atomic(path, &self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::super::atomic::temp_path;
    use super::*;

    fn sample(n: u8) -> Checkpoint {
        Checkpoint {
            allocations: (0..n)
                .map(|i| Assignment {
                    key: AssignmentKey::new("weft", format!("c{i}"), "eth0"),
                    ip: Ipv4Addr::new(10, 0, 1, i),
                    pod: PodMeta {
                        namespace: "default".into(),
                        name: format!("pod-{i}"),
                        uid: format!("uid-{i}"),
                    },
                    assigned_at: from_ms(1_764_000_000_000 + u64::from(i)),
                })
                .collect(),
            cooling: vec![CoolingAddress {
                ip: Ipv4Addr::new(10, 0, 2, 1),
                released_at: from_ms(1_764_000_000_500),
            }],
            given_back: GivenBack {
                addresses: vec![(Ipv4Addr::new(10, 0, 3, 1), from_ms(1_764_000_000_700))],
                enis: vec![("eni-0abc".into(), from_ms(1_764_000_000_800))],
            },
        }
    }

    #[test]
    fn round_trips_and_matches_the_documented_format() {
        let cp = sample(2);
        let json = cp.to_json();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["version"], "weft-ipam/1");
        let a = &value["allocations"][1];
        assert_eq!(a["networkName"], "weft");
        assert_eq!(a["containerID"], "c1");
        assert_eq!(a["ifName"], "eth0");
        assert_eq!(a["ipv4"], "10.0.1.1");
        assert_eq!(a["allocationTimestampMs"], 1_764_000_000_001u64);
        assert_eq!(a["metadata"]["k8sPodNamespace"], "default");
        assert_eq!(a["metadata"]["k8sPodName"], "pod-1");
        assert_eq!(a["metadata"]["k8sPodUID"], "uid-1");
        assert_eq!(value["cooling"][0]["releasedAtMs"], 1_764_000_000_500u64);
        assert_eq!(value["givenBack"][0]["ipv4"], "10.0.3.1");
        assert_eq!(value["givenBack"][0]["givenBackAtMs"], 1_764_000_000_700u64);
        assert_eq!(value["deletedEnis"][0]["eniId"], "eni-0abc");
        assert_eq!(value["deletedEnis"][0]["deletedAtMs"], 1_764_000_000_800u64);
        assert_eq!(Checkpoint::from_json(&json, Path::new("x")).unwrap(), cp);
    }

    #[test]
    fn refuses_unknown_versions_with_a_clear_message() {
        let err = Checkpoint::from_json(
            br#"{"version":"weft-ipam/2","allocations":[],"future":1}"#,
            Path::new("/s/cp.json"),
        )
        .unwrap_err();
        assert!(matches!(err, StateError::UnsupportedVersion { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("weft-ipam/2") && msg.contains("weft-ipam/1"),
            "{msg}"
        );
        let vpc_cni = br#"{"version":"vpc-cni-ipam/1","allocations":[]}"#;
        assert!(matches!(
            Checkpoint::from_json(vpc_cni, Path::new("x")),
            Err(StateError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn corrupt_files_name_the_file() {
        let err = Checkpoint::from_json(b"{\"version\":", Path::new("/s/cp.json")).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }));
        assert!(err.to_string().contains("/s/cp.json"));
        let bad_ip = br#"{"version":"weft-ipam/1","allocations":[{"networkName":"n","containerID":"c","ifName":"i","ipv4":"10.0.0.300","allocationTimestampMs":0,"metadata":{"k8sPodNamespace":"a","k8sPodName":"b"}}]}"#;
        assert!(matches!(
            Checkpoint::from_json(bad_ip, Path::new("x")),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn reads_a_file_without_uid_or_cooling() {
        let json = br#"{"version":"weft-ipam/1","allocations":[{"networkName":"n","containerID":"c","ifName":"i","ipv4":"10.0.0.3","allocationTimestampMs":5,"metadata":{"k8sPodNamespace":"a","k8sPodName":"b"}}]}"#;
        let cp = Checkpoint::from_json(json, Path::new("x")).unwrap();
        assert_eq!(cp.allocations[0].pod.uid, "");
        assert!(cp.cooling.is_empty());
        assert_eq!(cp.given_back, GivenBack::default());
        // Nothing given back: the file is what earlier versions wrote.
        assert!(
            !String::from_utf8(cp.to_json())
                .unwrap()
                .contains("givenBack")
        );
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Checkpoint::load(&dir.path().join("none.json")).unwrap(),
            Checkpoint::default()
        );
    }

    /// A crash at each step of the atomic write: before the temp file is
    /// complete (any truncation of it), after it is complete but before the
    /// rename, and after the rename. Loading gives the old or the new state.
    #[test]
    fn a_crash_at_any_step_of_a_write_loads_old_or_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let old = sample(3);
        let new = sample(4);
        let new_bytes = new.to_json();

        // First write ever, interrupted: only (part of) a temp file exists.
        for len in [0, 1, new_bytes.len() / 2, new_bytes.len()] {
            std::fs::write(temp_path(&path), &new_bytes[..len]).unwrap();
            assert_eq!(Checkpoint::load(&path).unwrap(), Checkpoint::default());
        }

        old.save(&path).unwrap();
        for len in 0..=new_bytes.len() {
            std::fs::write(temp_path(&path), &new_bytes[..len]).unwrap();
            assert_eq!(
                Checkpoint::load(&path).unwrap(),
                old,
                "temp truncated at {len}"
            );
        }
        // The rename happened; the directory fsync may not have: the file is
        // the new one whole.
        std::fs::rename(temp_path(&path), &path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), new);
        // The next write works over whatever temp file is left.
        std::fs::write(temp_path(&path), b"{\"trunc").unwrap();
        old.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), old);
    }
}

//! The journal of EC2 operations in flight.
//!
//! Before the agent sends an EC2 call that changes the node's ENIs it
//! records an *intent* (a unique [`OpId`] and the call's parameters), and
//! after the call's outcome is applied it records that the intent is done.
//! On start, intents without a done record are handed back so the caller
//! can finish or undo them instead of leaking ENIs or addresses.
//!
//! The op id doubles as the call's idempotency token (EC2 `ClientToken`,
//! see [`OpId::client_token`]) and should be put in a tag of a created ENI,
//! so that a restart can find an ENI whose `CreateNetworkInterface` answer
//! was lost. For multi-step flows (create, then attach) the caller begins
//! the next step's intent before finishing the previous one, so that a
//! crash in between always leaves one of them pending.
//!
//! File format: JSON lines, appended and `fsync`ed one at a time:
//! `{"begin":{"id":"…","startedAtMs":…,"op":{"kind":"create-eni",…}}}` and
//! `{"done":"…"}`. A crash can leave only the last line torn; it is
//! ignored on load. The file is compacted (rewritten atomically with only
//! the pending intents) when opened and when done records pile up.

use super::StateError;
use super::atomic::{sync_parent, write_atomic};
use crate::ipam::SgSet;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Records appended since the last compaction that trigger one.
const COMPACT_AFTER: usize = 256;

/// Identifies one operation; unique across restarts (random 64 bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(String);

impl OpId {
    fn random() -> Self {
        OpId(format!("{:016x}", rand::random::<u64>()))
    }

    /// The EC2 `ClientToken` for this operation's call: EC2 answers a
    /// retried call with the same token with the first call's result.
    pub fn client_token(&self) -> String {
        format!("weft-{}", self.0)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An EC2 operation that changes the node's ENIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Operation {
    /// `CreateNetworkInterface`; the ENI carries the op id in a tag.
    CreateEni {
        /// Subnet chosen by the subnet-selection policy.
        subnet_id: String,
        /// The group's security groups.
        security_groups: SgSet,
        /// Secondary IPs to create it with.
        ips: u32,
        /// Prefixes to create it with.
        prefixes: u32,
    },
    /// `AttachNetworkInterface`.
    AttachEni {
        /// The ENI.
        eni_id: String,
        /// The device index asked for.
        device_index: u32,
    },
    /// `AssignPrivateIpAddresses` (secondary IPs or prefixes).
    AssignAddresses {
        /// The ENI.
        eni_id: String,
        /// Secondary IPs asked for.
        ips: u32,
        /// Prefixes asked for.
        prefixes: u32,
    },
    /// `UnassignPrivateIpAddresses`.
    UnassignAddresses {
        /// The ENI.
        eni_id: String,
        /// Secondary IPs given back.
        ips: Vec<Ipv4Addr>,
        /// Prefixes given back.
        prefixes: Vec<Ipv4Net>,
    },
    /// `DetachNetworkInterface`.
    DetachEni {
        /// The ENI.
        eni_id: String,
        /// Its attachment id.
        attachment_id: String,
    },
    /// `DeleteNetworkInterface`.
    DeleteEni {
        /// The ENI.
        eni_id: String,
    },
}

/// A journaled operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    /// Its id.
    pub id: OpId,
    /// When it was begun (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// What it does.
    pub op: Operation,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Record {
    Begin(Intent),
    Done(OpId),
}

/// The open journal. Holds the pending intents in memory, in the order
/// they were begun.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    pending: Vec<Intent>,
    appended: usize,
}

fn line(record: &Record) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(record)
        .expect("journal records hold only strings, numbers and addresses, which always serialise");
    bytes.push(b'\n');
    bytes
}

/// Parses a journal's bytes into its pending intents. Only the last line
/// may be invalid (a write torn by a crash).
fn parse(bytes: &[u8], path: &Path) -> Result<Vec<Intent>, StateError> {
    let mut pending: Vec<Intent> = Vec::new();
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let torn_tail = !bytes.ends_with(b"\n");
    for (i, raw) in lines.iter().enumerate() {
        match serde_json::from_slice::<Record>(raw) {
            Ok(Record::Begin(intent)) => pending.push(intent),
            Ok(Record::Done(id)) => pending.retain(|p| p.id != id),
            Err(_) if torn_tail && i + 1 == lines.len() => {}
            Err(source) => {
                return Err(StateError::Corrupt {
                    path: path.to_owned(),
                    line: Some(i + 1),
                    source,
                });
            }
        }
    }
    Ok(pending)
}

impl Journal {
    /// Opens (or creates) the journal at `path` and compacts it. Returns
    /// the journal and the intents a previous run left pending.
    pub fn open(path: &Path) -> Result<(Self, Vec<Intent>), StateError> {
        let pending = match std::fs::read(path) {
            Ok(bytes) => parse(&bytes, path)?,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StateError::io("read", path)(e)),
        };
        let journal = Journal::rewrite(path.to_owned(), pending)?;
        let pending = journal.pending.clone();
        Ok((journal, pending))
    }

    /// Atomically replaces the file with the pending intents only and
    /// reopens it for appending.
    fn rewrite(path: PathBuf, pending: Vec<Intent>) -> Result<Self, StateError> {
        let bytes: Vec<u8> = pending
            .iter()
            .flat_map(|i| line(&Record::Begin(i.clone())))
            .collect();
        write_atomic(&path, &bytes)?;
        let file = OpenOptions::new()
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(StateError::io("open", &path))?;
        sync_parent(&path)?;
        Ok(Journal {
            path,
            file,
            pending,
            appended: 0,
        })
    }

    fn append(&mut self, record: &Record) -> Result<(), StateError> {
        self.file
            .write_all(&line(record))
            .and_then(|()| self.file.sync_data())
            .map_err(StateError::io("append to", &self.path))?;
        self.appended += 1;
        Ok(())
    }

    /// Durably records that `op` is about to be sent, under a new id.
    pub fn begin(&mut self, op: Operation, now: SystemTime) -> Result<Intent, StateError> {
        let intent = Intent {
            id: OpId::random(),
            started_at_ms: now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            op,
        };
        self.append(&Record::Begin(intent.clone()))?;
        self.pending.push(intent.clone());
        Ok(intent)
    }

    /// Durably records that operation `id` is finished (done or undone).
    /// Finishing an id that is not pending does nothing.
    pub fn finish(&mut self, id: &OpId) -> Result<(), StateError> {
        if !self.pending.iter().any(|p| &p.id == id) {
            return Ok(());
        }
        self.append(&Record::Done(id.clone()))?;
        self.pending.retain(|p| &p.id != id);
        if self.appended >= COMPACT_AFTER {
            let path = self.path.clone();
            *self = Journal::rewrite(path, std::mem::take(&mut self.pending))?;
        }
        Ok(())
    }

    /// The operations begun and not finished, oldest first.
    pub fn pending(&self) -> &[Intent] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create() -> Operation {
        Operation::CreateEni {
            subnet_id: "subnet-1".into(),
            security_groups: SgSet::new(["sg-1"]),
            ips: 5,
            prefixes: 0,
        }
    }

    #[test]
    fn pending_intents_survive_a_restart_and_finished_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, pending) = Journal::open(&path).unwrap();
        assert!(pending.is_empty());
        let a = j.begin(create(), SystemTime::now()).unwrap();
        let attach = Operation::AttachEni {
            eni_id: "eni-1".into(),
            device_index: 1,
        };
        let b = j.begin(attach.clone(), SystemTime::now()).unwrap();
        j.finish(&a.id).unwrap();
        j.finish(&a.id).unwrap();
        assert_eq!(j.pending(), std::slice::from_ref(&b));
        drop(j);
        let (j, pending) = Journal::open(&path).unwrap();
        assert_eq!(pending, vec![b.clone()]);
        assert_eq!(pending[0].op, attach);
        assert_ne!(a.id, b.id);
        assert!(b.id.client_token().starts_with("weft-"));
        // Opening compacted the file to the pending intent alone.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"kind\":\"attach-eni\""), "{text}");
        drop(j);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&path).unwrap();
        let a = j.begin(create(), SystemTime::now()).unwrap();
        drop(j);
        let full = line(&Record::Done(a.id.clone()));
        // Every torn prefix of the done record short of its closing brace:
        // the intent stays pending.
        for len in 0..full.len() - 1 {
            let mut bytes = line(&Record::Begin(a.clone()));
            bytes.extend_from_slice(&full[..len]);
            std::fs::write(&path, &bytes).unwrap();
            let (j, pending) = Journal::open(&path).unwrap();
            assert_eq!(pending, vec![a.clone()], "torn at {len}");
            drop(j);
            assert!(std::fs::read(&path).unwrap().ends_with(b"\n"));
        }
        // The whole record finishes it, even without its newline.
        for len in [full.len() - 1, full.len()] {
            let mut bytes = line(&Record::Begin(a.clone()));
            bytes.extend_from_slice(&full[..len]);
            std::fs::write(&path, &bytes).unwrap();
            assert!(Journal::open(&path).unwrap().1.is_empty());
        }
    }

    #[test]
    fn corruption_before_the_last_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, b"{not json}\n{\"done\":\"x\"}\n").unwrap();
        let err = Journal::open(&path).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { line: Some(1), .. }));
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn compacts_when_done_records_pile_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&path).unwrap();
        let keep = j
            .begin(
                Operation::DeleteEni {
                    eni_id: "eni-9".into(),
                },
                SystemTime::now(),
            )
            .unwrap();
        for _ in 0..COMPACT_AFTER {
            let i = j.begin(create(), SystemTime::now()).unwrap();
            j.finish(&i.id).unwrap();
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < COMPACT_AFTER, "{lines} lines");
        drop(j);
        assert_eq!(Journal::open(&path).unwrap().1, vec![keep]);
    }

    #[test]
    fn operations_serialise_with_kebab_kinds() {
        let op = Operation::UnassignAddresses {
            eni_id: "eni-1".into(),
            ips: vec![Ipv4Addr::new(10, 0, 0, 1)],
            prefixes: vec!["10.0.16.0/28".parse().unwrap()],
        };
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"unassign-addresses","eniId":"eni-1","ips":["10.0.0.1"],"prefixes":["10.0.16.0/28"]}"#
        );
    }
}

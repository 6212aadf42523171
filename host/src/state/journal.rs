//! The journal of EC2 operations in flight.
//!
//! Before the agent sends an EC2 call that changes the node's ENIs it
//! records an *intent* (a unique [`OpId`] and the call's parameters), and
//! after the call's outcome is applied it records that the intent is done.
//! On start, intents without a done record are handed back so the caller
//! can finish or undo them instead of leaking ENIs or addresses.
//!
//! The op id is put in a tag of a created ENI (`TAG_OPERATION`), so that a
//! restart can find an ENI whose `CreateNetworkInterface` answer was lost. For multi-step flows (create, then attach) the caller begins
//! the next step's intent before finishing the previous one, so that a
//! crash in between always leaves one of them pending.
//!
//! File format: JSON lines, appended and `fsync`ed one at a time:
//! `{"begin":{"id":"…","startedAtMs":…,"op":{"kind":"create-eni",…}}}` and
//! `{"done":"…"}`. The file is compacted (rewritten atomically with only the
//! pending intents) when opened and when done records pile up.
//!
//! Torn appends: an append that fails part-way (`ENOSPC` on a full tmpfs)
//! is cut back off the file before the error is returned, so later appends
//! start on a clean line. A crash (or a failed cut) can still leave a torn
//! record, either as the last line or glued to the front of the next
//! append's record; on load both are recognised as an unfinished append and
//! dropped. That is safe: the call whose record it was got an error, so a
//! torn `begin` was never sent and a torn `done` leaves its intent pending,
//! which recovery re-checks. Anything else that does not parse is refused.

use super::StateError;
use super::atomic::{sync_parent, write_atomic};
use crate::ipam::SgSet;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Write};
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
        eni_id: String,
        /// The device index asked for.
        device_index: u32,
    },
    /// `AssignPrivateIpAddresses` (secondary IPs or prefixes).
    AssignAddresses {
        eni_id: String,
        /// Secondary IPs asked for.
        ips: u32,
        /// Prefixes asked for.
        prefixes: u32,
    },
    /// `UnassignPrivateIpAddresses`.
    UnassignAddresses {
        eni_id: String,
        /// Secondary IPs given back.
        ips: Vec<Ipv4Addr>,
        /// Prefixes given back.
        prefixes: Vec<Ipv4Net>,
    },
    /// `DetachNetworkInterface`.
    DetachEni {
        eni_id: String,
        attachment_id: String,
    },
    /// `DeleteNetworkInterface`.
    DeleteEni { eni_id: String },
}

/// A journaled operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
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

/// What the journal appends to: its file, or in tests a file whose writes
/// fail part-way.
trait AppendFile: fmt::Debug + Send + Sync {
    /// Appends `bytes` and makes them durable.
    fn append_synced(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Cuts the file back to `len` bytes, durably.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl AppendFile for File {
    fn append_synced(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).and_then(|()| self.sync_data())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len).and_then(|()| self.sync_data())
    }
}

/// The open journal. Holds the pending intents in memory, in the order
/// they were begun.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Box<dyn AppendFile>,
    /// Length of the file up to its last complete record.
    len: u64,
    /// A failed append could not be cut back: the file ends in a torn
    /// record until a cut succeeds.
    torn: bool,
    pending: Vec<Intent>,
    appended: usize,
}

fn line(record: &Record) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(record)
        .expect("journal records hold only strings, numbers and addresses, which always serialise");
    bytes.push(b'\n');
    bytes
}

/// Parses a journal's bytes into its pending intents, dropping records torn
/// by an unfinished append (see the module docs).
fn parse(bytes: &[u8], path: &Path) -> Result<Vec<Intent>, StateError> {
    let mut pending: Vec<Intent> = Vec::new();
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let torn_tail = !bytes.ends_with(b"\n");
    for (i, raw) in lines.iter().enumerate() {
        let record = match serde_json::from_slice::<Record>(raw) {
            Ok(record) => record,
            Err(_) if torn_tail && i + 1 == lines.len() && is_record_start(raw) => continue,
            Err(source) => match after_torn_records(raw) {
                Some(record) => record,
                None => {
                    return Err(StateError::Corrupt {
                        path: path.to_owned(),
                        line: Some(i + 1),
                        source,
                    });
                }
            },
        };
        match record {
            Record::Begin(intent) => pending.push(intent),
            Record::Done(id) => pending.retain(|p| p.id != id),
        }
    }
    Ok(pending)
}

/// How every record line starts.
const RECORD_STARTS: [&[u8]; 2] = [b"{\"begin\":", b"{\"done\":"];

/// Whether `bytes` is how a record starts (or a prefix of that): what an
/// append leaves when it is cut short.
fn is_record_start(bytes: &[u8]) -> bool {
    RECORD_STARTS
        .iter()
        .any(|start| bytes.starts_with(start) || start.starts_with(bytes))
}

/// The complete record at the end of `line` when everything before it is
/// torn records: a record start further on begins a record that parses,
/// and what precedes it starts like a record. `None` for any other line.
fn after_torn_records(line: &[u8]) -> Option<Record> {
    (1..line.len())
        .filter(|&at| {
            is_record_start(&line[..at]) && RECORD_STARTS.iter().any(|s| line[at..].starts_with(s))
        })
        .find_map(|at| serde_json::from_slice::<Record>(&line[at..]).ok())
}

impl Journal {
    /// Opens (or creates) the journal at `path` and compacts it. Returns
    /// the journal and the intents a previous run left pending.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<Intent>), StateError> {
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
            file: Box::new(file),
            len: bytes.len() as u64,
            torn: false,
            pending,
            appended: 0,
        })
    }

    /// Appends `record` durably. On failure the file is cut back to its
    /// last complete record, so a later append never follows a torn one.
    fn append(&mut self, record: &Record) -> Result<(), StateError> {
        if self.torn {
            self.cut_back()
                .map_err(StateError::io("cut a torn record off", &self.path))?;
        }
        let bytes = line(record);
        if let Err(e) = self.file.append_synced(&bytes) {
            if let Err(cut) = self.cut_back() {
                tracing::warn!(path = %self.path.display(), error = %cut, "could not cut a failed journal append back; the next append retries, a restart drops it");
            }
            return Err(StateError::io("append to", &self.path)(e));
        }
        self.len += bytes.len() as u64;
        self.appended += 1;
        Ok(())
    }

    /// Truncates the file to its last complete record.
    fn cut_back(&mut self) -> io::Result<()> {
        self.torn = true;
        self.file.truncate(self.len)?;
        self.torn = false;
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

    /// The journal's file, whose next append writes only `keep` bytes and
    /// fails, as `write_all` does when the disk fills part-way.
    #[derive(Debug)]
    struct ShortWrite {
        file: File,
        keep: Option<usize>,
    }

    impl AppendFile for ShortWrite {
        fn append_synced(&mut self, bytes: &[u8]) -> io::Result<()> {
            match self.keep.take() {
                Some(keep) => {
                    self.file.write_all(&bytes[..keep])?;
                    Err(io::Error::from_raw_os_error(libc::ENOSPC))
                }
                None => self.file.append_synced(bytes),
            }
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.file.truncate(len)
        }
    }

    #[test]
    fn a_failed_append_is_cut_back_and_later_appends_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&path).unwrap();
        let a = j.begin(create(), SystemTime::now()).unwrap();
        let before = std::fs::read(&path).unwrap();
        j.file = Box::new(ShortWrite {
            file: OpenOptions::new().append(true).open(&path).unwrap(),
            keep: Some(40),
        });
        let err = j.begin(create(), SystemTime::now()).unwrap_err();
        assert!(err.to_string().contains("append to"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the torn record was cut off"
        );
        let c = j.begin(create(), SystemTime::now()).unwrap();
        drop(j);
        assert_eq!(Journal::open(&path).unwrap().1, vec![a, c]);
    }

    #[test]
    fn a_torn_record_followed_by_later_appends_is_dropped_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&path).unwrap();
        let a = j.begin(create(), SystemTime::now()).unwrap();
        let b = j.begin(create(), SystemTime::now()).unwrap();
        let c = j.begin(create(), SystemTime::now()).unwrap();
        drop(j);
        let (begin_b, done_a) = (line(&Record::Begin(b)), line(&Record::Done(a.id.clone())));
        // A torn begin (its call failed, so nothing was sent): dropped.
        for len in 1..begin_b.len() - 1 {
            let mut bytes = line(&Record::Begin(a.clone()));
            bytes.extend_from_slice(&begin_b[..len]);
            bytes.extend(line(&Record::Begin(c.clone())));
            bytes.extend(done_a.clone());
            std::fs::write(&path, &bytes).unwrap();
            let (j, pending) =
                Journal::open(&path).unwrap_or_else(|e| panic!("torn at {len}: {e}"));
            assert_eq!(pending, vec![c.clone()], "torn at {len}");
            drop(j);
            // Opening rewrote the file without the tear.
            assert_eq!(Journal::open(&path).unwrap().1, vec![c.clone()]);
        }
        // A torn done (its call failed): the intent stays pending.
        let mut bytes = line(&Record::Begin(a.clone()));
        bytes.extend_from_slice(&done_a[..10]);
        bytes.extend(line(&Record::Begin(c.clone())));
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Journal::open(&path).unwrap().1, vec![a, c]);
    }

    #[test]
    fn garbage_glued_to_a_record_is_still_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, b"xx{\"done\":\"1\"}\n{\"done\":\"2\"}\n").unwrap();
        let err = Journal::open(&path).unwrap_err();
        assert!(
            matches!(err, StateError::Corrupt { line: Some(1), .. }),
            "{err}"
        );
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

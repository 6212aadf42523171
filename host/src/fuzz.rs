//! Entry points of the `cargo fuzz` targets in `fuzz/host/`: each takes
//! arbitrary input, must never panic, and checks what must hold of whatever
//! it accepts. Compiled under `cargo fuzz` (`--cfg fuzzing`) and for this
//! crate's tests, which replay the committed corpora (`fuzz/host/corpus/`).

use crate::policy::validate;
use crate::state::{Checkpoint, Journal};
use std::path::Path;
use weft_policy_sdk::{Tag, pool, subnet};

/// A checkpoint file as the agent reads it at start: whatever loads must
/// save and load again unchanged (nothing is lost by a restart).
pub(crate) fn checkpoint(bytes: &[u8]) {
    let path = Path::new("fuzz-checkpoint.json");
    let Ok(checkpoint) = Checkpoint::from_json(bytes, path) else {
        return;
    };
    let again = Checkpoint::from_json(&checkpoint.to_json(), path)
        .unwrap_or_else(|e| panic!("a saved checkpoint does not load: {e}"));
    assert_eq!(again, checkpoint, "a checkpoint changed across a save");
}

/// A journal file as the agent opens it at start (in `dir`, a tmpfs
/// directory): whatever opens must open again with the same pending
/// operations (compaction loses nothing).
pub(crate) fn journal(bytes: &[u8], dir: &Path) {
    let path = dir.join("journal");
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let Ok((journal, pending)) = Journal::open(&path) else {
        return;
    };
    drop(journal);
    let (_, again) =
        Journal::open(&path).unwrap_or_else(|e| panic!("a compacted journal does not open: {e}"));
    assert_eq!(again, pending, "pending operations changed across a reopen");
}

/// Policy outputs decoded from `data` (see [`Input`]) against the host's
/// validation: a pool decision against a pool state, a security-group list
/// against an allowlist, a subnet choice against candidates.
pub(crate) fn policy_output(data: &[u8]) {
    let mut input = Input(data);
    let state = input.pool_state();
    let decision = input.pool_decision();
    pool_decision(decision, &state);
    let groups = input.list(|i| match i.u8() % 2 {
        0 => sg_id(i.u8()),
        _ => i.string(),
    });
    let allowed = (input.u8() % 2 == 0).then(|| input.list(|i| sg_id(i.u8())));
    security_groups(groups, allowed.as_deref());
    let candidates = input.list(|i| {
        let n = i.u8();
        subnet::Candidate {
            id: subnet_id(n),
            availability_zone: "us-west-2a".into(),
            cidr: "10.0.0.0/24".into(),
            free_ips: u64::from(n),
            tags: vec![Tag::new("kubernetes.io/role/cni", "1")],
        }
    });
    let choice = match input.u8() % 3 {
        0 => subnet::Choice::UseSubnet(subnet_id(input.u8())),
        1 => subnet::Choice::UseSubnet(input.string()),
        _ => subnet::Choice::Refuse(input.string()),
    };
    subnet_choice(choice, &candidates);
}

/// Fuzz bytes read front to back; zeros once they run out. Identifiers come
/// from small sets, so that outputs name the input's ENIs, groups and
/// subnets as often as not.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A length-prefixed string, lossily decoded.
    fn string(&mut self) -> String {
        let len = usize::from(self.u8()).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    /// Up to 15 items.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let len = self.u8() % 16;
        (0..len).map(|_| item(self)).collect()
    }

    fn pool_state(&mut self) -> pool::PoolState {
        let enis = self.list(|i| pool::Eni {
            id: eni_id(i.u8()),
            device_index: u32::from(i.u8() % 4),
            subnet_id: subnet_id(0),
            ips: u32::from(i.u8()),
            prefixes: u32::from(i.u8() % 8),
            assigned: u32::from(i.u8()),
            cooling: u32::from(i.u8() % 4),
            age_seconds: 600,
        });
        pool::PoolState {
            group: vec![sg_id(0)],
            default_group: true,
            enis,
            node_enis: u32::from(self.u8() % 16),
            node_addresses: u32::from(self.u8()),
            node_assigned: 0,
            limits: pool::InstanceLimits {
                max_enis: u32::from(self.u8() % 16),
                ipv4_per_eni: u32::from(self.u8() % 64),
                prefix_delegation: self.u8().is_multiple_of(2),
                max_pods: u32::from(self.u8()),
            },
            pending_adds: 0,
            activity: Default::default(),
        }
    }

    fn pool_decision(&mut self) -> pool::PoolDecision {
        pool::PoolDecision {
            changes: self.list(|i| pool::EniChange {
                eni_id: eni_id(i.u8()),
                add_ips: i.u32(),
                add_prefixes: i.u32(),
                release_ips: i.u32(),
                release_prefixes: i.u32(),
            }),
            create: self.list(|i| pool::NewEni {
                ips: i.u32(),
                prefixes: i.u32(),
            }),
            release: self.list(|i| eni_id(i.u8())),
            reason: self.string(),
        }
    }
}

fn eni_id(n: u8) -> String {
    format!("eni-{:017x}", n % 6)
}

fn sg_id(n: u8) -> String {
    format!("sg-{:08x}", n % 8)
}

fn subnet_id(n: u8) -> String {
    format!("subnet-{:017x}", n % 4)
}

/// A pool decision against a state: the clamped decision stays within the
/// instance's limits and is a fixed point (clamping it again changes
/// nothing).
fn pool_decision(decision: pool::PoolDecision, state: &pool::PoolState) {
    let clamped = validate::pool_decision(decision, state);
    let d = &clamped.decision;
    let limits = &state.limits;
    assert!(
        d.create.len() as u64 + u64::from(state.node_enis) <= u64::from(limits.max_enis)
            || d.create.is_empty(),
        "creates past max-enis: {d:?}"
    );
    let slots = limits.ipv4_per_eni.saturating_sub(1);
    for new in &d.create {
        assert!(
            u64::from(new.ips) + u64::from(new.prefixes) <= u64::from(slots),
            "a new ENI past its slots: {new:?}"
        );
    }
    for change in &d.changes {
        let eni = state
            .enis
            .iter()
            .find(|e| e.id == change.eni_id)
            .unwrap_or_else(|| panic!("a change to an unknown ENI: {change:?}"));
        assert!(change.release_ips <= eni.ips && change.release_prefixes <= eni.prefixes);
        assert!(!d.release.contains(&eni.id), "a change to a released ENI");
    }
    for id in &d.release {
        let eni = state.enis.iter().find(|e| &e.id == id);
        assert!(
            eni.is_some_and(|e| e.device_index != 0 && e.assigned == 0 && e.cooling == 0),
            "releases ENI {id} which must stay"
        );
    }
    assert!(
        d.reason.len() <= validate::MAX_REASON_BYTES && !d.reason.chars().any(char::is_control)
    );
    let again = validate::pool_decision(clamped.decision.clone(), state);
    assert_eq!(
        again.decision, clamped.decision,
        "clamping is not idempotent"
    );
    assert!(again.adjustments.is_empty(), "{:?}", again.adjustments);
}

/// A security-group answer: what is accepted is well-formed, allowed, at
/// most five and free of duplicates.
fn security_groups(groups: Vec<String>, allowed: Option<&[String]>) {
    let Ok(out) = validate::security_groups(groups, allowed) else {
        return;
    };
    assert!(!out.is_empty() && out.len() <= validate::MAX_SECURITY_GROUPS);
    for (i, id) in out.iter().enumerate() {
        assert!(validate::is_security_group_id(id), "{id:?}");
        assert!(allowed.is_none_or(|a| a.contains(id)), "{id:?} not allowed");
        assert!(!out[..i].contains(id), "{id:?} twice");
    }
}

/// A subnet choice: an accepted subnet is a candidate; a refusal is
/// capped and printable.
fn subnet_choice(choice: subnet::Choice, candidates: &[subnet::Candidate]) {
    match validate::subnet_choice(choice, candidates) {
        Ok(subnet::Choice::UseSubnet(id)) => {
            assert!(candidates.iter().any(|c| c.id == id), "{id:?}");
        }
        Ok(subnet::Choice::Refuse(reason)) => {
            assert!(reason.len() <= validate::MAX_REASON_BYTES);
            assert!(!reason.chars().any(char::is_control), "{reason:?}");
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input of a committed corpus (`fuzz/host/corpus/<target>/`).
    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/host/corpus")
            .join(target);
        let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| std::fs::read(entry.expect("entry").path()).expect("input"))
            .collect();
        assert!(!inputs.is_empty(), "{} is empty", dir.display());
        inputs
    }

    #[test]
    fn the_committed_corpora_replay_without_a_failure() {
        for input in corpus("checkpoint") {
            checkpoint(&input);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        for input in corpus("journal") {
            journal(&input, dir.path());
        }
        for input in corpus("policy_output") {
            policy_output(&input);
        }
    }
}

//! Validation of every policy output before anything acts on it. Pure.
//!
//! Subnet and security-group answers are either accepted or rejected
//! (the rejection is an invalid output). Pool decisions are repaired instead:
//! whatever the instance cannot do is clamped away, and every adjustment is
//! reported so the host can log it.

use super::text::{MAX_POLICY_TEXT_BYTES, sanitize};
use weft_policy_sdk::{pool, subnet};

/// At most this many security groups per ENI (the EC2 default quota).
pub(crate) const MAX_SECURITY_GROUPS: usize = 5;
/// Longest pool-decision reason, subnet or security-group refusal kept, in
/// bytes; control characters in them are escaped.
pub(crate) const MAX_REASON_BYTES: usize = MAX_POLICY_TEXT_BYTES;
/// Pod addresses per /28 prefix.
const PREFIX_ADDRESSES: u64 = 16;

/// Whether `id` is a well-formed security group id: `sg-` followed by 8 or
/// 17 lowercase hex digits.
pub(crate) fn is_security_group_id(id: &str) -> bool {
    id.strip_prefix("sg-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Checks a subnet choice: a chosen subnet must be one of the candidates;
/// a refusal's reason is sanitised ([`refusal`]).
pub fn subnet_choice(
    choice: subnet::Choice,
    candidates: &[subnet::Candidate],
) -> Result<subnet::Choice, String> {
    match choice {
        subnet::Choice::UseSubnet(id) if !candidates.iter().any(|c| c.id == id) => Err(format!(
            "chose subnet {} which is not one of the {} candidates",
            quoted(&id),
            candidates.len()
        )),
        subnet::Choice::Refuse(reason) => Ok(subnet::Choice::Refuse(refusal(&reason))),
        choice => Ok(choice),
    }
}

/// A policy's refusal or reason as the host keeps it: at most
/// [`MAX_REASON_BYTES`], control characters escaped.
pub(crate) fn refusal(text: &str) -> String {
    sanitize(text, MAX_REASON_BYTES)
}

/// Checks a security-group list: at least one, at most
/// [`MAX_SECURITY_GROUPS`] after removing duplicates, every id well-formed
/// and, when `allowed` is given, in it. Returns the de-duplicated list in
/// the policy's order.
pub fn security_groups(
    groups: Vec<String>,
    allowed: Option<&[String]>,
) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(groups.len().min(MAX_SECURITY_GROUPS));
    for id in groups {
        if !is_security_group_id(&id) {
            return Err(format!(
                "returned {} which is not a security group id (sg- and 8 or 17 lowercase hex digits)",
                quoted(&id)
            ));
        }
        if let Some(allowed) = allowed
            && !allowed.contains(&id)
        {
            return Err(format!(
                "returned {id} which is not in allowed-security-groups"
            ));
        }
        if !out.contains(&id) {
            if out.len() == MAX_SECURITY_GROUPS {
                return Err(format!(
                    "returned more than {MAX_SECURITY_GROUPS} distinct security groups"
                ));
            }
            out.push(id);
        }
    }
    if out.is_empty() {
        return Err("returned no security groups".to_owned());
    }
    Ok(out)
}

/// A pool decision after clamping, with what was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clamped {
    /// The decision the host may act on.
    pub decision: pool::PoolDecision,
    /// One sentence per adjustment; empty when the decision was valid.
    pub adjustments: Vec<String>,
}

/// Clamps a pool decision to what the state and the instance allow:
/// * changes and releases naming an ENI not in the group are dropped, as
///   are duplicates and changes to an ENI that is being released;
/// * the primary ENI (device index 0) and ENIs with assigned or cooling
///   addresses are never released;
/// * per ENI, IPs plus prefixes never exceed `ipv4-per-eni - 1` slots, and
///   prefixes are only added where prefix delegation is available;
/// * releases never exceed what the ENI holds free;
/// * new ENIs never exceed `max-enis`;
/// * the node's pod addresses never exceed `max-pods`, except that a /28
///   prefix is only ever added whole (it is added while the node holds
///   fewer than `max-pods` addresses).
pub fn pool_decision(decision: pool::PoolDecision, state: &pool::PoolState) -> Clamped {
    let mut notes = Vec::new();
    let limits = &state.limits;
    let slots_per_eni = limits.ipv4_per_eni.saturating_sub(1);
    let mut budget = AddressBudget {
        held: u64::from(state.node_addresses),
        max: u64::from(limits.max_pods),
    };

    let release = releases(decision.release, state, &mut notes);

    let mut changes: Vec<pool::EniChange> = Vec::new();
    for change in decision.changes {
        let Some(eni) = state.enis.iter().find(|e| e.id == change.eni_id) else {
            notes.push(format!(
                "dropped a change to unknown ENI {}",
                quoted(&change.eni_id)
            ));
            continue;
        };
        if changes.iter().any(|c| c.eni_id == eni.id) {
            notes.push(format!("dropped a second change to ENI {}", eni.id));
            continue;
        }
        if release.contains(&eni.id) {
            notes.push(format!(
                "dropped a change to ENI {} which is being released",
                eni.id
            ));
            continue;
        }
        let used = eni.ips.saturating_add(eni.prefixes);
        let free_slots = slots_per_eni.saturating_sub(used);
        let (add_ips, add_prefixes) = clamp_adds(
            change.add_ips,
            change.add_prefixes,
            free_slots,
            limits.prefix_delegation,
            &mut budget,
        );
        note_clamp(&mut notes, &eni.id, "add-ips", change.add_ips, add_ips);
        note_clamp(
            &mut notes,
            &eni.id,
            "add-prefixes",
            change.add_prefixes,
            add_prefixes,
        );

        let free = u64::from(eni.free());
        let release_prefixes = change
            .release_prefixes
            .min(eni.prefixes)
            .min(u32::try_from(free / PREFIX_ADDRESSES).unwrap_or(u32::MAX));
        let left = free - u64::from(release_prefixes) * PREFIX_ADDRESSES;
        let release_ips = change
            .release_ips
            .min(eni.ips)
            .min(u32::try_from(left).unwrap_or(u32::MAX));
        note_clamp(
            &mut notes,
            &eni.id,
            "release-prefixes",
            change.release_prefixes,
            release_prefixes,
        );
        note_clamp(
            &mut notes,
            &eni.id,
            "release-ips",
            change.release_ips,
            release_ips,
        );

        changes.push(pool::EniChange {
            eni_id: eni.id.clone(),
            add_ips,
            add_prefixes,
            release_ips,
            release_prefixes,
        });
    }

    let free_eni_slots = limits.max_enis.saturating_sub(state.node_enis) as usize;
    let requested = decision.create.len();
    let mut create = Vec::new();
    for (i, new) in decision.create.into_iter().take(free_eni_slots).enumerate() {
        let (ips, prefixes) = clamp_adds(
            new.ips,
            new.prefixes,
            slots_per_eni,
            limits.prefix_delegation,
            &mut budget,
        );
        let label = format!("new ENI #{}", i + 1);
        note_clamp(&mut notes, &label, "ips", new.ips, ips);
        note_clamp(&mut notes, &label, "prefixes", new.prefixes, prefixes);
        create.push(pool::NewEni { ips, prefixes });
    }
    if requested > create.len() {
        notes.push(format!(
            "create clamped from {requested} to {} ENIs (max-enis {}, attached {})",
            create.len(),
            limits.max_enis,
            state.node_enis
        ));
    }

    let reason = refusal(&decision.reason);
    if reason != decision.reason {
        notes.push(format!(
            "reason of {} bytes cut to {MAX_REASON_BYTES} bytes, control characters escaped",
            decision.reason.len()
        ));
    }

    Clamped {
        decision: pool::PoolDecision {
            changes,
            create,
            release,
            reason,
        },
        adjustments: notes,
    }
}

/// Pod addresses the node may still gain before reaching max pods.
struct AddressBudget {
    held: u64,
    max: u64,
}

/// Clamps an (IPs, prefixes) addition to the free slots of one ENI, to
/// prefix-delegation support and to the node's max-pods budget.
fn clamp_adds(
    ips: u32,
    prefixes: u32,
    free_slots: u32,
    prefix_delegation: bool,
    budget: &mut AddressBudget,
) -> (u32, u32) {
    let ips = ips
        .min(free_slots)
        .min(u32::try_from(budget.max.saturating_sub(budget.held)).unwrap_or(u32::MAX));
    budget.held += u64::from(ips);
    let mut added_prefixes = 0;
    if prefix_delegation {
        let slots = free_slots - ips;
        while added_prefixes < prefixes.min(slots) && budget.held < budget.max {
            added_prefixes += 1;
            budget.held += PREFIX_ADDRESSES;
        }
    }
    (ips, added_prefixes)
}

/// The releasable ENIs among `requested`, with a note for each refusal.
fn releases(
    requested: Vec<String>,
    state: &pool::PoolState,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in requested {
        let refusal = match state.enis.iter().find(|e| e.id == id) {
            None => Some("it is not in the group"),
            Some(e) if e.device_index == 0 => Some("it is the primary ENI"),
            Some(e) if e.assigned > 0 || e.cooling > 0 => {
                Some("it has assigned or cooling addresses")
            }
            Some(_) if out.contains(&id) => Some("it is listed twice"),
            Some(_) => None,
        };
        match refusal {
            Some(why) => notes.push(format!("refused to release ENI {}: {why}", quoted(&id))),
            None => out.push(id),
        }
    }
    out
}

fn note_clamp(notes: &mut Vec<String>, what: &str, field: &str, asked: u32, got: u32) {
    if asked != got {
        notes.push(format!("{what}: {field} clamped from {asked} to {got}"));
    }
}

/// A policy-provided string for a message, cut to a readable length.
fn quoted(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool::{EniChange, NewEni, PoolDecision};

    fn eni(id: &str, device_index: u32, ips: u32, prefixes: u32, assigned: u32) -> pool::Eni {
        pool::Eni {
            id: id.into(),
            device_index,
            subnet_id: "subnet-1".into(),
            ips,
            prefixes,
            assigned,
            cooling: 0,
            age_seconds: 600,
        }
    }

    /// m5.large-like: 3 ENIs x 10 IPv4, 2 attached, 18 addresses held.
    fn state() -> pool::PoolState {
        pool::PoolState {
            group: vec!["sg-0123abcd".into()],
            default_group: true,
            enis: vec![
                eni("eni-primary", 0, 9, 0, 4),
                eni("eni-second", 1, 9, 0, 0),
            ],
            node_enis: 2,
            node_addresses: 18,
            node_assigned: 4,
            limits: pool::InstanceLimits {
                max_enis: 3,
                ipv4_per_eni: 10,
                prefix_delegation: false,
                max_pods: 29,
            },
            pending_adds: 0,
            activity: Default::default(),
        }
    }

    fn change(id: &str) -> EniChange {
        EniChange {
            eni_id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn security_group_ids() {
        assert!(is_security_group_id("sg-0123abcd"));
        assert!(is_security_group_id("sg-0123456789abcdef0"));
        for bad in [
            "sg-0123ABCD",
            "sg-0123abc",
            "sg-0123abcdx",
            "sg-",
            "0123abcd",
            "sg-0123abcg",
            "",
        ] {
            assert!(!is_security_group_id(bad), "{bad}");
        }
    }

    #[test]
    fn subnet_must_be_a_candidate() {
        let cand = subnet::Candidate {
            id: "subnet-a".into(),
            availability_zone: "us-west-2a".into(),
            cidr: "10.0.0.0/24".into(),
            free_ips: 10,
            tags: vec![],
        };
        let ok = subnet::Choice::UseSubnet("subnet-a".into());
        assert_eq!(
            subnet_choice(ok.clone(), std::slice::from_ref(&cand)),
            Ok(ok)
        );
        let refuse = subnet::Choice::Refuse("full".into());
        assert_eq!(subnet_choice(refuse.clone(), &[]), Ok(refuse));
        let err = subnet_choice(subnet::Choice::UseSubnet("subnet-evil".into()), &[cand])
            .expect_err("not a candidate");
        assert!(err.contains("subnet-evil"), "{err}");
    }

    #[test]
    fn security_groups_are_checked_and_deduplicated() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            security_groups(ids(&["sg-0000000b", "sg-0000000a", "sg-0000000b"]), None),
            Ok(ids(&["sg-0000000b", "sg-0000000a"]))
        );
        assert!(
            security_groups(vec![], None)
                .expect_err("empty")
                .contains("no security")
        );
        let err = security_groups(ids(&["sg-0000000a", "sg-NOPE"]), None).expect_err("malformed");
        assert!(err.contains("sg-NOPE"), "{err}");
        let six = ids(&[
            "sg-00000001",
            "sg-00000002",
            "sg-00000003",
            "sg-00000004",
            "sg-00000005",
            "sg-00000006",
        ]);
        assert!(
            security_groups(six, None)
                .expect_err("too many")
                .contains("more than 5")
        );
        let allowed = ids(&["sg-0000000a"]);
        assert!(security_groups(ids(&["sg-0000000a"]), Some(&allowed)).is_ok());
        let err = security_groups(ids(&["sg-0000000b"]), Some(&allowed)).expect_err("not allowed");
        assert!(err.contains("allowed-security-groups"), "{err}");
    }

    #[test]
    fn valid_pool_decision_is_unchanged() {
        let decision = PoolDecision {
            changes: vec![EniChange {
                add_ips: 2,
                ..change("eni-second")
            }],
            create: vec![NewEni {
                ips: 9,
                prefixes: 0,
            }],
            release: vec![],
            reason: "warm".into(),
        };
        let out = pool_decision(decision.clone(), &{
            let mut s = state();
            s.enis[1].ips = 5;
            s.node_addresses = 14;
            s
        });
        assert_eq!(out.decision, decision);
        assert!(out.adjustments.is_empty(), "{:?}", out.adjustments);
    }

    #[test]
    fn unknown_duplicate_and_primary_enis_are_dropped() {
        let decision = PoolDecision {
            changes: vec![
                change("eni-unknown"),
                change("eni-second"),
                change("eni-second"),
            ],
            release: vec!["eni-primary".into(), "eni-unknown".into()],
            ..Default::default()
        };
        let out = pool_decision(decision, &state());
        assert_eq!(out.decision.changes, vec![change("eni-second")]);
        assert!(out.decision.release.is_empty());
        assert_eq!(out.adjustments.len(), 4, "{:?}", out.adjustments);
        assert!(out.adjustments.iter().any(|n| n.contains("primary")));
    }

    #[test]
    fn busy_enis_are_not_released_and_idle_ones_are() {
        let mut s = state();
        s.enis.push(eni("eni-busy", 2, 9, 0, 1));
        s.enis.push(eni("eni-idle", 3, 9, 0, 0));
        let decision = PoolDecision {
            changes: vec![EniChange {
                add_ips: 1,
                ..change("eni-idle")
            }],
            release: vec!["eni-busy".into(), "eni-idle".into(), "eni-idle".into()],
            ..Default::default()
        };
        let out = pool_decision(decision, &s);
        assert_eq!(out.decision.release, vec!["eni-idle".to_string()]);
        assert!(
            out.decision.changes.is_empty(),
            "change to a released ENI dropped"
        );
    }

    #[test]
    fn adds_are_clamped_to_eni_slots_and_max_pods() {
        let mut s = state();
        s.enis[1].ips = 2;
        s.node_addresses = 11;
        let decision = PoolDecision {
            changes: vec![EniChange {
                add_ips: u32::MAX,
                ..change("eni-second")
            }],
            ..Default::default()
        };
        // 9 slots - 2 used = 7 free on the ENI.
        let out = pool_decision(decision.clone(), &s);
        assert_eq!(out.decision.changes[0].add_ips, 7);
        assert_eq!(out.adjustments.len(), 1);
        // max-pods 15 with 11 held: 4 more.
        s.limits.max_pods = 15;
        let out = pool_decision(decision, &s);
        assert_eq!(out.decision.changes[0].add_ips, 4);
    }

    #[test]
    fn prefixes_need_delegation_and_are_added_whole() {
        let mut s = state();
        s.enis[1].ips = 0;
        s.node_addresses = 9;
        let decision = PoolDecision {
            changes: vec![EniChange {
                add_prefixes: 3,
                ..change("eni-second")
            }],
            ..Default::default()
        };
        assert_eq!(
            pool_decision(decision.clone(), &s).decision.changes[0].add_prefixes,
            0
        );
        s.limits.prefix_delegation = true;
        s.limits.max_pods = 30;
        // 9 held: one prefix -> 25, a second -> 41 (added while below 30), no third.
        let out = pool_decision(decision, &s);
        assert_eq!(out.decision.changes[0].add_prefixes, 2);
    }

    #[test]
    fn releases_are_clamped_to_free_addresses() {
        let mut s = state();
        s.enis[1].assigned = 6;
        let decision = PoolDecision {
            changes: vec![EniChange {
                release_ips: 9,
                release_prefixes: 4,
                ..change("eni-second")
            }],
            ..Default::default()
        };
        let out = pool_decision(decision, &s);
        assert_eq!(out.decision.changes[0].release_ips, 3);
        assert_eq!(out.decision.changes[0].release_prefixes, 0);
    }

    #[test]
    fn creates_are_clamped_to_max_enis() {
        let decision = PoolDecision {
            create: vec![
                NewEni {
                    ips: 50,
                    prefixes: 0
                };
                1000
            ],
            ..Default::default()
        };
        let out = pool_decision(decision, &state());
        assert_eq!(
            out.decision.create,
            vec![NewEni {
                ips: 9,
                prefixes: 0
            }]
        );
        assert!(
            out.adjustments
                .iter()
                .any(|n| n.contains("create clamped from 1000 to 1"))
        );
    }

    #[test]
    fn huge_reason_is_truncated_on_a_char_boundary() {
        let decision = PoolDecision {
            reason: "é".repeat(MAX_REASON_BYTES),
            ..Default::default()
        };
        let out = pool_decision(decision, &state());
        assert!(out.decision.reason.len() <= MAX_REASON_BYTES);
        assert_eq!(out.adjustments.len(), 1);
    }
}

//! The selection rule.

use crate::ROLE_TAG;
use crate::settings::Settings;
use weft_policy_sdk::subnet::{Candidate, Choice, EniRequest};

/// Why a candidate was passed over.
#[derive(Debug, PartialEq, Eq)]
enum Skip {
    /// Not among `subnet-ids` / without the configured `tags` / neither the
    /// node's subnet nor tagged for pods.
    NotEligible(&'static str),
    /// `kubernetes.io/role/cni=0`.
    Excluded,
    /// In another availability zone.
    OtherZone,
    /// Too few free addresses.
    TooFull,
}

fn tag<'a>(candidate: &'a Candidate, key: &str) -> Option<&'a str> {
    candidate
        .tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

/// Whether the candidate may be used at all, by the settings' rule.
fn eligibility(settings: &Settings, request: &EniRequest, c: &Candidate) -> Result<(), Skip> {
    if let Some(label) = settings.node_label() {
        let value = request.node.labels.iter().find(|t| t.key == label);
        let subnets = value.and_then(|t| settings.node_subnets.get(&t.value));
        if subnets.is_some_and(|ids| ids.contains(&c.id)) {
            return Ok(());
        }
        return Err(Skip::NotEligible(
            "not among the node-subnets of the node's label",
        ));
    }
    if !settings.subnet_ids.is_empty() {
        if settings.subnet_ids.contains(&c.id) {
            return Ok(());
        }
        return Err(Skip::NotEligible("not in subnet-ids"));
    }
    if !settings.tags.is_empty() {
        if settings
            .tags
            .iter()
            .all(|(k, v)| tag(c, k) == Some(v.as_str()))
        {
            return Ok(());
        }
        return Err(Skip::NotEligible("lacks the configured tags"));
    }
    match tag(c, ROLE_TAG) {
        Some("0") => Err(Skip::Excluded),
        Some(_) => Ok(()),
        None if c.id == request.node_subnet_id => Ok(()),
        None => Err(Skip::NotEligible(
            "neither the node's subnet nor tagged kubernetes.io/role/cni",
        )),
    }
}

/// Addresses the new ENI takes from its subnet: its primary address, its
/// secondary IPs and 16 per prefix.
fn needed(request: &EniRequest) -> u64 {
    1 + u64::from(request.ips) + 16 * u64::from(request.prefixes)
}

fn check(settings: &Settings, request: &EniRequest, c: &Candidate) -> Result<(), Skip> {
    eligibility(settings, request, c)?;
    if c.availability_zone != request.availability_zone {
        return Err(Skip::OtherZone);
    }
    if c.free_ips < needed(request) {
        return Err(Skip::TooFull);
    }
    Ok(())
}

/// Chooses the eligible candidate with the most free addresses (lowest id on
/// a tie), or refuses saying why each candidate was passed over.
pub(crate) fn select(
    settings: &Settings,
    request: &EniRequest,
    candidates: &[Candidate],
) -> Choice {
    if let Some(label) = settings.node_label() {
        let node = if request.node.name.is_empty() {
            "the node"
        } else {
            &request.node.name
        };
        match request.node.labels.iter().find(|t| t.key == label) {
            None => {
                return Choice::Refuse(format!(
                    "custom networking: {node} has no label {label} (or its Kubernetes metadata is not known yet)"
                ));
            }
            Some(t) if !settings.node_subnets.contains_key(&t.value) => {
                return Choice::Refuse(format!(
                    "custom networking: {node}'s label {label}={} has no entry in node-subnets",
                    t.value
                ));
            }
            Some(_) => {}
        }
    }
    let mut best: Option<&Candidate> = None;
    let mut skipped = Vec::new();
    for c in candidates {
        match check(settings, request, c) {
            Ok(()) => {
                let better = best.is_none_or(|b| {
                    c.free_ips > b.free_ips || (c.free_ips == b.free_ips && c.id < b.id)
                });
                if better {
                    best = Some(c);
                }
            }
            Err(skip) => skipped.push(describe(c, &skip, request)),
        }
    }
    match best {
        Some(c) => Choice::UseSubnet(c.id.clone()),
        None if candidates.is_empty() => {
            Choice::Refuse("no subnet fits: no candidate subnets".into())
        }
        None => Choice::Refuse(format!(
            "no subnet fits an ENI needing {} addresses in {}: {}",
            needed(request),
            request.availability_zone,
            skipped.join("; ")
        )),
    }
}

fn describe(c: &Candidate, skip: &Skip, request: &EniRequest) -> String {
    match skip {
        Skip::NotEligible(why) => format!("{} {why}", c.id),
        Skip::Excluded => format!("{} is excluded by {ROLE_TAG}=0", c.id),
        Skip::OtherZone => format!("{} is in {}", c.id, c.availability_zone),
        Skip::TooFull => format!(
            "{} has {} free addresses, {} needed",
            c.id,
            c.free_ips,
            needed(request)
        ),
    }
}

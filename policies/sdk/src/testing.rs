//! The native test harness: run a policy from JSON fixtures without Wasm.
//!
//! A fixture file holds one decision:
//!
//! ```json
//! {
//!   "name": "what the case shows",
//!   "settings": { "warm-ip-target": 5 },
//!   "input": { ... },
//!   "expected": { ... }
//! }
//! ```
//!
//! | world | `input` | `expected` |
//! | --- | --- | --- |
//! | pool sizing | a [`PoolState`] | a [`PoolDecision`] |
//! | subnet selection | `{"request": EniRequest, "candidates": [Candidate]}` ([`SubnetInput`]) | a [`Choice`]: `{"use-subnet": "subnet-..."}` or `{"refuse": "..."}` |
//! | security groups | a security [`Request`] | `{"ok": ["sg-..."]}` or `{"err": "..."}` ([`SgOutcome`]) |
//!
//! `settings` may be omitted (`{}`). The same files are run through the Wasm
//! runtime by the host's tests and read by `weftd policy eval --input`, so
//! one file proves a case natively and in the sandbox.
//!
//! Texts meant for people are matched loosely so fixtures do not pin
//! wording: an expected pool `reason`, refusal reason or SG error must be a
//! *substring* of the actual one (an empty expected `reason` matches any).
//! Everything else must be equal.
//!
//! ```no_run
//! # struct MyPolicy;
//! # impl weft_policy_sdk::PoolSizing for MyPolicy {
//! #     fn configure(_: &str) -> Result<Self, String> { Ok(MyPolicy) }
//! #     fn size_pool(&self, _: &weft_policy_sdk::pool::PoolState) -> weft_policy_sdk::pool::PoolDecision { Default::default() }
//! # }
//! #[test]
//! fn fixtures() {
//!     let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
//!     weft_policy_sdk::testing::check_pool_fixtures::<MyPolicy>(dir);
//! }
//! ```

use crate::pool::{Eni, Minute, PoolDecision, PoolState};
use crate::security::Request;
use crate::subnet::{Candidate, Choice, EniRequest};
use crate::{PoolSizing, SecurityGroups, SubnetSelection};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

/// One fixture: settings, the decision's input and the expected output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture<I, O> {
    /// What the case shows, reported on mismatch.
    pub name: String,
    /// The policy's settings; `{}` when omitted.
    #[serde(default = "empty_settings")]
    pub settings: serde_json::Value,
    /// The decision's input.
    pub input: I,
    /// The expected decision.
    pub expected: O,
}

fn empty_settings() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl<I, O: Expected> Fixture<I, O> {
    /// The settings as the JSON string a policy's `configure` receives.
    pub fn settings_json(&self) -> String {
        self.settings.to_string()
    }

    /// Compares `actual` with the expected output (see the module docs for
    /// the matching rules); the error describes the difference.
    pub fn check(&self, actual: &O) -> Result<(), String> {
        self.expected.matches(actual)
    }
}

/// A pool-sizing fixture.
pub type PoolFixture = Fixture<PoolState, PoolDecision>;
/// A subnet-selection fixture.
pub type SubnetFixture = Fixture<SubnetInput, Choice>;
/// A security-groups fixture.
pub type SecurityFixture = Fixture<Request, SgOutcome>;

/// The input of a subnet-selection decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetInput {
    /// The ENI about to be created.
    pub request: EniRequest,
    /// The subnets to choose from.
    pub candidates: Vec<Candidate>,
}

/// The outcome of a security-group decision, in JSON `{"ok": [...]}` or
/// `{"err": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SgOutcome {
    /// The pod's security groups.
    Ok(Vec<String>),
    /// The pod's ADD fails with this message.
    Err(String),
}

impl From<Result<Vec<String>, String>> for SgOutcome {
    fn from(result: Result<Vec<String>, String>) -> Self {
        match result {
            Ok(groups) => SgOutcome::Ok(groups),
            Err(message) => SgOutcome::Err(message),
        }
    }
}

/// An expected decision that can be compared with an actual one.
pub trait Expected: Debug {
    /// `Ok` when `actual` satisfies this expectation, else a description
    /// of the difference.
    fn matches(&self, actual: &Self) -> Result<(), String>;
}

/// `expected` must occur in `actual`; an empty `expected` matches anything.
fn text_matches(what: &str, expected: &str, actual: &str) -> Result<(), String> {
    if actual.contains(expected) {
        Ok(())
    } else {
        Err(format!(
            "{what} {actual:?} does not contain the expected {expected:?}"
        ))
    }
}

fn differ(expected: &impl Debug, actual: &impl Debug) -> String {
    format!("expected {expected:?}\n     got {actual:?}")
}

impl Expected for PoolDecision {
    fn matches(&self, actual: &Self) -> Result<(), String> {
        let strip = |d: &PoolDecision| PoolDecision {
            reason: String::new(),
            ..d.clone()
        };
        if strip(self) != strip(actual) {
            return Err(differ(self, actual));
        }
        text_matches("reason", &self.reason, &actual.reason)
    }
}

impl Expected for Choice {
    fn matches(&self, actual: &Self) -> Result<(), String> {
        match (self, actual) {
            (Choice::UseSubnet(e), Choice::UseSubnet(a)) if e == a => Ok(()),
            (Choice::Refuse(e), Choice::Refuse(a)) => text_matches("refusal", e, a),
            _ => Err(differ(self, actual)),
        }
    }
}

impl Expected for SgOutcome {
    fn matches(&self, actual: &Self) -> Result<(), String> {
        match (self, actual) {
            (SgOutcome::Ok(e), SgOutcome::Ok(a)) if e == a => Ok(()),
            (SgOutcome::Err(e), SgOutcome::Err(a)) => text_matches("error", e, a),
            _ => Err(differ(self, actual)),
        }
    }
}

/// Runs a pool-sizing fixture natively: `configure` with its settings, then
/// `size_pool`. `Err` is the policy's configuration error.
pub fn run_pool_fixture<P: PoolSizing>(fixture: &PoolFixture) -> Result<PoolDecision, String> {
    let policy = P::configure(&fixture.settings_json())?;
    Ok(policy.size_pool(&fixture.input))
}

/// Runs a subnet-selection fixture natively. `Err` is the policy's
/// configuration error.
pub fn run_subnet_fixture<S: SubnetSelection>(fixture: &SubnetFixture) -> Result<Choice, String> {
    let policy = S::configure(&fixture.settings_json())?;
    Ok(policy.select_subnet(&fixture.input.request, &fixture.input.candidates))
}

/// Runs a security-groups fixture natively. `Err` is the policy's
/// configuration error.
pub fn run_security_fixture<G: SecurityGroups>(
    fixture: &SecurityFixture,
) -> Result<SgOutcome, String> {
    let policy = G::configure(&fixture.settings_json())?;
    Ok(policy.select_security_groups(&fixture.input).into())
}

/// A fixture and the file it was read from.
#[derive(Debug, Clone)]
pub struct FixtureFile<I, O> {
    /// The file.
    pub path: PathBuf,
    /// Its content.
    pub fixture: Fixture<I, O>,
}

/// Reads one fixture file.
pub fn load_fixture<I: DeserializeOwned, O: DeserializeOwned>(
    path: &Path,
) -> Result<Fixture<I, O>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: invalid fixture: {e}", path.display()))
}

/// Reads every `*.json` fixture in `dir`, sorted by file name. Fails when
/// the directory cannot be read, holds no fixture, or a file does not parse.
pub fn load_fixtures<I: DeserializeOwned, O: DeserializeOwned>(
    dir: &Path,
) -> Result<Vec<FixtureFile<I, O>>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("{}: cannot read: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "json") {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(format!("{}: no *.json fixtures", dir.display()));
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| load_fixture(&path).map(|fixture| FixtureFile { path, fixture }))
        .collect()
}

/// Runs every fixture in `dir` with `run` and panics with the list of all
/// failures (mismatches and configuration errors), or returns how many
/// fixtures passed.
fn check_dir<I, O>(dir: &str, run: impl Fn(&Fixture<I, O>) -> Result<O, String>) -> usize
where
    I: DeserializeOwned,
    O: DeserializeOwned + Expected,
{
    let fixtures = load_fixtures::<I, O>(Path::new(dir)).unwrap_or_else(|e| panic!("{e}"));
    let failures: Vec<String> = fixtures
        .iter()
        .filter_map(|FixtureFile { path, fixture }| {
            let outcome = run(fixture).and_then(|actual| fixture.check(&actual));
            outcome
                .err()
                .map(|e| format!("{} ({}):\n  {e}", path.display(), fixture.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    fixtures.len()
}

/// Checks every pool-sizing fixture in `dir` against `P`; panics listing
/// all failures. Returns the number of fixtures checked.
pub fn check_pool_fixtures<P: PoolSizing>(dir: &str) -> usize {
    check_dir(dir, run_pool_fixture::<P>)
}

/// Checks every subnet-selection fixture in `dir` against `S`; panics
/// listing all failures. Returns the number of fixtures checked.
pub fn check_subnet_fixtures<S: SubnetSelection>(dir: &str) -> usize {
    check_dir(dir, run_subnet_fixture::<S>)
}

/// Checks every security-groups fixture in `dir` against `G`; panics
/// listing all failures. Returns the number of fixtures checked.
pub fn check_security_fixtures<G: SecurityGroups>(dir: &str) -> usize {
    check_dir(dir, run_security_fixture::<G>)
}

/// An ENI for a test's pool: `eni-INDEX` at device index `index` in
/// `subnet-a`, with `ips` secondary IPs of which `assigned` are assigned and
/// `cooling` cooling, attached `age_seconds` ago.
pub fn eni(index: u32, ips: u32, assigned: u32, cooling: u32, age_seconds: u64) -> Eni {
    Eni {
        id: format!("eni-{index}"),
        device_index: index,
        subnet_id: "subnet-a".into(),
        ips,
        prefixes: 0,
        assigned,
        cooling,
        age_seconds,
    }
}

/// The pool after `decision` as the host carries it out, to ask a policy
/// again in a test: released ENIs are gone, changes are applied, new ENIs
/// are attached (empty of pods, device indexes after the highest), and
/// the waiting ADDs take free addresses, lowest device index first, and
/// count as ADDs of the last minute (the host records an ADD when it is
/// served).
///
/// # Panics
///
/// On a decision the host refuses: one naming an unknown ENI, releasing
/// more than an ENI holds or an address in use.
pub fn apply_pool_decision(state: &PoolState, decision: &PoolDecision) -> PoolState {
    let mut next = state.clone();
    next.enis.retain(|e| !decision.release.contains(&e.id));
    for eni in &state.enis {
        if decision.release.contains(&eni.id) {
            next.node_enis -= 1;
            next.node_addresses -= eni.addresses();
        }
    }
    for change in &decision.changes {
        let eni = next
            .enis
            .iter_mut()
            .find(|e| e.id == change.eni_id)
            .unwrap_or_else(|| panic!("the decision names an unknown ENI: {change:?}"));
        assert!(
            change.release_ips <= eni.ips && change.release_prefixes <= eni.prefixes,
            "releases more than {} holds: {change:?}",
            eni.id
        );
        let before = eni.addresses();
        eni.ips = eni.ips + change.add_ips - change.release_ips;
        eni.prefixes = eni.prefixes + change.add_prefixes - change.release_prefixes;
        assert!(
            eni.assigned + eni.cooling <= eni.addresses(),
            "releases an address in use on {}: {change:?}",
            eni.id
        );
        next.node_addresses = next.node_addresses - before + eni.addresses();
    }
    let first_new = next
        .enis
        .iter()
        .map(|e| e.device_index + 1)
        .max()
        .unwrap_or(1);
    for (device_index, new) in (first_new..).zip(&decision.create) {
        let eni = Eni {
            id: format!("eni-new{device_index}"),
            device_index,
            subnet_id: next
                .enis
                .first()
                .map_or_else(String::new, |e| e.subnet_id.clone()),
            ips: new.ips,
            prefixes: new.prefixes,
            assigned: 0,
            cooling: 0,
            age_seconds: 0,
        };
        next.node_enis += 1;
        next.node_addresses += eni.addresses();
        next.enis.push(eni);
    }
    next.enis.sort_by_key(|e| e.device_index);
    let mut served = 0;
    for eni in &mut next.enis {
        let n = eni.free().min(next.pending_adds - served);
        eni.assigned += n;
        served += n;
    }
    next.pending_adds -= served;
    next.node_assigned += served;
    if served > 0 {
        // The host records an ADD when it is served: in the last minute,
        // just now.
        let activity = &mut next.activity;
        activity.adds_last_minute += served;
        activity.seconds_since_last_add = Some(0);
        match activity.history.first_mut() {
            Some(minute) => {
                minute.adds += served;
                minute.median_add_age.get_or_insert(0);
            }
            None => activity.history.push(Minute {
                adds: served,
                removes: 0,
                median_add_age: Some(0),
            }),
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::EniChange;

    fn decision(add_ips: u32, reason: &str) -> PoolDecision {
        PoolDecision {
            changes: vec![EniChange {
                eni_id: "eni-1".into(),
                add_ips,
                ..Default::default()
            }],
            reason: reason.into(),
            ..Default::default()
        }
    }

    #[test]
    fn pool_reason_is_matched_as_substring() {
        assert!(decision(3, "").matches(&decision(3, "anything")).is_ok());
        assert!(
            decision(3, "warm-ip")
                .matches(&decision(3, "below warm-ip-target"))
                .is_ok()
        );
        assert!(decision(3, "prefix").matches(&decision(3, "ENI")).is_err());
        let err = decision(3, "").matches(&decision(4, "")).unwrap_err();
        assert!(
            err.contains("add_ips: 3") && err.contains("add_ips: 4"),
            "{err}"
        );
    }

    #[test]
    fn choice_and_outcome_matching() {
        let use_a = Choice::UseSubnet("subnet-a".into());
        assert!(use_a.matches(&use_a.clone()).is_ok());
        assert!(
            use_a
                .matches(&Choice::UseSubnet("subnet-b".into()))
                .is_err()
        );
        assert!(
            Choice::Refuse("no subnet".into())
                .matches(&Choice::Refuse("no subnet in us-west-2a".into()))
                .is_ok()
        );
        assert!(
            Choice::Refuse("x".into())
                .matches(&Choice::UseSubnet("x".into()))
                .is_err()
        );
        let ok = SgOutcome::Ok(vec!["sg-1".into()]);
        assert!(ok.matches(&SgOutcome::Ok(vec![])).is_err());
        assert!(
            SgOutcome::Err("rule".into())
                .matches(&SgOutcome::Err("rule 2 failed".into()))
                .is_ok()
        );
    }

    #[test]
    fn outcome_json_shape() {
        let ok: SgOutcome = serde_json::from_str(r#"{"ok": ["sg-12345678"]}"#).unwrap();
        assert_eq!(ok, SgOutcome::Ok(vec!["sg-12345678".into()]));
        let err: SgOutcome = serde_json::from_str(r#"{"err": "denied"}"#).unwrap();
        assert_eq!(err, SgOutcome::Err("denied".into()));
        let choice: Choice = serde_json::from_str(r#"{"use-subnet": "subnet-1"}"#).unwrap();
        assert_eq!(choice, Choice::UseSubnet("subnet-1".into()));
    }

    #[test]
    fn fixture_rejects_unknown_keys_and_defaults_settings() {
        let text = r#"{"name": "n", "input": {"pod": {}, "node-security-groups": []},
                       "expected": {"ok": []}}"#;
        let f: SecurityFixture = serde_json::from_str(text).unwrap();
        assert_eq!(f.settings_json(), "{}");
        let typo = text.replace("\"name\"", "\"nmae\"");
        assert!(serde_json::from_str::<SecurityFixture>(&typo).is_err());
    }

    #[test]
    fn empty_dir_fails() {
        let dir = std::env::temp_dir().join(format!("weft-sdk-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = load_fixtures::<Request, SgOutcome>(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("no *.json fixtures"), "{err}");
    }
}

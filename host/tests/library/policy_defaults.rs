//! Every default policy's fixtures, run as Wasm through the host runtime,
//! give the same decisions as the native build (and as the fixtures
//! expect).

use crate::support::policy as common;

use common::{GENEROUS_DEADLINE_MS, engine, limits};
use std::path::Path;
use weft_host::policy::{CompiledPolicy, Decision, PolicyEngine, PolicyModule};
use weft_policy_sdk::testing::{self, Expected, Fixture, FixtureFile, SgOutcome, SubnetInput};
use weft_policy_sdk::{pool, security, subnet};
use weft_test_artifacts as artifacts;

/// Compiles a default policy's component once for all its fixtures.
fn compile(engine: &PolicyEngine, wasm: &str, decision: Decision) -> CompiledPolicy {
    CompiledPolicy::from_file(engine, wasm.as_ref(), "default", Some(decision), None)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The component configured with the fixture's settings. The deadline is
/// generous: this checks answers, not speed. Its decisions start from the
/// image taken after `configure`, so the fixtures check those answers.
fn module<I, O: Expected>(compiled: &CompiledPolicy, fixture: &Fixture<I, O>) -> PolicyModule {
    let module = compiled
        .configure(&fixture.settings_json(), limits(GENEROUS_DEADLINE_MS, 32))
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
    assert!(module.starts_from_image(), "{}: no image", fixture.name);
    module
}

/// Runs every fixture of `dir` natively and as Wasm; panics listing all
/// disagreements. Returns how many fixtures ran.
fn check<I, O>(
    dir: &str,
    native: impl Fn(&Fixture<I, O>) -> Result<O, String>,
    wasm: impl Fn(&Fixture<I, O>) -> O,
) -> usize
where
    I: serde::de::DeserializeOwned,
    O: serde::de::DeserializeOwned + Expected + PartialEq,
{
    let fixtures = testing::load_fixtures::<I, O>(Path::new(dir)).unwrap_or_else(|e| panic!("{e}"));
    let failures: Vec<String> = fixtures
        .iter()
        .filter_map(|FixtureFile { path, fixture }| {
            let native = native(fixture)
                .unwrap_or_else(|e| panic!("{}: native configure: {e}", path.display()));
            let wasm = wasm(fixture);
            if native != wasm {
                return Some(format!(
                    "{}: native {native:?} != wasm {wasm:?}",
                    path.display()
                ));
            }
            fixture
                .check(&wasm)
                .err()
                .map(|e| format!("{}: {e}", path.display()))
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

#[test]
fn warm_pool_fixtures_agree_natively_and_in_wasm() {
    let compiled = compile(&engine(), artifacts::WARM_POOL, Decision::PoolSizing);
    let n = check::<pool::PoolState, pool::PoolDecision>(
        artifacts::WARM_POOL_FIXTURES,
        testing::run_pool_fixture::<warm_pool::WarmPool>,
        |f| {
            let m = module(&compiled, f);
            m.size_pool(&f.input)
                .unwrap_or_else(|e| panic!("{}: {e}", f.name))
                .0
        },
    );
    assert!(n > 0);
}

#[test]
fn subnet_most_free_fixtures_agree_natively_and_in_wasm() {
    let compiled = compile(
        &engine(),
        artifacts::SUBNET_MOST_FREE,
        Decision::SubnetSelection,
    );
    let n = check::<SubnetInput, subnet::Choice>(
        artifacts::SUBNET_MOST_FREE_FIXTURES,
        testing::run_subnet_fixture::<subnet_most_free::SubnetMostFree>,
        |f| {
            let m = module(&compiled, f);
            m.select_subnet(&f.input.request, &f.input.candidates)
                .unwrap_or_else(|e| panic!("{}: {e}", f.name))
                .0
        },
    );
    assert!(n > 0);
}

#[test]
fn sg_selector_fixtures_agree_natively_and_in_wasm() {
    let compiled = compile(&engine(), artifacts::SG_SELECTOR, Decision::SecurityGroups);
    let n = check::<security::Request, SgOutcome>(
        artifacts::SG_SELECTOR_FIXTURES,
        testing::run_security_fixture::<sg_selector::SgSelector>,
        |f| {
            let m = module(&compiled, f);
            m.select_security_groups(&f.input)
                .unwrap_or_else(|e| panic!("{}: {e}", f.name))
                .0
                .into()
        },
    );
    assert!(n > 0);
}

//! `PolicySet`: failure modes, validation, metrics and hot reload.

use crate::support::policy as common;

use common::*;
use std::sync::Arc;
use weft_host::metrics::Metrics;
use weft_host::policy::{
    Decision, FailureKind, OnFailure, PoliciesConfig, PolicyConfig, PolicySet,
};
use weft_policy_sdk::{PoolSizing, SecurityGroups, SubnetSelection, subnet};
use weft_test_artifacts::{CHAOS_POOL, CHAOS_SG, CHAOS_SUBNET};

/// A policy entry for a chaos module; the deadline is short for `loop`
/// (the deadline is what such tests test) and generous otherwise, so a
/// loaded machine cannot turn an answer into a timeout.
fn entry(module: &str, mode: &str) -> PolicyConfig {
    PolicyConfig {
        settings: serde_json::from_str(&chaos(mode)).expect("json"),
        deadline_ms: if mode == "loop" {
            10
        } else {
            GENEROUS_DEADLINE_MS
        },
        ..PolicyConfig::module(module)
    }
}

fn native_pool() -> warm_pool::WarmPool {
    warm_pool::WarmPool::configure("{}").expect("built-in warm-pool")
}

#[test]
fn pool_sizing_falls_back_to_the_builtin_and_counts_the_failure() {
    let (set, metrics) = set(PoliciesConfig {
        pool_sizing: Some(entry(CHAOS_POOL, "loop")),
        ..Default::default()
    });
    let state = pool_state();
    let decision = set.size_pool(&state);
    let native =
        weft_host::policy::validate::pool_decision(native_pool().size_pool(&state), &state)
            .decision;
    assert_eq!(decision, native, "the built-in warm-pool decided");
    assert_eq!(counted(&metrics, "pool-sizing", "deadline"), 1);
    // The process stays healthy: the next decision works the same way.
    assert_eq!(set.size_pool(&state), native);
    assert_eq!(counted(&metrics, "pool-sizing", "deadline"), 2);
}

#[test]
fn pool_decisions_are_clamped_and_counted() {
    for mode in ["unknown-eni", "release-primary", "huge"] {
        let (set, metrics) = set(PoliciesConfig {
            pool_sizing: Some(entry(CHAOS_POOL, mode)),
            ..Default::default()
        });
        let state = pool_state();
        let decision = set.size_pool(&state);
        assert!(
            !decision.release.iter().any(|id| id == "eni-primary"),
            "{mode}: {decision:?}"
        );
        assert!(
            decision
                .changes
                .iter()
                .all(|c| state.enis.iter().any(|e| e.id == c.eni_id)),
            "{mode}"
        );
        assert!(
            decision.create.len() <= 1,
            "{mode}: max-enis 3 with 2 attached"
        );
        assert!(
            decision
                .create
                .iter()
                .all(|n| n.ips <= 9 && n.prefixes == 0),
            "{mode}"
        );
        assert_eq!(counted(&metrics, "pool-sizing", "clamped"), 1, "{mode}");
    }
}

#[test]
fn pool_sizing_fail_closed_leaves_the_pool_alone() {
    let (set, _) = set(PoliciesConfig {
        pool_sizing: Some(PolicyConfig {
            on_failure: Some(OnFailure::FailClosed),
            ..entry(CHAOS_POOL, "trap")
        }),
        ..Default::default()
    });
    let decision = set.size_pool(&pool_state());
    assert!(decision.is_noop(), "{decision:?}");
    assert!(decision.reason.contains("trapped"), "{}", decision.reason);
}

#[test]
fn an_invalid_subnet_falls_back_or_refuses() {
    let (request, candidates) = subnet_input();
    let native = subnet_most_free::SubnetMostFree::configure("{}")
        .expect("built-in")
        .select_subnet(&request, &candidates);

    let (set, metrics) = set(PoliciesConfig {
        subnet_selection: Some(entry(CHAOS_SUBNET, "bad-subnet")),
        ..Default::default()
    });
    let choice = set.select_subnet(&request, &candidates);
    assert_ne!(
        choice,
        subnet::Choice::UseSubnet("subnet-0000000000000dead".into())
    );
    assert_eq!(choice, native);
    assert_eq!(counted(&metrics, "subnet-selection", "invalid-output"), 1);

    let (set, _) = set_fail_closed_subnet();
    match set.select_subnet(&request, &candidates) {
        subnet::Choice::Refuse(reason) => {
            assert!(reason.contains("not one of the 2 candidates"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn set_fail_closed_subnet() -> (PolicySet, Arc<Metrics>) {
    set(PoliciesConfig {
        subnet_selection: Some(PolicyConfig {
            on_failure: Some(OnFailure::FailClosed),
            ..entry(CHAOS_SUBNET, "bad-subnet")
        }),
        ..Default::default()
    })
}

#[test]
fn security_groups_fail_closed_by_default_naming_the_policy() {
    for (mode, kind) in [
        ("trap", FailureKind::Trap),
        ("loop", FailureKind::Deadline),
        ("bad-sg", FailureKind::InvalidOutput),
        ("too-many-sgs", FailureKind::InvalidOutput),
        ("huge", FailureKind::Memory),
    ] {
        let (set, metrics) = set(PoliciesConfig {
            security_groups: Some(PolicyConfig {
                name: Some("pod-sgs".into()),
                ..entry(CHAOS_SG, mode)
            }),
            ..Default::default()
        });
        let err = set.select_security_groups(&sg_request()).expect_err(mode);
        assert_eq!(err.kind, kind, "{mode}: {err}");
        assert!(
            err.to_string()
                .starts_with("security-groups policy `pod-sgs`"),
            "{err}"
        );
        assert_eq!(
            counted(&metrics, "security-groups", kind.as_str()),
            1,
            "{mode}"
        );
    }
}

#[test]
fn security_groups_fallback_uses_the_builtin() {
    let (set, _) = set(PoliciesConfig {
        security_groups: Some(PolicyConfig {
            on_failure: Some(OnFailure::Fallback),
            ..entry(CHAOS_SG, "trap")
        }),
        ..Default::default()
    });
    let request = sg_request();
    let native = sg_selector::SgSelector::configure("{}")
        .expect("built-in")
        .select_security_groups(&request)
        .expect("node groups");
    assert_eq!(set.select_security_groups(&request), Ok(native));
}

#[test]
fn security_groups_outside_the_allowlist_are_refused() {
    let request = sg_request();
    let config = |allowed: &[&str]| PoliciesConfig {
        security_groups: Some(PolicyConfig {
            allowed_security_groups: Some(allowed.iter().map(|s| s.to_string()).collect()),
            ..entry(CHAOS_SG, "ok")
        }),
        ..Default::default()
    };
    let (both, _) = set(config(&["sg-0123abcd", "sg-0123456789abcdef0"]));
    assert_eq!(
        both.select_security_groups(&request),
        Ok(request.node_security_groups.clone())
    );
    let (one, _) = set(config(&["sg-0123abcd"]));
    let err = one
        .select_security_groups(&request)
        .expect_err("not allowed");
    assert_eq!(err.kind, FailureKind::InvalidOutput);
    assert!(err.message.contains("sg-0123456789abcdef0"), "{err}");
}

#[test]
fn a_module_that_never_loaded_uses_the_failure_mode_and_reports_why() {
    let (set, metrics) = set(PoliciesConfig {
        pool_sizing: Some(entry(CHAOS_POOL, "configure-error")),
        security_groups: Some(PolicyConfig::module("/nonexistent/sg.wasm")),
        ..Default::default()
    });
    assert_eq!(counted(&metrics, "pool-sizing", "load"), 1);
    let view = set.view();
    let pool = view
        .roles
        .iter()
        .find(|r| r.role == "pool-sizing")
        .expect("pool role");
    assert!(pool.sha256.is_none());
    assert!(
        pool.load_error
            .as_deref()
            .unwrap_or("")
            .contains("configure-error requested"),
        "{pool:?}"
    );
    let state = pool_state();
    let native =
        weft_host::policy::validate::pool_decision(native_pool().size_pool(&state), &state)
            .decision;
    assert_eq!(set.size_pool(&state), native);
    let err = set
        .select_security_groups(&sg_request())
        .expect_err("fail closed");
    assert_eq!(err.kind, FailureKind::Load);
    assert!(err.message.contains("/nonexistent/sg.wasm"), "{err}");
}

#[test]
fn a_failed_reload_keeps_the_last_good_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pool.wasm");
    std::fs::copy(CHAOS_POOL, &path).expect("copy");
    let good = entry(path.to_str().expect("utf-8"), "ok");
    let (set, _) = set(PoliciesConfig {
        pool_sizing: Some(good.clone()),
        ..Default::default()
    });
    assert_eq!(set.size_pool(&pool_state()).reason, "chaos: Ok");
    let sha = loaded_sha(&set);

    // The file is replaced by garbage: the reload fails, the module stays.
    std::fs::write(&path, b"not wasm at all").expect("write");
    let err = set.reload(Decision::PoolSizing, None).expect_err("garbage");
    assert!(
        err.to_string().contains("not a WebAssembly component"),
        "{err}"
    );
    assert_eq!(loaded_sha(&set), sha);
    assert_eq!(set.size_pool(&pool_state()).reason, "chaos: Ok");

    // A new configuration whose configure fails is refused the same way.
    let err = set
        .reload(
            Decision::PoolSizing,
            Some(entry(CHAOS_POOL, "configure-error")),
        )
        .expect_err("configure error");
    assert!(
        err.to_string().contains("configure-error requested"),
        "{err}"
    );
    assert_eq!(set.size_pool(&pool_state()).reason, "chaos: Ok");

    // A good reload replaces it.
    let report = set
        .reload(
            Decision::PoolSizing,
            Some(entry(CHAOS_POOL, "release-primary")),
        )
        .expect("reloads")
        .expect("a module");
    assert_eq!(report.decision, Decision::PoolSizing);
    assert!(
        set.size_pool(&pool_state())
            .reason
            .contains("ReleasePrimary")
    );
}

fn loaded_sha(set: &PolicySet) -> String {
    set.view()
        .roles
        .into_iter()
        .find(|r| r.role == "pool-sizing")
        .and_then(|r| r.sha256)
        .expect("a loaded module")
}

#[test]
fn invalid_configuration_is_an_error() {
    let metrics = Arc::new(Metrics::new());
    let config = PoliciesConfig {
        pool_sizing: Some(PolicyConfig {
            deadline_ms: 0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = PolicySet::from_config(&config, metrics)
        .err()
        .expect("invalid");
    assert!(
        err.to_string()
            .contains("[policies.pool-sizing]: deadline-ms"),
        "{err}"
    );
}

#[test]
fn without_modules_the_builtins_run_natively() {
    let (set, metrics) = set(PoliciesConfig::default());
    let state = pool_state();
    let native =
        weft_host::policy::validate::pool_decision(native_pool().size_pool(&state), &state)
            .decision;
    assert_eq!(set.size_pool(&state), native);
    assert!(set.select_security_groups(&sg_request()).is_ok());
    assert!(
        set.view()
            .roles
            .iter()
            .all(|r| r.module.is_none() && r.sha256.is_none())
    );
    assert_eq!(counted(&metrics, "pool-sizing", "ok"), 1);
}

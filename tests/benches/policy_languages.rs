//! The security-groups policy in Rust, Python and JavaScript side by side:
//! component size, first load (compile), load from the compiled-module
//! cache, decision latency (fresh sandboxed instance + `configure` + call,
//! as the agent decides) and peak linear memory per decision.
//!
//! `cargo bench -p weft-tests --bench policy_languages` (release; needs the
//! tools `scripts/setup` installs). `WEFT_BENCH_DECISIONS` sets the number
//! of timed decisions per language (default 300).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weft_host::policy::{ArtifactCache, CallLimits, CompiledPolicy, Decision, PolicyEngine};
use weft_policy_sdk::Tag;
use weft_policy_sdk::security::{Pod, Request};
use weft_tests::support::policy_build::{build_example, componentize_js, componentize_py};

/// The settings of `sg-selector`'s fixtures: three rules, the last matches.
const SETTINGS: &str = r#"{"rules": [
  {"namespaces": ["payments"], "match-labels": {"tier": "db"}, "security-groups": ["sg-02222222222222222"]},
  {"namespaces": ["payments"], "security-groups": ["sg-01111111111111111"]},
  {"service-accounts": ["ci/runner", "builder"], "security-groups": ["sg-0333333333333333c", "sg-0444444444444444d"]}
]}"#;

const LIMITS: CallLimits = CallLimits {
    deadline: Duration::from_secs(2),
    memory_bytes: 64 << 20,
};

fn main() {
    let decisions: usize = std::env::var("WEFT_BENCH_DECISIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let request = Request {
        pod: Pod {
            namespace: "ci".into(),
            name: "runner-7d9f8b6c5-x2x9z".into(),
            uid: "0b9e0c2e-1111-2222-3333-444455556666".into(),
            labels: vec![Tag::new("app", "runner"), Tag::new("tier", "build")],
            annotations: vec![],
            service_account: "runner".into(),
        },
        node_security_groups: vec!["sg-0aaaaaaaaaaaaaaaa".into()],
    };
    println!(
        "{:<11} {:>9} {:>11} {:>11} {:>10} {:>10} {:>10} {:>11}",
        "policy", "size", "first load", "cached load", "p50", "p90", "p99", "peak memory"
    );
    let rust = PathBuf::from(weft_test_artifacts::SG_SELECTOR);
    let python = build_example("sg-selector-py", componentize_py);
    let javascript = build_example("sg-selector-js", componentize_js);
    for (name, component) in [
        ("rust", rust),
        ("python", python),
        ("javascript", javascript),
    ] {
        measure(name, &component, &request, decisions);
    }
}

fn measure(name: &str, component: &Path, request: &Request, decisions: usize) {
    let cache_dir = tempfile::tempdir().expect("cache dir");
    let load = || {
        // A new engine each time, as a restarted agent has.
        let engine = PolicyEngine::new(Some(ArtifactCache::new(cache_dir.path()))).expect("engine");
        let started = Instant::now();
        let compiled = CompiledPolicy::from_file(
            &engine,
            component,
            name,
            Some(Decision::SecurityGroups),
            None,
        )
        .expect("loads");
        let module = compiled.configure(SETTINGS, LIMITS).expect("configures");
        (
            started.elapsed(),
            compiled.report().from_cache,
            module,
            engine,
        )
    };
    let (first, first_cached, _, _) = load();
    let (cached, from_cache, module, _engine) = load();
    assert!(
        !first_cached && from_cache,
        "{name}: the cache was not used"
    );

    let mut peak = 0;
    let mut samples: Vec<Duration> = (0..decisions + decisions / 10)
        .map(|_| {
            let started = Instant::now();
            let (answer, stats) = module.select_security_groups(request).expect("decides");
            let elapsed = started.elapsed();
            assert_eq!(
                answer.expect("groups").len(),
                2,
                "{name}: the builder rule decides"
            );
            peak = peak.max(stats.peak_memory);
            elapsed
        })
        .skip(decisions / 10)
        .collect();
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    let size = std::fs::metadata(component).expect("component").len();
    println!(
        "{name:<11} {:>7.1}MB {:>9.0}ms {:>9.1}ms {:>8.0}µs {:>8.0}µs {:>8.0}µs {:>9.1}MiB",
        size as f64 / 1e6,
        first.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3,
        pct(50).as_secs_f64() * 1e6,
        pct(90).as_secs_f64() * 1e6,
        pct(99).as_secs_f64() * 1e6,
        peak as f64 / (1 << 20) as f64,
    );
}

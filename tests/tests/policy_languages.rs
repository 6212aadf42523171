//! sg-selector written in Python (`policies/sg-selector-py`, componentize-py)
//! and in JavaScript (`policies/sg-selector-js`, ComponentizeJS): built by
//! the test, loaded by the host's policy runtime under the same sandbox as
//! every policy, and asked every fixture of the Rust `sg-selector`. Their
//! decisions and their refusals of bad settings must be the Rust policy's.

use sg_selector::SgSelector;
use std::path::PathBuf;
use std::time::Duration;
use weft_host::policy::{ArtifactCache, CallLimits, CompiledPolicy, Decision, PolicyEngine};
use weft_policy_sdk::SecurityGroups;
use weft_policy_sdk::security::Request;
use weft_policy_sdk::testing::{SgOutcome, load_fixtures, run_security_fixture};
use weft_tests::support::policy_build::{
    build_example, componentize_js, componentize_py, workspace_root,
};

/// A deadline no busy CI machine misses (not a speed check: the benchmark
/// measures speed) and a memory cap an interpreter fits in.
const LIMITS: CallLimits = CallLimits {
    deadline: Duration::from_secs(5),
    memory_bytes: 64 << 20,
};

/// Settings the Rust policy refuses after parsing them, with its message.
const BAD_RULES: [&str; 3] = [
    r#"{"rules": [{"security-groups": ["sg-0a1b2c3d"]}, {"security-groups": ["sg-bad"]}]}"#,
    r#"{"rules": [{"security-groups": []}]}"#,
    r#"{"rules": [{"security-groups": ["sg-0a1b2c3d", "sg-0a1b2c3d"]}]}"#,
];
/// Settings the Rust policy refuses while parsing them; the messages differ
/// in wording (serde's) but name the field.
const BAD_FIELDS: [(&str, &str); 2] = [
    (
        r#"{"rules": [{"namespace": ["x"], "security-groups": ["sg-0a1b2c3d"]}]}"#,
        "namespace",
    ),
    (r#"{"rules": [{"namespaces": ["x"]}]}"#, "security-groups"),
];

fn decides_like_the_rust_policy(component: PathBuf) {
    let cache = tempfile::tempdir().expect("cache dir");
    let engine = PolicyEngine::new(Some(ArtifactCache::new(cache.path()))).expect("engine");
    let name = component.file_stem().expect("name").to_string_lossy();
    let load = || {
        CompiledPolicy::from_file(
            &engine,
            &component,
            &name,
            Some(Decision::SecurityGroups),
            None,
        )
        .unwrap_or_else(|e| panic!("{name} does not load: {e}"))
    };
    let compiled = load();
    let report = compiled.report();
    assert!(!report.from_cache, "the cache was empty");
    assert!(
        report.imports.iter().all(|i| i.starts_with("weft:policy/")),
        "{name} imports more than the contract: {:?}",
        report.imports
    );
    // The second load (a restart, a reload) comes from the compiled cache.
    assert!(load().report().from_cache, "{name} was compiled twice");

    let dir = workspace_root().join("policies/sg-selector/fixtures");
    let fixtures = load_fixtures::<Request, SgOutcome>(&dir).expect("fixtures");
    assert!(fixtures.len() >= 5, "only {} fixtures", fixtures.len());
    for file in &fixtures {
        let fixture = &file.fixture;
        let native = run_security_fixture::<SgSelector>(fixture).expect("native configure");
        let module = compiled
            .configure(&fixture.settings_json(), LIMITS)
            .unwrap_or_else(|e| panic!("{name}, {}: configure: {e}", fixture.name));
        // An interpreter is too large for an image (compiling it would cost a
        // second compile of the interpreter at each load): its decisions
        // configure their own instance, as before images.
        let no_image = module.no_image_reason().unwrap_or("it has an image");
        eprintln!("{name}: {no_image}");
        assert!(no_image.contains("larger than"), "{name}: {no_image}");
        let (answer, _) = module
            .select_security_groups(&fixture.input)
            .unwrap_or_else(|e| panic!("{name}, {}: {e}", fixture.name));
        let outcome = SgOutcome::from(answer);
        assert_eq!(outcome, native, "{name}, {}", fixture.name);
        fixture
            .check(&outcome)
            .unwrap_or_else(|e| panic!("{name}, {}: {e}", fixture.name));
    }

    for settings in BAD_RULES {
        let native = SgSelector::configure(settings).expect_err("the Rust policy refuses");
        let err = compiled
            .configure(settings, LIMITS)
            .err()
            .unwrap_or_else(|| panic!("{name} accepted {settings}"));
        assert!(
            err.to_string().contains(&native),
            "{name}: {settings}:\n  refused with {err}\n  Rust says {native}"
        );
    }
    for (settings, field) in BAD_FIELDS {
        assert!(SgSelector::configure(settings).is_err());
        let err = compiled
            .configure(settings, LIMITS)
            .err()
            .unwrap_or_else(|| panic!("{name} accepted {settings}"));
        assert!(err.to_string().contains(field), "{name}: {settings}: {err}");
    }
}

#[test]
fn python_sg_selector_decides_like_the_rust_one() {
    decides_like_the_rust_policy(build_example("sg-selector-py", componentize_py));
}

#[test]
fn javascript_sg_selector_decides_like_the_rust_one() {
    decides_like_the_rust_policy(build_example("sg-selector-js", componentize_js));
}

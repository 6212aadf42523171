//! The policy directory on a `PolicySet`: modules of the directory override
//! the configuration, refusals keep the module in force, removal returns to
//! the configuration, two modules for one role are refused, shadows run
//! beside the active policy and never act.

use crate::support::policy as common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_host::metrics::Metrics;
use weft_host::policy::view::RoleView;
use weft_host::policy::{PoliciesConfig, PolicyConfig, PolicySet};
use weft_test_artifacts::{CHAOS_POOL, SG_SELECTOR, WARM_POOL};

fn set_with_dir(dir: &Path, config: PoliciesConfig) -> (PolicySet, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let config = PoliciesConfig {
        dir: Some(dir.to_path_buf()),
        ..config
    };
    let set = PolicySet::from_config(&config, metrics.clone()).expect("valid configuration");
    (set, metrics)
}

fn role(set: &PolicySet, name: &str) -> RoleView {
    set.view()
        .roles
        .into_iter()
        .find(|r| r.role == name)
        .expect("role")
}

/// Copies `from` to `dir/name` (with `toml` as `NAME.toml` when given), as
/// an operator would: a hidden temp file renamed into place.
fn drop_in(dir: &Path, name: &str, from: &str, toml: Option<&str>) -> PathBuf {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(from, &tmp).expect("copy");
    let path = dir.join(format!("{name}.wasm"));
    std::fs::rename(&tmp, &path).expect("rename");
    if let Some(toml) = toml {
        std::fs::write(dir.join(format!("{name}.toml")), toml).expect("toml");
    }
    path
}

/// A `NAME.toml` running the chaos policy in `mode`.
fn chaos_toml(mode: &str) -> String {
    format!("settings = {{ mode = \"{mode}\" }}\ndeadline-ms = {GENEROUS_DEADLINE_MS}")
}

#[test]
fn a_module_of_the_directory_overrides_the_configuration_until_it_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let configured = PolicyConfig {
        settings: serde_json::from_str(&chaos("ok")).expect("json"),
        deadline_ms: GENEROUS_DEADLINE_MS,
        ..PolicyConfig::module(CHAOS_POOL)
    };
    let (set, _) = set_with_dir(
        dir.path(),
        PoliciesConfig {
            pool_sizing: Some(configured),
            ..Default::default()
        },
    );
    assert!(set.apply_directory().is_empty());
    assert_eq!(role(&set, "pool-sizing").source, "config");
    assert_eq!(set.size_pool(&pool_state()).reason, "chaos: Ok");

    let path = drop_in(
        dir.path(),
        "spare",
        CHAOS_POOL,
        Some(&chaos_toml("release-primary")),
    );
    assert!(set.apply_directory().is_empty());
    let pool = role(&set, "pool-sizing");
    assert_eq!(
        (pool.source.as_str(), pool.policy.as_str()),
        ("directory", "spare")
    );
    assert_eq!(pool.module.as_deref(), Some(path.as_path()));
    assert_eq!(pool.world.as_deref(), Some("pool-sizing"));
    assert_eq!(pool.from_image, Some(true));
    assert!(
        set.size_pool(&pool_state())
            .reason
            .contains("ReleasePrimary")
    );

    // Unchanged files are not loaded again.
    let loaded_at = role(&set, "pool-sizing").loaded_at;
    set.apply_directory();
    assert_eq!(
        role(&set, "pool-sizing").decisions,
        1,
        "same state in force"
    );
    assert_eq!(role(&set, "pool-sizing").loaded_at, loaded_at);

    std::fs::remove_file(&path).expect("remove");
    assert!(set.apply_directory().is_empty());
    assert_eq!(role(&set, "pool-sizing").source, "config");
    assert_eq!(set.size_pool(&pool_state()).reason, "chaos: Ok");
}

#[test]
fn a_broken_file_is_refused_and_the_module_in_force_stays_removal_returns_to_the_builtin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (set, metrics) = set_with_dir(dir.path(), PoliciesConfig::default());
    let path = drop_in(dir.path(), "pool", CHAOS_POOL, Some(&chaos_toml("ok")));
    set.apply_directory();
    let sha = role(&set, "pool-sizing").sha256.expect("loaded");

    std::fs::write(&path, b"not wasm at all").expect("break it");
    let refused = set.apply_directory();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].files, vec![path.clone()]);
    assert!(
        refused[0].message.contains("not a WebAssembly component"),
        "{refused:?}"
    );
    assert_eq!(set.refused_files(), refused);
    let pool = role(&set, "pool-sizing");
    assert_eq!(
        pool.sha256.as_deref(),
        Some(sha.as_str()),
        "old one in force"
    );
    assert_eq!(set.size_pool(&pool_state()).reason, "chaos: Ok");

    // A settings file the policy rejects is refused the same way; both
    // refusals are charged to the role whose file it is.
    drop_in(
        dir.path(),
        "pool",
        CHAOS_POOL,
        Some(&chaos_toml("configure-error")),
    );
    set.apply_directory();
    let pool = role(&set, "pool-sizing");
    assert_eq!(pool.sha256.as_deref(), Some(sha.as_str()));
    assert!(
        pool.last_refusal
            .expect("refusal")
            .message
            .contains("configure-error requested")
    );
    assert!(
        metrics
            .encode()
            .contains(r#"weft_policy_reloads_total{role="pool-sizing",outcome="refused"} 2"#),
        "{}",
        metrics.encode()
    );

    std::fs::remove_file(&path).expect("remove");
    assert!(set.apply_directory().is_empty(), "nothing refused any more");
    let pool = role(&set, "pool-sizing");
    assert_eq!(
        (pool.source.as_str(), pool.policy.as_str()),
        ("builtin", "warm-pool")
    );
    assert!(pool.sha256.is_none());
    assert_eq!(pool.from_image, None);
}

#[test]
fn two_modules_for_one_role_are_refused_naming_both_and_the_module_in_force_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (set, _) = set_with_dir(dir.path(), PoliciesConfig::default());
    drop_in(dir.path(), "a-first", CHAOS_POOL, Some(&chaos_toml("ok")));
    set.apply_directory();
    let before = role(&set, "pool-sizing");
    assert_eq!(before.policy, "a-first");

    let second = drop_in(dir.path(), "b-second", WARM_POOL, None);
    let refused = set.apply_directory();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let message = &refused[0].message;
    assert!(
        message.contains("a-first.wasm") && message.contains("b-second.wasm"),
        "{message}"
    );
    assert!(
        message.contains("two modules for the pool-sizing policy"),
        "{message}"
    );
    let after = role(&set, "pool-sizing");
    assert_eq!(after.policy, "a-first");
    assert_eq!(after.sha256, before.sha256);
    assert_eq!(set.size_pool(&pool_state()).reason, "chaos: Ok");

    // With one left, it takes over.
    std::fs::remove_file(dir.path().join("a-first.wasm")).expect("remove");
    assert!(set.apply_directory().is_empty());
    assert_eq!(role(&set, "pool-sizing").module, Some(second));
}

#[test]
fn a_shadow_runs_beside_the_active_policy_and_its_disagreements_are_counted_and_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (set, metrics) = set_with_dir(dir.path(), PoliciesConfig::default());
    // Pods in `shop` get sg-0aaaaaaaaaaaaaaaa from the shadow; the active
    // built-in gives every pod the node's groups.
    drop_in(
        dir.path(),
        "strict.shadow",
        SG_SELECTOR,
        Some(
            r#"settings = { rules = [ { namespaces = ["shop"], security-groups = ["sg-0aaaaaaaaaaaaaaaa"] } ] }"#,
        ),
    );
    assert!(set.apply_directory().is_empty());
    let request = sg_request();
    let groups = set.select_security_groups(&request).expect("groups");
    assert_eq!(
        groups, request.node_security_groups,
        "the active policy acts"
    );
    let mut other = sg_request();
    other.pod.namespace = "web".into();
    set.select_security_groups(&other).expect("groups");

    let sg = role(&set, "security-groups");
    assert_eq!(sg.source, "builtin");
    let shadow = sg.shadow.expect("shadow");
    assert_eq!(shadow.policy, "strict");
    assert_eq!((shadow.decisions, shadow.disagreements), (2, 1));
    assert_eq!(shadow.recent.len(), 1);
    let d = &shadow.recent[0];
    assert_eq!(d.input, "pod shop/cart-7d9f");
    assert_eq!(
        d.active["ok"],
        serde_json::json!(request.node_security_groups)
    );
    assert_eq!(d.shadow["ok"], serde_json::json!(["sg-0aaaaaaaaaaaaaaaa"]));
    let line =
        r#"weft_policy_shadow_disagreements_total{role="security-groups",policy="strict"} 1"#;
    assert!(metrics.encode().contains(line), "{}", metrics.encode());

    // `shadow = true` in the settings file does the same; two shadows for
    // one role are refused like two modules.
    drop_in(dir.path(), "other", SG_SELECTOR, Some("shadow = true"));
    let refused = set.apply_directory();
    assert!(
        refused.len() == 1 && refused[0].message.contains("two shadows"),
        "{refused:?}"
    );
    std::fs::remove_file(dir.path().join("strict.shadow.wasm")).expect("remove");
    assert!(set.apply_directory().is_empty());
    let shadow = role(&set, "security-groups").shadow.expect("shadow");
    assert_eq!(shadow.policy, "other");
}

//! The compiled-artifact cache: a restart loads the artifact, and anything
//! on disk the agent did not write itself (a tampered or swapped entry, a
//! symlink, a directory or file others can write, a file of another user)
//! is never deserialized: the module is compiled again.

use crate::support::policy as common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use weft_host::policy::{ArtifactCache, CompiledPolicy, LoadReport, PolicyEngine};
use weft_test_artifacts::{CHAOS_POOL, CHAOS_SUBNET};

/// Loads `module` through a cache in `dir` on a fresh engine (as a
/// restarted agent does) and checks it decides as itself.
fn load(dir: &Path, module: &str) -> LoadReport {
    let engine = PolicyEngine::new(Some(ArtifactCache::new(dir))).expect("engine");
    let compiled =
        CompiledPolicy::from_file(&engine, module.as_ref(), "p", None, None).expect("loads");
    let report = compiled.report().clone();
    let module = compiled
        .configure(&chaos("ok"), limits(GENEROUS_DEADLINE_MS, 32))
        .expect("configures");
    if report.decision == weft_host::policy::Decision::PoolSizing {
        let (decision, _) = module.size_pool(&pool_state()).expect("decides");
        assert_eq!(decision.reason, "chaos: Ok");
    } else {
        let (request, candidates) = subnet_input();
        let (choice, _) = module
            .select_subnet(&request, &candidates)
            .expect("decides");
        assert_eq!(
            choice,
            weft_policy_sdk::subnet::Choice::UseSubnet("subnet-0a".into())
        );
    }
    report
}

/// The cache's artifact entries (not its key).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    entries.sort();
    entries
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

/// A fresh cache directory below a temp dir, and the temp dir.
fn cache_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("policy-cache");
    (tmp, dir)
}

#[test]
fn compiled_modules_are_cached_across_engines_privately() {
    let (_tmp, dir) = cache_dir();
    assert!(!load(&dir, CHAOS_POOL).from_cache, "first load compiles");
    assert!(
        load(&dir, CHAOS_POOL).from_cache,
        "a restart loads the cached artifact"
    );
    assert_eq!(mode(&dir), 0o700, "the directory is created 0700");
    assert_eq!(mode(&dir.join("key")), 0o600, "the key is created 0600");
    let entries = entries(&dir);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(mode(&entries[0]), 0o600);
}

#[test]
fn a_corrupt_entry_is_ignored_and_rewritten() {
    let (_tmp, dir) = cache_dir();
    load(&dir, CHAOS_POOL);
    let entry = &entries(&dir)[0];
    let mut bytes = std::fs::read(entry).expect("entry");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(entry, &bytes).expect("corrupt");
    assert!(
        !load(&dir, CHAOS_POOL).from_cache,
        "a corrupt entry is ignored"
    );
    assert!(load(&dir, CHAOS_POOL).from_cache, "and rewritten");
}

#[test]
fn an_entry_swapped_for_another_modules_artifact_is_not_loaded() {
    // Someone who can write the cache puts the artifact of another module
    // (valid native code, with its own valid framing) under this module's
    // name: without authentication bound to the module, the agent would run
    // the other module's code as this policy.
    let (_tmp, dir) = cache_dir();
    let pool_sha = load(&dir, CHAOS_POOL).sha256;
    load(&dir, CHAOS_SUBNET);
    let (pool, subnet): (Vec<PathBuf>, Vec<PathBuf>) =
        entries(&dir).into_iter().partition(|entry| {
            entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&pool_sha))
        });
    assert_eq!((pool.len(), subnet.len()), (1, 1));
    std::fs::copy(&subnet[0], &pool[0]).expect("swap");
    let report = load(&dir, CHAOS_POOL);
    assert!(
        !report.from_cache,
        "a swapped entry must be recompiled, never deserialized"
    );
}

#[test]
fn a_symlinked_entry_is_not_followed() {
    let (tmp, dir) = cache_dir();
    load(&dir, CHAOS_POOL);
    let entry = entries(&dir).remove(0);
    // A valid entry moved elsewhere, and a symlink to it in its place.
    let elsewhere = tmp.path().join("elsewhere.cwasm");
    std::fs::rename(&entry, &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &entry).expect("symlink");
    assert!(
        !load(&dir, CHAOS_POOL).from_cache,
        "a symlinked entry is recompiled"
    );
}

#[test]
fn a_directory_others_can_write_is_not_trusted() {
    let (_tmp, dir) = cache_dir();
    load(&dir, CHAOS_POOL);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    assert!(
        !load(&dir, CHAOS_POOL).from_cache,
        "a world-writable cache is not read"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    assert!(
        load(&dir, CHAOS_POOL).from_cache,
        "and trusted again once fixed"
    );
}

#[test]
fn an_entry_others_can_write_or_own_is_not_trusted() {
    let (_tmp, dir) = cache_dir();
    load(&dir, CHAOS_POOL);
    let entry = entries(&dir).remove(0);
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert!(
        !load(&dir, CHAOS_POOL).from_cache,
        "a group/world-writable entry is recompiled"
    );
    // The rewrite replaced it with a private entry.
    assert_eq!(mode(&entries(&dir)[0]), 0o600);
    if nix::unistd::geteuid().is_root() {
        let entry = entries(&dir).remove(0);
        std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).expect("chown");
        assert!(
            !load(&dir, CHAOS_POOL).from_cache,
            "an entry of another user is recompiled"
        );
    }
}

#[test]
fn entries_of_another_key_are_not_trusted() {
    let (_tmp, dir) = cache_dir();
    load(&dir, CHAOS_POOL);
    // A new key (e.g. the cache restored from another machine): every
    // entry is re-authenticated and fails.
    std::fs::remove_file(dir.join("key")).expect("remove the key");
    assert!(!load(&dir, CHAOS_POOL).from_cache);
    assert!(load(&dir, CHAOS_POOL).from_cache);
}

//! The SDK as a policy author outside this repository gets it: the crate
//! `cargo package` makes carries the contract, a policy crate of its own
//! builds against the extracted package for `wasm32-wasip2`, and `weftd`
//! loads the result and decides like the in-tree build.

use std::path::Path;
use std::process::Command;
use weft_tests::support::binaries::weftd_binary;
use weft_tests::support::policy_build::{
    authoring_dir, build_rust_policy, eval_matches_fixture, packaged_sdk, run, workspace_root,
};

/// Files of `dir` (names and contents), sorted.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_name().expect("name").to_string_lossy().into();
            (name, text)
        })
        .collect();
    files.sort();
    files
}

/// The SDK's copy of the contract is the repository's `wit/`, file for
/// file: change `wit/` and this fails until the copy is refreshed
/// (`cp wit/*.wit policies/sdk/wit/`).
#[test]
fn sdk_carries_the_contract() {
    let root = workspace_root();
    assert_eq!(
        files(&root.join("policies/sdk/wit")),
        files(&root.join("wit")),
        "policies/sdk/wit differs from wit/: run `cp wit/*.wit policies/sdk/wit/`"
    );
}

/// `sg-selector`, moved out of the workspace as its author would have it:
/// its sources, fixtures and a manifest of its own that depends on the
/// packaged SDK.
fn out_of_tree_sg_selector(sdk: &Path) -> std::path::PathBuf {
    let project = authoring_dir().join("out-of-tree-sg-selector");
    let src = workspace_root().join("policies/sg-selector/src");
    std::fs::create_dir_all(project.join("src")).expect("mkdir");
    for (name, text) in files(&src) {
        std::fs::write(project.join("src").join(name), text).expect("write source");
    }
    let manifest = format!(
        r#"[package]
name = "sg-selector-out-of-tree"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weft-policy-sdk = {{ path = {sdk:?}, features = ["security-groups"] }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[workspace]
"#,
        sdk = sdk.display().to_string()
    );
    std::fs::write(project.join("Cargo.toml"), manifest).expect("write manifest");
    project
}

/// Fails without a self-contained package: the guest bindings of the
/// packaged SDK then point at `../../wit`, which is not in the package.
#[test]
fn policy_builds_from_the_packaged_sdk_and_loads() {
    let sdk = packaged_sdk();
    assert!(
        sdk.join("wit/policy.wit").is_file(),
        "the package lacks wit/policy.wit"
    );
    let project = out_of_tree_sg_selector(&sdk);
    let component = build_rust_policy(&project, "sg-selector-out-of-tree");

    let weftd = weftd_binary();
    let check = run(
        Command::new(&weftd)
            .args(["policy", "check"])
            .arg(&component)
            .env("RUST_LOG", "warn"),
        "weftd policy check",
    );
    assert!(check.contains("world:        security-groups"), "{check}");
    assert!(check.contains("weft:policy/log@0.1.0"), "{check}");

    // Same decisions as the in-tree policy's fixtures demand.
    let fixtures = workspace_root().join("policies/sg-selector/fixtures");
    let names: Vec<String> = files(&fixtures).into_iter().map(|(name, _)| name).collect();
    assert!(names.len() >= 5, "only {} fixtures", names.len());
    for name in names {
        eval_matches_fixture(&weftd, &component, &fixtures.join(name));
    }
}

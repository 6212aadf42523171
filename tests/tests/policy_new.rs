//! `weftd policy new` for every world and language: the project it writes
//! builds as its README says (Rust against the packaged SDK, Python with
//! componentize-py, JavaScript with `npm run build`), its native test passes
//! (Rust), and the component decides its fixture under `weftd policy eval`.
//!
//! Python and JavaScript components hold an interpreter: building one takes
//! ~20 s and loading it ~30 s of CPU (`BENCHMARKS.md`). In CI every world is
//! generated but one world per interpreted language is built and evaluated
//! (the security-groups world is also covered by `policy_languages`);
//! `WEFT_POLICY_NEW_ALL=1` builds and evaluates all of them.

use std::path::{Path, PathBuf};
use std::process::Command;
use weft_tests::support::binaries::weftd_binary;
use weft_tests::support::policy_build::{
    authoring_dir, build_rust_policy, cargo, componentize_py, eval_matches_fixture,
    js_node_modules, packaged_sdk, run,
};

const WORLDS: [&str; 3] = ["pool-sizing", "subnet-selection", "security-groups"];

/// Whether to build and evaluate `world` in an interpreted language: all
/// worlds with `WEFT_POLICY_NEW_ALL=1`, else only `short`.
fn build_interpreted(world: &str, short: &str) -> bool {
    world == short || std::env::var_os("WEFT_POLICY_NEW_ALL").is_some_and(|v| v == "1")
}

/// Runs `weftd policy new NAME --world WORLD --lang LANG [extra]` into a
/// fresh directory under the test's output and returns the project.
fn generate(lang: &str, world: &str, extra: &[&std::ffi::OsStr]) -> PathBuf {
    let name = format!("new-{lang}-{world}");
    let project = authoring_dir().join("generated").join(&name);
    if project.exists() {
        std::fs::remove_dir_all(&project).expect("remove the previous run's project");
    }
    let out = run(
        Command::new(weftd_binary())
            .args([
                "policy", "new", &name, "--world", world, "--lang", lang, "--dir",
            ])
            .arg(&project)
            .args(extra),
        &format!("weftd policy new {name}"),
    );
    assert!(out.contains("README.md"), "{out}");
    for file in ["README.md", "fixtures/example.json"] {
        assert!(project.join(file).is_file(), "{name} has no {file}");
    }
    project
}

fn fixture(project: &Path) -> PathBuf {
    project.join("fixtures/example.json")
}

#[test]
fn rust_projects_test_build_and_decide() {
    let sdk = packaged_sdk();
    let weftd = weftd_binary();
    let native_target = authoring_dir().join("native-target");
    for world in WORLDS {
        let project = generate("rust", world, &["--sdk-path".as_ref(), sdk.as_os_str()]);
        // Same dependency versions as the workspace, offline.
        std::fs::copy(
            weft_tests::support::policy_build::workspace_root().join("Cargo.lock"),
            project.join("Cargo.lock"),
        )
        .expect("copy Cargo.lock");
        let test = run(
            cargo()
                .current_dir(&project)
                .args(["test", "--offline", "--target-dir"])
                .arg(&native_target),
            &format!("cargo test in the generated {world} project"),
        );
        assert!(test.contains("test fixtures ... ok"), "{test}");
        let name = format!("new-rust-{world}");
        let component = build_rust_policy(&project, &name);
        eval_matches_fixture(&weftd, &component, &fixture(&project));
    }
}

#[test]
fn python_projects_build_and_decide() {
    let weftd = weftd_binary();
    for world in WORLDS {
        let project = generate("python", world, &[]);
        if !build_interpreted(world, "pool-sizing") {
            continue;
        }
        let component = project.join(format!("new_python_{}.wasm", world.replace('-', "_")));
        run(
            &mut componentize_py(&project, Path::new("wit"), world, &component),
            &format!("componentize-py in the generated {world} project"),
        );
        eval_matches_fixture(&weftd, &component, &fixture(&project));
    }
}

#[test]
fn javascript_projects_build_with_npm_and_decide() {
    let weftd = weftd_binary();
    for world in WORLDS {
        let project = generate("js", world, &[]);
        if !build_interpreted(world, "subnet-selection") {
            continue;
        }
        // The pinned ComponentizeJS scripts/setup installed, so the build
        // runs offline.
        std::os::unix::fs::symlink(js_node_modules(), project.join("node_modules"))
            .expect("link node_modules");
        run(
            Command::new("npm")
                .current_dir(&project)
                .env("npm_config_update_notifier", "false")
                .args(["run", "--silent", "build"]),
            &format!("npm run build in the generated {world} project"),
        );
        let component = project.join(format!("new_js_{}.wasm", world.replace('-', "_")));
        eval_matches_fixture(&weftd, &component, &fixture(&project));
    }
}

#[test]
fn existing_directories_and_bad_names_are_refused() {
    let dir = authoring_dir().join("generated").join("taken");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("keep"), "mine").expect("write");
    let weftd = weftd_binary();
    let out = Command::new(&weftd)
        .args(["policy", "new", "taken", "--world", "pool-sizing", "--dir"])
        .arg(&dir)
        .output()
        .expect("run weftd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("keep")).expect("kept"),
        "mine"
    );

    let out = Command::new(&weftd)
        .args(["policy", "new", "Bad_Name", "--world", "pool-sizing"])
        .current_dir(authoring_dir())
        .output()
        .expect("run weftd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a policy name"), "{err}");
    assert!(!authoring_dir().join("Bad_Name").exists());
}

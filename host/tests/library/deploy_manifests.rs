//! `deploy/` agrees with the code: the manifests parse into the Kubernetes
//! types, the ConfigMap is a valid configuration with the DaemonSet's VPC CNI
//! variables applied, binary names, paths and ports match what weftd uses,
//! and the IAM policy allows exactly the EC2 actions `Ec2Cloud` calls.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container};
use k8s_openapi::api::rbac::v1::ClusterRole;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use weft_host::config::{AgentConfig, DEFAULT_INTROSPECTION_ADDRESS, DEFAULT_METRICS_ADDRESS};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every document of every `deploy/*.yaml`, as JSON values.
fn documents() -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "deploy/ has {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            docs.push(serde_json::to_value(value).unwrap());
        }
    }
    docs
}

fn find<T: serde::de::DeserializeOwned>(kind: &str, name: &str) -> T {
    let doc = documents()
        .into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/ has no {kind} {name}"));
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

fn daemonset() -> DaemonSet {
    find("DaemonSet", "weft")
}

fn container<'a>(ds: &'a DaemonSet, name: &str) -> &'a Container {
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The ConfigMap's configuration with the DaemonSet's literal variables.
fn config() -> AgentConfig {
    let cm: ConfigMap = find("ConfigMap", "weft-config");
    let text = cm.data.unwrap()["weftd.toml"].clone();
    let ds = daemonset();
    let env: HashMap<String, String> = container(&ds, "weftd")
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    let names: Vec<String> = env.keys().cloned().collect();
    let (config, overlay) = AgentConfig::parse_with_env(&text, &|k| env.get(k).cloned(), &names)
        .unwrap_or_else(|e| panic!("the ConfigMap's weftd.toml: {e}"));
    assert!(overlay.ignored.is_empty(), "{:?}", overlay.ignored);
    config
}

#[test]
fn every_manifest_parses_into_its_kubernetes_type() {
    for doc in documents() {
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let parsed = match kind.as_str() {
            "DaemonSet" => serde_json::from_value::<DaemonSet>(doc).map(drop),
            "ConfigMap" => serde_json::from_value::<ConfigMap>(doc).map(drop),
            "ClusterRole" => serde_json::from_value::<ClusterRole>(doc).map(drop),
            "ClusterRoleBinding" => {
                serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(doc)
                    .map(drop)
            }
            "ServiceAccount" => {
                serde_json::from_value::<k8s_openapi::api::core::v1::ServiceAccount>(doc).map(drop)
            }
            other => panic!("unexpected kind {other} in deploy/"),
        };
        parsed.unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    config();
}

/// The directory a mount of `container` puts at `path`, and the host path
/// behind it.
fn mount(ds: &DaemonSet, container_name: &str, path: &Path) -> (PathBuf, Option<String>) {
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let mount = container(ds, container_name)
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| path.starts_with(&m.mount_path))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| panic!("{container_name} mounts nothing holding {}", path.display()));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    (
        PathBuf::from(&mount.mount_path),
        volume.host_path.as_ref().map(|h| h.path.clone()),
    )
}

#[test]
fn paths_binaries_and_ports_agree_with_the_code() {
    let config = config();
    let ds = daemonset();
    // The CNI directories are the host's own, at the same paths.
    for (dir, who) in [
        (&config.cni.bin_dir, "install-plugin"),
        (&config.cni.conf_dir, "weftd"),
    ] {
        let (at, host) = mount(&ds, who, dir);
        assert_eq!(&at, dir);
        assert_eq!(host.as_deref(), Some(dir.to_str().unwrap()));
    }
    // The socket (which the plugin on the host calls) and the state are on a host path.
    for path in [&config.agent.socket, &config.agent.state_dir] {
        let (_, host) = mount(&ds, "weftd", path);
        assert!(host.is_some(), "{} is not on a host path", path.display());
    }
    // The netconf the agent writes names the same socket the probes use.
    let conflist = weft_host::install::conflist(&config.cni, &config.agent.socket);
    assert_eq!(
        conflist["plugins"][0]["socket"],
        config.agent.socket.to_str().unwrap()
    );
    let probe = container(&ds, "weftd")
        .readiness_probe
        .as_ref()
        .and_then(|p| p.exec.as_ref())
        .and_then(|e| e.command.clone())
        .unwrap();
    assert!(
        probe.contains(&config.agent.socket.display().to_string()),
        "{probe:?}"
    );

    // Binaries: the image puts weftd and the plugins where the manifests say.
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let weftd = container(&ds, "weftd").command.as_ref().unwrap()[0].clone();
    assert!(weftd.ends_with("/weftd"), "{weftd}");
    assert!(
        dockerfile.contains(&format!("target/release/weftd {weftd}")),
        "{weftd}"
    );
    let install = container(&ds, "install-plugin").command.clone().unwrap();
    assert_eq!(&install[..2], [weftd.as_str(), "install"]);
    let source = &install[install.iter().position(|a| a == "--source").unwrap() + 1];
    for plugin in weft_host::install::plugins(&config.cni) {
        assert!(
            dockerfile.contains(&format!("{source}/{plugin}")),
            "the image has no {source}/{plugin}"
        );
    }
    // The agent runs `nft` for its egress rules (plumbing::egress): the
    // image it runs in has it.
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        runtime.contains("nftables"),
        "the runtime stage of deploy/Dockerfile does not install nftables"
    );
    // Every subcommand and flag the manifests use exists.
    for command in [
        install,
        container(&ds, "weftd").command.clone().unwrap(),
        probe,
    ] {
        let help = std::process::Command::new(env!("CARGO_BIN_EXE_weftd"))
            .args([&command[1], "--help"])
            .output()
            .unwrap();
        assert!(help.status.success(), "weftd {} does not exist", command[1]);
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in command.iter().filter(|a| a.starts_with("--")) {
            assert!(
                help.contains(flag.as_str()),
                "weftd {} has no {flag}",
                command[1]
            );
        }
    }

    // Ports: aws-node's, on the addresses the agent binds.
    let ports: HashMap<String, i32> = container(&ds, "weftd")
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(
        config.agent.metrics_address.0.unwrap().port() as i32,
        ports["metrics"]
    );
    assert_eq!(
        config.agent.introspection_address.0.unwrap().port() as i32,
        ports["introspection"]
    );
    assert!(DEFAULT_METRICS_ADDRESS.ends_with(&format!(":{}", ports["metrics"])));
    assert!(DEFAULT_INTROSPECTION_ADDRESS.ends_with(&format!(":{}", ports["introspection"])));
}

#[test]
fn rbac_reads_pods_and_nodes_and_patches_only_pods() {
    let role: ClusterRole = find("ClusterRole", "weft");
    let verbs = |resource: &str| -> BTreeSet<String> {
        role.rules
            .iter()
            .flatten()
            .filter(|r| r.resources.iter().flatten().any(|x| x == resource))
            .flat_map(|r| r.verbs.clone())
            .collect()
    };
    assert_eq!(
        verbs("pods"),
        ["get", "list", "patch", "watch"].map(String::from).into()
    );
    assert_eq!(
        verbs("nodes"),
        ["get", "list", "watch"].map(String::from).into()
    );
}

/// `snake_case` -> `PascalCase`.
fn pascal(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The EC2 operations the code under `host/src/cloud` sends through its
/// client (`.client.<operation>()`), plus `CreateTags` when it tags on create.
fn ec2_calls() -> BTreeSet<String> {
    let mut calls = BTreeSet::new();
    let mut dirs = vec![repo().join("host/src/cloud")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let compact: String = text.split_whitespace().collect();
            for piece in compact.split(".client.").skip(1) {
                let op: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if piece[op.len()..].starts_with("()") {
                    calls.insert(pascal(&op));
                }
            }
            if compact.contains(".tag_specifications(") {
                calls.insert("CreateTags".into());
            }
        }
    }
    calls
}

#[test]
fn the_iam_policy_allows_exactly_the_ec2_calls_of_the_code() {
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/iam-policy.json")).unwrap(),
    )
    .unwrap();
    let actions: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().strip_prefix("ec2:").unwrap().to_owned())
        .collect();
    let calls = ec2_calls();
    assert!(calls.len() >= 8, "the scan found only {calls:?}");
    assert_eq!(
        actions, calls,
        "deploy/iam-policy.json vs the calls in host/src/cloud"
    );
}

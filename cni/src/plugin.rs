//! What `weft` does for each command, independent of how it reaches the
//! agent: [`run`] takes the environment, stdin and an [`Agent`], and returns
//! what to print and whether it failed. `main` only wires the process to it.

use crate::api::{
    AddRequest, AddResponse, CheckRequest, CheckResponse, DelRequest, DelResponse, GcRequest,
    GcResponse, PodRef, StatusResponse,
};
use crate::args::CniArgs;
use crate::env::{self, AttachmentEnv, Command};
use crate::error::{CniError, ErrorCode};
use crate::log::{LogLevel, Logger};
use crate::netconf::{self, NetConf};
use crate::version::{CniVersion, VersionInfo};
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

/// Largest network configuration accepted on stdin.
pub const MAX_STDIN_BYTES: u64 = 1 << 20;

/// The calls `weft` makes to `weftd` (implemented over HTTP by
/// [`crate::client::Client`]; tests substitute a double).
pub trait Agent {
    /// `POST /v1/cni/add`.
    fn add(&self, req: &AddRequest) -> Result<AddResponse, CniError>;
    /// `POST /v1/cni/del`.
    fn del(&self, req: &DelRequest) -> Result<DelResponse, CniError>;
    /// Keeps a DEL the agent could not answer for it to carry out when it
    /// can (the [`crate::spool`] beside its socket).
    fn spool_del(&self, req: &DelRequest) -> Result<(), CniError>;
    /// `POST /v1/cni/check`.
    fn check(&self, req: &CheckRequest) -> Result<CheckResponse, CniError>;
    /// `POST /v1/cni/gc`.
    fn gc(&self, req: &GcRequest) -> Result<GcResponse, CniError>;
    /// `GET /v1/status`.
    fn status(&self) -> Result<StatusResponse, CniError>;
}

/// What the process prints on stdout, and whether it exits with failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The result, version information or error object; `None` prints nothing.
    pub stdout: Option<String>,
    /// The error, when the command failed (exit status non-zero).
    pub error: Option<CniError>,
}

impl Output {
    /// A failure rendered in `version`.
    pub fn failure(error: CniError, version: CniVersion) -> Output {
        Output {
            stdout: Some(error.to_json(version)),
            error: Some(error),
        }
    }
}

/// Reads stdin up to [`MAX_STDIN_BYTES`] (code 6 beyond, code 5 on I/O errors).
pub fn read_stdin(input: impl Read) -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::with_capacity(4096);
    input
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            CniError::io(
                format!("cannot read stdin: {e}"),
                "the runtime must pass the network configuration on stdin",
            )
        })?;
    if buf.len() as u64 > MAX_STDIN_BYTES {
        return Err(CniError::decode(
            format!("the network configuration on stdin exceeds {MAX_STDIN_BYTES} bytes"),
            "check the CNI configuration file; weft's configuration is a few hundred bytes",
        ));
    }
    Ok(buf)
}

/// Runs one CNI command.
///
/// `env` looks up `CNI_*` variables; `connect` makes the agent client once
/// the configuration (socket path, timeout) is known.
pub fn run<A: Agent>(
    env: &dyn Fn(&str) -> Option<OsString>,
    stdin: Result<Vec<u8>, CniError>,
    connect: impl FnOnce(&NetConf) -> A,
) -> Output {
    let started = Instant::now();
    let object = stdin.and_then(|bytes| netconf::parse_object(&bytes));
    let version = object
        .as_ref()
        .ok()
        .and_then(netconf::version_hint)
        .unwrap_or(CniVersion::LATEST);
    let mut logger = Logger::new(LogLevel::Error);
    let command = Command::from_env(env);
    let name = command.as_ref().map_or("CNI command", |c| c.as_str());
    let result = command.and_then(|command| execute(command, env, object, connect, &mut logger));
    match result {
        Ok(stdout) => {
            logger.log(
                LogLevel::Info,
                format_args!("{name} succeeded in {:?}", started.elapsed()),
            );
            Output {
                stdout,
                error: None,
            }
        }
        Err(error) => {
            logger.log(LogLevel::Error, format_args!("{name} failed: {error}"));
            Output::failure(error, version)
        }
    }
}

/// A command with the environment it needs.
enum Invocation {
    Add(AttachmentEnv),
    Del(AttachmentEnv),
    Check(AttachmentEnv),
    Gc,
    Status,
}

fn execute<A: Agent>(
    command: Command,
    env: &dyn Fn(&str) -> Option<OsString>,
    object: Result<Map<String, Value>, CniError>,
    connect: impl FnOnce(&NetConf) -> A,
    logger: &mut Logger,
) -> Result<Option<String>, CniError> {
    let invocation = match command {
        Command::Version => {
            return Ok(Some(
                serde_json::to_string(&VersionInfo::current()).unwrap_or_default(),
            ));
        }
        Command::Add => Invocation::Add(AttachmentEnv::from_env(command, env)?),
        Command::Del => Invocation::Del(AttachmentEnv::from_env(command, env)?),
        Command::Check => Invocation::Check(AttachmentEnv::from_env(command, env)?),
        Command::Gc => Invocation::Gc,
        Command::Status => Invocation::Status,
    };
    let conf = NetConf::from_object(object?)?;
    *logger = Logger::new(conf.log_level);
    require_command_in_version(command, conf.cni_version)?;
    let agent = connect(&conf);
    match invocation {
        Invocation::Add(att) => add(&conf, &att, &agent, logger).map(Some),
        Invocation::Del(att) => del(&conf, &att, &agent, logger).map(|()| None),
        Invocation::Check(att) => check(&conf, &att, &agent).map(|()| None),
        Invocation::Gc => gc(&conf, &agent, logger).map(|()| None),
        Invocation::Status => status(&conf, &agent).map(|()| None),
    }
}

fn require_command_in_version(command: Command, version: CniVersion) -> Result<(), CniError> {
    let (allowed, since) = match command {
        Command::Check => (version.has_check(), CniVersion::V0_4_0),
        Command::Gc | Command::Status => (version.has_gc_and_status(), CniVersion::V1_1_0),
        _ => return Ok(()),
    };
    if allowed {
        Ok(())
    } else {
        Err(CniError::incompatible_version(
            format!("{} does not exist in CNI {version}", command.as_str()),
            format!(
                "{} needs cniVersion {since} or later in the network configuration",
                command.as_str()
            ),
        ))
    }
}

fn add(
    conf: &NetConf,
    att: &AttachmentEnv,
    agent: &dyn Agent,
    logger: &Logger,
) -> Result<String, CniError> {
    let args = CniArgs::parse(&att.args)?;
    let pod = match (&args.pod_namespace, &args.pod_name) {
        // podman, nerdctl, cnitool: a container, not a Kubernetes pod.
        (None, None) => PodRef::container(&att.container_id),
        (Some(namespace), Some(_)) if namespace.is_empty() => {
            return Err(CniError::invalid_env(
                "CNI_ARGS has an empty K8S_POD_NAMESPACE",
                "a Kubernetes namespace is never empty; leave both K8S_POD_NAMESPACE and K8S_POD_NAME out for a container that is not a pod",
            ));
        }
        _ => pod_ref(&args).ok_or_else(|| {
            CniError::invalid_env(
                "CNI_ARGS names the pod only partly (K8S_POD_NAMESPACE and K8S_POD_NAME go together)",
                "kubelet's runtime passes both; a runtime without Kubernetes passes neither",
            )
        })?,
    };
    let netns = existing_netns(att, Command::Add)?;
    let prev = conf.prev_result()?;
    let req = AddRequest {
        network: conf.name.clone(),
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        netns,
        cni_version: conf.cni_version,
        pod,
        mtu: conf.mtu,
    };
    logger.log(LogLevel::Debug, format_args!("ADD request {req:?}"));
    let mut result = agent.add(&req)?;
    if let Some(ip) = result
        .ips
        .iter()
        .find(|ip| ip.interface.is_some_and(|i| i >= result.interfaces.len()))
    {
        return Err(CniError::agent_protocol(
            format!(
                "weftd's ADD result gives {} an interface index out of range",
                ip.address
            ),
            "the weft plugin and weftd are probably different versions: install the plugin shipped with the running weftd image",
        ));
    }
    if result.dns.is_empty() {
        result.dns = conf.dns.clone();
    }
    if let Some(prev) = prev {
        result = result.chained_onto(prev);
    }
    Ok(result.render(conf.cni_version))
}

fn del(
    conf: &NetConf,
    att: &AttachmentEnv,
    agent: &dyn Agent,
    logger: &Logger,
) -> Result<(), CniError> {
    // DEL must succeed where it can: arguments it cannot use are skipped.
    let args = CniArgs::parse_lenient(&att.args);
    let req = DelRequest {
        network: conf.name.clone(),
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        netns: att.netns.clone(),
        pod: pod_ref(&args),
    };
    let released = match agent.del(&req) {
        Ok(answer) => answer.released,
        // weftd is down, restarting or too busy to answer: the runtime may
        // never retry, so the DEL is kept for weftd, which carries it out
        // before it serves another ADD. The address stays assigned until
        // then, so it cannot be handed out twice.
        Err(unreachable) if unreachable.code == ErrorCode::TRY_AGAIN_LATER => {
            agent.spool_del(&req).map_err(|spool| {
                CniError::try_again_later(
                    format!("{}; keeping the DEL for weftd failed too", unreachable.msg),
                    format!("{}. {}", spool.msg, unreachable.details),
                )
            })?;
            logger.log(
                LogLevel::Info,
                format_args!(
                    "DEL {} {}: weftd could not answer ({}); kept for it to carry out",
                    att.container_id, att.ifname, unreachable.msg
                ),
            );
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    logger.log(
        LogLevel::Info,
        format_args!(
            "DEL {} {}: released {released:?}",
            att.container_id, att.ifname
        ),
    );
    Ok(())
}

fn check(conf: &NetConf, att: &AttachmentEnv, agent: &dyn Agent) -> Result<(), CniError> {
    let args = CniArgs::parse(&att.args)?;
    let netns = existing_netns(att, Command::Check)?;
    let expected = conf.prev_result()?.ok_or_else(|| {
        CniError::invalid_netconf(
            "CHECK needs prevResult",
            "the runtime must pass the result of the container's last ADD as \"prevResult\"",
        )
    })?;
    let req = CheckRequest {
        network: conf.name.clone(),
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        netns,
        pod: pod_ref(&args),
        expected,
    };
    let differences = agent.check(&req)?.differences;
    if differences.is_empty() {
        Ok(())
    } else {
        Err(CniError::check_failed(
            format!(
                "container {} ({}) differs from its ADD result in {} place(s)",
                att.container_id,
                att.ifname,
                differences.len()
            ),
            differences.join("; "),
        ))
    }
}

fn gc(conf: &NetConf, agent: &dyn Agent, logger: &Logger) -> Result<(), CniError> {
    let req = GcRequest {
        network: conf.name.clone(),
        valid_attachments: conf.valid_attachments()?,
    };
    let released = agent.gc(&req)?.released;
    logger.log(
        LogLevel::Info,
        format_args!("GC released {} attachment(s)", released.len()),
    );
    Ok(())
}

fn status(conf: &NetConf, agent: &dyn Agent) -> Result<(), CniError> {
    match agent.status() {
        Ok(StatusResponse { ready: true, .. }) => Ok(()),
        Ok(StatusResponse { reason, .. }) => Err(CniError::not_available(
            format!(
                "weftd on {} is not ready to serve ADD",
                conf.socket.display()
            ),
            reason.unwrap_or_else(|| "weftd gave no reason; check its logs".into()),
        )),
        // The agent cannot be reached: STATUS reports that as "not available".
        Err(e) if e.code == ErrorCode::TRY_AGAIN_LATER => {
            Err(CniError::not_available(e.msg, e.details))
        }
        Err(e) => Err(e),
    }
}

/// `CNI_NETNS`, which `ADD` and `CHECK` need and which must exist.
fn existing_netns(att: &AttachmentEnv, command: Command) -> Result<PathBuf, CniError> {
    let netns = att.netns.clone().ok_or_else(|| {
        CniError::invalid_env(
            "CNI_NETNS is not set",
            format!("the runtime must set CNI_NETNS for {}", command.as_str()),
        )
    })?;
    env::require_netns_exists(&netns)?;
    Ok(netns)
}

fn pod_ref(args: &CniArgs) -> Option<PodRef> {
    Some(PodRef {
        namespace: args.pod_namespace.clone()?,
        name: args.pod_name.clone()?,
        uid: args.pod_uid.clone(),
        infra_container_id: args.infra_container_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::NetworkResult;
    use serde_json::json;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// A test double of weftd recording what it was asked.
    #[derive(Default)]
    struct FakeAgent {
        calls: RefCell<Vec<String>>,
        add_result: Option<NetworkResult>,
        differences: Vec<String>,
        status: Option<Result<StatusResponse, CniError>>,
        fail_with: Option<CniError>,
        spool_fails_with: Option<CniError>,
    }

    impl FakeAgent {
        fn record(&self, what: String) -> Result<(), CniError> {
            self.calls.borrow_mut().push(what);
            self.fail_with.clone().map_or(Ok(()), Err)
        }
    }

    impl Agent for &FakeAgent {
        fn add(&self, req: &AddRequest) -> Result<AddResponse, CniError> {
            self.record(serde_json::to_string(req).unwrap())?;
            Ok(self.add_result.clone().unwrap_or_else(pod_result))
        }
        fn del(&self, req: &DelRequest) -> Result<DelResponse, CniError> {
            self.record(serde_json::to_string(req).unwrap())?;
            Ok(DelResponse::default())
        }
        fn spool_del(&self, req: &DelRequest) -> Result<(), CniError> {
            self.calls
                .borrow_mut()
                .push(format!("spool {}", serde_json::to_string(req).unwrap()));
            self.spool_fails_with.clone().map_or(Ok(()), Err)
        }
        fn check(&self, req: &CheckRequest) -> Result<CheckResponse, CniError> {
            self.record(serde_json::to_string(req).unwrap())?;
            Ok(CheckResponse {
                differences: self.differences.clone(),
            })
        }
        fn gc(&self, req: &GcRequest) -> Result<GcResponse, CniError> {
            self.record(serde_json::to_string(req).unwrap())?;
            Ok(GcResponse::default())
        }
        fn status(&self) -> Result<StatusResponse, CniError> {
            self.record("status".into())?;
            self.status.clone().unwrap_or(Ok(StatusResponse {
                ready: true,
                reason: None,
                warnings: Vec::new(),
            }))
        }
    }

    fn pod_result() -> NetworkResult {
        serde_json::from_value(json!({
            "interfaces": [
                {"name": "eni0123456789a", "mac": "0a:00:00:00:00:01"},
                {"name": "eth0", "mac": "0a:00:00:00:00:02", "sandbox": "/proc/self/ns/net"}
            ],
            "ips": [{"address": "10.0.1.5/32", "gateway": "169.254.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
        }))
        .unwrap()
    }

    fn env_of(command: &str) -> HashMap<String, OsString> {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/proc/self/ns/net"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=u1",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect()
    }

    fn conf(version: &str, extra: Value) -> Vec<u8> {
        let mut v = json!({"cniVersion": version, "name": "weft", "type": "weft"});
        if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
            obj.extend(extra);
        }
        v.to_string().into_bytes()
    }

    fn run_with(env: &HashMap<String, OsString>, stdin: Vec<u8>, agent: &FakeAgent) -> Output {
        run(&|k| env.get(k).cloned(), Ok(stdin), |_| agent)
    }

    fn stdout_json(out: &Output) -> Value {
        serde_json::from_str(out.stdout.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn add_sends_the_pod_and_renders_in_the_requested_version() {
        for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            let agent = FakeAgent::default();
            let out = run_with(&env_of("ADD"), conf(version, json!({"mtu": 1500})), &agent);
            assert_eq!(out.error, None);
            let result = stdout_json(&out);
            assert_eq!(result["cniVersion"], version);
            assert_eq!(result["ips"][0]["interface"], 1);
            assert_eq!(
                result["ips"][0].get("version").is_some(),
                version.starts_with("0.")
            );
            let sent: Value = serde_json::from_str(&agent.calls.borrow()[0]).unwrap();
            assert_eq!(
                sent["pod"],
                json!({"namespace": "default", "name": "web", "uid": "u1"})
            );
            assert_eq!(sent["mtu"], 1500);
            assert_eq!(sent["cni_version"], version);
        }
    }

    #[test]
    fn add_chains_onto_prev_result_and_uses_netconf_dns() {
        let agent = FakeAgent::default();
        let stdin = conf(
            "1.0.0",
            json!({
                "dns": {"nameservers": ["10.0.0.2"]},
                "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "x"}], "ips": []}
            }),
        );
        let result = stdout_json(&run_with(&env_of("ADD"), stdin, &agent));
        assert_eq!(result["interfaces"][0]["name"], "x");
        assert_eq!(result["ips"][0]["interface"], 2);
        assert_eq!(result["dns"]["nameservers"], json!(["10.0.0.2"]));
    }

    #[test]
    fn add_requires_pod_metadata_and_an_existing_netns() {
        let agent = FakeAgent::default();
        let mut env = env_of("ADD");
        env.insert("CNI_ARGS".into(), "K8S_POD_NAME=web".into());
        let out = run_with(&env, conf("1.0.0", json!({})), &agent);
        assert_eq!(out.error.unwrap().code.0, 4);
        let mut env = env_of("ADD");
        env.insert("CNI_NETNS".into(), "/nonexistent/netns".into());
        let out = run_with(&env, conf("1.0.0", json!({})), &agent);
        let err = out.error.unwrap();
        assert_eq!(err.code.0, 4);
        assert!(err.msg.contains("/nonexistent/netns"));
        assert!(agent.calls.borrow().is_empty(), "the agent is never asked");
    }

    #[test]
    fn add_without_kubernetes_args_sends_a_container_identity() {
        let agent = FakeAgent::default();
        let mut env = env_of("ADD");
        env.remove("CNI_ARGS");
        let out = run_with(&env, conf("1.0.0", json!({})), &agent);
        assert_eq!(out.error, None);
        let sent: Value = serde_json::from_str(&agent.calls.borrow()[0]).unwrap();
        assert_eq!(sent["pod"], json!({"namespace": "", "name": "c1"}));
        // A Kubernetes namespace is never empty: the marker cannot be claimed.
        env.insert(
            "CNI_ARGS".into(),
            "K8S_POD_NAMESPACE=;K8S_POD_NAME=web".into(),
        );
        let out = run_with(&env, conf("1.0.0", json!({})), &agent);
        assert_eq!(out.error.unwrap().code.0, 4);
    }

    #[test]
    fn add_rejects_an_agent_result_with_a_dangling_interface_index() {
        let mut bad = pod_result();
        bad.ips[0].interface = Some(7);
        let agent = FakeAgent {
            add_result: Some(bad),
            ..FakeAgent::default()
        };
        let out = run_with(&env_of("ADD"), conf("1.0.0", json!({})), &agent);
        assert_eq!(out.error.unwrap().code.0, 101);
    }

    #[test]
    fn agent_errors_are_printed_with_their_code_in_the_config_version() {
        let agent = FakeAgent {
            fail_with: Some(CniError::try_again_later("pool empty", "wait")),
            ..FakeAgent::default()
        };
        let out = run_with(&env_of("ADD"), conf("0.4.0", json!({})), &agent);
        assert_eq!(
            stdout_json(&out),
            json!({"cniVersion": "0.4.0", "code": 11, "msg": "pool empty", "details": "wait"})
        );
    }

    #[test]
    fn del_without_netns_or_pod_succeeds_quietly() {
        let agent = FakeAgent::default();
        let mut env = env_of("DEL");
        env.remove("CNI_NETNS");
        env.remove("CNI_ARGS");
        let out = run_with(&env, conf("1.0.0", json!({})), &agent);
        assert_eq!(
            out,
            Output {
                stdout: None,
                error: None
            }
        );
        let sent: Value = serde_json::from_str(&agent.calls.borrow()[0]).unwrap();
        assert_eq!(
            sent,
            json!({"network": "weft", "container_id": "c1", "ifname": "eth0"})
        );
    }

    #[test]
    fn del_succeeds_with_unknown_or_malformed_cni_args() {
        let agent = FakeAgent::default();
        let mut env = env_of("DEL");
        env.insert(
            "CNI_ARGS".into(),
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;FOO=bar;broken".into(),
        );
        let out = run_with(&env, conf("1.0.0", json!({})), &agent);
        assert_eq!(out.error, None);
        let sent: Value = serde_json::from_str(&agent.calls.borrow()[0]).unwrap();
        assert_eq!(sent["pod"], json!({"namespace": "default", "name": "web"}));
    }

    #[test]
    fn a_del_weftd_cannot_answer_is_kept_for_it_and_succeeds() {
        let down = FakeAgent {
            fail_with: Some(CniError::try_again_later("socket missing", "start weftd")),
            ..FakeAgent::default()
        };
        let out = run_with(&env_of("DEL"), conf("1.0.0", json!({})), &down);
        assert_eq!(
            out,
            Output {
                stdout: None,
                error: None
            }
        );
        let calls = down.calls.borrow();
        let spooled: Value =
            serde_json::from_str(calls[1].strip_prefix("spool ").expect("spooled")).unwrap();
        assert_eq!(spooled["container_id"], "c1");
    }

    #[test]
    fn a_del_that_cannot_be_kept_either_asks_to_try_again() {
        let down = FakeAgent {
            fail_with: Some(CniError::try_again_later("socket missing", "start weftd")),
            spool_fails_with: Some(CniError::io("the DEL spool is full", "")),
            ..FakeAgent::default()
        };
        let err = run_with(&env_of("DEL"), conf("1.0.0", json!({})), &down)
            .error
            .unwrap();
        assert_eq!(err.code, ErrorCode::TRY_AGAIN_LATER);
        assert!(err.details.contains("the DEL spool is full"), "{err}");
        // Any other failure is weftd's answer: not kept, passed on.
        let failed = FakeAgent {
            fail_with: Some(CniError::plumbing("unwiring failed", "")),
            ..FakeAgent::default()
        };
        let err = run_with(&env_of("DEL"), conf("1.0.0", json!({})), &failed)
            .error
            .unwrap();
        assert_eq!(err.code, ErrorCode::PLUMBING);
        assert_eq!(failed.calls.borrow().len(), 1);
    }

    #[test]
    fn check_needs_prev_result_and_reports_differences() {
        let agent = FakeAgent {
            differences: vec!["route default via 169.254.1.1 is missing".into()],
            ..FakeAgent::default()
        };
        let out = run_with(&env_of("CHECK"), conf("1.0.0", json!({})), &agent);
        assert_eq!(out.error.unwrap().code.0, 7);
        let prev = json!({"prevResult": serde_json::from_str::<Value>(&pod_result().render(CniVersion::V1_0_0)).unwrap()});
        let out = run_with(&env_of("CHECK"), conf("1.0.0", prev.clone()), &agent);
        let err = out.error.unwrap();
        assert_eq!(err.code.0, 102);
        assert!(err.details.contains("route default"));
        let ok = run_with(&env_of("CHECK"), conf("1.0.0", prev), &FakeAgent::default());
        assert_eq!(
            ok,
            Output {
                stdout: None,
                error: None
            }
        );
    }

    #[test]
    fn commands_are_gated_by_version() {
        for (command, version, allowed) in [
            ("CHECK", "0.3.1", false),
            ("CHECK", "0.4.0", true),
            ("GC", "1.0.0", false),
            ("STATUS", "1.0.0", false),
            ("STATUS", "1.1.0", true),
        ] {
            let agent = FakeAgent::default();
            let extra = json!({
                "prevResult": {"cniVersion": version},
                "cni.dev/valid-attachments": []
            });
            let out = run_with(&env_of(command), conf(version, extra), &agent);
            assert_eq!(out.error.is_none(), allowed, "{command} {version}: {out:?}");
            if !allowed {
                assert_eq!(out.error.unwrap().code.0, 1);
            }
        }
    }

    #[test]
    fn gc_sends_valid_attachments() {
        let agent = FakeAgent::default();
        let extra = json!({"cni.dev/valid-attachments": [{"containerID": "c9", "ifname": "eth0"}]});
        let out = run_with(&env_of("GC"), conf("1.1.0", extra), &agent);
        assert_eq!(out.error, None);
        let sent: Value = serde_json::from_str(&agent.calls.borrow()[0]).unwrap();
        assert_eq!(
            sent["valid_attachments"],
            json!([{"containerID": "c9", "ifname": "eth0"}])
        );
    }

    #[test]
    fn status_maps_not_ready_and_unreachable_to_50() {
        let not_ready = FakeAgent {
            status: Some(Ok(StatusResponse {
                ready: false,
                reason: Some("no ENI yet".into()),
                warnings: Vec::new(),
            })),
            ..FakeAgent::default()
        };
        let err = run_with(&env_of("STATUS"), conf("1.1.0", json!({})), &not_ready)
            .error
            .unwrap();
        assert_eq!((err.code.0, err.details.as_str()), (50, "no ENI yet"));
        let down = FakeAgent {
            fail_with: Some(CniError::try_again_later("socket missing", "start weftd")),
            ..FakeAgent::default()
        };
        let err = run_with(&env_of("STATUS"), conf("1.1.0", json!({})), &down)
            .error
            .unwrap();
        assert_eq!((err.code.0, err.msg.as_str()), (50, "socket missing"));
    }

    #[test]
    fn version_ignores_stdin() {
        let env = env_of("VERSION");
        let agent = FakeAgent::default();
        let out = run(
            &|k| env.get(k).cloned(),
            Err(CniError::decode("x", "y")),
            |_| &agent,
        );
        assert_eq!(stdout_json(&out)["supportedVersions"][4], "1.1.0");
    }

    #[test]
    fn errors_before_the_config_is_read_use_its_version_if_possible() {
        let mut env = env_of("ADD");
        env.remove("CNI_IFNAME");
        let out = run_with(&env, conf("0.3.1", json!({})), &FakeAgent::default());
        assert_eq!(stdout_json(&out)["cniVersion"], "0.3.1");
        let out = run_with(&env, b"garbage".to_vec(), &FakeAgent::default());
        assert_eq!(stdout_json(&out)["cniVersion"], "1.1.0");
        assert_eq!(
            out.error.unwrap().code.0,
            4,
            "environment is checked before stdin"
        );
    }

    #[test]
    fn stdin_is_bounded() {
        let big = vec![b' '; MAX_STDIN_BYTES as usize + 1];
        assert_eq!(read_stdin(&big[..]).unwrap_err().code.0, 6);
        assert_eq!(read_stdin(&b"{}"[..]).unwrap(), b"{}");
    }

    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        fn any_env() -> impl Strategy<Value = HashMap<String, OsString>> {
            let name = prop::sample::select(vec![
                "CNI_COMMAND",
                "CNI_CONTAINERID",
                "CNI_NETNS",
                "CNI_IFNAME",
                "CNI_ARGS",
                "CNI_PATH",
            ]);
            let value = prop_oneof![
                prop::sample::select(vec![
                    "ADD",
                    "DEL",
                    "CHECK",
                    "GC",
                    "STATUS",
                    "VERSION",
                    "c1",
                    "eth0",
                    "/proc/self/ns/net",
                    "K8S_POD_NAME=a;K8S_POD_NAMESPACE=b",
                    "IgnoreUnknown=1;X=y",
                    ""
                ])
                .prop_map(String::from),
                ".{0,40}",
            ];
            prop::collection::hash_map(
                name.prop_map(String::from),
                value.prop_map(OsString::from),
                0..6,
            )
        }

        fn any_stdin() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..200),
                (
                    prop::sample::select(vec!["0.3.0", "0.4.0", "1.0.0", "1.1.0", "2.0.0"]),
                    ".{0,20}",
                    any::<i64>()
                )
                    .prop_map(|(v, s, n)| {
                        json!({
                            "cniVersion": v, "name": "n", "type": "weft", "mtu": n,
                            "prevResult": {"ips": [{"address": s, "interface": n}]},
                            "cni.dev/valid-attachments": [{"containerID": s}],
                            "dns": {"nameservers": [s]}, "log-level": "off"
                        })
                        .to_string()
                        .into_bytes()
                    }),
            ]
        }

        proptest! {
            #[test]
            fn any_input_gives_a_well_formed_answer(env in any_env(), stdin in any_stdin()) {
                let agent = FakeAgent::default();
                let out = run(&|k| env.get(k).cloned(), Ok(stdin), |_| &agent);
                if let Some(err) = &out.error {
                    let printed: Value = serde_json::from_str(out.stdout.as_deref().unwrap()).unwrap();
                    prop_assert_eq!(printed["code"].as_u64(), Some(u64::from(err.code.0)));
                    prop_assert!(!err.msg.is_empty());
                } else if let Some(text) = &out.stdout {
                    prop_assert!(serde_json::from_str::<Value>(text).is_ok());
                }
            }
        }
    }
}

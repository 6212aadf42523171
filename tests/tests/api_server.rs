//! The agent API served on a real unix socket, exercised with raw HTTP, the
//! plugin's own client and curl (which is why it is here and not among the
//! library tests). The agent behind it is `FakeAgent`, the test double of
//! weftd's backend (the real one is wired by the agent).

use serde_json::{Value, json};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use weft_cni::api::{AddRequest, CheckRequest, DelRequest, GcRequest};
use weft_cni::client::Client;
use weft_cni::plugin::Agent;
use weft_host::api::{ApiConfig, ApiServer, PodView, PoolView, SocketError};
use weft_tests::support::backend::{
    EMPTY_POOL_MSG, FakeApi, HOST_VETH, METRICS, NO_DEFAULT_ROUTE, POD_IP,
};

async fn start(tune: impl FnOnce(&mut ApiConfig)) -> FakeApi {
    FakeApi::start_with(true, tune).await
}

/// Sends raw bytes, reads until the server closes; returns status and JSON body.
async fn raw(path: &Path, request: &[u8]) -> (u16, Value) {
    let mut stream = UnixStream::connect(path).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.expect("read");
    parse(&buf)
}

fn parse(buf: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let status = head[9..12].parse().expect("status code");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: weft\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn add_body(pod: &str) -> String {
    json!({
        "network": "weft", "container_id": "c1", "ifname": "eth0", "netns": "/proc/self/ns/net",
        "cni_version": "1.0.0", "pod": {"namespace": "default", "name": pod}
    })
    .to_string()
}

fn client(path: &Path) -> Client {
    Client::new(path, Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_is_0600_and_removed_on_shutdown() {
    let server = start(|_| {}).await;
    let meta = std::fs::metadata(&server.socket).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let path = server.socket.clone();
    server.stop().await;
    assert!(!path.exists(), "socket removed on shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_to_displace_a_live_agent() {
    let server = start(|_| {}).await;
    let config = ApiConfig {
        socket: server.socket.clone(),
        ..ApiConfig::default()
    };
    match ApiServer::bind(config, server.agent.clone(), Arc::new(String::new)) {
        Err(SocketError::InUse(p)) => assert_eq!(p, server.socket),
        Err(e) => panic!("expected InUse, got {e}"),
        Ok(_) => panic!("a second agent must not bind a live socket"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_through_the_plugin_client() {
    let server = start(|_| {}).await;
    let path = server.socket.clone();
    tokio::task::spawn_blocking(move || {
        let c = client(&path);
        let add: AddRequest = serde_json::from_str(&add_body("web")).expect("request");
        let result = c.add(&add).expect("add");
        assert_eq!(result.ips[0].address.to_string(), format!("{POD_IP}/32"));
        assert_eq!(
            result.interfaces[1].sandbox.as_deref(),
            Some("/proc/self/ns/net")
        );
        let del = DelRequest {
            network: "weft".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: None,
            pod: None,
        };
        assert_eq!(
            c.del(&del).expect("del").released,
            Some(POD_IP.parse().expect("ip"))
        );
        let mut expected = result;
        expected.routes.clear();
        let check = CheckRequest {
            network: "weft".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: "/proc/self/ns/net".into(),
            pod: None,
            expected,
        };
        assert_eq!(
            c.check(&check).expect("check").differences,
            [NO_DEFAULT_ROUTE]
        );
        let gc = GcRequest {
            network: "weft".into(),
            valid_attachments: vec![],
        };
        assert_eq!(c.gc(&gc).expect("gc").released[0].container_id, "old");
        assert!(c.status().expect("status").ready);
        let pods: Vec<PodView> = c.call::<(), _>("GET", "/v1/pods", None).expect("pods");
        assert_eq!(pods[0].host_veth, HOST_VETH);
        let pool: PoolView = c.call::<(), _>("GET", "/v1/pool", None).expect("pool");
        assert!(pool.groups.is_empty());
    })
    .await
    .expect("client thread");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_errors_keep_their_code_and_map_to_503() {
    let server = start(|_| {}).await;
    let (status, body) = raw(
        &server.socket,
        &post("/v1/cni/add", &add_body("empty-pool")),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], 11);
    assert_eq!(body["msg"], EMPTY_POOL_MSG);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_oversized_and_unknown_requests() {
    let server = start(|_| {}).await;
    let (status, body) = raw(&server.socket, &post("/v1/cni/add", "{\"network\":")).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(6)));
    let huge = format!("\"{}\"", "x".repeat(weft_cni::api::MAX_BODY_BYTES + 10));
    let (status, body) = raw(&server.socket, &post("/v1/cni/add", &huge)).await;
    assert_eq!((status, body["code"].as_u64()), (413, Some(6)));
    let (status, body) = raw(
        &server.socket,
        b"GET /v2/status HTTP/1.1\r\nHost: weft\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    assert!(body["msg"].as_str().expect("msg").contains("/v2/status"));
    let (status, body) = raw(
        &server.socket,
        b"GET /v1/cni/add HTTP/1.1\r\nHost: weft\r\n\r\n",
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (405, Some(101)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_served_as_text() {
    let server = start(|_| {}).await;
    let mut stream = UnixStream::connect(&server.socket).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: weft\r\n\r\n")
        .await
        .expect("write");
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.expect("read");
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    assert!(buf.contains("application/openmetrics-text"), "{buf}");
    assert!(buf.ends_with(METRICS), "{buf}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_can_query_status() {
    let server = start(|_| {}).await;
    let path = server.socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--fail", "--unix-socket"])
            .arg(&path)
            .arg("http://weft/v1/status")
            .output()
    })
    .await
    .expect("curl thread")
    .expect("curl must be installed (apt-get install -y curl)");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(body, json!({"ready": true}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_client_does_not_block_others_and_times_out() {
    let server = start(|c| c.request_timeout = Duration::from_millis(300)).await;
    // Head sent, body promised but never sent.
    let mut stalled = UnixStream::connect(&server.socket).await.expect("connect");
    stalled
        .write_all(b"POST /v1/cni/add HTTP/1.1\r\nHost: weft\r\nContent-Length: 500\r\n\r\n{\"net")
        .await
        .expect("write");
    // Another client is served meanwhile.
    let (status, body) = raw(&server.socket, &post("/v1/cni/add", &add_body("web"))).await;
    assert_eq!(status, 200, "{body}");
    // The stalled one gets "try again later" once its deadline passes.
    let mut buf = Vec::new();
    stalled.read_to_end(&mut buf).await.expect("read");
    let (status, body) = parse(&buf);
    assert_eq!((status, body["code"].as_u64()), (503, Some(11)), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let server = start(|c| c.header_timeout = Duration::from_millis(200)).await;
    let mut silent = UnixStream::connect(&server.socket).await.expect("connect");
    let mut buf = Vec::new();
    silent
        .read_to_end(&mut buf)
        .await
        .expect("server closes the connection");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_backend_call_times_out_but_runs_to_completion() {
    let server = start(|c| c.request_timeout = Duration::from_millis(200)).await;
    let (status, body) = raw(&server.socket, &post("/v1/cni/add", &add_body("slow"))).await;
    assert_eq!((status, body["code"].as_u64()), (503, Some(11)), "{body}");
    assert!(body["msg"].as_str().expect("msg").contains("within 200 ms"));
    assert!(!server.agent.slow_finished());
    server.agent.release_slow.notify_one();
    while !server.agent.slow_finished() {
        tokio::task::yield_now().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_are_closed_and_reported_as_try_again() {
    let server = start(|c| c.max_connections = 1).await;
    let mut holder = UnixStream::connect(&server.socket).await.expect("connect");
    holder
        .write_all(b"POST /v1/cni/add HTTP/1.1\r\n")
        .await
        .expect("write");
    // Make sure the server accepted the holder before the next connection.
    let mut probe = UnixStream::connect(&server.socket).await.expect("connect");
    let mut buf = Vec::new();
    probe.read_to_end(&mut buf).await.expect("closed");
    assert!(buf.is_empty(), "closed without an answer");
    let path = server.socket.clone();
    let err = tokio::task::spawn_blocking(move || client(&path).status())
        .await
        .expect("client thread")
        .expect_err("over the limit");
    assert_eq!(err.code.0, 11, "{err}");
    drop(holder);
    server.stop().await;
}

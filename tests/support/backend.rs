//! The API server with a test double of weftd's backend behind it, for the
//! tests of the API itself and of the `weft` plugin against it (address
//! allocation and plumbing are tested with the real agent elsewhere).

use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, oneshot};
use weft_cni::api::{
    AddRequest, AddResponse, ApiError, Attachment, CheckRequest, CheckResponse, DelRequest,
    DelResponse, GcRequest, GcResponse, StatusResponse,
};
use weft_host::api::{ApiConfig, ApiServer, Backend, PodView, PoolView};

/// The address every ADD gets.
pub const POD_IP: &str = "10.0.1.5";
/// The host veth of every ADD.
pub const HOST_VETH: &str = "eni5f2a6b7c8d9";
/// The message of the error an ADD of pod `empty-pool` gets (code 11).
pub const EMPTY_POOL_MSG: &str = "no free address on this node for security groups [sg-0a1]";
/// Its details.
pub const EMPTY_POOL_DETAILS: &str = "weftd is attaching a new ENI; kubelet retries the pod";
/// The difference CHECK reports when the expected result has no default route.
pub const NO_DEFAULT_ROUTE: &str = "route default via 169.254.1.1 is missing in the pod";
/// The reason STATUS gives when the agent is not ready.
pub const NOT_READY: &str = "no ENI attached yet; waiting for EC2";
/// What the metrics endpoint serves.
pub const METRICS: &str = "# EOF\n";

/// A test double of the agent: answers as weftd does for a warm pool and
/// records each request as JSON. Pods named `empty-pool` get error 11;
/// pods named `slow` wait for [`FakeAgent::release_slow`]. GC releases the
/// one stale attachment it holds (`old/eth0`) unless it is valid.
#[derive(Default)]
pub struct FakeAgent {
    requests: Mutex<Vec<Value>>,
    not_ready: bool,
    /// Lets the waiting ADD of a `slow` pod finish.
    pub release_slow: Notify,
    slow_finished: AtomicBool,
}

impl FakeAgent {
    fn record(&self, route: &str, req: &impl serde::Serialize) {
        let value = serde_json::to_value(req).expect("request encodes");
        self.requests
            .lock()
            .expect("lock")
            .push(json!({"route": route, "request": value}));
    }

    /// The requests received on `route` (`add`, `del`, `check`, `gc`), in order.
    pub fn requests(&self, route: &str) -> Vec<Value> {
        let all = self.requests.lock().expect("lock");
        all.iter()
            .filter(|r| r["route"] == route)
            .map(|r| r["request"].clone())
            .collect()
    }

    /// Whether the `slow` ADD finished.
    pub fn slow_finished(&self) -> bool {
        self.slow_finished.load(Ordering::SeqCst)
    }
}

impl Backend for FakeAgent {
    fn add(&self, req: AddRequest) -> BoxFuture<'_, Result<AddResponse, ApiError>> {
        self.record("add", &req);
        Box::pin(async move {
            match req.pod.name.as_str() {
                "empty-pool" => Err(ApiError::try_again_later(
                    EMPTY_POOL_MSG,
                    EMPTY_POOL_DETAILS,
                )),
                "slow" => {
                    self.release_slow.notified().await;
                    self.slow_finished.store(true, Ordering::SeqCst);
                    Ok(AddResponse::default())
                }
                _ => Ok(serde_json::from_value(json!({
                    "interfaces": [
                        {"name": HOST_VETH, "mac": "0a:58:0a:00:01:05", "mtu": 9001},
                        {"name": req.ifname, "mac": "0a:58:0a:00:01:06", "mtu": 9001, "sandbox": req.netns}
                    ],
                    "ips": [{"address": format!("{POD_IP}/32"), "gateway": "169.254.1.1", "interface": 1}],
                    "routes": [{"dst": "169.254.1.1/32"}, {"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
                }))
                .expect("valid result")),
            }
        })
    }

    fn del(&self, req: DelRequest) -> BoxFuture<'_, Result<DelResponse, ApiError>> {
        self.record("del", &req);
        Box::pin(async {
            Ok(DelResponse {
                released: POD_IP.parse().ok(),
            })
        })
    }

    fn check(&self, req: CheckRequest) -> BoxFuture<'_, Result<CheckResponse, ApiError>> {
        self.record("check", &req);
        let has_default = req.expected.routes.iter().any(|r| r.dst.prefix == 0);
        Box::pin(async move {
            Ok(CheckResponse {
                differences: if has_default {
                    vec![]
                } else {
                    vec![NO_DEFAULT_ROUTE.into()]
                },
            })
        })
    }

    fn gc(&self, req: GcRequest) -> BoxFuture<'_, Result<GcResponse, ApiError>> {
        self.record("gc", &req);
        Box::pin(async move {
            let held = [Attachment {
                container_id: "old".into(),
                ifname: "eth0".into(),
            }];
            Ok(GcResponse {
                released: held
                    .into_iter()
                    .filter(|a| !req.valid_attachments.contains(a))
                    .collect(),
            })
        })
    }

    fn status(&self) -> BoxFuture<'_, StatusResponse> {
        let ready = !self.not_ready;
        Box::pin(async move {
            StatusResponse {
                ready,
                reason: (!ready).then(|| NOT_READY.to_string()),
                warnings: Vec::new(),
            }
        })
    }

    fn pods(&self) -> BoxFuture<'_, Result<Vec<PodView>, ApiError>> {
        Box::pin(async {
            Ok(vec![PodView {
                network: "weft".into(),
                container_id: "c1".into(),
                ifname: "eth0".into(),
                pod: None,
                ip: POD_IP.parse().expect("ip"),
                eni_id: "eni-1".into(),
                host_veth: HOST_VETH.into(),
            }])
        })
    }

    fn pool(&self) -> BoxFuture<'_, Result<PoolView, ApiError>> {
        Box::pin(async { Ok(PoolView { groups: vec![] }) })
    }
}

/// The real API server on a socket in a temp dir, with a [`FakeAgent`]
/// behind it.
pub struct FakeApi {
    _dir: tempfile::TempDir,
    /// The socket (in a directory the server creates).
    pub socket: PathBuf,
    /// The agent behind the API.
    pub agent: Arc<FakeAgent>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeApi {
    /// Serves a ready agent with the default settings.
    pub async fn start() -> FakeApi {
        FakeApi::start_with(true, |_| {}).await
    }

    /// Serves an agent that is `ready` or not, with settings changed by
    /// `tune`. Must run inside a tokio runtime.
    pub async fn start_with(ready: bool, tune: impl FnOnce(&mut ApiConfig)) -> FakeApi {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run/weftd.sock");
        let mut config = ApiConfig {
            socket: socket.clone(),
            ..ApiConfig::default()
        };
        tune(&mut config);
        let agent = Arc::new(FakeAgent {
            not_ready: !ready,
            ..FakeAgent::default()
        });
        let server = ApiServer::bind(config, agent.clone(), Arc::new(|| METRICS.to_string()))
            .expect("bind the API socket");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        FakeApi {
            _dir: dir,
            socket,
            agent,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

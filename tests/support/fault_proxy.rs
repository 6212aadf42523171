//! An HTTP proxy in front of moto that injects EC2's failure modes on the real wire.
//!
//! Each request is, with probability `fault_rate` (seeded), answered with one of:
//! * `RequestLimitExceeded` (HTTP 503 with EC2's XML error body), not forwarded;
//! * HTTP 500 `InternalError` or HTTP 503 without a known code, not forwarded;
//! * a delay longer than the client's timeout *after* forwarding, so the call takes effect in
//!   EC2 but its answer is lost (the case that leaks ENIs in careless clients).
//!
//! Faults can be limited to some actions ([`FaultPlan::actions`]). With
//! [`FaultPlan::stale_reads`], the proxy also plays EC2's eventual consistency: for that long
//! after any changing call, a `DescribeNetworkInterfaces` answers what the same request answered
//! before (an answer never older than the window), so reads lag writes as on real EC2. With
//! [`FaultPlan::alternating_reads`] as well, reads inside a window alternate between that
//! lagging answer and EC2's current one, as reads served by replicas that catch up at different
//! times do: a read can then be older than the one before it.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The faults the proxy injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// HTTP 503 `RequestLimitExceeded`.
    Throttle,
    /// HTTP 500 `InternalError`.
    Internal,
    /// HTTP 503 with no EC2 error body.
    Unavailable,
    /// Forwarded, then answered only after [`FaultPlan::delay`].
    Delay,
}

/// What the proxy does.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Fraction of requests that get a fault.
    pub fault_rate: f64,
    /// Seed of the fault choices.
    pub seed: u64,
    /// The faults to choose from, uniformly.
    pub faults: Vec<Fault>,
    /// Delay of [`Fault::Delay`] (longer than the client's timeout).
    pub delay: Duration,
    /// The EC2 actions faults hit (e.g. `AssignPrivateIpAddresses`); all when empty.
    pub actions: Vec<&'static str>,
    /// How long reads lag writes (see the module docs); `None` for consistent reads.
    pub stale_reads: Option<Duration>,
    /// With `stale_reads`: the reads of one request inside a window alternate between EC2's
    /// current answer (the first) and the lagging one (see the module docs).
    pub alternating_reads: bool,
}

impl Default for FaultPlan {
    /// No faults, consistent reads.
    fn default() -> Self {
        FaultPlan {
            fault_rate: 0.0,
            seed: 0,
            faults: Vec::new(),
            delay: Duration::ZERO,
            actions: Vec::new(),
            stale_reads: None,
            alternating_reads: false,
        }
    }
}

/// The EC2 actions that change network interfaces (they start a stale-read window).
const CHANGING: &[&str] = &[
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "DeleteNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
];

/// Counts of what the proxy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests forwarded and answered normally.
    pub passed: u32,
    /// Faults injected, by kind: throttle, internal, unavailable, delay.
    pub throttled: u32,
    /// HTTP 500 answers.
    pub internal: u32,
    /// HTTP 503 answers.
    pub unavailable: u32,
    /// Delayed answers.
    pub delayed: u32,
    /// `DescribeNetworkInterfaces` answered with an earlier answer.
    pub stale: u32,
    /// Requests forwarded, by action.
    pub forwarded: HashMap<String, u32>,
}

/// Earlier answers to `DescribeNetworkInterfaces`, by request body, and when they were taken;
/// when the last changing call was sent; reads of each request in the current window.
#[derive(Default)]
struct Reads {
    answers: HashMap<Bytes, (Answer, Instant)>,
    changed: Option<Instant>,
    turns: HashMap<Bytes, u32>,
}

/// A kept answer.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

struct Shared {
    upstream: SocketAddr,
    plan: FaultPlan,
    rng: Mutex<StdRng>,
    stats: Mutex<ProxyStats>,
    reads: Mutex<Reads>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

fn ec2_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>weft-fault-proxy</RequestID>\
         </Response>"
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn bad_gateway(error: impl std::fmt::Display) -> Response<Full<Bytes>> {
    ec2_error(StatusCode::BAD_GATEWAY, "ProxyError", &error.to_string())
}

/// The `Action` of a form-encoded EC2 request body.
fn action(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or_default()
        .to_owned()
}

async fn forward(
    upstream: SocketAddr,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let stream = match TcpStream::connect(upstream).await {
        Ok(stream) => stream,
        Err(e) => return bad_gateway(e),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return bad_gateway(e),
        };
    tokio::spawn(connection);
    let answer = match sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(answer) => answer,
        Err(e) => return bad_gateway(e),
    };
    let (parts, body) = answer.into_parts();
    match body.collect().await {
        Ok(body) => Response::from_parts(parts, Full::new(body.to_bytes())),
        Err(e) => bad_gateway(e),
    }
}

impl Shared {
    fn choose(&self, action: &str) -> Option<Fault> {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let targeted = self.plan.actions.is_empty() || self.plan.actions.contains(&action);
        if self.plan.faults.is_empty()
            || !targeted
            || !rng.random_bool(self.plan.fault_rate.clamp(0.0, 1.0))
        {
            return None;
        }
        Some(self.plan.faults[rng.random_range(0..self.plan.faults.len())])
    }

    fn count(&self, fault: Option<Fault>) {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        match fault {
            None => stats.passed += 1,
            Some(Fault::Throttle) => stats.throttled += 1,
            Some(Fault::Internal) => stats.internal += 1,
            Some(Fault::Unavailable) => stats.unavailable += 1,
            Some(Fault::Delay) => stats.delayed += 1,
        }
    }

    /// An earlier answer to the same read, while reads lag a change.
    fn stale_answer(&self, action: &str, body: &Bytes) -> Option<Response<Full<Bytes>>> {
        let window = self.plan.stale_reads?;
        let now = Instant::now();
        let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        if action != "DescribeNetworkInterfaces"
            || reads
                .changed
                .is_none_or(|at| now.duration_since(at) >= window)
        {
            return None;
        }
        if self.plan.alternating_reads {
            let turn = reads.turns.entry(body.clone()).or_default();
            *turn += 1;
            if *turn % 2 == 1 {
                return None;
            }
        }
        let (answer, taken) = reads.answers.get(body)?;
        (now.duration_since(*taken) < window).then(|| answer.response())
    }

    /// Forwards, keeping answers to reads for [`Shared::stale_answer`].
    async fn pass(
        &self,
        action: &str,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        *self
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forwarded
            .entry(action.to_owned())
            .or_default() += 1;
        let Some(window) = self.plan.stale_reads else {
            return forward(self.upstream, parts, body).await;
        };
        if CHANGING.contains(&action) {
            let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if reads
                .changed
                .is_none_or(|at| now.duration_since(at) >= window)
            {
                // A new window: its reads start again with a current one.
                reads.turns.clear();
            }
            reads.changed = Some(now);
        }
        let answer = forward(self.upstream, parts, body.clone()).await;
        if action != "DescribeNetworkInterfaces" || !answer.status().is_success() {
            return answer;
        }
        let (parts, full) = answer.into_parts();
        let bytes = match full.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        let kept = Answer {
            status: parts.status,
            headers: parts.headers,
            body: bytes,
        };
        let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let calm = reads
            .changed
            .is_none_or(|at| now.duration_since(at) >= window);
        // Within a window an earlier answer is kept (it is what stale reads give) unless it
        // is older than the window.
        let kept_young = reads
            .answers
            .get(&body)
            .is_some_and(|(_, taken)| now.duration_since(*taken) < window);
        if calm || !kept_young {
            reads.answers.insert(body, (kept.clone(), now));
        }
        kept.response()
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return Ok(bad_gateway(e)),
        };
        let action = action(&body);
        let fault = self.choose(&action);
        self.count(fault);
        if fault.is_none()
            && let Some(answer) = self.stale_answer(&action, &body)
        {
            self.stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stale += 1;
            return Ok(answer);
        }
        Ok(match fault {
            None => self.pass(&action, parts, body).await,
            Some(Fault::Throttle) => ec2_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ),
            Some(Fault::Internal) => ec2_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "An internal error has occurred",
            ),
            Some(Fault::Unavailable) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
            }
            Some(Fault::Delay) => {
                let answer = self.pass(&action, parts, body).await;
                tokio::time::sleep(self.plan.delay).await;
                answer
            }
        })
    }
}

impl FaultProxy {
    /// Starts the proxy on a free 127.0.0.1 port in front of `upstream`.
    pub async fn start(upstream: SocketAddr, plan: FaultPlan) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            rng: Mutex::new(StdRng::seed_from_u64(plan.seed)),
            plan,
            stats: Mutex::new(ProxyStats::default()),
            reads: Mutex::new(Reads::default()),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| shared.clone().handle(request));
                    // A client that gave up mid-answer closes the connection: not an error here.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy { addr, shared, task }
    }

    /// The endpoint URL clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

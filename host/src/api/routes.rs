//! The HTTP routes: decode, bound, dispatch to the [`Backend`], and map
//! errors to an HTTP status with the CNI error body.

use super::backend::Backend;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use weft_cni::ErrorCode;
use weft_cni::api::{self, ApiError};

/// Renders the agent's metrics in the Prometheus/OpenMetrics text format.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Path of the attachments listing.
pub const PATH_PODS: &str = "/v1/pods";
/// Path of the pool view.
pub const PATH_POOL: &str = "/v1/pool";
/// Path of the recent errors.
pub const PATH_ERRORS: &str = "/v1/errors";
/// Path of the policies view.
pub const PATH_POLICIES: &str = "/v1/policies";
/// Path of the live decision inputs.
pub const PATH_POLICY_INPUTS: &str = "/v1/policies/inputs";
/// The node's ENIs, addresses and assignments, with the ENIs Weft leaves
/// alone and the quarantined addresses.
pub const PATH_ENIS: &str = "/v1/enis";
/// Path of the metrics.
pub const PATH_METRICS: &str = "/metrics";

const VERSION_SKEW: &str = "the weft plugin and weftd are probably different versions: \
                            install the plugin shipped with the running weftd image";

#[derive(Clone)]
struct Shared {
    backend: Arc<dyn Backend>,
    metrics: MetricsFn,
}

/// The API's router: the CNI commands and every read-only route. Every
/// request, body included, must complete within `request_timeout`; bodies
/// are limited to [`api::MAX_BODY_BYTES`].
pub(super) fn router(
    backend: Arc<dyn Backend>,
    metrics: MetricsFn,
    request_timeout: Duration,
) -> Router {
    read_only_routes()
        .route(PATH_POLICY_INPUTS, get(policy_inputs))
        .route(api::PATH_ADD, post(add))
        .route(api::PATH_DEL, post(del))
        .route(api::PATH_CHECK, post(check))
        .route(api::PATH_GC, post(gc))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(request_timeout, deadline))
        .with_state(Shared { backend, metrics })
}

/// The read-only routes alone, served over TCP (aws-node's introspection
/// port): status, pods, pool, ENIs, errors, policies and metrics; no CNI
/// command, and not the live policy inputs (each request reads EC2, which
/// an unauthenticated port must not be able to make the node do).
pub fn introspection_router(backend: Arc<dyn Backend>, metrics: MetricsFn) -> Router {
    read_only_routes()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Shared { backend, metrics })
}

/// The metrics route alone (aws-node's metrics port).
pub fn metrics_router(backend: Arc<dyn Backend>, metrics: MetricsFn) -> Router {
    Router::new()
        .route(PATH_METRICS, get(metrics_text))
        .fallback(not_found)
        .with_state(Shared { backend, metrics })
}

/// The one table of read-only routes, shared by the socket and TCP (the
/// fallbacks go last: axum applies them to the routes already added).
fn read_only_routes() -> Router<Shared> {
    Router::new()
        .route(api::PATH_STATUS, get(status))
        .route(PATH_PODS, get(pods))
        .route(PATH_POOL, get(pool))
        .route(PATH_ENIS, get(enis))
        .route(PATH_ERRORS, get(errors))
        .route(PATH_POLICIES, get(policies))
        .route(PATH_METRICS, get(metrics_text))
}

/// A failed request: the CNI error and the HTTP status it maps to.
struct Failure {
    status: StatusCode,
    error: ApiError,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        Failure {
            status: status_for(error.code),
            error,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.error)).into_response()
    }
}

/// The HTTP status for a CNI error code: the client's fault (4xx), a
/// transient condition (503), or the agent's fault (500).
pub(super) fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::INCOMPATIBLE_VERSION
        | ErrorCode::UNSUPPORTED_FIELD
        | ErrorCode::INVALID_ENV
        | ErrorCode::DECODE
        | ErrorCode::INVALID_NETCONF => StatusCode::BAD_REQUEST,
        ErrorCode::UNKNOWN_CONTAINER => StatusCode::NOT_FOUND,
        ErrorCode::TRY_AGAIN_LATER | ErrorCode::NOT_AVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

type Reply<T> = Result<axum::Json<T>, Failure>;

fn decode<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Failure> {
    let bytes = body.map_err(|rejection| Failure {
        status: rejection.status(),
        error: ApiError::decode(
            format!("cannot read the request body: {}", rejection.body_text()),
            format!("requests are JSON of at most {} bytes", api::MAX_BODY_BYTES),
        ),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::decode(
            format!("the request body is not a valid request: {e}"),
            VERSION_SKEW,
        )
        .into()
    })
}

/// Runs a backend call as its own task, so that neither the deadline nor a
/// disconnecting client cancels it half-way.
async fn detached<T: Serialize + Send + 'static>(
    call: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Reply<T> {
    match tokio::spawn(call).await {
        Ok(result) => result.map(axum::Json).map_err(Failure::from),
        Err(e) => Err(ApiError::internal(
            format!("weftd's handler failed: {e}"),
            "this is a bug in weftd: please report it with weftd's log",
        )
        .into()),
    }
}

async fn add(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<api::AddResponse> {
    let req = decode(body)?;
    detached(async move { s.backend.add(req).await }).await
}

async fn del(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<api::DelResponse> {
    let req = decode(body)?;
    detached(async move { s.backend.del(req).await }).await
}

async fn check(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<api::CheckResponse> {
    let req = decode(body)?;
    detached(async move { s.backend.check(req).await }).await
}

async fn gc(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<api::GcResponse> {
    let req = decode(body)?;
    detached(async move { s.backend.gc(req).await }).await
}

async fn status(State(s): State<Shared>) -> axum::Json<api::StatusResponse> {
    axum::Json(s.backend.status().await)
}

async fn pods(State(s): State<Shared>) -> Reply<Vec<super::PodView>> {
    s.backend
        .pods()
        .await
        .map(axum::Json)
        .map_err(Failure::from)
}

async fn pool(State(s): State<Shared>) -> Reply<super::PoolView> {
    s.backend
        .pool()
        .await
        .map(axum::Json)
        .map_err(Failure::from)
}

async fn enis(State(s): State<Shared>) -> Reply<crate::reconcile::PoolSnapshot> {
    s.backend
        .enis()
        .await
        .map(axum::Json)
        .map_err(Failure::from)
}

async fn errors(State(s): State<Shared>) -> axum::Json<Vec<super::ErrorView>> {
    axum::Json(s.backend.errors())
}

async fn policies(State(s): State<Shared>) -> Reply<crate::policy::view::PoliciesView> {
    s.backend
        .policies()
        .await
        .map(axum::Json)
        .map_err(Failure::from)
}

async fn policy_inputs(State(s): State<Shared>) -> Reply<crate::policy::view::LiveInputs> {
    detached(async move { s.backend.policy_inputs().await }).await
}

async fn metrics_text(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        (s.metrics)(),
    )
}

async fn not_found(request: Request) -> Failure {
    unknown_route(StatusCode::NOT_FOUND, &request)
}

async fn method_not_allowed(request: Request) -> Failure {
    unknown_route(StatusCode::METHOD_NOT_ALLOWED, &request)
}

fn unknown_route(status: StatusCode, request: &Request) -> Failure {
    Failure {
        status,
        error: ApiError::agent_protocol(
            format!("weftd has no {} {}", request.method(), request.uri().path()),
            format!(
                "the API is served under /v1: {}, {}, {}, {}, {}, {PATH_PODS}, {PATH_POOL}, {PATH_ENIS}, {PATH_ERRORS}, {PATH_POLICIES}, {PATH_POLICY_INPUTS}, {PATH_METRICS}; {VERSION_SKEW}",
                api::PATH_ADD,
                api::PATH_DEL,
                api::PATH_CHECK,
                api::PATH_GC,
                api::PATH_STATUS
            ),
        ),
    }
}

/// Answers "try again later" when a request (reading its body included)
/// takes longer than the deadline.
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Failure::from(ApiError::try_again_later(
            format!("weftd did not finish the request within {} ms", limit.as_millis()),
            "weftd is busy or waiting on EC2; the runtime retries the pod. Check weftd's log if this persists",
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(
            status_for(ErrorCode::TRY_AGAIN_LATER),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_for(ErrorCode::INVALID_NETCONF),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_for(ErrorCode::UNKNOWN_CONTAINER),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_for(ErrorCode::PLUMBING),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_for(ErrorCode(150)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

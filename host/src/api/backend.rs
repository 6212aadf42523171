//! What the API serves: the agent implements [`Backend`]; the API only
//! decodes, bounds and dispatches.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use weft_cni::api::{
    AddRequest, AddResponse, ApiError, CheckRequest, CheckResponse, DelRequest, DelResponse,
    GcRequest, GcResponse, PodRef, StatusResponse,
};
use weft_policy_sdk::pool::PoolState;

use crate::policy::view::{LiveInputs, PoliciesView};
use crate::reconcile::PoolSnapshot;

/// The agent behind the API.
///
/// Each call runs as its own task and always runs to completion: when a
/// client disconnects or the request deadline passes, the API stops waiting
/// and answers (or drops) the client, but an `add` that is plumbing a pod is
/// never cancelled half-way. Implementations serialise calls for the same
/// attachment themselves if they need to.
///
/// Errors are CNI errors: their code reaches the runtime unchanged (for
/// example 11, try again later, when the pool stays empty).
pub trait Backend: Send + Sync + 'static {
    /// Allocates an address for the attachment and plumbs the pod.
    fn add(&self, req: AddRequest) -> BoxFuture<'_, Result<AddResponse, ApiError>>;
    /// Unplumbs the pod and releases its address; succeeds for unknown attachments.
    fn del(&self, req: DelRequest) -> BoxFuture<'_, Result<DelResponse, ApiError>>;
    /// Compares the pod's networking with the expected result.
    fn check(&self, req: CheckRequest) -> BoxFuture<'_, Result<CheckResponse, ApiError>>;
    /// Releases everything of the network not held by a valid attachment.
    fn gc(&self, req: GcRequest) -> BoxFuture<'_, Result<GcResponse, ApiError>>;
    /// Whether an `ADD` would be served now.
    fn status(&self) -> BoxFuture<'_, StatusResponse>;
    /// The attachments the agent holds (`GET /v1/pods`).
    fn pods(&self) -> BoxFuture<'_, Result<Vec<PodView>, ApiError>>;
    /// The address pool (`GET /v1/pool`).
    fn pool(&self) -> BoxFuture<'_, Result<PoolView, ApiError>>;
    /// The node's ENIs and every address on them (`GET /v1/enis`).
    fn enis(&self) -> BoxFuture<'_, Result<PoolSnapshot, ApiError>> {
        Box::pin(async { Err(not_served("ENIs")) })
    }
    /// The most recent failed requests, oldest first (`GET /v1/errors`).
    fn errors(&self) -> Vec<ErrorView> {
        Vec::new()
    }
    /// Every role's policy (`GET /v1/policies`).
    fn policies(&self) -> BoxFuture<'_, Result<PoliciesView, ApiError>> {
        Box::pin(async { Err(not_served("policies")) })
    }
    /// The current decision inputs with the active policies' answers
    /// (`GET /v1/policies/inputs`), for `weftd policy eval --live`.
    fn policy_inputs(&self) -> BoxFuture<'_, Result<LiveInputs, ApiError>> {
        Box::pin(async { Err(not_served("policy inputs")) })
    }
}

fn not_served(what: &str) -> ApiError {
    ApiError::agent_protocol(
        format!("this agent serves no {what}"),
        "ask a weftd that runs the node agent",
    )
}

/// A failed CNI request, as `GET /v1/errors` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorView {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// `ADD`, `DEL`, `CHECK` or `GC`.
    pub command: String,
    /// The CNI error code answered.
    pub code: u32,
    /// The error's message.
    pub message: String,
}

/// One attachment, as `GET /v1/pods` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodView {
    /// The netconf `name`.
    pub network: String,
    /// The runtime's container id.
    pub container_id: String,
    /// The interface name inside the pod.
    pub ifname: String,
    /// The pod, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// The pod's address.
    pub ip: IpAddr,
    /// The ENI holding the address.
    pub eni_id: String,
    /// The host side of the pod's veth pair.
    pub host_veth: String,
}

/// The pool, as `GET /v1/pool` shows it: per security-group set, exactly
/// what the pool-sizing policy sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolView {
    /// One entry per security-group set.
    pub groups: Vec<PoolState>,
}

//! The agent API that the `weft` CNI plugin calls, and introspection.
//!
//! HTTP/1.1 + JSON on a unix socket (mode 0600, owned by the agent's user,
//! root), so standard tools work:
//! `curl --unix-socket /run/weft/weftd.sock http://weft/v1/status`.
//! The request and response types are shared with the plugin
//! ([`weft_cni::api`]); the agent supplies a [`Backend`].
//!
//! Robustness: bodies are bounded ([`weft_cni::api::MAX_BODY_BYTES`]), a
//! client must send its request head within [`ApiConfig::header_timeout`]
//! and finish within [`ApiConfig::request_timeout`]; each connection is its
//! own task, so a slow or dead client never blocks another; connections
//! beyond [`ApiConfig::max_connections`] are closed at once.
//!
//! Files: [`backend`] (the trait the agent implements and the introspection
//! views), `routes` (HTTP mapping), `server` (accept loop), `socket`
//! (creating the socket safely).

mod backend;
mod routes;
mod server;
mod socket;
mod tcp;

pub use backend::{Backend, ErrorView, PodView, PoolView};
pub use routes::{
    MetricsFn, PATH_ENIS, PATH_ERRORS, PATH_METRICS, PATH_PODS, PATH_POLICIES, PATH_POLICY_INPUTS,
    PATH_POOL, introspection_router, metrics_router,
};
pub use server::{ApiConfig, ApiServer};
pub use socket::{SocketError, SocketFile};
pub(crate) use tcp::TcpEndpoint;

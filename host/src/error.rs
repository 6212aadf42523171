//! The crate's error type.

use thiserror::Error;

/// Result with the crate's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the agent. Messages say what to fix.
#[derive(Debug, Error)]
pub enum Error {
    /// The policies could not be set up.
    #[error(transparent)]
    Policy(#[from] crate::policy::SetupError),
    /// Pod or ENI networking on the node failed.
    #[error(transparent)]
    Plumbing(#[from] crate::plumbing::PlumbingError),
    /// An EC2 (or simulator) call failed.
    #[error(transparent)]
    Cloud(#[from] crate::cloud::CloudError),
    /// The pool datastore refused an operation.
    #[error(transparent)]
    Ipam(#[from] crate::ipam::IpamError),
    /// The state directory could not be read or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The API socket could not be created.
    #[error(transparent)]
    ApiSocket(#[from] crate::api::SocketError),
    /// The Kubernetes API could not be configured.
    #[error(transparent)]
    Kubernetes(#[from] crate::kubernetes::KubeError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

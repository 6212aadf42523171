//! The cloud layer. Placeholder: filled by the cloud work.

/// Errors of cloud calls.
#[derive(Debug, thiserror::Error)]
#[error("cloud error")]
pub struct CloudError;

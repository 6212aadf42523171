//! The wasmtime policy runtime (see issue: policy contract).
//! Placeholder: filled by the policy-runtime work.

/// Errors of the policy runtime.
#[derive(Debug, thiserror::Error)]
#[error("policy error")]
pub struct PolicyError;

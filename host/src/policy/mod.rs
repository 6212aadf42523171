//! The wasmtime policy runtime: loads policy components, runs every
//! decision in a fresh sandboxed instance, validates the answer and falls
//! back to the built-in defaults when a policy fails.
//!
//! * [`config`]: the `[policies]` configuration.
//! * [`engine`]: the one wasmtime engine (pooling allocator, epoch ticker).
//! * [`module`]: loading and calling one policy component; `image`: the
//!   configured state every decision starts from.
//! * [`validate`]: checking and clamping every output (pure).
//! * [`PolicySet`]: what the reconciler and the API call.
//! * [`cache`]: compiled artifacts on disk.
//! * `dropin`: the policy directory; `watch`: reloading it on change and
//!   SIGHUP; `shadow`: shadow policies; `slot`: one role's policy in force;
//!   [`view`]: what `/v1/policies` shows.

mod bindings;
mod cache;
mod config;
mod dropin;
mod engine;
mod error;
mod image;
mod module;
mod sandbox;
mod set;
mod shadow;
mod slot;
mod text;
pub mod validate;
pub mod view;
mod wasi;
mod watch;
mod watchdog;

pub use cache::ArtifactCache;
pub use config::{
    DEFAULT_DEADLINE_MS, DEFAULT_MEMORY_MIB, OnFailure, PoliciesConfig, PolicyConfig,
};
pub use engine::PolicyEngine;
pub use error::{Decision, FailureKind, PolicyError, SetupError};
pub use module::{CallStats, CompiledPolicy, LoadReport, PolicyModule};
pub use sandbox::{CallLimits, LOG_BURST, LOG_RATE_PER_SECOND};
pub use set::PolicySet;
pub(crate) use watch::watch;

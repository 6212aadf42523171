//! # weft-host
//!
//! The Weft node agent (`weftd`): it owns every side effect on the node
//! (EC2 calls, netlink, state on disk) and asks sandboxed WebAssembly
//! policies for every pool-sizing, subnet-selection and security-group
//! decision.
//!
//! Modules, one concern each:
//! * [`policy`]: the wasmtime runtime that loads, sandboxes, calls and
//!   validates policies, and falls back to the built-in defaults.
//! * [`cloud`]: the [`cloud::Cloud`] trait, with EC2 and an embedded VPC
//!   simulator behind it.
//! * [`ipam`]: the pool datastore (pure logic).
//! * [`plumbing`]: pod and ENI networking through rtnetlink.
//! * [`api`]: the unix-socket API the `weft` CNI plugin calls.
//! * [`reconcile`]: the pool service and its reconciler (ADD waits,
//!   EC2 changes through the journal, start-up recovery).
//! * [`state`]: durable state on disk (assignment checkpoint, EC2 journal).
//! * [`metrics`]: Prometheus counters shared by all of the above.

pub mod agent;
pub mod api;
pub mod cloud;
pub mod compat;
pub mod config;
pub mod error;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
pub mod install;
pub mod ipam;
pub mod kubernetes;
pub mod mac;
pub mod metrics;
pub mod plumbing;
pub mod policy;
pub mod reconcile;
pub mod simulate;
pub mod state;

pub use error::{Error, Result};

//! # weft-cni
//!
//! The `weft` CNI plugin that kubelet's container runtime executes for every
//! pod, and the agent API types it shares with `weftd`.
//!
//! The plugin is thin: it validates the runtime's input (environment,
//! `CNI_ARGS`, network configuration), makes one call to `weftd` over its
//! unix socket, and prints the result or error in the CNI version the
//! configuration asks for. The agent allocates the address and plumbs the
//! pod.
//!
//! Modules, one concern each:
//! * [`env`](mod@env), [`args`], [`netconf`]: the runtime's input.
//! * [`version`]: supported spec versions and what each allows.
//! * [`result`], [`cidr`]: the CNI result model and its rendering per version.
//! * [`error`]: the CNI error object and the error codes.
//! * [`api`]: the agent API's request and response types.
//! * [`client`]: HTTP/1.1 over the agent's unix socket.
//! * [`plugin`]: what each command does; `main` wires the process to it.
//! * [`spool`]: DELs weftd could not answer, kept until it carries them out.
//! * [`boottime`]: moments on the node's boot clock, which plugin and agent
//!   both read.
//! * [`log`]: leveled logging to stderr.

#![warn(missing_docs)]

pub mod api;
pub mod args;
pub mod boottime;
pub mod cidr;
pub mod client;
pub mod env;
pub mod error;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
pub mod log;
pub mod netconf;
pub mod plugin;
pub mod result;
pub mod spool;
pub mod version;

pub use error::{CniError, ErrorCode};

//! Durable state of the node agent: the assignment checkpoint and the
//! journal of EC2 operations in flight, in one locked directory, and
//! [`DurableDatastore`], which makes every pod assignment and release durable
//! before it is answered.
//!
//! Every write is atomic or append-only with `fsync`, so a crash at any
//! point leaves files that load into a consistent state (the old one or the
//! new one, never a mix).

mod atomic;
mod checkpoint;
mod dir;
mod durable;
mod error;
mod ipv6;
mod journal;

pub use atomic::write_atomic;
pub use checkpoint::{CHECKPOINT_VERSION, Checkpoint};
pub use dir::StateDir;
pub use durable::{CheckpointSink, DurableDatastore};
pub use error::{CommitError, StateError};
pub use ipv6::{DurableIpv6Block, IPV6_CHECKPOINT_VERSION, Ipv6Checkpoint};
pub use journal::{Intent, Journal, OpId, Operation};

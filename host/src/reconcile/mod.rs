//! The pool service: pod ADD/DEL against the datastore, and the reconciler
//! that sizes the pool through the policies and EC2.
//!
//! * [`Pool`] (`service`): the handle the API uses; [`PoolConfig`]
//!   (`config`); [`PoolError`] and [`Blocked`] (`error`).
//! * `wait`: an ADD that finds no free address wakes the reconciler and
//!   waits a bounded time.
//! * `driver`: the reconciler task, one round per event burst or resync
//!   period, each group sized by the pool-sizing policy.
//! * `execute`: one decision carried out through [`crate::cloud::Cloud`],
//!   journaled step by step, applied to the datastore; `grow`: its assigns
//!   and creates sent to EC2 at once; prefixes fall back to secondary IPs on
//!   a fragmented subnet.
//! * `resync`: the pool brought back in line with the cloud's inventory
//!   every [`PoolConfig::inventory_resync_seconds`].
//! * `recovery`: start-up from the cloud's inventory, the journal and the
//!   checkpoint.
//! * `ownership`: which of the node's ENIs Weft manages; the others are
//!   listed with the reason and never touched.
//! * `settle`: calls whose answer was lost, settled from later reads and
//!   the journal instead of being sent again.
//! * `collect`: failed deletes retried, leaked ENIs collected.
//! * [`EniHooks`] (`hooks`): node-side set-up of secondary ENIs.
//! * [`PoolSnapshot`] (`snapshot`): the introspection view.

mod clock;
mod collect;
mod config;
mod driver;
mod error;
mod execute;
mod grow;
mod hooks;
mod inventory;
mod ownership;
mod pool;
mod recovery;
mod resync;
mod settle;
mod shared;
mod snapshot;
mod wait;

pub use clock::{PoolClock, Sleep, VirtualClock};
pub use config::{IpFamily, PoolConfig};
pub use driver::RoundReport;
pub use error::{Blocked, BlockedKind, PoolError};
pub use hooks::{EniHooks, HookError, HookFuture, NoHooks};
pub use inventory::TAG_OPERATION;
pub use ownership::{TAG_NO_MANAGE, UnmanagedEni};
pub use pool::{Pool, PoolDeps};
pub(crate) use snapshot::PoolSnapshot;

//! What the library tests share: policy inputs and loaders (`policy`), and
//! the pool-service harness on `SimCloud` (`reconcile`).

pub(crate) mod policy;
pub(crate) mod reconcile;

//! What the library tests share: policy inputs and loaders (`policy`), and
//! the pool-service harness on `SimCloud` (`reconcile`).

pub mod policy;
pub mod reconcile;

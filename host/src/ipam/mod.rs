//! The pool datastore: the node's ENIs, their secondary IPs and /28
//! prefixes, grouped by security-group set, and which pod holds which
//! address.
//!
//! Pure logic: no I/O and no clock reads. Callers pass time in as a
//! [`Now`], apply what EC2 did (`add_*`, `remove_*`), ask what may go back
//! to EC2 (`begin_release_*`), and persist assignments through
//! [`crate::state::DurableDatastore`]. See [`Datastore`] for the placement rule and the
//! address life cycle.

mod activity;
mod datastore;
mod error;
mod ipv6;
mod model;
mod sg;
mod time;

#[cfg(test)]
mod tests;

pub use datastore::{Datastore, GrowthBudget};
pub use error::IpamError;
pub use ipv6::{Dropped, Ipv6Assignment, Ipv6Block};
pub use model::{
    ADDRESSES_PER_PREFIX, AddressInfo, AddressState, Assignment, AssignmentKey, CoolingAddress,
    Correction, Eni, GivenBack, IpamConfig, Placement, PodMeta,
};
pub use sg::SgSet;
pub use time::Now;

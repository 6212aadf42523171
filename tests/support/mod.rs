//! Support modules of the end-to-end tests.

pub mod agent;
pub mod backend;
pub mod binaries;
pub mod churn;
pub mod fabric;
pub mod fault_proxy;
pub mod k8s;
pub mod log;
pub mod moto;
pub mod netns;
pub mod policy_build;
pub mod pool;
pub mod tcp;
pub mod vpc;
pub mod wiring;

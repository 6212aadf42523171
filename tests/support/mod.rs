//! Support modules of the end-to-end tests.

pub mod binaries;
pub mod fault_proxy;
pub mod moto;
pub mod vpc;

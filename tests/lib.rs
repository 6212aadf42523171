//! End-to-end test support.
//!
//! * [`support::backend`]: the API server with a test double of weftd's backend behind it.
//! * [`support::binaries`]: the workspace's binaries (`weft`, `weftd`), built for the running test.
//! * [`support::moto`]: a `moto_server` (EC2 API emulator) per test binary, reset between tests.
//! * [`support::fault_proxy`]: an HTTP proxy in front of moto that injects EC2 faults.
//! * [`support::policy_build`]: the SDK packaged and extracted, out-of-tree policy builds.
//! * [`support::vpc`]: builds a VPC, subnet, security group and instance in moto through the SDK.

pub mod support;

pub use support::binaries::{weft_plugin_binary, weftd_binary};

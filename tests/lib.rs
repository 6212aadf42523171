//! End-to-end test support.
//!
//! * [`support::moto`]: a `moto_server` (EC2 API emulator) per test binary, reset between tests.
//! * [`support::fault_proxy`]: an HTTP proxy in front of moto that injects EC2 faults.
//! * [`support::vpc`]: builds a VPC, subnet, security group and instance in moto through the SDK.

pub mod support;

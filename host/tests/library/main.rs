//! The library tests of `weft-host`: one test binary, without root, the
//! workspace's binaries or moto. The pool service runs on the embedded VPC
//! simulator, the policies as real Wasm components. Tests that need root
//! (network namespaces), `weftd`/`weft` or the EC2 emulator are in the
//! `tests` crate at the workspace root.

mod support;

mod deploy_manifests;
mod ipam_props;
mod ipam_restart;
mod policy_cache;
mod policy_defaults;
mod policy_dir;
mod policy_hostile;
mod policy_sandbox;
mod policy_set;
mod policy_worlds;
mod reconcile_crash;
mod reconcile_flows;
mod reconcile_props;
mod reconcile_real_ec2;
mod simulate;

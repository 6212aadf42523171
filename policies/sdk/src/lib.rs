//! # weft-policy-sdk
//!
//! Everything a policy author needs to write a Weft policy in Rust: the
//! decision types (mirrors of `wit/policy.wit`), one trait per decision, an
//! export macro per world that turns a type implementing the trait into a
//! WebAssembly component, settings parsing, logging, and a native test
//! harness.
//!
//! | decision | trait | export macro | SDK feature (Wasm) |
//! | --- | --- | --- | --- |
//! | pool sizing | [`PoolSizing`] | [`export_pool_sizing!`] | `pool-sizing` |
//! | subnet selection | [`SubnetSelection`] | [`export_subnet_selection!`] | `subnet-selection` |
//! | security groups | [`SecurityGroups`] | [`export_security_groups!`] | `security-groups` |
//!
//! A policy crate is a `cdylib` + `rlib` that enables exactly one world
//! feature. Built for `wasm32-wasip2` it is a component implementing that
//! world; built natively it is an ordinary library (the host links the
//! default policies this way) and its `cargo test` runs without Wasm.
//!
//! ```
//! use serde::Deserialize;
//! use weft_policy_sdk::{SecurityGroups, security::Request, settings::parse_settings};
//!
//! /// Gives pods of one namespace a fixed security group.
//! pub struct Isolate {
//!     settings: Settings,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case", deny_unknown_fields)]
//! struct Settings {
//!     namespace: String,
//!     security_group: String,
//! }
//!
//! impl SecurityGroups for Isolate {
//!     fn configure(settings: &str) -> Result<Self, String> {
//!         Ok(Isolate { settings: parse_settings(settings)? })
//!     }
//!
//!     fn select_security_groups(&self, request: &Request) -> Result<Vec<String>, String> {
//!         if request.pod.namespace == self.settings.namespace {
//!             Ok(vec![self.settings.security_group.clone()])
//!         } else {
//!             Ok(request.node_security_groups.clone())
//!         }
//!     }
//! }
//!
//! weft_policy_sdk::export_security_groups!(Isolate);
//! ```
//!
//! See `policies/README.md` for the authoring guide (test, build, check,
//! deploy).

#![warn(missing_docs)]

mod export;
pub mod log;
pub mod settings;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod types;

pub use types::{Tag, pool, security, subnet};

/// The contract this SDK implements: the WIT package its guest bindings are
/// generated from. The crate carries that WIT (`wit/policy.wit` in the
/// package), so a policy built with this SDK imports and exports exactly
/// these interfaces, whatever repository it is built in.
pub const CONTRACT: &str = "weft:policy@0.1.0";

/// The contract's text, as packaged with the SDK.
pub const CONTRACT_WIT: &str = include_str!("../wit/policy.wit");

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[path = "guest/mod.rs"]
pub mod __guest;

/// Decides how the warm pool of one security-group group changes
/// (WIT world `pool-sizing`).
pub trait PoolSizing: Sized {
    /// Builds the policy from its settings (JSON, `{}` when none is given).
    /// An error fails the policy's load with this message.
    fn configure(settings: &str) -> Result<Self, String>;

    /// Decides how the group's pool should change.
    fn size_pool(&self, state: &pool::PoolState) -> pool::PoolDecision;
}

/// Chooses the subnet of a new ENI (WIT world `subnet-selection`).
pub trait SubnetSelection: Sized {
    /// Builds the policy from its settings (JSON, `{}` when none is given).
    fn configure(settings: &str) -> Result<Self, String>;

    /// Chooses one of `candidates`, or refuses with a reason.
    fn select_subnet(
        &self,
        request: &subnet::EniRequest,
        candidates: &[subnet::Candidate],
    ) -> subnet::Choice;
}

/// Chooses a pod's security groups (WIT world `security-groups`).
pub trait SecurityGroups: Sized {
    /// Builds the policy from its settings (JSON, `{}` when none is given).
    fn configure(settings: &str) -> Result<Self, String>;

    /// The pod's security groups, or an error that fails its ADD.
    fn select_security_groups(&self, request: &security::Request) -> Result<Vec<String>, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names_the_packaged_wit() {
        let package = CONTRACT_WIT
            .lines()
            .find_map(|line| line.strip_prefix("package "))
            .expect("the WIT declares its package");
        assert_eq!(package, format!("{CONTRACT};"));
        let readme = include_str!("../README.md");
        assert!(readme.contains(CONTRACT), "README.md must name {CONTRACT}");
    }
}

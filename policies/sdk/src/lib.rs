//! # weft-policy-sdk
//!
//! Everything a policy author needs to write a Weft policy in Rust: the
//! decision types (mirrors of `wit/policy.wit`), one trait per decision, an
//! `export!` macro per world that turns a type implementing the trait into a
//! WebAssembly component, logging, and a native test harness.
//!
//! See `policies/README.md` for the authoring guide.

pub mod types;

pub use types::{Tag, pool, security, subnet};

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

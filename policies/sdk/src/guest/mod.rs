//! The WebAssembly side of the SDK: guest bindings of one WIT world and the
//! glue that the `export_*!` macros expand to.
//!
//! Compiled only for `wasm32` targets. Exactly one world feature must be
//! enabled: `wit-component` merges the worlds embedded in a component, so a
//! second world's exports would be required but never implemented.
//!
//! Nothing here is meant to be used directly; it is public only because the
//! export macros expand in the policy's crate.

#[cfg(any(
    all(feature = "pool-sizing", feature = "subnet-selection"),
    all(feature = "pool-sizing", feature = "security-groups"),
    all(feature = "subnet-selection", feature = "security-groups"),
))]
compile_error!(
    "weft-policy-sdk: enable exactly one of the features `pool-sizing`, `subnet-selection`, \
     `security-groups` when compiling a policy to Wasm (one component implements one world)"
);

use std::cell::RefCell;
use std::thread::LocalKey;

/// The configured policy of this instance, `None` until `configure` succeeds.
pub type Slot<T> = LocalKey<RefCell<Option<T>>>;

/// Message logged and returned when a decision is asked before `configure`.
const NOT_CONFIGURED: &str = "policy asked for a decision before `configure` succeeded";

/// Builds the policy from its settings and stores it in `slot`, replacing any
/// earlier configuration. On error the slot is emptied, so a failed
/// reconfiguration never leaves stale settings in force.
pub fn configure<T: 'static>(
    slot: &'static Slot<T>,
    settings: &str,
    build: impl FnOnce(&str) -> Result<T, String>,
) -> Result<(), String> {
    let built = build(settings);
    let (stored, result) = match built {
        Ok(policy) => (Some(policy), Ok(())),
        Err(message) => (None, Err(message)),
    };
    slot.with(|cell| *cell.borrow_mut() = stored);
    result
}

/// Runs `decide` with the configured policy, or logs an error and returns
/// `unconfigured(message)` when `configure` has not succeeded.
fn with_policy<T: 'static, R>(
    slot: &'static Slot<T>,
    unconfigured: impl FnOnce(&str) -> R,
    decide: impl FnOnce(&T) -> R,
) -> R {
    slot.with(|cell| match cell.borrow().as_ref() {
        Some(policy) => decide(policy),
        None => {
            crate::log::error(NOT_CONFIGURED);
            unconfigured(NOT_CONFIGURED)
        }
    })
}

#[cfg(feature = "pool-sizing")]
pub mod pool;
#[cfg(feature = "security-groups")]
pub mod security;
#[cfg(feature = "subnet-selection")]
pub mod subnet;

/// Generated bindings of the enabled world, from the contract packaged with
/// the SDK (`wit/policy.wit` inside this crate).
#[cfg(any(
    feature = "pool-sizing",
    feature = "subnet-selection",
    feature = "security-groups"
))]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    #[cfg(feature = "pool-sizing")]
    wit_bindgen::generate!({
        path: "wit",
        world: "pool-sizing",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "weft_policy_sdk::__guest::bindings",
    });
    #[cfg(feature = "subnet-selection")]
    wit_bindgen::generate!({
        path: "wit",
        world: "subnet-selection",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "weft_policy_sdk::__guest::bindings",
    });
    #[cfg(feature = "security-groups")]
    wit_bindgen::generate!({
        path: "wit",
        world: "security-groups",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "weft_policy_sdk::__guest::bindings",
    });
}

/// Conversions of the shared `types` interface.
#[cfg(any(feature = "subnet-selection", feature = "security-groups"))]
mod tags {
    use super::bindings::weft::policy::types::Tag as WitTag;
    use crate::Tag;

    impl From<WitTag> for Tag {
        fn from(tag: WitTag) -> Self {
            Tag {
                key: tag.key,
                value: tag.value,
            }
        }
    }

    /// Converts a list of WIT tags.
    pub(super) fn convert(tags: Vec<WitTag>) -> Vec<Tag> {
        tags.into_iter().map(Tag::from).collect()
    }
}

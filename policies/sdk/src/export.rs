//! The export macros: one per WIT world, each turning a type that implements
//! the world's trait into the component's exports.
//!
//! On `wasm32` with the world's feature enabled, a macro expands to the
//! world's exports: `configure` builds the policy with the trait's
//! `configure` and keeps it for the instance; the decision converts the WIT
//! records to the SDK types, calls the trait, and converts the answer back.
//! A decision asked before a successful `configure` logs an error and
//! answers conservatively (no pool change, a refused subnet, an SG error).
//!
//! On native targets the macros only check at compile time that the type
//! implements the trait, so the same crate builds as an rlib the host links.

/// Exports a [`PoolSizing`](crate::PoolSizing) type as the component's
/// `pool-sizing-timed` world, which gives the policy the group's churn
/// per minute, with when each minute's ADDs came, in
/// `PoolState.activity.history` (needs the SDK feature `pool-sizing` on
/// Wasm).
#[cfg(all(target_arch = "wasm32", feature = "pool-sizing"))]
#[macro_export]
macro_rules! export_pool_sizing {
    ($ty:ty) => {
        const _: () = {
            use $crate::__guest::bindings::weft::policy::pool as wit;
            use $crate::__guest::bindings::weft::policy::pool_timing as wit_timing;
            ::std::thread_local! {
                static POLICY: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }
            struct Export;
            impl $crate::__guest::bindings::Guest for Export {
                fn configure(
                    settings: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__guest::configure(
                        &POLICY,
                        &settings,
                        <$ty as $crate::PoolSizing>::configure,
                    )
                }
                fn size_pool_timed(
                    state: wit::PoolState,
                    history: ::std::vec::Vec<wit_timing::Minute>,
                ) -> wit::PoolDecision {
                    $crate::__guest::pool::size_pool(&POLICY, state, history)
                }
            }
            $crate::__guest::bindings::export_world!(Export with_types_in $crate::__guest::bindings);
        };
    };
}

/// Exports a [`PoolSizing`](crate::PoolSizing) type as the component's
/// `pool-sizing-timed` world, which gives the policy the group's churn
/// per minute, with when each minute's ADDs came, in
/// `PoolState.activity.history` (needs the SDK feature `pool-sizing` on
/// Wasm).
///
/// ```
/// use weft_policy_sdk::{PoolSizing, pool::{PoolDecision, PoolState}};
///
/// struct Steady;
///
/// impl PoolSizing for Steady {
///     fn configure(_settings: &str) -> Result<Self, String> {
///         Ok(Steady)
///     }
///     fn size_pool(&self, _state: &PoolState) -> PoolDecision {
///         PoolDecision::default()
///     }
/// }
///
/// weft_policy_sdk::export_pool_sizing!(Steady);
/// ```
#[cfg(not(all(target_arch = "wasm32", feature = "pool-sizing")))]
#[macro_export]
macro_rules! export_pool_sizing {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        ::core::compile_error!(
            "export_pool_sizing! needs the `pool-sizing` feature of weft-policy-sdk"
        );
        const _: fn() = || {
            fn implements<T: $crate::PoolSizing>() {}
            implements::<$ty>();
        };
    };
}

/// Exports a [`SubnetSelection`](crate::SubnetSelection) type as the
/// component's `subnet-selection-node` world, which gives the policy the
/// node's Kubernetes metadata in `EniRequest.node` (needs the SDK feature
/// `subnet-selection` on Wasm).
#[cfg(all(target_arch = "wasm32", feature = "subnet-selection"))]
#[macro_export]
macro_rules! export_subnet_selection {
    ($ty:ty) => {
        const _: () = {
            use $crate::__guest::bindings::weft::policy::kubernetes as wit_kubernetes;
            use $crate::__guest::bindings::weft::policy::subnet as wit;
            ::std::thread_local! {
                static POLICY: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }
            struct Export;
            impl $crate::__guest::bindings::Guest for Export {
                fn configure(
                    settings: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__guest::configure(
                        &POLICY,
                        &settings,
                        <$ty as $crate::SubnetSelection>::configure,
                    )
                }
                fn select_subnet_for_node(
                    request: wit::EniRequest,
                    node: wit_kubernetes::Node,
                    candidates: ::std::vec::Vec<wit::Candidate>,
                ) -> wit::Choice {
                    $crate::__guest::subnet::select_subnet(&POLICY, request, node, candidates)
                }
            }
            $crate::__guest::bindings::export_world!(Export with_types_in $crate::__guest::bindings);
        };
    };
}

/// Exports a [`SubnetSelection`](crate::SubnetSelection) type as the
/// component's `subnet-selection-node` world, which gives the policy the
/// node's Kubernetes metadata in `EniRequest.node` (needs the SDK feature
/// `subnet-selection` on Wasm).
///
/// ```
/// use weft_policy_sdk::{SubnetSelection, subnet::{Candidate, Choice, EniRequest}};
///
/// struct NodeSubnet;
///
/// impl SubnetSelection for NodeSubnet {
///     fn configure(_settings: &str) -> Result<Self, String> {
///         Ok(NodeSubnet)
///     }
///     fn select_subnet(&self, request: &EniRequest, _candidates: &[Candidate]) -> Choice {
///         Choice::UseSubnet(request.node_subnet_id.clone())
///     }
/// }
///
/// weft_policy_sdk::export_subnet_selection!(NodeSubnet);
/// ```
#[cfg(not(all(target_arch = "wasm32", feature = "subnet-selection")))]
#[macro_export]
macro_rules! export_subnet_selection {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        ::core::compile_error!(
            "export_subnet_selection! needs the `subnet-selection` feature of weft-policy-sdk"
        );
        const _: fn() = || {
            fn implements<T: $crate::SubnetSelection>() {}
            implements::<$ty>();
        };
    };
}

/// Exports a [`SecurityGroups`](crate::SecurityGroups) type as the
/// component's `security-groups` world (needs the SDK feature
/// `security-groups` on Wasm).
#[cfg(all(target_arch = "wasm32", feature = "security-groups"))]
#[macro_export]
macro_rules! export_security_groups {
    ($ty:ty) => {
        const _: () = {
            use $crate::__guest::bindings::weft::policy::security as wit;
            ::std::thread_local! {
                static POLICY: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }
            struct Export;
            impl $crate::__guest::bindings::Guest for Export {
                fn configure(
                    settings: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__guest::configure(
                        &POLICY,
                        &settings,
                        <$ty as $crate::SecurityGroups>::configure,
                    )
                }
                fn select_security_groups(
                    request: wit::Request,
                ) -> ::core::result::Result<::std::vec::Vec<::std::string::String>, ::std::string::String>
                {
                    $crate::__guest::security::select_security_groups(&POLICY, request)
                }
            }
            $crate::__guest::bindings::export_world!(Export with_types_in $crate::__guest::bindings);
        };
    };
}

/// Exports a [`SecurityGroups`](crate::SecurityGroups) type as the
/// component's `security-groups` world (needs the SDK feature
/// `security-groups` on Wasm).
///
/// ```
/// use weft_policy_sdk::{SecurityGroups, security::Request};
///
/// struct NodeGroups;
///
/// impl SecurityGroups for NodeGroups {
///     fn configure(_settings: &str) -> Result<Self, String> {
///         Ok(NodeGroups)
///     }
///     fn select_security_groups(&self, request: &Request) -> Result<Vec<String>, String> {
///         Ok(request.node_security_groups.clone())
///     }
/// }
///
/// weft_policy_sdk::export_security_groups!(NodeGroups);
/// ```
#[cfg(not(all(target_arch = "wasm32", feature = "security-groups")))]
#[macro_export]
macro_rules! export_security_groups {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        ::core::compile_error!(
            "export_security_groups! needs the `security-groups` feature of weft-policy-sdk"
        );
        const _: fn() = || {
            fn implements<T: $crate::SecurityGroups>() {}
            implements::<$ty>();
        };
    };
}

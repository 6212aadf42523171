//! # warm-pool: Weft's default pool-sizing policy
//!
//! Keeps a warm pool of pod addresses with exactly the semantics of the
//! Amazon VPC CNI's `WARM_ENI_TARGET`, `WARM_IP_TARGET`,
//! `MINIMUM_IP_TARGET` and `WARM_PREFIX_TARGET`, applied to the one
//! security-group group being sized. The host links this crate natively as
//! its built-in pool sizing; built for `wasm32-wasip2` it is the same policy
//! as a component.
//!
//! ## Terms
//!
//! * An ENI holds `ipv4-per-eni - 1` *slots* (its own primary address takes
//!   one); each slot is a secondary IP (1 pod address) or, in prefix mode, a
//!   /28 prefix (16 pod addresses).
//! * *held*: the group's pod addresses; *free*: held addresses neither
//!   assigned to a pod nor cooling down after a release. Pod ADDs already
//!   waiting for an address (`pending-adds`) count against free, so the
//!   pool grows for them even when the targets are otherwise met.
//!
//! ## Targets (settings, all optional)
//!
//! | setting | VPC CNI | meaning |
//! | --- | --- | --- |
//! | `warm-eni-target` (default 1) | `WARM_ENI_TARGET` | keep this many ENIs' worth (`n × slots`) of free IPs; when short, fill existing ENIs completely (lowest device index first), then attach full new ENIs. 0 means "grow only when no address is free". Ignored when an IP target is set, and in prefix mode. |
//! | `warm-ip-target` | `WARM_IP_TARGET` | keep this many free addresses. |
//! | `minimum-ip-target` | `MINIMUM_IP_TARGET` | hold at least this many addresses in total. With `warm-ip-target` the pool is short by `max(warm − free, minimum − held)`. |
//! | `prefix-delegation` | `ENABLE_PREFIX_DELEGATION` | grow by /28 prefixes where the instance supports it (else secondary IPs, said in the reason). |
//! | `warm-prefix-target` (default 1) | `WARM_PREFIX_TARGET` | in prefix mode without IP targets, keep this many prefixes' worth (`16 n`) of free addresses: one more prefix is added as soon as a single address of the last one is used. |
//! | `min-eni-age-seconds` (default 60) | (1 min in VPC CNI) | an ENI younger than this is never released. |
//!
//! A target of 0 is the same as unset, as in VPC CNI. IP targets override
//! the ENI and prefix targets. In prefix mode the IP targets are met in
//! whole prefixes (a minimum of 20 addresses holds 32). Prefix mode with
//! `warm-prefix-target` 0 and no IP target is refused at load, as VPC CNI
//! refuses it.
//!
//! ## Growing
//!
//! The decision adds `ceil(short / unit)` IPs or prefixes: first into the
//! free slots of the group's ENIs (lowest device index first), then on new
//! ENIs (each up to a full ENI; under `warm-eni-target` each new ENI is
//! created full). It never asks for more than the instance allows: new ENIs
//! only while the node has fewer than `max-enis`, addresses only while the
//! node holds fewer than `max-pods` (a prefix is added while at least one of
//! its addresses is usable).
//!
//! ## Shrinking
//!
//! As in VPC CNI, the pool shrinks only when `warm-ip-target` or
//! `minimum-ip-target` is set, or (prefix mode) `warm-prefix-target` is set
//! explicitly; under the default `warm-eni-target` nothing is ever released.
//! The surplus is `min(free − warm, held − minimum)` addresses (or
//! `free − 16 × warm-prefix-target`). It is given back first as whole ENIs,
//! newest first, that hold no assigned or cooling address, are not the
//! primary (device index 0), are at least `min-eni-age-seconds` old and fit
//! in the surplus; then as free IPs (or whole free prefixes) from the
//! highest device index down.
//!
//! Growing and shrinking never fight: a short pool is never over target, a
//! decision covers the whole gap at once, and a decision applied and asked
//! again is a no-op (property-tested).
//!
//! ```
//! use weft_policy_sdk::PoolSizing;
//! use weft_policy_sdk::pool::{Eni, InstanceLimits, PoolState};
//! use warm_pool::WarmPool;
//!
//! let policy = WarmPool::configure(r#"{"warm-ip-target": 2, "minimum-ip-target": 5}"#).unwrap();
//! let state = PoolState {
//!     group: vec!["sg-0123456789abcdef0".into()],
//!     default_group: true,
//!     enis: vec![Eni {
//!         id: "eni-primary".into(), device_index: 0, subnet_id: "subnet-a".into(),
//!         ips: 0, prefixes: 0, assigned: 0, cooling: 0, age_seconds: 600,
//!     }],
//!     node_enis: 1,
//!     node_addresses: 0,
//!     node_assigned: 0,
//!     limits: InstanceLimits { max_enis: 3, ipv4_per_eni: 4, prefix_delegation: false, max_pods: 11 },
//!     pending_adds: 0,
//!     activity: Default::default(),
//! };
//! // t3.small, no pods: 3 IPs on the primary ENI and a second ENI with 2.
//! let decision = policy.size_pool(&state);
//! assert_eq!(decision.changes[0].add_ips, 3);
//! assert_eq!(decision.create[0].ips, 2);
//! ```

mod plan;
mod settings;

pub use settings::Settings;

use weft_policy_sdk::PoolSizing;
use weft_policy_sdk::pool::{PoolDecision, PoolState};
use weft_policy_sdk::settings::parse_settings;

/// The warm-pool policy: VPC CNI warm targets (see the crate docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmPool {
    settings: Settings,
}

impl WarmPool {
    /// The policy with already-parsed settings, validated.
    pub fn new(settings: Settings) -> Result<Self, String> {
        settings.validate()?;
        Ok(WarmPool { settings })
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

impl PoolSizing for WarmPool {
    fn configure(settings: &str) -> Result<Self, String> {
        WarmPool::new(parse_settings(settings)?)
    }

    fn size_pool(&self, state: &PoolState) -> PoolDecision {
        plan::decide(&self.settings, state)
    }
}

weft_policy_sdk::export_pool_sizing!(WarmPool);

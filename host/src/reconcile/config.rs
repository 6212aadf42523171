//! `[pool]`: the settings of the pool service.

use crate::cloud::InstanceLimits;
use crate::ipam::{IpamConfig, SgSet};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest `add-wait-ms`: an ADD must be answered (address found and
/// pod wired) before weftd's request deadline (25 s) and the plugin's
/// `timeout-ms` (30 s by default), or the runtime gives up on an ADD that
/// then completes unseen.
pub(super) const MAX_ADD_WAIT_MS: u64 = 20_000;

/// Kubernetes' default pod limit, used as max pods in prefix mode when no
/// override is given (prefixes would otherwise allow hundreds of pods).
const PREFIX_MODE_MAX_PODS: u32 = 110;

/// Settings of the pool service, as embedded in the agent's TOML:
///
/// ```toml
/// [pool]
/// cooldown-seconds = 30
/// add-wait-ms = 10000
/// resync-seconds = 10
/// inventory-resync-seconds = 300
/// min-eni-age-seconds = 60
/// # custom networking: pods get their own security groups and never the primary ENI
/// security-groups = ["sg-0123456789abcdef0"]
/// primary-eni-serves-pods = false
/// max-pods = 58
/// max-enis = 2
/// prefix-delegation = false
/// # EC2 reads lag writes: what a read lacks leaves the pool only after
/// # this many reads in a row over this many seconds
/// stale-read-confirmations = 3
/// stale-read-grace-seconds = 10
/// # a new ENI's device must appear on the node within this time
/// eni-ready-timeout-seconds = 60
/// # leaked-ENI collector: at start and then every this many seconds
/// leaked-eni-cleanup-seconds = 600
/// disable-leaked-eni-cleanup = false
/// # "ipv6": pods get IPv6 addresses from a /80 on the primary ENI (VPC CNI's ENABLE_IPv6)
/// ip-family = "ipv4"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PoolConfig {
    /// How long a released address rests before another pod gets it, so
    /// that peers of the old pod stop sending to it. Default 30 (VPC CNI).
    pub cooldown_seconds: u64,
    /// How long an ADD that finds no free address waits for the reconciler
    /// to add one before it fails with "try again later". Default 10 000,
    /// at most [`MAX_ADD_WAIT_MS`].
    pub add_wait_ms: u64,
    /// Period of the reconcile round that runs without any event (every
    /// ADD and DEL also wakes it at once). Default 10.
    pub resync_seconds: u64,
    /// Period of the comparison of the pool with the ENIs EC2 reports (one
    /// `DescribeNetworkInterfaces`), which catches ENIs or addresses
    /// removed behind the agent's back. 0 compares in every round.
    /// Default 300.
    pub inventory_resync_seconds: u64,
    /// An ENI is released only once it has been attached this long, so
    /// that scale-up and scale-down never fight. Default 60 (VPC CNI).
    pub min_eni_age_seconds: u64,
    /// The default security-group set of pods; the primary ENI's groups
    /// when unset (set it for custom networking).
    pub security_groups: Option<Vec<String>>,
    /// Whether pods get addresses on the primary ENI. Turn off for custom
    /// networking, where pods live on secondary ENIs only. Default on.
    pub primary_eni_serves_pods: bool,
    /// The most pods (addresses) the node holds. When unset: ENIs x (IPs
    /// per ENI - 1) + 2 as VPC CNI, or 110 in prefix mode.
    pub max_pods: Option<u32>,
    /// The most ENIs the node uses, the primary included (VPC CNI's
    /// `MAX_ENI`); the instance type's limit when unset or higher.
    pub max_enis: Option<u32>,
    /// Allow /28 prefixes where the instance supports them (the pool-sizing
    /// policy must also ask for prefixes, e.g. warm-pool's
    /// `prefix-delegation`). When a prefix cannot be had the pool falls back
    /// to secondary IPs. Default off.
    pub prefix_delegation: bool,
    /// Reads of the cloud in a row that must lack an address or ENI before
    /// it leaves the pool (EC2 reads lag writes). Default 3.
    pub stale_read_confirmations: u32,
    /// ... over at least this long, during which Weft did not change the
    /// ENI; also how long an address Weft gave back is not taken back from
    /// a read, and how long a lost answer waits to be settled. Default 10.
    pub stale_read_grace_seconds: u64,
    /// How long a new ENI may take to appear on the node (its link, and on
    /// EC2 its metadata) before it is given back. Default 60.
    pub eni_ready_timeout_seconds: u64,
    /// Period of the leaked-ENI collector, which also runs at start: it
    /// deletes detached ENIs of this cluster older than the cloud's minimum
    /// leak age. Default 600 (ten minutes).
    pub leaked_eni_cleanup_seconds: u64,
    /// Turns the leaked-ENI collector off (VPC CNI's
    /// `DISABLE_LEAKED_ENI_CLEANUP`), e.g. when another node already runs
    /// it for the account. Default off.
    pub disable_leaked_eni_cleanup: bool,
    /// The address family pods get. `ipv6` (VPC CNI's `ENABLE_IPv6`): the
    /// primary ENI gets one /80 prefix at start and every pod an address
    /// of it; the IPv4 pool is not sized (no warm addresses, no secondary
    /// ENIs). Default `ipv4`.
    pub ip_family: IpFamily,
}

/// The address family of pods (`[pool] ip-family`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// IPv4 addresses from the warm pool of secondary IPs or /28 prefixes.
    #[default]
    Ipv4,
    /// IPv6 addresses from the primary ENI's /80 prefix.
    Ipv6,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            cooldown_seconds: 30,
            add_wait_ms: 10_000,
            resync_seconds: 10,
            inventory_resync_seconds: 300,
            min_eni_age_seconds: 60,
            security_groups: None,
            primary_eni_serves_pods: true,
            max_pods: None,
            max_enis: None,
            prefix_delegation: false,
            stale_read_confirmations: 3,
            stale_read_grace_seconds: 10,
            eni_ready_timeout_seconds: 60,
            leaked_eni_cleanup_seconds: 600,
            disable_leaked_eni_cleanup: false,
            ip_family: IpFamily::Ipv4,
        }
    }
}

impl PoolConfig {
    /// Checks what serde cannot; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.add_wait_ms > MAX_ADD_WAIT_MS {
            return Err(format!(
                "`add-wait-ms` {} is too long: an ADD must be answered before weftd's request \
                 deadline (25 s) and the plugin's timeout-ms (30 s by default); use at most \
                 {MAX_ADD_WAIT_MS}",
                self.add_wait_ms
            ));
        }
        Ok(())
    }

    pub(crate) fn add_wait(&self) -> Duration {
        Duration::from_millis(self.add_wait_ms)
    }

    /// The resync period (at least 100 ms, so a zero cannot spin the loop).
    pub(crate) fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_seconds).max(Duration::from_millis(100))
    }

    /// The inventory resync period.
    pub(crate) fn inventory_resync(&self) -> Duration {
        Duration::from_secs(self.inventory_resync_seconds)
    }

    /// The instance's limits with `max-enis` applied.
    pub(crate) fn node_limits(&self, limits: InstanceLimits) -> InstanceLimits {
        InstanceLimits {
            max_enis: self
                .max_enis
                .map_or(limits.max_enis, |m| m.min(limits.max_enis)),
            ..limits
        }
    }

    /// The stale-read grace period.
    pub(crate) fn stale_read_grace(&self) -> Duration {
        Duration::from_secs(self.stale_read_grace_seconds)
    }

    /// How long a new ENI may take to appear on the node.
    pub(crate) fn eni_ready_timeout(&self) -> Duration {
        Duration::from_secs(self.eni_ready_timeout_seconds)
    }

    /// The leaked-ENI collector's period, `None` when it is off (at least
    /// one second, so a zero cannot spin it).
    pub(crate) fn leaked_eni_cleanup(&self) -> Option<Duration> {
        (!self.disable_leaked_eni_cleanup)
            .then(|| Duration::from_secs(self.leaked_eni_cleanup_seconds.max(1)))
    }

    /// Whether prefixes are used on an instance with these limits.
    pub(crate) fn prefixes_enabled(&self, limits: &InstanceLimits) -> bool {
        self.prefix_delegation && limits.prefix_delegation
    }

    /// Max pods on an instance with these limits (see [`PoolConfig::max_pods`]).
    pub(crate) fn effective_max_pods(&self, limits: &InstanceLimits) -> u32 {
        self.max_pods.unwrap_or_else(|| {
            if self.prefixes_enabled(limits) {
                PREFIX_MODE_MAX_PODS
            } else {
                limits.max_pods()
            }
        })
    }

    /// The datastore settings for a node whose primary ENI carries
    /// `node_groups`.
    pub(crate) fn ipam(&self, node_groups: &[String]) -> IpamConfig {
        let default_group = SgSet::new(
            self.security_groups
                .as_deref()
                .unwrap_or(node_groups)
                .iter()
                .cloned(),
        );
        IpamConfig {
            cooldown: Duration::from_secs(self.cooldown_seconds),
            min_eni_age: Duration::from_secs(self.min_eni_age_seconds),
            default_group,
            primary_eni_serves_pods: self.primary_eni_serves_pods,
            confirm_reads: self.stale_read_confirmations,
            stale_read_grace: self.stale_read_grace(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m5() -> InstanceLimits {
        InstanceLimits {
            instance_type: "m5.large".into(),
            max_enis: 3,
            ipv4_per_eni: 10,
            ipv6_per_eni: 10,
            network_cards: 1,
            prefix_delegation: true,
        }
    }

    #[test]
    fn defaults_match_vpc_cni_and_parse_from_kebab_case() {
        let config: PoolConfig = toml::from_str("").unwrap();
        assert_eq!(config, PoolConfig::default());
        assert_eq!(config.effective_max_pods(&m5()), 29);
        let config: PoolConfig = toml::from_str(
            "cooldown-seconds = 5\nprefix-delegation = true\nsecurity-groups = [\"sg-2\", \"sg-1\"]",
        )
        .unwrap();
        assert_eq!(config.effective_max_pods(&m5()), 110);
        let ipam = config.ipam(&["sg-node".into()]);
        assert_eq!(ipam.default_group, SgSet::new(["sg-1", "sg-2"]));
        assert_eq!(ipam.cooldown, Duration::from_secs(5));
        assert!(toml::from_str::<PoolConfig>("cooldown = 5").is_err());
    }

    #[test]
    fn add_wait_is_bounded_below_the_request_timeouts() {
        let too_long: PoolConfig = toml::from_str("add-wait-ms = 60000").unwrap();
        let err = too_long.validate().unwrap_err();
        assert!(
            err.contains("add-wait-ms") && err.contains("20000"),
            "{err}"
        );
        let ok: PoolConfig = toml::from_str("add-wait-ms = 20000").unwrap();
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn an_override_wins_and_prefixes_need_the_instance() {
        let config = PoolConfig {
            max_pods: Some(7),
            prefix_delegation: true,
            ..Default::default()
        };
        assert_eq!(config.effective_max_pods(&m5()), 7);
        let old = InstanceLimits {
            prefix_delegation: false,
            ..m5()
        };
        assert!(!config.prefixes_enabled(&old));
    }

    #[test]
    fn max_enis_caps_the_instance_and_its_max_pods() {
        let config = PoolConfig {
            max_enis: Some(2),
            ..Default::default()
        };
        let limits = config.node_limits(m5());
        assert_eq!(limits.max_enis, 2);
        assert_eq!(config.effective_max_pods(&limits), 2 * 9 + 2);
        let above = PoolConfig {
            max_enis: Some(8),
            ..Default::default()
        };
        assert_eq!(above.node_limits(m5()).max_enis, 3);
    }
}

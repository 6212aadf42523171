//! {{name}}: a pool-sizing policy for Weft ({{contract}}).
//!
//! Keeps `spare` free pod addresses in the group: when fewer are free, it
//! asks for the difference on the group's ENI with the most room.

use serde::Deserialize;
use weft_policy_sdk::pool::{EniChange, PoolDecision, PoolState};
use weft_policy_sdk::settings::parse_settings;
use weft_policy_sdk::{PoolSizing, log};

/// Settings, from the agent's configuration (JSON keys in kebab-case).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Settings {
    /// Free addresses to keep ready.
    #[serde(default = "default_spare")]
    spare: u32,
}

fn default_spare() -> u32 {
    2
}

/// The policy.
#[derive(Debug)]
pub struct {{type}} {
    settings: Settings,
}

impl PoolSizing for {{type}} {
    fn configure(settings: &str) -> Result<Self, String> {
        Ok({{type}} {
            settings: parse_settings(settings)?,
        })
    }

    fn size_pool(&self, state: &PoolState) -> PoolDecision {
        let free: u32 = state.enis.iter().map(|eni| eni.free()).sum();
        let wanted = self.settings.spare;
        if free >= wanted {
            return PoolDecision::default();
        }
        // An ENI holds `ipv4-per-eni - 1` pod addresses.
        let slots = state.limits.ipv4_per_eni.saturating_sub(1);
        let Some((eni, room)) = state
            .enis
            .iter()
            .map(|eni| (eni, slots.saturating_sub(eni.addresses())))
            .filter(|(_, room)| *room > 0)
            .max_by_key(|(_, room)| *room)
        else {
            log::warn("no ENI of the group has room for more addresses");
            return PoolDecision::default();
        };
        PoolDecision {
            changes: vec![EniChange {
                eni_id: eni.id.clone(),
                add_ips: (wanted - free).min(room),
                ..Default::default()
            }],
            reason: format!("{free} free, want {wanted}"),
            ..Default::default()
        }
    }
}

weft_policy_sdk::export_pool_sizing!({{type}});

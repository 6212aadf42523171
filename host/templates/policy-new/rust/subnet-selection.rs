//! {{name}}: a subnet-selection policy for Weft ({{contract}}).
//!
//! Creates ENIs in the subnet of the node's availability zone with the most
//! free addresses, among those with room for the ENI's addresses.

use weft_policy_sdk::SubnetSelection;
use weft_policy_sdk::settings::parse_settings;
use weft_policy_sdk::subnet::{Candidate, Choice, EniRequest};

/// Settings, from the agent's configuration (JSON keys in kebab-case).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Settings {
    /// Free addresses a subnet must keep after the ENI is created.
    #[serde(default)]
    reserve: u64,
}

/// The policy.
#[derive(Debug)]
pub struct {{type}} {
    settings: Settings,
}

impl SubnetSelection for {{type}} {
    fn configure(settings: &str) -> Result<Self, String> {
        Ok({{type}} {
            settings: parse_settings(settings)?,
        })
    }

    fn select_subnet(&self, request: &EniRequest, candidates: &[Candidate]) -> Choice {
        // One address for the ENI itself, then its secondary IPs and prefixes.
        let needed = 1 + u64::from(request.ips) + 16 * u64::from(request.prefixes);
        candidates
            .iter()
            .filter(|c| c.availability_zone == request.availability_zone)
            .filter(|c| c.free_ips >= needed + self.settings.reserve)
            .max_by(|a, b| a.free_ips.cmp(&b.free_ips).then(b.id.cmp(&a.id)))
            .map_or_else(
                || {
                    Choice::Refuse(format!(
                        "no subnet in {} has {needed} free addresses to spare",
                        request.availability_zone
                    ))
                },
                |c| Choice::UseSubnet(c.id.clone()),
            )
    }
}

weft_policy_sdk::export_subnet_selection!({{type}});

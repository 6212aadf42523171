//! The chaos pool-sizing policy.

use crate::{Chaos, Mode};
use weft_policy_sdk::PoolSizing;
use weft_policy_sdk::pool::{EniChange, NewEni, PoolDecision, PoolState};

/// Pool-sizing face of [`Chaos`].
pub struct ChaosPool(Chaos);

impl PoolSizing for ChaosPool {
    fn configure(settings: &str) -> Result<Self, String> {
        Chaos::configure(settings).map(ChaosPool)
    }

    fn size_pool(&self, state: &PoolState) -> PoolDecision {
        self.0.decide();
        let reason = match self.0.settings.mode {
            Mode::Random => crate::random_hex(),
            Mode::HugeRefusal => crate::huge_refusal(),
            Mode::Count => format!("chaos: calls {}", crate::calls()),
            Mode::EchoHistory => serde_json::to_string(&state.activity.history).unwrap_or_default(),
            mode => format!("chaos: {mode:?}"),
        };
        match self.0.settings.mode {
            Mode::Huge => PoolDecision {
                changes: state
                    .enis
                    .iter()
                    .map(|eni| EniChange {
                        eni_id: eni.id.clone(),
                        add_ips: u32::MAX,
                        add_prefixes: u32::MAX,
                        release_ips: u32::MAX,
                        release_prefixes: u32::MAX,
                    })
                    .collect(),
                create: vec![
                    NewEni {
                        ips: u32::MAX,
                        prefixes: u32::MAX,
                    };
                    10_000
                ],
                release: Vec::new(),
                reason,
            },
            Mode::UnknownEni => PoolDecision {
                changes: vec![EniChange {
                    eni_id: "eni-0000000000000dead".into(),
                    add_ips: 1,
                    ..Default::default()
                }],
                release: vec!["eni-0000000000000beef".into()],
                reason,
                ..Default::default()
            },
            Mode::ReleasePrimary => PoolDecision {
                release: state
                    .enis
                    .iter()
                    .filter(|eni| eni.device_index == 0)
                    .map(|eni| eni.id.clone())
                    .collect(),
                reason,
                ..Default::default()
            },
            _ => PoolDecision {
                reason,
                ..Default::default()
            },
        }
    }
}

weft_policy_sdk::export_pool_sizing!(ChaosPool);

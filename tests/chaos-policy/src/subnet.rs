//! The chaos subnet-selection policy.

use crate::{Chaos, Mode};
use weft_policy_sdk::SubnetSelection;
use weft_policy_sdk::subnet::{Candidate, Choice, EniRequest};

/// Subnet-selection face of [`Chaos`].
pub struct ChaosSubnet(Chaos);

impl SubnetSelection for ChaosSubnet {
    fn configure(settings: &str) -> Result<Self, String> {
        Chaos::configure(settings).map(ChaosSubnet)
    }

    fn select_subnet(&self, _request: &EniRequest, candidates: &[Candidate]) -> Choice {
        self.0.decide();
        match self.0.settings.mode {
            Mode::BadSubnet => Choice::UseSubnet("subnet-0000000000000dead".into()),
            Mode::Huge => Choice::UseSubnet("subnet-".repeat(1 << 20)),
            Mode::HugeRefusal => Choice::Refuse(crate::huge_refusal()),
            _ => match candidates.first() {
                Some(candidate) => Choice::UseSubnet(candidate.id.clone()),
                None => Choice::Refuse("chaos: no candidates".into()),
            },
        }
    }
}

weft_policy_sdk::export_subnet_selection!(ChaosSubnet);

//! The chaos security-groups policy.

use crate::{Chaos, Mode};
use weft_policy_sdk::SecurityGroups;
use weft_policy_sdk::security::Request;

/// Security-groups face of [`Chaos`].
pub struct ChaosSg(Chaos);

/// A well-formed security group id, numbered.
fn sg(n: usize) -> String {
    format!("sg-{n:017x}")
}

impl SecurityGroups for ChaosSg {
    fn configure(settings: &str) -> Result<Self, String> {
        Chaos::configure(settings).map(ChaosSg)
    }

    fn select_security_groups(&self, request: &Request) -> Result<Vec<String>, String> {
        self.0.decide();
        match self.0.settings.mode {
            Mode::BadSg => Ok(vec!["sg-NOT-VALID".into(), "default".into()]),
            Mode::TooManySgs => Ok((1..=6).map(sg).collect()),
            Mode::Huge => Ok((1..=100_000).map(sg).collect()),
            Mode::HugeRefusal => Err(crate::huge_refusal()),
            Mode::Random => Err(crate::random_hex()),
            _ => Ok(request.node_security_groups.clone()),
        }
    }
}

weft_policy_sdk::export_security_groups!(ChaosSg);

//! Failures injected into simulated calls: scripted (the next N calls of an API) or at a rate.

use crate::cloud::action::Ec2Action;
use crate::cloud::error::CloudError;
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// A failure the simulator can inject. Injected failures happen before the call takes effect,
/// except [`Fault::LostAnswer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call takes effect but its answer never arrives: the caller sees a timeout.
    LostAnswer,
    /// `RequestLimitExceeded`.
    Throttled,
    /// A 5xx answer.
    Transient,
    /// No answer within the timeout.
    Timeout,
    /// A non-retryable failure (e.g. missing IAM permission).
    Fatal,
}

impl Fault {
    /// The error a call sees.
    pub(crate) fn error(self, api: Ec2Action) -> CloudError {
        let api = api.name().to_owned();
        match self {
            Fault::Throttled => CloudError::Throttled { api },
            Fault::Transient => CloudError::Transient {
                api,
                detail: "injected by the simulator: HTTP 503".into(),
            },
            Fault::Timeout | Fault::LostAnswer => CloudError::Timeout {
                api,
                after: Duration::from_secs(10),
            },
            Fault::Fatal => CloudError::Fatal {
                api,
                detail: "injected by the simulator: UnauthorizedOperation".into(),
            },
        }
    }
}

/// The injection plan of one simulator.
#[derive(Debug, Default)]
pub(super) struct Faults {
    rates: BTreeMap<Ec2Action, (f64, Fault)>,
    scripted: BTreeMap<Ec2Action, VecDeque<Fault>>,
}

impl Faults {
    /// From now on, fails a fraction `rate` (0..=1) of the calls of `api` with `fault`.
    pub(super) fn set_rate(&mut self, api: Ec2Action, rate: f64, fault: Fault) {
        self.rates.insert(api, (rate.clamp(0.0, 1.0), fault));
    }

    /// Fails the next calls of `api` with these faults, in order.
    pub(super) fn script(&mut self, api: Ec2Action, faults: impl IntoIterator<Item = Fault>) {
        self.scripted.entry(api).or_default().extend(faults);
    }

    /// The fault for the next call of `api`, if any: scripted faults first, then the rate.
    pub(super) fn next(&mut self, api: Ec2Action, rng: &mut impl Rng) -> Option<Fault> {
        if let Some(fault) = self.scripted.get_mut(&api).and_then(VecDeque::pop_front) {
            return Some(fault);
        }
        let &(rate, fault) = self.rates.get(&api)?;
        (rng.random::<f64>() < rate).then_some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn scripted_faults_come_first_and_in_order() {
        let mut faults = Faults::default();
        let mut rng = StdRng::seed_from_u64(0);
        faults.script(
            Ec2Action::AttachNetworkInterface,
            [Fault::Throttled, Fault::Fatal],
        );
        let api = Ec2Action::AttachNetworkInterface;
        assert_eq!(faults.next(api, &mut rng), Some(Fault::Throttled));
        assert_eq!(faults.next(api, &mut rng), Some(Fault::Fatal));
        assert_eq!(faults.next(api, &mut rng), None);
        assert_eq!(faults.next(Ec2Action::DescribeSubnets, &mut rng), None);
    }

    #[test]
    fn rates_fail_roughly_that_fraction() {
        let mut faults = Faults::default();
        let mut rng = StdRng::seed_from_u64(3);
        faults.set_rate(Ec2Action::CreateNetworkInterface, 0.3, Fault::Transient);
        let failed = (0..1000)
            .filter(|_| {
                faults
                    .next(Ec2Action::CreateNetworkInterface, &mut rng)
                    .is_some()
            })
            .count();
        assert!((200..400).contains(&failed), "{failed} of 1000");
        faults.set_rate(Ec2Action::CreateNetworkInterface, 1.0, Fault::Transient);
        assert!(
            faults
                .next(Ec2Action::CreateNetworkInterface, &mut rng)
                .is_some()
        );
    }
}

//! Exponential backoff with jitter for retried cloud calls.

use std::time::Duration;

/// How often and how patiently a retryable call is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry, before jitter.
    pub base: Duration,
    /// Upper bound of any backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Whether another attempt may follow attempt number `attempt` (0-based).
    pub(crate) fn may_retry(&self, attempt: u32) -> bool {
        attempt.saturating_add(1) < self.max_attempts
    }

    /// The pause after failed attempt number `attempt` (0-based): "equal jitter", i.e. half of
    /// `min(max_backoff, base * 2^attempt)` plus `jitter` (in `[0, 1]`) times the other half,
    /// so retries of many nodes spread out but never hammer immediately.
    pub(crate) fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max_backoff);
        let half = exp / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// [`RetryPolicy::backoff`] with random jitter.
    pub(crate) fn random_backoff(&self, attempt: u32) -> Duration {
        self.backoff(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(2, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(500));
        assert_eq!(p.backoff(40, 1.0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_within_half_and_full_backoff() {
        let p = RetryPolicy::default();
        for attempt in 0..10 {
            let low = p.backoff(attempt, 0.0);
            let high = p.backoff(attempt, 1.0);
            let random = p.random_backoff(attempt);
            assert!(
                low <= random && random <= high,
                "{low:?} {random:?} {high:?}"
            );
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(p.may_retry(0));
        assert!(p.may_retry(1));
        assert!(!p.may_retry(2));
    }
}

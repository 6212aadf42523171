//! One wrapper for every EC2 call: client-side rate limit, per-attempt timeout, classification,
//! metrics, and retries with exponential backoff and jitter. The SDK's own retries are disabled so
//! retries happen in exactly one place.

use super::errors;
use crate::cloud::action::Ec2Action;
use crate::cloud::error::CloudError;
use crate::cloud::ratelimit::RateLimiter;
use crate::cloud::retry::RetryPolicy;
use crate::metrics::Metrics;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use std::sync::Arc;
use std::time::Duration;

/// Issues EC2 calls with rate limiting, timeouts, retries and metrics.
pub(super) struct Caller {
    pub(super) limiter: RateLimiter,
    pub(super) retry: RetryPolicy,
    pub(super) timeout: Duration,
    pub(super) metrics: Arc<Metrics>,
}

impl Caller {
    /// One attempt: waits for a token, bounds the call by the timeout, counts the outcome.
    async fn attempt<T, E, Fut>(&self, api: Ec2Action, call: Fut) -> Result<T, CloudError>
    where
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.limiter.acquire(api.class()).await;
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(errors::from_sdk(api, self.timeout, error)),
            Err(_) => Err(CloudError::Timeout {
                api: api.name().to_owned(),
                after: self.timeout,
            }),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.outcome(),
        };
        self.metrics.cloud(api.name(), outcome);
        result
    }

    /// Calls an idempotent API, retrying retryable failures.
    pub(super) async fn call<T, E, F, Fut>(&self, api: Ec2Action, op: F) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.call_recovering(api, op, || async { Ok(None) }).await
    }

    /// Calls an API whose lost answer must never be answered by sending it again (a stale
    /// read would make that assign twice): throttling is retried, but after an ambiguous
    /// failure `check` looks at EC2 once and either returns the result it sees or the
    /// ambiguous error, which the caller settles against its journal. A `check` returns a
    /// result only where a stale read cannot make it wrong for the caller.
    pub(super) async fn call_unrepeated<T, E, F, Fut, R, RFut>(
        &self,
        api: Ec2Action,
        mut op: F,
        check: R,
    ) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: FnOnce() -> RFut,
        RFut: Future<Output = Result<Option<T>, CloudError>>,
    {
        let mut attempt = 0;
        loop {
            let error = match self.attempt(api, op()).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if error.is_ambiguous() {
                tracing::debug!(%api, %error, "answer lost; checking EC2 instead of sending again");
                return match check().await {
                    Ok(Some(value)) => Ok(value),
                    Ok(None) | Err(_) => Err(error),
                };
            }
            if !error.is_retryable() || !self.retry.may_retry(attempt) {
                return Err(error);
            }
            tokio::time::sleep(self.retry.random_backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Calls an API that must not simply be repeated: after an ambiguous failure (the request
    /// may have taken effect but its answer was lost), `recover` looks at EC2 and returns the
    /// result when the request did take effect; otherwise the call is retried.
    pub(super) async fn call_recovering<T, E, F, Fut, R, RFut>(
        &self,
        api: Ec2Action,
        mut op: F,
        mut recover: R,
    ) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: FnMut() -> RFut,
        RFut: Future<Output = Result<Option<T>, CloudError>>,
    {
        let mut attempt = 0;
        loop {
            let error = match self.attempt(api, op()).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !error.is_retryable() || !self.retry.may_retry(attempt) {
                return Err(error);
            }
            tracing::debug!(%api, attempt, %error, "retrying EC2 call");
            tokio::time::sleep(self.retry.random_backoff(attempt)).await;
            attempt += 1;
            if error.is_ambiguous()
                && let Some(value) = recover().await?
            {
                return Ok(value);
            }
        }
    }
}

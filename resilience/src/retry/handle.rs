//! The counters and budget every clone of one retry shares.

use std::{sync::Arc, time::Duration};

use metrics::{Counter, Histogram};
use serde::{Deserialize, Serialize};

use super::{Backoff, RetryBudget, RetryConfig};
use crate::config::ConfigError;
use crate::per_thread::{StripedCounter, ThreadView};

/// A cloneable handle on one retry's shared parts: its config, its budget and its counters.
///
/// [`RetryPolicy`](super::RetryPolicy) drives it for tower services (the reqwest middleware
/// included: it runs the same stack); code outside tower that runs its own retry loop drives
/// it by hand so it reports the same metrics and shares the same budget:
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::retry::{RetryConfig, RetryHandle};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let retry = RetryHandle::new("users", RetryConfig::default()).unwrap();
/// let mut delays = retry.backoff();
/// retry.record_request();
/// let mut attempt = 1;
/// loop {
///     let failed = attempt < 2; // ... send the request here ...
///     if !failed || attempt >= retry.max_attempts() || !retry.withdraw() {
///         break;
///     }
///     let delay = delays.next().unwrap();
///     attempt += 1;
///     retry.record_retry(attempt, delay);
///     // tokio::time::sleep(delay).await;
/// }
/// assert_eq!(retry.snapshot().retries_total, 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RetryHandle {
    /// Per thread: tower clones the policy, and with it this handle, on every request.
    shared: Arc<ThreadView<Shared>>,
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    config: RetryConfig,
    budget: Option<RetryBudget>,
    /// Added to by every request, from every thread: striped so threads do not share it.
    requests: StripedCounter,
    retries: StripedCounter,
    requests_counter: Counter,
    retries_counter: Counter,
    delay_histogram: Histogram,
}

/// One retry's counts at an instant, for dashboards and `GET /resilience`.
///
/// ```
/// use resilience_layers::retry::{RetryConfig, RetryHandle};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let snapshot = RetryHandle::new("users", RetryConfig::default()).unwrap().snapshot();
/// assert_eq!(snapshot.requests_total, 0);
/// assert_eq!(snapshot.budget_available, Some(100)); // 10 a second over 10 s
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySnapshot {
    /// The retry's name.
    pub name: String,
    /// Requests seen: those that completed a first attempt that could have been retried.
    pub requests_total: u64,
    /// Retries sent (attempts after the first).
    pub retries_total: u64,
    /// Retries refused by the budget.
    pub budget_exhausted_total: u64,
    /// Retries the budget would allow now; `None` without a budget.
    pub budget_available: Option<u64>,
}

impl RetryHandle {
    /// Validates `config` and builds the counters and the budget.
    pub fn new(name: impl Into<Arc<str>>, config: RetryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let name = name.into();
        let budget = match config.budget {
            Some(budget) => {
                Some(RetryBudget::new(name.clone(), budget).map_err(|e| e.within("budget"))?)
            }
            None => None,
        };
        // HELP text, once per retry handle built (off the hot path; describing again is
        // harmless).
        metrics::describe_counter!(
            "resilience_retry_requests_total",
            "Logical requests through a retry layer, by name."
        );
        metrics::describe_counter!(
            "resilience_retry_retries_total",
            "Attempts after the first that a retry layer made, by name."
        );
        metrics::describe_histogram!(
            "resilience_retry_delay_seconds",
            metrics::Unit::Seconds,
            "Backoff waited before a retry, by name."
        );
        let label = name.to_string();
        Ok(Self {
            shared: ThreadView::new(Arc::new(Shared {
                requests_counter: metrics::counter!("resilience_retry_requests_total", "name" => label.clone()),
                retries_counter: metrics::counter!("resilience_retry_retries_total", "name" => label.clone()),
                delay_histogram: metrics::histogram!("resilience_retry_delay_seconds", "name" => label),
                name,
                config,
                budget,
                requests: StripedCounter::default(),
                retries: StripedCounter::default(),
            })),
        })
    }

    /// Makes this handle's clones take their reference on a line of the running thread
    /// (see [`ThreadView`]); tower's `Retry` clones the policy on every call.
    #[inline]
    pub(crate) fn for_this_thread(&mut self) {
        ThreadView::for_this_thread(&mut self.shared);
    }

    /// The retry's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// Attempts in total, the first included.
    #[inline]
    pub fn max_attempts(&self) -> u32 {
        self.shared.config.max_attempts
    }

    /// The budget, when one is configured.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// A fresh, randomly seeded sequence of the configured delays, for one request.
    pub fn backoff(&self) -> Backoff {
        Backoff::random(&self.shared.config.backoff)
    }

    /// Counts one request and deposits it in the budget.
    #[inline]
    pub fn record_request(&self) {
        let shared = &self.shared;
        shared.requests.add(1);
        shared.requests_counter.increment(1);
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
    }

    /// Takes one retry from the budget (always `true` without a budget); a refusal is counted
    /// and logged.
    pub fn withdraw(&self) -> bool {
        self.shared
            .budget
            .as_ref()
            .is_none_or(RetryBudget::withdraw)
    }

    /// Counts one retry about to be sent as attempt number `attempt` after `delay`.
    pub fn record_retry(&self, attempt: u32, delay: Duration) {
        let shared = &self.shared;
        shared.retries.add(1);
        shared.retries_counter.increment(1);
        shared.delay_histogram.record(delay.as_secs_f64());
        tracing::debug!(target: "resilience", name = %shared.name, attempt, delay = ?delay, "retrying");
    }

    /// Logs that a request failed for good, with why it was not retried.
    pub(super) fn gave_up(&self, attempts: u32, reason: &'static str) {
        tracing::debug!(target: "resilience", name = %self.shared.name, attempts, reason, "giving up");
    }

    /// Marks its counters as updated; see [`keyed`](crate::keyed). (A histogram cannot be
    /// touched without recording a sample: the delay histogram is left alone.)
    pub(crate) fn touch_metrics(&self) {
        let shared = &self.shared;
        shared.requests_counter.increment(0);
        shared.retries_counter.increment(0);
        if let Some(budget) = &shared.budget {
            budget.touch_metrics();
        }
    }

    /// Requests, retries and the budget's state right now.
    pub fn snapshot(&self) -> RetrySnapshot {
        let shared = &self.shared;
        RetrySnapshot {
            name: shared.name.to_string(),
            requests_total: shared.requests.sum(),
            retries_total: shared.retries.sum(),
            budget_exhausted_total: shared
                .budget
                .as_ref()
                .map_or(0, RetryBudget::exhausted_total),
            budget_available: shared.budget.as_ref().and_then(RetryBudget::available),
        }
    }
}

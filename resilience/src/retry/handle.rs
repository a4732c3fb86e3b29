//! The counters and budget every clone of one retry shares.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, Ordering::Relaxed},
    },
    time::Duration,
};

use metrics::{Counter, Histogram};
use serde::{Deserialize, Serialize};

use super::{Backoff, BackoffConfig, RetryBudget, RetryConfig, RetryEvent};
use crate::cache_lines::{StripedCounter, ThreadView};
use crate::config::ConfigError;
use crate::events::{Channel, Subscription};
use crate::versions::Versions;

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
    /// The config in force; held while a reconfiguration is applied, so they serialise.
    config: Mutex<RetryConfig>,
    /// `config.max_attempts`, read by every failed attempt.
    max_attempts: AtomicU32,
    /// The budget every request deposits in: replaced only when its settings change.
    budget: Versions<Option<RetryBudget>>,
    /// Added to by every request, from every thread: striped so threads do not share it.
    requests: StripedCounter,
    retries: StripedCounter,
    requests_counter: Counter,
    retries_counter: Counter,
    delay_histogram: Histogram,
    events: Arc<Channel<RetryEvent>>,
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
                events: Arc::default(),
                max_attempts: AtomicU32::new(config.max_attempts),
                budget: Versions::new(budget),
                name,
                config: Mutex::new(config),
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

    /// The configuration in force: the one it was built with, or the last one
    /// [`reconfigure`](Self::reconfigure) applied.
    pub fn config(&self) -> RetryConfig {
        self.lock_config().clone()
    }

    fn lock_config(&self) -> MutexGuard<'_, RetryConfig> {
        self.shared
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The backoff in force.
    pub(crate) fn configured_backoff(&self) -> BackoffConfig {
        self.lock_config().backoff
    }

    /// Replaces the attempts, backoff and budget of the running retry.
    ///
    /// `config` is [validated](RetryConfig::validate) first, with the same field-path errors
    /// as when building; an invalid one changes nothing. A valid one applies to requests
    /// that fail from now on (`max_attempts` to every later decision, the backoff to
    /// requests making their first retry), and the counters and subscriptions are kept. The
    /// budget is kept as it is, balance included, when its settings are unchanged; changed
    /// settings build a new budget (starting with its reserve, as a new one does) that keeps
    /// the count of refused retries. The replaced budget's memory is kept until the retry is
    /// dropped, as a request on another thread may still be depositing in it.
    ///
    /// ```
    /// use resilience_layers::retry::{RetryConfig, RetryHandle};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let retry = RetryHandle::new("users", RetryConfig::default()).unwrap();
    /// let bad = RetryConfig { max_attempts: 0, ..Default::default() };
    /// assert_eq!(retry.reconfigure(bad).unwrap_err().field(), "max_attempts");
    /// retry.reconfigure(RetryConfig { max_attempts: 5, ..Default::default() }).unwrap();
    /// assert_eq!(retry.max_attempts(), 5);
    /// # }
    /// ```
    pub fn reconfigure(&self, config: RetryConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let shared = &*self.shared;
        let mut current = self.lock_config();
        if config.budget != current.budget {
            let budget = match config.budget {
                Some(c) => {
                    let budget =
                        RetryBudget::new(shared.name.clone(), c).map_err(|e| e.within("budget"))?;
                    if let Some(old) = shared.budget.get() {
                        budget.carry_exhausted(old);
                    }
                    Some(budget)
                }
                None => None,
            };
            shared.budget.replace(budget);
        }
        shared.max_attempts.store(config.max_attempts, Relaxed);
        tracing::info!(
            target: "resilience",
            name = %shared.name,
            max_attempts = config.max_attempts,
            budget_replaced = config.budget != current.budget,
            "retry reconfigured"
        );
        *current = config;
        Ok(())
    }

    /// Attempts in total, the first included.
    #[inline]
    pub fn max_attempts(&self) -> u32 {
        self.shared.max_attempts.load(Relaxed)
    }

    /// The budget, when one is configured.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.get().as_ref()
    }

    /// A fresh, randomly seeded sequence of the configured delays, for one request.
    pub fn backoff(&self) -> Backoff {
        Backoff::random(&self.configured_backoff())
    }

    /// Counts one request and deposits it in the budget.
    #[inline]
    pub fn record_request(&self) {
        let shared = &self.shared;
        shared.requests.add(1);
        shared.requests_counter.increment(1);
        if let Some(budget) = shared.budget.get() {
            budget.deposit();
        }
    }

    /// Takes one retry from the budget (always `true` without a budget); a refusal is counted
    /// and logged.
    pub fn withdraw(&self) -> bool {
        let shared = &self.shared;
        let allowed = shared
            .budget
            .get()
            .as_ref()
            .is_none_or(RetryBudget::withdraw);
        if !allowed {
            shared.events.emit(|| RetryEvent::BudgetExhausted {
                at: tokio::time::Instant::now(),
            });
        }
        allowed
    }

    /// Counts one retry about to be sent as attempt number `attempt` after `delay`.
    pub fn record_retry(&self, attempt: u32, delay: Duration) {
        let shared = &self.shared;
        shared.retries.add(1);
        shared.retries_counter.increment(1);
        shared.delay_histogram.record(delay.as_secs_f64());
        tracing::debug!(target: "resilience", name = %shared.name, attempt, delay = ?delay, "retrying");
        shared.events.emit(|| RetryEvent::Retrying {
            attempt,
            delay,
            at: tokio::time::Instant::now(),
        });
    }

    /// Subscribes to the retries this handle counts and the retries its budget refuses, in
    /// the order they happen; see [`events`](crate::events) for delivery and cost (none while
    /// nobody subscribes).
    pub fn subscribe(&self) -> Subscription<RetryEvent> {
        self.shared.events.subscribe()
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
        if let Some(budget) = shared.budget.get() {
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
                .get()
                .as_ref()
                .map_or(0, RetryBudget::exhausted_total),
            budget_available: shared
                .budget
                .get()
                .as_ref()
                .and_then(RetryBudget::available),
        }
    }
}

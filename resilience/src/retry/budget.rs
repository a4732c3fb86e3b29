//! The retry budget: a shared cap on how much load retries may add.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use metrics::Counter;
use tower::retry::budget::{Budget as _, TpsBudget};

use super::BudgetConfig;
use crate::cache_lines::StripedCounter;
use crate::config::ConfigError;

/// A retry budget shared by every request of one client: each request deposits, each retry
/// withdraws, and a retry with nothing to withdraw does not happen.
///
/// A thin layer over tower's [`TpsBudget`]: deposits count for `ttl`; retries may use
/// `retry_ratio` per deposit plus a reserve of `min_per_sec * ttl` that never runs out for
/// good. A refused withdrawal is counted (`resilience_retry_budget_exhausted_total`) and
/// logged. Cloning shares the budget.
///
/// Deposits are credited in batches: every 8th request (or every `1 / retry_ratio`th when a
/// retry needs more requests than that) on a thread deposits the whole batch's share.
/// `TpsBudget` takes a lock and reads the clock on each deposit, which would otherwise be the
/// largest cost on a call that succeeds; batching keeps it off seven calls in eight, and
/// counting each thread's batch apart keeps threads off one shared counter. Credit never
/// exceeds the requests made, so the bound on retries holds; a batch counts from the request
/// that completes it. With `retry_ratio` 0 deposits cost nothing at all.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::retry::{BudgetConfig, RetryBudget};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = BudgetConfig { ttl: Duration::from_secs(1), min_per_sec: 0, retry_ratio: 0.25 };
/// let budget = RetryBudget::new("users", config).unwrap();
/// for _ in 0..8 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw() && budget.withdraw()); // eight requests pay for two retries
/// assert!(!budget.withdraw());
/// assert_eq!(budget.exhausted_total(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    config: BudgetConfig,
    tps: TpsBudget,
    /// Requests per deposit into `tps`; 0 when deposits earn nothing.
    batch: u64,
    /// Requests so far, per thread: a thread deposits when its count completes a batch.
    pending: StripedCounter,
    exhausted: AtomicU64,
    exhausted_counter: Counter,
}

impl RetryBudget {
    /// Validates `config` and builds the budget, full with its reserve.
    pub fn new(name: impl Into<Arc<str>>, config: BudgetConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let name = name.into();
        let batch = batch_size(config.retry_ratio);
        let share = config.retry_ratio * batch.max(1) as f64;
        metrics::describe_counter!(
            "resilience_retry_budget_exhausted_total",
            "Retries refused because the retry budget was spent, by name."
        );
        let tps = TpsBudget::new(config.ttl, config.min_per_sec, share as f32);
        Ok(Self {
            inner: Arc::new(Inner {
                exhausted_counter: metrics::counter!(
                    "resilience_retry_budget_exhausted_total",
                    "name" => name.to_string()
                ),
                name,
                config,
                tps,
                batch,
                pending: StripedCounter::default(),
                exhausted: AtomicU64::new(0),
            }),
        })
    }

    /// Records one request, which earns `retry_ratio` retries for the next `ttl`.
    #[inline]
    pub fn deposit(&self) {
        let inner = &self.inner;
        match inner.batch {
            0 => {}
            1 => inner.tps.deposit(),
            batch => {
                if inner.pending.add(1) % batch == 0 {
                    inner.tps.deposit();
                }
            }
        }
    }

    /// Takes the budget for one retry; `false` means retrying now would exceed it.
    pub fn withdraw(&self) -> bool {
        if self.inner.tps.withdraw() {
            return true;
        }
        self.inner.exhausted.fetch_add(1, Ordering::Relaxed);
        self.inner.exhausted_counter.increment(1);
        tracing::debug!(target: "resilience", name = %self.inner.name, "retry budget exhausted; not retrying");
        false
    }

    /// Marks its counter as updated; see [`keyed`](crate::keyed).
    pub(crate) fn touch_metrics(&self) {
        self.inner.exhausted_counter.increment(0);
    }

    /// Retries refused since the budget was built.
    pub fn exhausted_total(&self) -> u64 {
        self.inner.exhausted.load(Ordering::Relaxed)
    }

    /// Starts this budget's count of refused retries where `old`'s is (a reconfiguration
    /// replacing one budget by another).
    pub(crate) fn carry_exhausted(&self, old: &RetryBudget) {
        self.inner
            .exhausted
            .store(old.exhausted_total(), Ordering::Relaxed);
    }

    /// Retries the budget would allow right now, when tower reports its balance.
    ///
    /// `TpsBudget` exposes its balance only through `Debug`, so this reads it from there; it
    /// is meant for dashboards, not for decisions.
    pub fn available(&self) -> Option<u64> {
        let text = format!("{:?}", self.inner.tps);
        let field = |key: &str| -> Option<i64> {
            let rest = &text[text.find(key)? + key.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        };
        let balance = field("balance: ")?;
        let withdraw = field("withdraw: ")?.max(1);
        Some(u64::try_from(balance / withdraw).unwrap_or(0))
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &BudgetConfig {
        &self.inner.config
    }

    /// The name of the retry it belongs to.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

/// Requests per deposit: 8, fewer when `ratio * 8` would pass tower's limit of 1000, more
/// (`1 / ratio`) when one request earns less than an eighth of a retry, so each deposit earns
/// at least one whole retry and tower's integer arithmetic stays exact.
fn batch_size(ratio: f64) -> u64 {
    if ratio <= 0.0 {
        0
    } else if ratio * 8.0 >= 1.0 {
        ((1000.0 / ratio).floor() as u64).clamp(1, 8)
    } else {
        (1.0 / ratio).ceil() as u64
    }
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .field("available", &self.available())
            .field("exhausted_total", &self.exhausted_total())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget(min_per_sec: u32, retry_ratio: f64) -> RetryBudget {
        let config = BudgetConfig {
            ttl: Duration::from_secs(1),
            min_per_sec,
            retry_ratio,
        };
        RetryBudget::new("t", config).unwrap()
    }

    fn deposit(b: &RetryBudget, n: usize) {
        for _ in 0..n {
            b.deposit();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_after_the_ttl() {
        let b = budget(0, 1.0);
        deposit(&b, 8);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!b.withdraw());
        deposit(&b, 8);
        assert_eq!(b.available(), Some(8));
        assert!(b.withdraw());
        assert_eq!(b.exhausted_total(), 1);
    }

    #[test]
    fn batches_earn_exactly_their_share() {
        assert_eq!(batch_size(0.0), 0);
        assert_eq!(batch_size(0.2), 8);
        assert_eq!(batch_size(0.1), 10);
        assert_eq!(batch_size(0.01), 100);
        assert_eq!(batch_size(500.0), 2);
        assert_eq!(batch_size(1000.0), 1);
        for (ratio, requests, want) in [
            (0.2, 40, 8),
            (0.1, 100, 10),
            (0.5, 16, 8),
            (2.0, 8, 16),
            (0.03, 340, 10),
        ] {
            let b = budget(0, ratio);
            deposit(&b, requests);
            assert_eq!(b.available(), Some(want), "ratio {ratio}");
            // A partial batch earns nothing yet.
            deposit(&b, 1);
            assert_eq!(b.available(), Some(want), "ratio {ratio}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_lets_a_quiet_client_retry() {
        let b = budget(3, 0.0);
        assert_eq!(b.available(), Some(3));
        assert!(b.withdraw() && b.withdraw() && b.withdraw());
        assert!(!b.withdraw());
        assert_eq!(b.available(), Some(0));
        // Spent reserve comes back once the withdrawals age out.
        tokio::time::advance(Duration::from_millis(2100)).await;
        assert!(b.withdraw());
    }
}

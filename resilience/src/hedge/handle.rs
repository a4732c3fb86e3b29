//! The counters, budget and latency window every clone of one hedge shares.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use metrics::Counter;
use serde::{Deserialize, Serialize};

use super::{HedgeConfig, HedgeEvent, latency::LatencyWindow};
use crate::cache_lines::StripedCounter;
use crate::circuit_breaker::{CircuitBreakerHandle, CircuitState};
use crate::config::ConfigError;
use crate::events::{Channel, Subscription};
use crate::retry::RetryBudget;

/// A cloneable handle on one hedge's shared parts: config, budget, latency window, counters.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::hedge::{HedgeConfig, HedgeHandle};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = HedgeConfig { delay: Some(Duration::from_millis(20)), ..Default::default() };
/// let hedge = HedgeHandle::new("users", config).unwrap();
/// assert_eq!(hedge.delay(), Some(Duration::from_millis(20)));
/// assert_eq!(hedge.snapshot().sent_total, 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HedgeHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    config: HedgeConfig,
    /// `Some` in percentile mode.
    latency: Option<LatencyWindow>,
    budget: Option<RetryBudget>,
    /// False when the budget is a retry's, which takes the deposits itself.
    deposits: bool,
    /// Not hedging while this breaker is not closed.
    breaker: Option<CircuitBreakerHandle>,
    /// Written by every call: a stripe per thread, as the retry's request count.
    requests: StripedCounter,
    sent: AtomicU64,
    won: AtomicU64,
    refused: AtomicU64,
    sent_counter: Counter,
    won_counter: Counter,
    refused_counter: Counter,
    events: Arc<Channel<HedgeEvent>>,
}

/// One hedge's counts at an instant, for dashboards and `GET /resilience`.
///
/// ```
/// use resilience_layers::hedge::{HedgeConfig, HedgeHandle};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let snapshot = HedgeHandle::new("users", HedgeConfig::default()).unwrap().snapshot();
/// assert_eq!(snapshot.delay_ms, None); // no percentile before `min_samples` calls
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HedgeSnapshot {
    /// The hedge's name.
    pub name: String,
    /// Requests through the hedge.
    pub requests_total: u64,
    /// Hedges sent (attempts after the first).
    pub sent_total: u64,
    /// Requests a hedge answered first.
    pub won_total: u64,
    /// Hedges the budget refused.
    pub budget_exhausted_total: u64,
    /// The wait before a hedge now, in milliseconds; `None` while a percentile has too few
    /// samples (nothing is hedged then).
    pub delay_ms: Option<u64>,
}

impl HedgeHandle {
    /// Validates `config` and builds the counters, the latency window and the hedge's own
    /// budget (`config.budget`).
    pub fn new(name: impl Into<Arc<str>>, config: HedgeConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let name = name.into();
        let budget = config
            .budget
            .map(|b| RetryBudget::new(name.clone(), b).map_err(|e| e.within("budget")))
            .transpose()?;
        Ok(Self::build(name, config, budget, true, None))
    }

    /// Validates `config` and builds a hedge that draws on `budget` (a retry's, which takes
    /// the deposits) instead of its own; `config.budget` is ignored.
    pub fn sharing(
        name: impl Into<Arc<str>>,
        config: HedgeConfig,
        budget: Option<RetryBudget>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(name.into(), config, budget, false, None))
    }

    /// The same hedge, sending no hedge while `breaker` is open or half-open.
    pub fn with_breaker(self, breaker: CircuitBreakerHandle) -> Self {
        let s = &*self.shared;
        Self::build(
            s.name.clone(),
            s.config.clone(),
            s.budget.clone(),
            s.deposits,
            Some(breaker),
        )
    }

    fn build(
        name: Arc<str>,
        config: HedgeConfig,
        budget: Option<RetryBudget>,
        deposits: bool,
        breaker: Option<CircuitBreakerHandle>,
    ) -> Self {
        metrics::describe_counter!(
            "resilience_hedge_sent_total",
            "Hedged attempts sent while an earlier attempt was in flight, by name."
        );
        metrics::describe_counter!(
            "resilience_hedge_won_total",
            "Requests a hedged attempt answered first, by name."
        );
        metrics::describe_counter!(
            "resilience_hedge_budget_exhausted_total",
            "Hedges not sent because the budget was spent, by name."
        );
        let label = name.to_string();
        Self {
            shared: Arc::new(Shared {
                latency: config
                    .effective_percentile()
                    .map(|p| LatencyWindow::new(p, config.min_samples)),
                sent_counter: metrics::counter!("resilience_hedge_sent_total", "name" => label.clone()),
                won_counter: metrics::counter!("resilience_hedge_won_total", "name" => label.clone()),
                refused_counter: metrics::counter!("resilience_hedge_budget_exhausted_total", "name" => label),
                name,
                config,
                budget,
                deposits,
                breaker,
                requests: StripedCounter::default(),
                sent: AtomicU64::new(0),
                won: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                events: Arc::default(),
            }),
        }
    }

    /// The hedge's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &HedgeConfig {
        &self.shared.config
    }

    /// The budget hedges draw on, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// Hedges per request at most.
    pub fn max_hedges(&self) -> u32 {
        self.shared.config.max_hedges
    }

    /// The wait before a hedge now: the fixed delay, or the percentile of recent latency;
    /// `None` (no hedging) while the percentile has fewer than `min_samples` samples.
    pub fn delay(&self) -> Option<Duration> {
        let s = &*self.shared;
        match &s.latency {
            None => s.config.delay,
            Some(window) => window.percentile_nanos().map(Duration::from_nanos),
        }
    }

    /// Records one request (and its deposit in the hedge's own budget).
    #[inline]
    pub(super) fn record_request(&self) {
        let s = &*self.shared;
        s.requests.add(1);
        if s.deposits {
            if let Some(budget) = &s.budget {
                budget.deposit();
            }
        }
    }

    /// Records the latency of one completed attempt (percentile mode only).
    #[inline]
    /// Records one attempt's latency, started at `started`, for a percentile delay; with a
    /// fixed delay nothing is kept, and the clock is not read.
    pub(super) fn record_latency(&self, started: tokio::time::Instant) {
        if let Some(window) = &self.shared.latency {
            window.record(crate::config::nanos(started.elapsed()));
        }
    }

    /// Whether a hedge may be sent now: the breaker (if known) is closed and the budget
    /// allows one; a refusal by the budget is counted.
    pub(super) fn permit_hedge(&self) -> bool {
        let s = &*self.shared;
        if s.breaker
            .as_ref()
            .is_some_and(|b| b.state() != CircuitState::Closed)
        {
            tracing::debug!(target: "resilience", name = %s.name, "circuit not closed; not hedging");
            return false;
        }
        if let Some(budget) = &s.budget {
            if !budget.withdraw() {
                s.refused.fetch_add(1, Relaxed);
                s.refused_counter.increment(1);
                tracing::debug!(target: "resilience", name = %s.name, "hedge budget exhausted; not hedging");
                s.events.emit(|| HedgeEvent::BudgetExhausted {
                    at: tokio::time::Instant::now(),
                });
                return false;
            }
        }
        true
    }

    pub(super) fn record_sent(&self, attempt: u32) {
        let s = &*self.shared;
        s.sent.fetch_add(1, Relaxed);
        s.sent_counter.increment(1);
        tracing::debug!(target: "resilience", name = %s.name, attempt, "hedging");
        s.events.emit(|| HedgeEvent::Sent {
            attempt,
            at: tokio::time::Instant::now(),
        });
    }

    pub(super) fn record_won(&self, attempt: u32) {
        let s = &*self.shared;
        s.won.fetch_add(1, Relaxed);
        s.won_counter.increment(1);
        tracing::debug!(target: "resilience", name = %s.name, attempt, "hedge won");
        s.events.emit(|| HedgeEvent::Won {
            attempt,
            at: tokio::time::Instant::now(),
        });
    }

    /// Subscribes to the hedges sent, won and refused, in the order they happen; see
    /// [`events`](crate::events) for delivery and cost (none while nobody subscribes).
    pub fn subscribe(&self) -> Subscription<HedgeEvent> {
        self.shared.events.subscribe()
    }

    /// Requests, hedges sent and won, and the delay right now.
    pub fn snapshot(&self) -> HedgeSnapshot {
        let s = &*self.shared;
        HedgeSnapshot {
            name: s.name.to_string(),
            requests_total: s.requests.sum(),
            sent_total: s.sent.load(Relaxed),
            won_total: s.won.load(Relaxed),
            budget_exhausted_total: s.refused.load(Relaxed),
            delay_ms: self
                .delay()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

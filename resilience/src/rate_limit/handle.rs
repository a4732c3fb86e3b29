//! The state every clone of one rate limiter shares.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use metrics::{Counter, Gauge};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Decision, RateLimitConfig, RateLimitEvent, RateLimiter};
use crate::{
    cache_lines::StripedCounter,
    config::ConfigError,
    deadline::current_deadline,
    error::{BoxError, RateLimited},
    events::{Channel, Subscription},
    name::Name,
};

/// A cloneable handle on one rate limiter: its name, a [`snapshot`](Self::snapshot), and
/// [`acquire`](Self::acquire) for callers that are not tower services.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::rate_limit::{RateLimitConfig, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let config = RateLimitConfig { permits: 2, period: Duration::from_secs(1), ..Default::default() };
/// let handle = RateLimitLayer::new("search", config).unwrap().handle();
/// handle.acquire().await.unwrap();
/// handle.acquire().await.unwrap();
/// assert!(handle.acquire().await.is_err()); // reject mode: no waiting
/// assert_eq!(handle.snapshot().rejected_total, 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitHandle {
    pub(super) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) name: Name,
    pub(super) config: RateLimitConfig,
    limiter: RateLimiter,
    waiting: AtomicUsize,
    rejected: StripedCounter,
    delayed: StripedCounter,
    waiting_gauge: Gauge,
    rejected_counter: Counter,
    delayed_counter: Counter,
    events: Arc<Channel<RateLimitEvent>>,
}

/// A rate limiter's figures at an instant, for dashboards and `GET /resilience`.
///
/// ```
/// use resilience_layers::rate_limit::{RateLimitConfig, RateLimitLayer};
///
/// let snapshot = RateLimitLayer::new("search", RateLimitConfig::default()).unwrap().handle().snapshot();
/// assert_eq!(
///     serde_json::to_value(&snapshot).unwrap(),
///     serde_json::json!({
///         "name": "search", "permits": 100, "period_ms": 1000, "burst": 100, "max_wait_ms": 0,
///         "waiting": 0, "delayed_total": 0, "rejected_total": 0,
///     }),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitSnapshot {
    /// The limiter's name.
    pub name: String,
    /// Permits per period.
    pub permits: u32,
    /// The period, in milliseconds.
    pub period_ms: u64,
    /// Permits that can be taken at once.
    pub burst: u32,
    /// The longest a caller may wait, in milliseconds (zero: reject mode).
    pub max_wait_ms: u64,
    /// Callers waiting for a permit right now.
    pub waiting: usize,
    /// Calls that waited for their permit and got it, since the limiter was built.
    pub delayed_total: u64,
    /// Calls rejected since the limiter was built.
    pub rejected_total: u64,
}

/// Counts one caller as waiting for as long as it lives.
#[derive(Debug)]
pub(super) struct Waiting {
    shared: Arc<Shared>,
    since: Instant,
}

impl Waiting {
    pub(super) fn new(shared: &Arc<Shared>, since: Instant) -> Self {
        shared.waiting.fetch_add(1, Ordering::Relaxed);
        shared.waiting_gauge.increment(1.0);
        Self {
            shared: shared.clone(),
            since,
        }
    }

    /// The wait ended with a permit: counts it as delayed.
    pub(super) fn granted(self) {
        let waited = self.since.elapsed();
        self.shared.delayed.add(1);
        self.shared.delayed_counter.increment(1);
        self.shared.events.emit(|| RateLimitEvent::Delayed {
            waited,
            at: Instant::now(),
        });
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
        self.shared.waiting_gauge.decrement(1.0);
    }
}

impl Shared {
    /// Takes a permit if there is one now.
    #[inline]
    pub(super) fn check(&self) -> Decision {
        self.limiter.check()
    }

    /// The latest instant a caller denied at `now` may wait until: `max_wait` from now, or
    /// the deadline in force when that is sooner. `None` in reject mode.
    pub(super) fn wait_until(&self, now: Instant) -> Option<Instant> {
        if self.config.rejects_at_once() {
            return None;
        }
        let until = now + self.config.max_wait;
        Some(match current_deadline() {
            Some(deadline) => until.min(deadline.instant()),
            None => until,
        })
    }

    /// Records one rejection and builds the error the caller sees.
    pub(super) fn reject(&self, retry_after: Duration) -> RateLimited {
        self.rejected.add(1);
        self.rejected_counter.increment(1);
        tracing::debug!(
            target: "resilience",
            name = %self.name,
            permits = self.config.permits,
            period = ?self.config.period,
            retry_after = ?retry_after,
            "rate limit reached; call rejected"
        );
        self.events.emit(|| RateLimitEvent::Rejected {
            retry_after,
            at: Instant::now(),
        });
        RateLimited::new(
            self.name.clone(),
            retry_after,
            self.config.permits,
            self.config.period,
        )
    }
}

impl RateLimitHandle {
    pub(super) fn new(
        name: impl Into<Arc<str>>,
        config: RateLimitConfig,
    ) -> Result<Self, ConfigError> {
        let limiter = RateLimiter::new(&config)?;
        let name = Name::kept(&name.into());
        // HELP text, once per limiter built (off the hot path; describing again is harmless).
        metrics::describe_gauge!(
            "resilience_rate_limit_waiting",
            "Calls waiting for a rate limiter's permit, by limiter name."
        );
        metrics::describe_counter!(
            "resilience_rate_limit_delayed_total",
            "Calls that waited for a rate limiter's permit and got it, by limiter name."
        );
        metrics::describe_counter!(
            "resilience_rate_limit_rejected_total",
            "Calls a rate limiter rejected, by limiter name."
        );
        let label = name.to_string();
        let shared = Shared {
            limiter,
            waiting: AtomicUsize::new(0),
            rejected: StripedCounter::default(),
            delayed: StripedCounter::default(),
            waiting_gauge: metrics::gauge!("resilience_rate_limit_waiting", "name" => label.clone()),
            delayed_counter: metrics::counter!("resilience_rate_limit_delayed_total", "name" => label.clone()),
            rejected_counter: metrics::counter!("resilience_rate_limit_rejected_total", "name" => label),
            events: Arc::default(),
            name,
            config,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &RateLimitConfig {
        &self.shared.config
    }

    /// Waiters, delays and rejections right now.
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let shared = &self.shared;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        RateLimitSnapshot {
            name: shared.name.to_string(),
            permits: shared.config.permits,
            period_ms: ms(shared.config.period),
            burst: shared.limiter.burst(),
            max_wait_ms: ms(shared.config.max_wait),
            waiting: shared.waiting.load(Ordering::Relaxed),
            delayed_total: shared.delayed.sum(),
            rejected_total: shared.rejected.sum(),
        }
    }

    /// Subscribes to the limiter's rejections and delays, in the order they happen; see
    /// [`events`](crate::events) for delivery and cost (none while nobody subscribes).
    pub fn subscribe(&self) -> Subscription<RateLimitEvent> {
        self.shared.events.subscribe()
    }

    /// Takes a permit: at once, or (wait mode) after waiting for the next one, up to
    /// `max_wait` and never past the [deadline](crate::deadline::current_deadline) in force;
    /// otherwise fails with [`RateLimited`] as a [`BoxError`].
    ///
    /// For callers outside tower; a [`RateLimit`](super::RateLimit) service does the same in
    /// `poll_ready`. Dropping the returned future gives up the wait (a GCRA permit is not
    /// held while waiting, so nothing needs giving back).
    pub async fn acquire(&self) -> Result<(), BoxError> {
        let shared = &self.shared;
        let mut waiting: Option<Waiting> = None;
        let mut until = None;
        loop {
            let retry_after = match shared.check() {
                Decision::Allowed { .. } => {
                    if let Some(waiting) = waiting {
                        waiting.granted();
                    }
                    return Ok(());
                }
                Decision::Denied { retry_after } => retry_after,
            };
            let now = Instant::now();
            let until = *until.get_or_insert_with(|| shared.wait_until(now));
            match until {
                Some(until) if now + retry_after <= until => {
                    waiting.get_or_insert_with(|| Waiting::new(shared, now));
                    tokio::time::sleep(retry_after).await;
                }
                _ => return Err(shared.reject(retry_after).into()),
            }
        }
    }
}

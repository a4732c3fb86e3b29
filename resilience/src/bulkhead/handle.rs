//! The state every clone of one bulkhead shares.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use metrics::{Counter, Gauge};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{AdaptiveConfig, BulkheadConfig, BulkheadEvent, adaptive::Limiter};
use crate::{
    cache_lines::{StripedCounter, ThreadView},
    config::{ConfigError, nanos},
    error::{BoxError, BulkheadFull},
    events::{Channel, Subscription},
    name::Name,
};

/// A cloneable handle on one bulkhead: its name, a [`snapshot`](Self::snapshot), and
/// [`acquire`](Self::acquire) for callers that are not tower services.
///
/// ```
/// use resilience_layers::bulkhead::{BulkheadConfig, BulkheadLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = BulkheadConfig { max_concurrent: 1, ..Default::default() };
/// let handle = BulkheadLayer::new("users", config).unwrap().handle();
/// let permit = handle.acquire().await.unwrap();
/// assert_eq!(handle.snapshot().in_use, 1);
/// assert!(handle.acquire().await.is_err()); // max_wait is zero: rejected at once
/// drop(permit);
/// assert_eq!(handle.snapshot().in_use, 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadHandle {
    pub(super) shared: Arc<View>,
}

/// A per-thread view of a bulkhead, for the reference every permit holds (see
/// [`ThreadView`]): services make their own in `poll_ready`.
pub(super) type View = ThreadView<Shared>;

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) name: Name,
    /// The config in force; held while a reconfiguration is applied, so they serialise.
    config: Mutex<BulkheadConfig>,
    /// The limit in force, for rejections and snapshots: `config.max_concurrent`, or with
    /// `adaptive` the limit the algorithm last answered.
    max_concurrent: AtomicUsize,
    /// Whether permits time their calls for an adaptive limit (read once per permit).
    adaptive_on: AtomicBool,
    /// The adaptive limit's algorithm. Every change of the limit is made holding this lock
    /// (a sample holding it through `try_lock`, a reconfiguration through `lock`), so the
    /// permit arithmetic of two changes never interleaves.
    adaptive: Mutex<Option<Limiter>>,
    /// The origin of the start times the algorithm is given.
    epoch: tokio::time::Instant,
    /// `config.max_wait` in nanoseconds, for callers deciding whether to wait.
    max_wait_nanos: AtomicU64,
    /// Permits still to take out of circulation after a lowered limit: each permit given
    /// back pays one instead of returning to the semaphore, so a lowered limit never
    /// revokes a permit held.
    debt: AtomicUsize,
    pub(super) semaphore: Arc<Semaphore>,
    waiting: AtomicUsize,
    rejected: StripedCounter,
    in_use_gauge: Gauge,
    waiting_gauge: Gauge,
    rejected_counter: Counter,
    limit_gauge: Gauge,
    events: Arc<Channel<BulkheadEvent>>,
}

/// Counts of one bulkhead at an instant, for dashboards and `GET /resilience`.
///
/// ```
/// use resilience_layers::bulkhead::{BulkheadConfig, BulkheadLayer};
///
/// let snapshot = BulkheadLayer::new("users", BulkheadConfig::default()).unwrap().handle().snapshot();
/// assert_eq!(
///     serde_json::to_value(&snapshot).unwrap(),
///     serde_json::json!({"name": "users", "max_concurrent": 25, "in_use": 0, "waiting": 0, "rejected_total": 0}),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkheadSnapshot {
    /// The bulkhead's name.
    pub name: String,
    /// Its limit on concurrent calls in force (with an adaptive limit, where it is now).
    pub max_concurrent: usize,
    /// Permits held right now.
    pub in_use: usize,
    /// Callers waiting for a permit right now.
    pub waiting: usize,
    /// Calls rejected since the bulkhead was built.
    pub rejected_total: u64,
}

/// One of the bulkhead's permits; the slot is free again when this is dropped.
///
/// Returned by [`BulkheadHandle::acquire`]; hold it for as long as the guarded work runs.
///
/// ```
/// use resilience_layers::bulkhead::{BulkheadConfig, BulkheadLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let handle = BulkheadLayer::new("db", BulkheadConfig::default()).unwrap().handle();
/// let permit = handle.acquire().await.unwrap();
/// // ... the guarded work ...
/// drop(permit);
/// # }
/// ```
///
/// It holds one of the semaphore's permits, forgotten there and given back by its own `Drop`,
/// and a reference to the bulkhead through the view of the thread that took it: tokio's
/// owned permit would hold an `Arc` of the semaphore, whose count every thread's calls would
/// bump twice on one shared line.
pub struct BulkheadPermit {
    view: Arc<View>,
    /// When the guarded work started, for an adaptive limit (`None` otherwise).
    started: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for BulkheadPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkheadPermit")
            .field("bulkhead", &self.view.name)
            .finish()
    }
}

impl BulkheadPermit {
    /// Takes a free permit, if there is one, without waiting.
    #[inline]
    pub(super) fn try_acquire(view: &Arc<View>) -> Option<Self> {
        view.semaphore.try_acquire().ok()?.forget();
        Some(Self::holding_one(view))
    }

    /// Takes over a permit acquired by waiting on the semaphore.
    pub(super) fn from_owned(permit: OwnedSemaphorePermit, view: &Arc<View>) -> Self {
        permit.forget();
        Self::holding_one(view)
    }

    /// For a permit just taken from the semaphore and forgotten there.
    #[inline]
    fn holding_one(view: &Arc<View>) -> Self {
        view.in_use_gauge.increment(1.0);
        Self {
            view: view.clone(),
            started: view
                .adaptive_on
                .load(Ordering::Relaxed)
                .then(tokio::time::Instant::now),
        }
    }
}

impl Drop for BulkheadPermit {
    #[inline]
    fn drop(&mut self) {
        let shared = &self.view;
        if let Some(started) = self.started {
            shared.sample(started);
        }
        if shared.debt.load(Ordering::Relaxed) == 0 {
            shared.semaphore.add_permits(1);
        } else {
            shared.release_owing();
        }
        shared.in_use_gauge.decrement(1.0);
    }
}

/// Counts one caller as waiting for as long as it lives.
#[derive(Debug)]
pub(super) struct Waiting {
    shared: Arc<View>,
}

impl Waiting {
    pub(super) fn new(shared: &Arc<View>) -> Self {
        shared.waiting.fetch_add(1, Ordering::Relaxed);
        shared.waiting_gauge.increment(1.0);
        Self {
            shared: shared.clone(),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
        self.shared.waiting_gauge.decrement(1.0);
    }
}

impl Shared {
    /// Records one rejection and builds the error the caller sees.
    pub(super) fn reject(&self) -> BulkheadFull {
        let max_concurrent = self.max_concurrent.load(Ordering::Relaxed);
        self.rejected.add(1);
        self.rejected_counter.increment(1);
        tracing::debug!(
            target: "resilience",
            name = %self.name,
            max_concurrent,
            "bulkhead full; call rejected"
        );
        self.events.emit(|| BulkheadEvent::Rejected {
            max_concurrent,
            at: tokio::time::Instant::now(),
        });
        BulkheadFull::new(self.name.clone(), max_concurrent)
    }

    /// How long a caller may wait for a permit.
    #[inline]
    pub(super) fn max_wait(&self) -> Duration {
        Duration::from_nanos(self.max_wait_nanos.load(Ordering::Relaxed))
    }

    /// Whether a caller that finds no free permit may wait for one.
    #[inline]
    pub(super) fn may_wait(&self) -> bool {
        self.max_wait_nanos.load(Ordering::Relaxed) != 0
    }

    /// Gives back a permit while a lowered limit may still owe some: the permit pays one of
    /// the debt instead of returning to the semaphore, unless the debt was paid meanwhile.
    #[cold]
    #[inline(never)]
    fn release_owing(&self) {
        let paid = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if !paid {
            self.semaphore.add_permits(1);
        }
    }
}

impl Shared {
    fn lock_config(&self) -> std::sync::MutexGuard<'_, BulkheadConfig> {
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_adaptive(&self) -> std::sync::MutexGuard<'_, Option<Limiter>> {
        self.adaptive.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Permits held right now (those a lowered limit still owes included).
    fn in_use(&self) -> usize {
        let max = self.max_concurrent.load(Ordering::Relaxed);
        let owed = self.debt.load(Ordering::Relaxed);
        (max + owed).saturating_sub(self.semaphore.available_permits())
    }

    /// One call of an adaptive bulkhead completed after `latency`. A sample that finds the
    /// algorithm busy with another is skipped: the limit follows the trend of many samples,
    /// and no completing call waits for a lock.
    #[cold]
    fn sample(&self, started: tokio::time::Instant) {
        let Ok(mut limiter) = self.adaptive.try_lock() else {
            return;
        };
        let Some(limiter) = limiter.as_mut() else {
            return;
        };
        let since_epoch = started.saturating_duration_since(self.epoch).as_nanos() as f64;
        let latency = started.elapsed().as_nanos() as f64;
        let new = limiter.sample(since_epoch, latency, self.in_use());
        self.set_limit(new);
    }

    /// Moves the limit in force to `new`; the caller holds `adaptive`'s lock. Permits held
    /// are honoured:
    /// - a raised limit frees the extra permits at once (to waiting callers first);
    /// - a lowered limit never revokes a permit in use: the free permits above the new
    ///   limit are withdrawn at once, and each permit in use above it is withdrawn when it
    ///   is given back, so new calls see the new limit.
    fn set_limit(&self, new: usize) {
        let old = self.max_concurrent.load(Ordering::Relaxed);
        if new > old {
            // Cancel what a lowered limit still owes, then free the rest.
            let raise = new - old;
            let cancelled = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d - d.min(raise))
                })
                .map_or(0, |d| d.min(raise));
            self.semaphore.add_permits(raise - cancelled);
        } else if new < old {
            let lower = old - new;
            let withdrawn = self.semaphore.forget_permits(lower);
            self.debt.fetch_add(lower - withdrawn, Ordering::AcqRel);
        } else {
            return;
        }
        self.max_concurrent.store(new, Ordering::Relaxed);
        self.limit_gauge.set(new as f64);
        tracing::debug!(target: "resilience", name = %self.name, limit = new, "bulkhead limit changed");
    }
}

impl BulkheadHandle {
    pub(super) fn new(name: Name, config: BulkheadConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        // HELP text, once per bulkhead built (off the hot path; describing again is harmless).
        metrics::describe_gauge!(
            "resilience_bulkhead_in_use",
            "Calls holding a bulkhead permit, by bulkhead name."
        );
        metrics::describe_gauge!(
            "resilience_bulkhead_waiting",
            "Calls waiting for a bulkhead permit, by bulkhead name."
        );
        metrics::describe_counter!(
            "resilience_bulkhead_rejected_total",
            "Calls a full bulkhead rejected, by bulkhead name."
        );
        metrics::describe_gauge!(
            "resilience_bulkhead_limit",
            "The limit on concurrent calls in force (it moves with an adaptive limit), by bulkhead name."
        );
        let label = name.to_string();
        let limiter = config
            .adaptive
            .as_ref()
            .map(|a| Limiter::new(a, config.max_concurrent));
        let limit = limiter
            .as_ref()
            .map_or(config.max_concurrent, Limiter::limit);
        let limit_gauge = metrics::gauge!("resilience_bulkhead_limit", "name" => label.clone());
        limit_gauge.set(limit as f64);
        let shared = Shared {
            semaphore: Arc::new(Semaphore::new(limit)),
            max_concurrent: AtomicUsize::new(limit),
            adaptive_on: AtomicBool::new(limiter.is_some()),
            adaptive: Mutex::new(limiter),
            epoch: tokio::time::Instant::now(),
            limit_gauge,
            max_wait_nanos: AtomicU64::new(nanos(config.max_wait)),
            debt: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            rejected: StripedCounter::default(),
            in_use_gauge: metrics::gauge!("resilience_bulkhead_in_use", "name" => label.clone()),
            waiting_gauge: metrics::gauge!("resilience_bulkhead_waiting", "name" => label.clone()),
            rejected_counter: metrics::counter!("resilience_bulkhead_rejected_total", "name" => label),
            events: Arc::default(),
            name,
            config: Mutex::new(config),
        };
        Ok(Self {
            shared: ThreadView::new(Arc::new(shared)),
        })
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Marks its series as updated without changing them (a gauge moved by `+0`, not `set`:
    /// a `set` racing a permit's `+1` would leave the gauge off for good); see
    /// [`keyed`](crate::keyed).
    pub(crate) fn touch_metrics(&self) {
        let shared = &self.shared;
        shared.in_use_gauge.increment(0.0);
        shared.waiting_gauge.increment(0.0);
        shared.rejected_counter.increment(0);
        shared
            .limit_gauge
            .set(shared.max_concurrent.load(Ordering::Relaxed) as f64);
    }

    /// The configuration in force: the one it was built with, or the last one
    /// [`reconfigure`](Self::reconfigure) applied.
    pub fn config(&self) -> BulkheadConfig {
        self.shared.lock_config().clone()
    }

    /// Replaces the limit and the wait of the running bulkhead.
    ///
    /// `config` is [validated](BulkheadConfig::validate) first, with the same field-path
    /// errors as when building; an invalid one changes nothing. Permits held are honoured:
    ///
    /// - a raised limit frees the extra permits at once (to waiting callers first);
    /// - a lowered limit never revokes a permit in use: the free permits above the new
    ///   limit are withdrawn at once, and each permit in use above it is withdrawn when it
    ///   is given back, so new calls see the new limit;
    /// - a new `max_wait` applies to callers that start waiting from now on.
    ///
    /// ```
    /// use resilience_layers::bulkhead::{BulkheadConfig, BulkheadLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let handle = BulkheadLayer::new("db", BulkheadConfig { max_concurrent: 2, ..Default::default() })
    ///     .unwrap()
    ///     .handle();
    /// let (a, b) = (handle.acquire().await.unwrap(), handle.acquire().await.unwrap());
    /// handle.reconfigure(BulkheadConfig { max_concurrent: 1, ..Default::default() }).unwrap();
    /// assert_eq!(handle.snapshot().in_use, 2); // both still held
    /// drop(a);
    /// assert!(handle.acquire().await.is_err()); // one in use: the new limit is reached
    /// drop(b);
    /// let _c = handle.acquire().await.unwrap();
    /// # }
    /// ```
    pub fn reconfigure(&self, config: BulkheadConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let shared = &*self.shared;
        let mut current = shared.lock_config();
        let mut limiter = shared.lock_adaptive();
        let new = match &config.adaptive {
            None => {
                *limiter = None;
                config.max_concurrent
            }
            Some(a) => {
                // The same settings: start again from the limit in force (within the new
                // bound) rather than from `initial_limit`.
                let start = match &*limiter {
                    Some(l) if current.adaptive.as_ref() == Some(a) => {
                        l.limit().clamp(a.min_limit, config.max_concurrent)
                    }
                    _ => a.initial_limit,
                };
                let settings = AdaptiveConfig {
                    initial_limit: start,
                    ..a.clone()
                };
                let fresh = Limiter::new(&settings, config.max_concurrent);
                let limit = fresh.limit();
                *limiter = Some(fresh);
                limit
            }
        };
        shared.set_limit(new);
        shared
            .adaptive_on
            .store(config.adaptive.is_some(), Ordering::Relaxed);
        shared
            .max_wait_nanos
            .store(nanos(config.max_wait), Ordering::Relaxed);
        tracing::info!(
            target: "resilience",
            name = %shared.name,
            max_concurrent = config.max_concurrent,
            adaptive = config.adaptive.is_some(),
            max_wait = ?config.max_wait,
            "bulkhead reconfigured"
        );
        drop(limiter);
        *current = config;
        Ok(())
    }

    /// Permits in use, waiters and rejections right now.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let shared = &self.shared;
        BulkheadSnapshot {
            name: shared.name.to_string(),
            max_concurrent: shared.max_concurrent.load(Ordering::Relaxed),
            in_use: shared.in_use(),
            waiting: shared.waiting.load(Ordering::Relaxed),
            rejected_total: shared.rejected.sum(),
        }
    }

    /// Subscribes to the bulkhead's rejections, in the order they happen; see
    /// [`events`](crate::events) for delivery and cost (none while nobody subscribes).
    pub fn subscribe(&self) -> Subscription<BulkheadEvent> {
        self.shared.events.subscribe()
    }

    /// Waits up to the configured `max_wait` for a permit, or fails with
    /// [`BulkheadFull`](crate::error::BulkheadFull) as a [`BoxError`].
    ///
    /// For callers outside tower; a [`Bulkhead`](super::Bulkhead) service does the same in
    /// `poll_ready`. Dropping the returned future gives up the place in the queue.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BoxError> {
        let shared = &self.shared;
        if let Some(permit) = BulkheadPermit::try_acquire(shared) {
            return Ok(permit);
        }
        let max_wait = shared.max_wait();
        if max_wait == Duration::ZERO {
            return Err(shared.reject().into());
        }
        let _waiting = Waiting::new(shared);
        match tokio::time::timeout(max_wait, shared.semaphore.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(BulkheadPermit::from_owned(permit, shared)),
            // The semaphore is never closed; treat the impossible like a timeout.
            Ok(Err(_)) | Err(_) => Err(shared.reject().into()),
        }
    }
}

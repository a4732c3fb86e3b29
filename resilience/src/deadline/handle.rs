//! What a timeout has done: the count behind `resilience_timeouts_total`, readable back.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use metrics::Counter;
use serde::{Deserialize, Serialize};

/// Which of the two limits a [`TimeoutHandle`] belongs to.
///
/// ```
/// use resilience_layers::deadline::TimeoutKind;
///
/// assert_eq!(serde_json::to_value(TimeoutKind::Attempt).unwrap(), "attempt");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutKind {
    /// One attempt's limit ([`AttemptTimeoutLayer`](crate::timeout::AttemptTimeoutLayer)).
    Attempt,
    /// The whole call's limit ([`DeadlineLayer`](super::DeadlineLayer)).
    Deadline,
}

impl TimeoutKind {
    /// The `kind` label of `resilience_timeouts_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::Attempt => "attempt",
            TimeoutKind::Deadline => "deadline",
        }
    }
}

/// The metric series and a total this crate can read back: the metric alone cannot be read,
/// and a snapshot must not depend on a recorder being installed. Bumped only when a timeout
/// fires, so the atomic costs nothing on the path of a call that finishes in time.
#[derive(Clone)]
pub(crate) struct TimeoutCounter(Arc<Count>);

struct Count {
    series: Counter,
    total: AtomicU64,
}

impl TimeoutCounter {
    pub(crate) fn new(series: Counter) -> Self {
        Self(Arc::new(Count {
            series,
            total: AtomicU64::new(0),
        }))
    }

    /// Counts `n` timeouts (zero only marks the series as updated).
    pub(crate) fn increment(&self, n: u64) {
        self.0.series.increment(n);
        if n > 0 {
            self.0.total.fetch_add(n, Relaxed);
        }
    }

    fn total(&self) -> u64 {
        self.0.total.load(Relaxed)
    }
}

impl fmt::Debug for TimeoutCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TimeoutCounter")
            .field(&self.total())
            .finish()
    }
}

/// A view of one attempt timeout or deadline: its name, its limit, and how often it fired.
/// Every service a layer builds counts into the same handle.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::{deadline::TimeoutKind, timeout::AttemptTimeoutLayer};
/// use tower::{ServiceExt, Layer, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let layer = AttemptTimeoutLayer::new("users", Duration::from_millis(100)).unwrap();
/// let svc = layer.layer(service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_secs(1)).await;
///     Ok::<_, std::io::Error>(())
/// }));
/// svc.oneshot(()).await.unwrap_err();
/// let snapshot = layer.handle().snapshot();
/// assert_eq!((snapshot.name.as_str(), snapshot.kind), ("users", TimeoutKind::Attempt));
/// assert_eq!(snapshot.timeouts_total, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct TimeoutHandle {
    name: Arc<str>,
    kind: TimeoutKind,
    limit: Duration,
    counter: TimeoutCounter,
}

impl TimeoutHandle {
    pub(crate) fn new(name: Arc<str>, kind: TimeoutKind, limit: Duration) -> Self {
        let counter = TimeoutCounter::new(super::timeouts_counter(&name, kind.as_str()));
        Self {
            name,
            kind,
            limit,
            counter,
        }
    }

    pub(crate) fn counter(&self) -> &TimeoutCounter {
        &self.counter
    }

    /// The name its metric and snapshot carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time each attempt (or call) is given.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// The state right now.
    pub fn snapshot(&self) -> TimeoutSnapshot {
        TimeoutSnapshot {
            name: self.name.to_string(),
            kind: self.kind,
            limit: self.limit,
            timeouts_total: self.counter.total(),
        }
    }
}

impl fmt::Debug for TimeoutHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutHandle")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// One timeout's state, as [`TimeoutHandle::snapshot`] reads it.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::deadline::DeadlineLayer;
///
/// let snapshot = DeadlineLayer::new("users", Duration::from_secs(2)).unwrap().handle().snapshot();
/// assert_eq!(
///     serde_json::to_value(&snapshot).unwrap(),
///     serde_json::json!({"name": "users", "kind": "deadline", "limit": "2s", "timeouts_total": 0}),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeoutSnapshot {
    /// The timeout's name.
    pub name: String,
    /// An attempt's limit or a whole call's.
    pub kind: TimeoutKind,
    /// The time given.
    #[serde(serialize_with = "crate::config::duration::serialize")]
    pub limit: Duration,
    /// How often it fired since it was built.
    pub timeouts_total: u64,
}

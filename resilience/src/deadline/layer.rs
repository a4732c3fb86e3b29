use std::{sync::Arc, time::Duration};

use metrics::Counter;
use tower::Layer;

use super::{DeadlineService, TimeoutHandle, TimeoutKind};
use crate::config::{ConfigError, check_positive};

/// Applies a [`DeadlineService`] to services: a total time limit for the whole call.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::deadline::DeadlineLayer;
///
/// let layer = DeadlineLayer::new("users", Duration::from_secs(2)).unwrap();
/// assert_eq!(layer.budget(), Duration::from_secs(2));
/// assert_eq!(layer.handle().name(), "users");
/// ```
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    handle: TimeoutHandle,
}

impl DeadlineLayer {
    /// Each call gets `budget` in total; `name` labels the `resilience_timeouts_total` series
    /// and the snapshot. Zero is a [`ConfigError`] on the field `deadline`.
    pub fn new(name: impl Into<Arc<str>>, budget: Duration) -> Result<Self, ConfigError> {
        check_positive("deadline", budget)?;
        Ok(Self {
            handle: TimeoutHandle::new(name.into(), TimeoutKind::Deadline, budget),
        })
    }

    /// The total time each call is given.
    pub fn budget(&self) -> Duration {
        self.handle.limit()
    }

    /// Its name, limit and count of calls past their deadline.
    pub fn handle(&self) -> TimeoutHandle {
        self.handle.clone()
    }

    /// Marks its series as updated; see [`keyed`](crate::keyed).
    pub(crate) fn touch_metrics(&self) {
        self.handle.counter().increment(0);
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService::with_counter(inner, self.budget(), self.handle.counter().clone())
    }
}

/// The `resilience_timeouts_total{name, kind}` series, `kind` being `attempt` or `deadline`;
/// the attempt timeout, the HTTP middleware and `AcceptDeadline` count theirs here too.
pub(crate) fn timeouts_counter(name: &str, kind: &'static str) -> Counter {
    // Where every timeout counter is made (once per layer or service built, not per call).
    metrics::describe_counter!(
        "resilience_timeouts_total",
        "Attempts that timed out (kind attempt) and requests past their deadline (kind \
         deadline), by name."
    );
    metrics::counter!("resilience_timeouts_total", "name" => name.to_string(), "kind" => kind)
}

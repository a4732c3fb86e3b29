use std::{sync::Arc, time::Duration};

use metrics::Counter;
use tower::Layer;

use super::DeadlineService;
use crate::config::{ConfigError, check_positive};

/// Applies a [`DeadlineService`] to services: a total time limit for the whole call.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::deadline::DeadlineLayer;
///
/// let layer = DeadlineLayer::new(Duration::from_secs(2)).unwrap().with_name("users");
/// assert_eq!(layer.budget(), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    budget: Duration,
    counter: Counter,
}

impl DeadlineLayer {
    /// Each call gets `budget` in total; zero is a [`ConfigError`] on the field `deadline`.
    pub fn new(budget: Duration) -> Result<Self, ConfigError> {
        check_positive("deadline", budget)?;
        Ok(Self {
            budget,
            counter: timeouts_counter("default", "deadline"),
        })
    }

    /// Labels the `resilience_timeouts_total` metric with `name` (default `"default"`).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.counter = timeouts_counter(&name.into(), "deadline");
        self
    }

    /// The total time each call is given.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Marks its series as updated; see [`keyed`](crate::keyed).
    pub(crate) fn touch_metrics(&self) {
        self.counter.increment(0);
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService::with_counter(inner, self.budget, self.counter.clone())
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

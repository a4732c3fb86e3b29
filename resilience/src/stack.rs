//! The whole stack as one `Layer`, built from one config value.
//!
//! Outermost first:
//!
//! **cache → fallback → rate limiter → bulkhead → deadline → retry → hedge → circuit breaker
//! → attempt timeout → fault injection → service**
//!
//! Why this order:
//!
//! - **Cache outermost** (outside the fallback too, where one is configured): a fresh hit
//!   costs nothing else, no rate-limit token, no bulkhead permit, no retry budget, no breaker
//!   record; and every failure of what is inside (an open circuit, a full bulkhead, a
//!   deadline, retries exhausted) reaches it, so a stale answer (stale-if-error) is the first
//!   choice on error, before any fallback. Inside retry it would answer stale per attempt and
//!   hide failures from the retry; inside the breaker it would answer while the circuit
//!   records nothing. It needs a key function of the request, so the stack builds it
//!   ([`ResilienceLayer::cache_layer`]) and the caller puts it outside.
//!
//! - **Fallback outside everything else the stack runs** (and inside the cache): it answers
//!   what the pieces inside end in, an open circuit, the final failure after every retry, a
//!   full bulkhead, a deadline passed, a rate limit met. Inside retry it would turn each
//!   failed attempt into a success, so retry would never retry and the breaker would never
//!   see the failures; its answer is for the caller, after the stack has done all it can.
//!   Outside the rate limiter, whether a call over quota gets a degraded answer or the
//!   rejection (`429` with `Retry-After` at an HTTP edge) is the config's choice: `on` lists
//!   `rate_limited` or not. Inside the cache, a stale answer is the first choice on error and
//!   the fallback the second, and its answer is marked ([`FromFallback`]) so a cache can
//!   refuse to store it. Its answer is code (a closure, a service, a static response), so
//!   like the cache it is built by the stack ([`ResilienceLayer::fallback_layer`]) and put
//!   outside by the caller. That also keeps the composed type as it is: each optional piece
//!   inside the stack's one type costs the compiler about twice the work of the one before.
//!
//! [`FromFallback`]: crate::fallback::FromFallback
//!
//! - **Attempt timeout inside the breaker**: a hung attempt is cut off and the breaker records
//!   it as a failure, so a dependency that hangs trips the circuit just like one that errors.
//! - **Breaker inside retry**: every attempt passes the breaker and is recorded on its own, and
//!   an open circuit is a rejection that retry never repeats: the caller fails fast instead of
//!   hammering a dependency that is known to be down.
//! - **Hedge at retry's place, just inside it**: a hedge is another attempt, so it is placed
//!   where attempts are made. Inside the breaker's outer side, each hedged attempt passes the
//!   breaker and is recorded on its own, and no hedge is sent while the circuit is not closed;
//!   hedges withdraw from the retry's budget, so hedges and retries together stay within one
//!   budget; the same clone hook decides which requests may be sent twice. Inside retry
//!   rather than outside, a retry after a failed (hedged) attempt is hedged again, and an open
//!   circuit met by a hedge stays a rejection retry never repeats.
//! - **Deadline outside retry**: the caller's total patience bounds every attempt and every
//!   backoff sleep; retry reads it ([`current_deadline`](crate::deadline::current_deadline))
//!   and gives up rather than sleeping past it.
//! - **Bulkhead outside the deadline and retry**: it bounds whole logical requests, retries
//!   included, so a slow dependency cannot make retries multiply the calls in flight.
//! - **Rate limiter outermost of what the stack runs itself**: a call it sheds costs nothing else, no bulkhead permit, no
//!   deadline timer, no retry budget, no breaker record, and it counts logical requests (a
//!   server's quota is per request its clients send, not per attempt). Its wait, in wait
//!   mode, comes before the stack's own deadline starts: it is bounded by its `max_wait` and
//!   by the caller's deadline in force around the stack (a `Deadline::scope`, or the one an
//!   HTTP server took from the request).
//!
//! - **Fault injection innermost** (`[fault]`, off unless configured): what it injects looks
//!   to every other piece like the dependency's own behaviour, so a demo or chaos run shows
//!   the attempt timeout cutting injected latency, the breaker recording injected errors and
//!   retry retrying them.
//!
//! Every piece is optional: a piece missing from [`StackConfig`] is not applied (the
//! service is passed through, at the cost of one `match`). The same classifier decides for
//! the breaker and for retry ([`ResilienceLayer::with_classifier`]).
//!
//! ```
//! use std::time::Duration;
//! use resilience_layers::{Error, stack::StackConfig};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config: StackConfig = toml::from_str(r#"
//!     deadline = "1s"
//!     attempt_timeout = "200ms"
//!     [bulkhead]
//!     max_concurrent = 10
//!     [retry]
//!     max_attempts = 3
//!     [circuit_breaker]
//!     minimum_calls = 5
//! "#).unwrap();
//! let layer = config.into_layer("users").unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id) }));
//! assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
//! assert_eq!(layer.snapshot().retries[0].requests_total, 1);
//! # }
//! ```

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

mod reload;

pub(crate) use reload::check_live_change;

use crate::{
    bulkhead::{Bulkhead, BulkheadConfig, BulkheadHandle, BulkheadLayer, BulkheadSnapshot},
    cache::{CacheConfig, CacheLayer, DefaultPolicy},
    circuit_breaker::{
        CircuitBreaker, CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer,
        CircuitSnapshot,
    },
    classify::{Classify, ErrorsAreFailures},
    config::{ConfigError, ConfigProblem, check_positive},
    deadline::{DeadlineLayer, DeadlineService, TimeoutHandle, TimeoutSnapshot},
    error::BoxError,
    fallback::{FallbackConfig, FallbackHandle, FallbackLayer, FallbackSnapshot, NoFallback},
    fault::{Fault, FaultConfig, FaultHandle, FaultLayer, FaultSnapshot},
    hedge::{Hedge, HedgeConfig, HedgeHandle, HedgeLayer, HedgeSnapshot},
    name::Name,
    rate_limit::{RateLimit, RateLimitConfig, RateLimitHandle, RateLimitLayer, RateLimitSnapshot},
    retry::{
        BackoffConfig, CloneRequest, Cloned, Retry, RetryAfter, RetryConfig, RetryHandle,
        RetryLayer, RetryPolicy, RetrySnapshot,
    },
    timeout::{AttemptTimeout, AttemptTimeoutLayer},
};

/// The configuration of the whole stack: each piece optional, absent means not applied.
///
/// Reads from TOML or JSON (durations as human strings, unknown fields rejected) and
/// validates with errors that name the field by its path (`retry.max_attempts`,
/// `circuit_breaker.window.size`).
///
/// ```
/// use resilience_layers::stack::StackConfig;
///
/// let config: StackConfig = toml::from_str(r#"
///     deadline = "2s"
///     [retry]
///     max_attempts = 0
/// "#).unwrap();
/// assert_eq!(config.validate().unwrap_err().field(), "retry.max_attempts");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StackConfig {
    /// A response cache with stale-if-error, outside every other piece (off unless
    /// configured). It needs a key function, so the stack does not apply it itself: build it
    /// with [`ResilienceLayer::cache_layer`] and put it outside the stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheConfig>,
    /// A cap on logical requests per period (off unless configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// Which outcomes a fallback answers (the answer itself is given in code, with
    /// [`ResilienceLayer::fallback_layer`]; without that the section has no effect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackConfig>,
    /// A cap on concurrent logical requests (retries included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulkhead: Option<BulkheadConfig>,
    /// The total time for a request, all attempts and backoff sleeps included.
    #[serde(
        with = "crate::config::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Duration>,
    /// Retry with backoff and budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// Hedged attempts, drawing on the retry's budget when a retry is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgeConfig>,
    /// The circuit breaker every attempt passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// The time limit of one attempt.
    #[serde(
        with = "crate::config::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// Faults injected innermost, around the service itself: latency the attempt timeout
    /// sees, and errors the breaker records and retry retries, as a failing dependency's
    /// would be (for demos and chaos tests; off unless configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultConfig>,
}

impl StackConfig {
    /// Checks every piece; the error names the offending field by its full path.
    ///
    /// Beyond each piece's own rules, an `attempt_timeout` longer than the `deadline` is
    /// refused: the deadline would always fire first, which is never what was meant.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(c) = &self.cache {
            c.validate().map_err(|e| e.within("cache"))?;
        }
        if let Some(c) = &self.rate_limit {
            c.validate().map_err(|e| e.within("rate_limit"))?;
        }
        if let Some(c) = &self.fallback {
            c.validate().map_err(|e| e.within("fallback"))?;
        }
        if let Some(c) = &self.bulkhead {
            c.validate().map_err(|e| e.within("bulkhead"))?;
        }
        if let Some(d) = self.deadline {
            check_positive("deadline", d)?;
        }
        if let Some(c) = &self.retry {
            c.validate().map_err(|e| e.within("retry"))?;
        }
        if let Some(c) = &self.hedge {
            c.validate().map_err(|e| e.within("hedge"))?;
            let own_budget = c.budget != HedgeConfig::default().budget;
            if self.retry.is_some() && own_budget {
                return Err(ConfigError::new(
                    "hedge.budget",
                    ConfigProblem::Conflicts {
                        other: "retry.budget".into(),
                        reason: "with a retry, hedges draw on the retry's budget; set it there"
                            .into(),
                    },
                ));
            }
        }
        if let Some(c) = &self.circuit_breaker {
            c.validate().map_err(|e| e.within("circuit_breaker"))?;
        }
        if let Some(c) = &self.fault {
            c.validate().map_err(|e| e.within("fault"))?;
        }
        if let Some(t) = self.attempt_timeout {
            check_positive("attempt_timeout", t)?;
            if self.deadline.is_some_and(|d| t > d) {
                return Err(ConfigError::new(
                    "attempt_timeout",
                    ConfigProblem::Conflicts {
                        other: "deadline".into(),
                        reason: "one attempt cannot take longer than the whole request".into(),
                    },
                ));
            }
        }
        Ok(())
    }

    /// Validates and builds the [`ResilienceLayer`]; `name` labels every piece's metrics
    /// and snapshots.
    pub fn into_layer(self, name: impl Into<Arc<str>>) -> Result<ResilienceLayer, ConfigError> {
        ResilienceLayer::new(name, self)
    }
}

/// Snapshots of every piece of a stack, for dashboards and `GET /resilience`.
///
/// Serializes as `{"breakers": [...], "bulkheads": [...], "retries": [...]}`, with
/// `"rate_limits": [...]` when a rate limiter is configured and `"timeouts": [...]` when a
/// deadline or an attempt timeout is.
///
/// ```
/// use resilience_layers::stack::{StackConfig, StackSnapshot};
///
/// let snapshot: StackSnapshot = StackConfig::default().into_layer("idle").unwrap().snapshot();
/// assert_eq!(
///     serde_json::to_value(&snapshot).unwrap(),
///     serde_json::json!({"breakers": [], "bulkheads": [], "retries": []}),
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StackSnapshot {
    /// One per circuit breaker.
    pub breakers: Vec<CircuitSnapshot>,
    /// One per bulkhead.
    pub bulkheads: Vec<BulkheadSnapshot>,
    /// One per retry.
    pub retries: Vec<RetrySnapshot>,
    /// One per hedge.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hedges: Vec<HedgeSnapshot>,
    /// One per rate limiter.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimitSnapshot>,
    /// The deadline's, then the attempt timeout's, when configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeouts: Vec<TimeoutSnapshot>,
    /// The fault injector's, when configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultSnapshot>,
    /// The fallback's, when one is configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<FallbackSnapshot>,
}

impl StackSnapshot {
    /// Adds `other`'s snapshots to these (a keyed layer gathers its entries' this way).
    pub(crate) fn append(&mut self, other: StackSnapshot) {
        // Destructured, so a new piece cannot be forgotten here.
        let StackSnapshot {
            breakers,
            bulkheads,
            retries,
            hedges,
            rate_limits,
            timeouts,
            faults,
            fallbacks,
        } = other;
        self.hedges.extend(hedges);
        self.breakers.extend(breakers);
        self.bulkheads.extend(bulkheads);
        self.retries.extend(retries);
        self.rate_limits.extend(rate_limits);
        self.timeouts.extend(timeouts);
        self.faults.extend(faults);
        self.fallbacks.extend(fallbacks);
    }

    /// Orders each piece's snapshots by name.
    pub(crate) fn sort_by_name(&mut self) {
        self.breakers.sort_by(|a, b| a.name.cmp(&b.name));
        self.bulkheads.sort_by(|a, b| a.name.cmp(&b.name));
        self.retries.sort_by(|a, b| a.name.cmp(&b.name));
        self.hedges.sort_by(|a, b| a.name.cmp(&b.name));
        self.rate_limits.sort_by(|a, b| a.name.cmp(&b.name));
        self.fallbacks.sort_by(|a, b| a.name.cmp(&b.name));
        self.timeouts
            .sort_by(|a, b| (&a.name, a.kind.as_str()).cmp(&(&b.name, b.kind.as_str())));
    }
}

/// Applies the whole stack, built from a [`StackConfig`]; see the [module docs](self) for
/// the order and why.
///
/// The type parameters are the retry's and breaker's hooks: `Classifier` the one both share,
/// `RetryAfterHook` the retry's `Retry-After` reader, `CloneRequestHook` which requests may be
/// sent again. For HTTP, the
/// `http` feature has all three (`HttpClassifier`, `HttpRetryAfter`, `IdempotentRequests`).
/// On a server, where requests are never re-sent (and bodies cannot be cloned), use
/// [`SendOnce`].
///
/// ```
/// use resilience_layers::stack::{ResilienceLayer, StackConfig};
///
/// let layer = ResilienceLayer::new("users", StackConfig::default()).unwrap();
/// assert!(layer.circuit_breaker().is_none()); // nothing configured, nothing applied
/// ```
#[derive(Clone)]
pub struct ResilienceLayer<
    Classifier = ErrorsAreFailures,
    RetryAfterHook = (),
    CloneRequestHook = Cloned,
> {
    name: Arc<str>,
    cache: Option<CacheConfig>,
    classifier: Classifier,
    rate_limit: Option<RateLimitLayer>,
    fallback: Option<FallbackLayer<NoFallback, Classifier>>,
    bulkhead: Option<BulkheadLayer>,
    deadline: Option<DeadlineLayer>,
    retry: Option<RetryLayer<Classifier, RetryAfterHook, BackoffConfig, CloneRequestHook>>,
    hedge: Option<HedgeLayer<Classifier, CloneRequestHook>>,
    breaker: Option<CircuitBreakerLayer<Classifier>>,
    attempt_timeout: Option<AttemptTimeoutLayer>,
    fault: Option<FaultLayer>,
}

impl ResilienceLayer {
    /// Validates `config` and builds each configured piece.
    pub fn new(name: impl Into<Arc<str>>, config: StackConfig) -> Result<Self, ConfigError> {
        Self::named(&name.into(), config, |name| Name::kept(name))
    }

    /// Like [`new`](Self::new), for a keyed entry: the breaker's and bulkhead's name is freed
    /// with the entry instead of being kept for the process.
    pub(crate) fn transient(name: &Arc<str>, config: StackConfig) -> Result<Self, ConfigError> {
        Self::named(name, config, |name| Name::transient(name.clone()))
    }

    fn named(
        name: &Arc<str>,
        config: StackConfig,
        kind: fn(&Arc<str>) -> Name,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let within = |section| move |e: ConfigError| e.within(section);
        let retry = config
            .retry
            .map(|c| RetryLayer::new(name.clone(), c).map_err(within("retry")))
            .transpose()?;
        let breaker = config
            .circuit_breaker
            .map(|c| CircuitBreakerLayer::named(kind(name), c).map_err(within("circuit_breaker")))
            .transpose()?;
        let hedge = config
            .hedge
            .map(|c| {
                let handle = match &retry {
                    Some(retry) => HedgeHandle::sharing(name.clone(), c, retry.budget()),
                    None => HedgeHandle::new(name.clone(), c),
                }
                .map_err(within("hedge"))?;
                Ok(HedgeLayer::from_handle(match &breaker {
                    Some(breaker) => handle.with_breaker(breaker.handle()),
                    None => handle,
                }))
            })
            .transpose()?;
        Ok(Self {
            name: name.clone(),
            cache: config.cache,
            classifier: ErrorsAreFailures,
            rate_limit: config
                .rate_limit
                .map(|c| RateLimitLayer::new(name.clone(), c).map_err(within("rate_limit")))
                .transpose()?,
            fallback: config
                .fallback
                .map(|c| {
                    FallbackLayer::new(name.clone(), c, NoFallback).map_err(within("fallback"))
                })
                .transpose()?,
            bulkhead: config
                .bulkhead
                .map(|c| BulkheadLayer::named(kind(name), c).map_err(within("bulkhead")))
                .transpose()?,
            deadline: config
                .deadline
                .map(|d| DeadlineLayer::new(name.clone(), d))
                .transpose()?,
            retry,
            hedge,
            breaker,
            attempt_timeout: config
                .attempt_timeout
                .map(|d| AttemptTimeoutLayer::new(name.clone(), d))
                .transpose()?,
            fault: config
                .fault
                .map(|c| c.into_handle(name.clone()).map(FaultLayer::new))
                .transpose()
                .map_err(within("fault"))?,
        })
    }
}

impl<Classifier, RetryAfterHook, CloneRequestHook>
    ResilienceLayer<Classifier, RetryAfterHook, CloneRequestHook>
{
    /// Decides what counts as a failure, for the breaker, retry and the fallback alike.
    ///
    /// **The classifier sees errors as [`BoxError`]**, not as the inner service's own error
    /// type: every piece of the stack boxes the error of the one it wraps (so that a
    /// rejection and the service's error fit one type). A classifier for the stack is a
    /// [`Classify<Response, BoxError>`](Classify): a closure takes
    /// `Result<&Response, &BoxError>` and reaches the inner error with `downcast_ref`.
    ///
    /// ```
    /// use resilience_layers::{BoxError, Outcome, stack::StackConfig};
    /// use tower::{ServiceBuilder, service_fn};
    ///
    /// let layer = StackConfig::default().into_layer("files").unwrap().with_classifier(
    ///     |result: Result<&Vec<u8>, &BoxError>| match result {
    ///         Ok(_) => Outcome::Success,
    ///         // A missing file is the caller's problem, not the dependency's.
    ///         Err(e) if e
    ///             .downcast_ref::<std::io::Error>()
    ///             .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
    ///         {
    ///             Outcome::Ignored
    ///         }
    ///         Err(_) => Outcome::Failure,
    ///     },
    /// );
    /// let svc = ServiceBuilder::new()
    ///     .layer(layer)
    ///     .service(service_fn(|path: String| async move { std::fs::read(path) }));
    /// # fn is_service<S: tower::Service<String>>(_: &S) {}
    /// # is_service(&svc);
    /// ```
    ///
    /// A classifier of the inner error type does not fit, and the compiler says where
    /// (`expected closure signature fn(Result<&_, &Box<dyn Error + Send + Sync>>)`):
    ///
    /// ```compile_fail,E0631
    /// use resilience_layers::{Outcome, stack::StackConfig};
    /// use tower::{Service, ServiceBuilder, service_fn};
    ///
    /// fn serve<S: Service<u32>>(_: S) {}
    ///
    /// let layer = StackConfig::default().into_layer("x").unwrap().with_classifier(
    ///     |result: Result<&u32, &std::io::Error>| match result {
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     },
    /// );
    /// serve(ServiceBuilder::new().layer(layer).service(service_fn(|x: u32| async move {
    ///     Ok::<_, std::io::Error>(x)
    /// })));
    /// ```
    pub fn with_classifier<NewClassifier: Clone>(
        self,
        classifier: NewClassifier,
    ) -> ResilienceLayer<NewClassifier, RetryAfterHook, CloneRequestHook> {
        ResilienceLayer {
            name: self.name,
            cache: self.cache,
            classifier: classifier.clone(),
            rate_limit: self.rate_limit,
            fallback: self.fallback.map(|f| f.with_classifier(classifier.clone())),
            bulkhead: self.bulkhead,
            deadline: self.deadline,
            retry: self.retry.map(|r| r.with_classifier(classifier.clone())),
            hedge: self.hedge.map(|h| h.with_classifier(classifier.clone())),
            breaker: self.breaker.map(|b| b.with_classifier(classifier)),
            attempt_timeout: self.attempt_timeout,
            fault: self.fault,
        }
    }

    /// Reads a minimum next delay from each result (HTTP `Retry-After`).
    pub fn with_retry_after<NewRetryAfterHook>(
        self,
        retry_after: NewRetryAfterHook,
    ) -> ResilienceLayer<Classifier, NewRetryAfterHook, CloneRequestHook> {
        ResilienceLayer {
            name: self.name,
            cache: self.cache,
            classifier: self.classifier,
            rate_limit: self.rate_limit,
            fallback: self.fallback,
            bulkhead: self.bulkhead,
            deadline: self.deadline,
            retry: self.retry.map(|r| r.with_retry_after(retry_after)),
            hedge: self.hedge,
            breaker: self.breaker,
            attempt_timeout: self.attempt_timeout,
            fault: self.fault,
        }
    }

    /// Decides which requests may be sent again (idempotency).
    ///
    /// The default hook, [`Cloned`], sends a copy made by `Clone`, so the stack needs
    /// `Clone` requests unless another hook is chosen here: a closure
    /// `Fn(&Req) -> Option<Req>` (`None`: send once), or [`SendOnce`] for requests never
    /// sent twice (a server's, a streamed body). Without one, a request type that is not
    /// `Clone` is refused with "`Cloned` cannot copy a `Job` to send it again":
    ///
    /// ```compile_fail,E0277
    /// use resilience_layers::stack::StackConfig;
    /// use tower::{Service, ServiceBuilder, service_fn};
    ///
    /// struct Job(u32); // not `Clone`
    /// fn serve<S: Service<Job>>(_: S) {}
    ///
    /// let layer = StackConfig::default().into_layer("jobs").unwrap();
    /// serve(ServiceBuilder::new().layer(layer).service(service_fn(|job: Job| async move {
    ///     Ok::<_, std::io::Error>(job.0)
    /// })));
    /// ```
    ///
    /// ```
    /// use resilience_layers::stack::{SendOnce, StackConfig};
    /// use tower::{Service, ServiceBuilder, service_fn};
    ///
    /// struct Job(u32);
    /// fn serve<S: Service<Job>>(_: S) {}
    ///
    /// let layer = StackConfig::default().into_layer("jobs").unwrap().with_clone_request(SendOnce);
    /// serve(ServiceBuilder::new().layer(layer).service(service_fn(|job: Job| async move {
    ///     Ok::<_, std::io::Error>(job.0)
    /// })));
    /// ```
    pub fn with_clone_request<NewCloneRequestHook: Clone>(
        self,
        clone_request: NewCloneRequestHook,
    ) -> ResilienceLayer<Classifier, RetryAfterHook, NewCloneRequestHook> {
        ResilienceLayer {
            name: self.name,
            cache: self.cache,
            classifier: self.classifier,
            rate_limit: self.rate_limit,
            fallback: self.fallback,
            bulkhead: self.bulkhead,
            deadline: self.deadline,
            hedge: self
                .hedge
                .map(|h| h.with_clone_request(clone_request.clone())),
            retry: self.retry.map(|r| r.with_clone_request(clone_request)),
            breaker: self.breaker,
            attempt_timeout: self.attempt_timeout,
            fault: self.fault,
        }
    }

    /// The `[cache]` section's configuration, when one is given.
    pub fn cache_config(&self) -> Option<&CacheConfig> {
        self.cache.as_ref()
    }

    /// Builds the cache of the `[cache]` section, keyed by `key`, to put **outside** this
    /// stack; `None` when no cache is configured. It shares the stack's name (its metrics'
    /// `name` label) and classifier (what is stored, what is answered stale).
    ///
    /// Each call builds a new, empty store: call it once, and clone the layer.
    ///
    /// ```
    /// use resilience_layers::stack::StackConfig;
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let config: StackConfig = toml::from_str(r#"
    ///     [cache]
    ///     ttl = "30s"
    ///     stale_if_error = "10m"
    ///     [circuit_breaker]
    /// "#).unwrap();
    /// let stack = config.into_layer("users").unwrap();
    /// let cache = stack.cache_layer(|id: &u32| Some(*id)).unwrap();
    /// let svc = ServiceBuilder::new()
    ///     .layer(cache.clone())
    ///     .layer(stack)
    ///     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) }));
    /// assert_eq!(svc.clone().oneshot(21).await.unwrap(), 42);
    /// assert_eq!(svc.oneshot(21).await.unwrap(), 42);
    /// assert_eq!(cache.handle().snapshot().hits_total, 1);
    /// # }
    /// ```
    pub fn cache_layer<Key, Response, KeyFn>(
        &self,
        key: KeyFn,
    ) -> Option<CacheLayer<Key, Response, KeyFn, DefaultPolicy, Classifier>>
    where
        Key: std::hash::Hash + Eq + Send + Sync + 'static,
        Response: Send + Sync + 'static,
        Classifier: Clone,
    {
        let config = self.cache.clone()?;
        let layer = CacheLayer::new(self.name.clone(), config, key)
            .expect("validated with the stack's config");
        Some(layer.with_classifier(self.classifier.clone()))
    }

    /// Builds the fallback of the `[fallback]` section, answering with `answer`, to put
    /// **outside** this stack (inside the cache, if there is one); `None` when no fallback is
    /// configured. The config says when (which outcomes), the code says what: a closure
    /// `Fn(Fault<Response>) -> Response`, a [`FallbackService`](crate::fallback::FallbackService),
    /// or (HTTP) a [`StaticResponse`](crate::http::StaticResponse). It shares the stack's
    /// name, classifier (what `failure` means) and counts (the stack's
    /// [`snapshot`](Self::snapshot) and [`fallback`](Self::fallback) handle).
    ///
    /// ```
    /// use resilience_layers::{fallback::Fault, stack::StackConfig};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let config: StackConfig = toml::from_str(r#"
    ///     [fallback]
    ///     on = ["circuit_open", "failure"]
    ///     [retry]
    ///     max_attempts = 2
    /// "#).unwrap();
    /// let stack = config.into_layer("prices").unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .option_layer(stack.fallback_layer(|_: Fault<u32>| 0))
    ///     .layer(stack.clone())
    ///     .service(service_fn(|_: ()| async { Err::<u32, _>(std::io::Error::other("down")) }));
    /// assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 0); // after 2 attempts
    /// assert_eq!(stack.snapshot().fallbacks[0].served_total, 1);
    /// # }
    /// ```
    pub fn fallback_layer<Answer>(
        &self,
        answer: Answer,
    ) -> Option<FallbackLayer<Answer, Classifier>>
    where
        Classifier: Clone,
    {
        self.fallback.clone().map(|f| f.with_fallback(answer))
    }

    /// The fallback's handle, when one is configured.
    pub fn fallback(&self) -> Option<FallbackHandle> {
        self.fallback.as_ref().map(FallbackLayer::handle)
    }

    /// The rate limiter's handle, when one is configured.
    pub fn rate_limit(&self) -> Option<RateLimitHandle> {
        self.rate_limit.as_ref().map(RateLimitLayer::handle)
    }

    /// The deadline's handle, when one is configured.
    pub fn deadline(&self) -> Option<TimeoutHandle> {
        self.deadline.as_ref().map(DeadlineLayer::handle)
    }

    /// The attempt timeout's handle, when one is configured.
    pub fn attempt_timeout(&self) -> Option<TimeoutHandle> {
        self.attempt_timeout
            .as_ref()
            .map(AttemptTimeoutLayer::handle)
    }

    /// The fault injector's handle, when `[fault]` is configured: to change the faults while
    /// running.
    pub fn fault(&self) -> Option<FaultHandle> {
        self.fault.as_ref().map(FaultLayer::handle)
    }

    /// The bulkhead's handle, when one is configured.
    pub fn bulkhead(&self) -> Option<BulkheadHandle> {
        self.bulkhead.as_ref().map(BulkheadLayer::handle)
    }

    /// The retry's handle, when one is configured.
    pub fn retry(&self) -> Option<RetryHandle> {
        self.retry.as_ref().map(RetryLayer::handle)
    }

    /// The hedge's handle, when one is configured.
    pub fn hedge(&self) -> Option<HedgeHandle> {
        self.hedge.as_ref().map(HedgeLayer::handle)
    }

    /// The breaker's handle, when one is configured.
    pub fn circuit_breaker(&self) -> Option<CircuitBreakerHandle> {
        self.breaker.as_ref().map(CircuitBreakerLayer::handle)
    }

    /// The breaker layer itself, to put into another stack (the reqwest middleware's).
    #[cfg(feature = "reqwest")]
    pub(crate) fn circuit_breaker_layer(&self) -> Option<&CircuitBreakerLayer<Classifier>> {
        self.breaker.as_ref()
    }

    /// Marks every metric series of the stack as updated, without changing a value: see
    /// [`keyed`](crate::keyed) for why live entries of a keyed layer need it.
    pub(crate) fn touch_metrics(&self) {
        if let Some(f) = &self.fallback {
            f.handle().touch_metrics();
        }
        if let Some(b) = &self.bulkhead {
            b.handle().touch_metrics();
        }
        if let Some(d) = &self.deadline {
            d.touch_metrics();
        }
        if let Some(r) = &self.retry {
            r.policy().handle().touch_metrics();
        }
        if let Some(b) = &self.breaker {
            b.handle().touch_metrics();
        }
        if let Some(t) = &self.attempt_timeout {
            t.touch_metrics();
        }
    }

    /// Snapshots of every configured piece.
    pub fn snapshot(&self) -> StackSnapshot {
        StackSnapshot {
            breakers: self
                .circuit_breaker()
                .iter()
                .map(CircuitBreakerHandle::snapshot)
                .collect(),
            bulkheads: self
                .bulkhead()
                .iter()
                .map(BulkheadHandle::snapshot)
                .collect(),
            retries: self.retry().iter().map(RetryHandle::snapshot).collect(),
            hedges: self.hedge().iter().map(HedgeHandle::snapshot).collect(),
            rate_limits: self
                .rate_limit()
                .iter()
                .map(RateLimitHandle::snapshot)
                .collect(),
            timeouts: self
                .deadline()
                .into_iter()
                .chain(self.attempt_timeout())
                .map(|h| h.snapshot())
                .collect(),
            faults: self.fault().iter().map(FaultHandle::snapshot).collect(),
            fallbacks: self
                .fallback()
                .iter()
                .map(FallbackHandle::snapshot)
                .collect(),
        }
    }
}

impl<Classifier, RetryAfterHook, CloneRequestHook> std::fmt::Debug
    for ResilienceLayer<Classifier, RetryAfterHook, CloneRequestHook>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilienceLayer")
            .field("cache", &self.cache.is_some())
            .field("rate_limit", &self.rate_limit.is_some())
            .field("fallback", &self.fallback.is_some())
            .field("bulkhead", &self.bulkhead.is_some())
            .field(
                "deadline",
                &self.deadline.as_ref().map(DeadlineLayer::budget),
            )
            .field("retry", &self.retry.is_some())
            .field("hedge", &self.hedge.is_some())
            .field("circuit_breaker", &self.breaker.is_some())
            .field(
                "attempt_timeout",
                &self
                    .attempt_timeout
                    .as_ref()
                    .map(AttemptTimeoutLayer::timeout),
            )
            .field("fault", &self.fault.is_some())
            .finish()
    }
}

/// A [`CloneRequest`] hook that never re-sends a request: for a stack on a server, where retry
/// is not configured and request bodies cannot be cloned.
///
/// ```
/// use resilience_layers::{retry::CloneRequest, stack::SendOnce};
///
/// assert!(SendOnce.clone_request(&"anything").is_none());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOnce;

impl<Req> CloneRequest<Req> for SendOnce {
    #[inline]
    fn clone_request(&self, _: &Req) -> Option<Req> {
        None
    }
}

type WithFault<S> = Maybe<Fault<S>, S>;
type WithAttemptTimeout<S> = Maybe<AttemptTimeout<WithFault<S>>, WithFault<S>>;
type WithBreaker<S, Classifier> =
    Maybe<CircuitBreaker<WithAttemptTimeout<S>, Classifier>, WithAttemptTimeout<S>>;
type WithHedge<S, Classifier, CloneRequestHook> = Maybe<
    Hedge<WithBreaker<S, Classifier>, Classifier, CloneRequestHook>,
    WithBreaker<S, Classifier>,
>;
type WithRetry<S, Classifier, RetryAfterHook, CloneRequestHook> = Maybe<
    Retry<
        RetryPolicy<Classifier, RetryAfterHook, BackoffConfig, CloneRequestHook>,
        WithHedge<S, Classifier, CloneRequestHook>,
    >,
    WithHedge<S, Classifier, CloneRequestHook>,
>;
type WithDeadline<S, Classifier, RetryAfterHook, CloneRequestHook> = Maybe<
    DeadlineService<WithRetry<S, Classifier, RetryAfterHook, CloneRequestHook>>,
    WithRetry<S, Classifier, RetryAfterHook, CloneRequestHook>,
>;
type WithBulkhead<S, Classifier, RetryAfterHook, CloneRequestHook> = Maybe<
    Bulkhead<WithDeadline<S, Classifier, RetryAfterHook, CloneRequestHook>>,
    WithDeadline<S, Classifier, RetryAfterHook, CloneRequestHook>,
>;
type Composed<S, Classifier, RetryAfterHook, CloneRequestHook> = Maybe<
    RateLimit<WithBulkhead<S, Classifier, RetryAfterHook, CloneRequestHook>>,
    WithBulkhead<S, Classifier, RetryAfterHook, CloneRequestHook>,
>;

fn maybe<L: Layer<S>, S>(layer: Option<&L>, inner: S) -> Maybe<L::Service, S> {
    match layer {
        Some(layer) => Maybe::On(layer.layer(inner)),
        None => Maybe::Off(inner),
    }
}

impl<S, Classifier, RetryAfterHook, CloneRequestHook> Layer<S>
    for ResilienceLayer<Classifier, RetryAfterHook, CloneRequestHook>
where
    Classifier: Clone,
    RetryAfterHook: Clone,
    CloneRequestHook: Clone,
{
    type Service = Resilience<S, Classifier, RetryAfterHook, CloneRequestHook>;

    fn layer(&self, service: S) -> Self::Service {
        self.layer_with_breaker(service, self.breaker.as_ref())
    }
}

impl<Classifier, RetryAfterHook, CloneRequestHook>
    ResilienceLayer<Classifier, RetryAfterHook, CloneRequestHook>
where
    Classifier: Clone,
    RetryAfterHook: Clone,
    CloneRequestHook: Clone,
{
    /// The stack around `service` with `breaker` in the breaker's place instead of the
    /// configured one: how the reqwest middleware puts the upstream host's own breaker into
    /// the one stack it runs.
    pub(crate) fn layer_with_breaker<S>(
        &self,
        service: S,
        breaker: Option<&CircuitBreakerLayer<Classifier>>,
    ) -> Resilience<S, Classifier, RetryAfterHook, CloneRequestHook> {
        let faulty = maybe(self.fault.as_ref(), service);
        let timed = maybe(self.attempt_timeout.as_ref(), faulty);
        let broken = maybe(breaker, timed);
        let hedged = maybe(self.hedge.as_ref(), broken);
        let retried = maybe(self.retry.as_ref(), hedged);
        let bounded = maybe(self.deadline.as_ref(), retried);
        let bulkheaded = maybe(self.bulkhead.as_ref(), bounded);
        Resilience {
            inner: maybe(self.rate_limit.as_ref(), bulkheaded),
        }
    }
}

/// The service [`ResilienceLayer`] builds: the configured pieces around `S`.
///
/// ```
/// use resilience_layers::stack::StackConfig;
/// use tower::{Layer, service_fn};
///
/// let layer = StackConfig::default().into_layer("noop").unwrap();
/// let svc = layer.layer(service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// # let _ = svc;
/// ```
pub struct Resilience<
    S,
    Classifier = ErrorsAreFailures,
    RetryAfterHook = (),
    CloneRequestHook = Cloned,
> {
    inner: Composed<S, Classifier, RetryAfterHook, CloneRequestHook>,
}

impl<S, Classifier, RetryAfterHook, CloneRequestHook>
    Resilience<S, Classifier, RetryAfterHook, CloneRequestHook>
{
    /// The composed services, outermost first.
    pub fn get_ref(&self) -> &Composed<S, Classifier, RetryAfterHook, CloneRequestHook> {
        &self.inner
    }

    /// The composed services, mutably.
    pub fn get_mut(&mut self) -> &mut Composed<S, Classifier, RetryAfterHook, CloneRequestHook> {
        &mut self.inner
    }

    /// Unwraps the composed services.
    pub fn into_inner(self) -> Composed<S, Classifier, RetryAfterHook, CloneRequestHook> {
        self.inner
    }
}

impl<S, Classifier, RetryAfterHook, CloneRequestHook> Clone
    for Resilience<S, Classifier, RetryAfterHook, CloneRequestHook>
where
    Composed<S, Classifier, RetryAfterHook, CloneRequestHook>: Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S, Classifier, RetryAfterHook, CloneRequestHook> std::fmt::Debug
    for Resilience<S, Classifier, RetryAfterHook, CloneRequestHook>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilience").finish_non_exhaustive()
    }
}

// The bounds are the real ones, in terms of the user's service and hooks, rather than
// "`Composed<S, Classifier, RetryAfterHook, CloneRequestHook>: Service`": so a classifier for the wrong error type, or a request that
// cannot be cloned, is reported as that (with the hook trait's message), instead of as an
// unsatisfied bound on a page-long composed type. The hooks see `BoxError`, because every
// piece inside boxes the error of the one it wraps.
impl<S, Classifier, RetryAfterHook, CloneRequestHook, Req> Service<Req>
    for Resilience<S, Classifier, RetryAfterHook, CloneRequestHook>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Classifier: Classify<S::Response, BoxError> + Clone,
    RetryAfterHook: RetryAfter<S::Response, BoxError> + Clone,
    CloneRequestHook: CloneRequest<Req> + Clone,
{
    type Response =
        <Composed<S, Classifier, RetryAfterHook, CloneRequestHook> as Service<Req>>::Response;
    type Error = BoxError;
    type Future =
        <Composed<S, Classifier, RetryAfterHook, CloneRequestHook> as Service<Req>>::Future;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

/// One optional piece of the stack: the layered service when configured, the inner service
/// unchanged (its error boxed) when not.
///
/// Unlike `tower::util::Either`, the two sides may have different error types: the
/// layered side returns [`BoxError`], and the bare side's error is boxed on the way out.
///
/// ```
/// use resilience_layers::stack::Maybe;
/// use tower::{ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let bare = service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) });
/// let svc: Maybe<tower::util::BoxService<u8, u8, resilience_layers::BoxError>, _> = Maybe::Off(bare);
/// assert_eq!(svc.oneshot(3).await.unwrap(), 3);
/// # });
/// ```
#[derive(Debug, Clone)]
pub enum Maybe<On, Off> {
    /// The piece is configured: its service.
    On(On),
    /// The piece is not configured: the inner service.
    Off(Off),
}

impl<On, Off, Req> Service<Req> for Maybe<On, Off>
where
    On: Service<Req, Error = BoxError>,
    Off: Service<Req, Response = On::Response>,
    Off::Error: Into<BoxError>,
{
    type Response = On::Response;
    type Error = BoxError;
    type Future = MaybeFuture<On::Future, Off::Future>;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Maybe::On(s) => s.poll_ready(cx),
            Maybe::Off(s) => s.poll_ready(cx).map_err(Into::into),
        }
    }

    // Always inlined so the inner future is built in place: otherwise each level copies the
    // whole (hundreds of bytes) future into its own, which measured as most of the cost of
    // a stack with every piece off.
    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Maybe::On(s) => MaybeFuture::On {
                future: s.call(req),
            },
            Maybe::Off(s) => MaybeFuture::Off {
                future: s.call(req),
            },
        }
    }
}

pin_project! {
    /// The future of [`Maybe`].
    #[project = MaybeProj]
    #[derive(Debug)]
    #[allow(missing_docs)] // pin-project-lite takes no docs on variant fields
    pub enum MaybeFuture<On, Off> {
        /// The configured piece's future.
        On { #[pin] future: On },
        /// The inner service's future.
        Off { #[pin] future: Off },
    }
}

impl<On, Off, T, E> Future for MaybeFuture<On, Off>
where
    On: Future<Output = Result<T, BoxError>>,
    Off: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            MaybeProj::On { future } => future.poll(cx),
            MaybeProj::Off { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_full_paths() {
        let cases: &[(&str, &str)] = &[
            ("[retry]\nmax_attempts = 0", "retry.max_attempts"),
            (
                "[retry.backoff]\nmultiplier = 0.5",
                "retry.backoff.multiplier",
            ),
            ("[retry.budget]\nttl = \"10ms\"", "retry.budget.ttl"),
            (
                "[circuit_breaker]\nwindow = { kind = \"count\", size = 0 }",
                "circuit_breaker.window.size",
            ),
            ("[bulkhead]\nmax_concurrent = 0", "bulkhead.max_concurrent"),
            ("[rate_limit]\npermits = 0", "rate_limit.permits"),
            ("[cache]\nmax_entries = 0", "cache.max_entries"),
            ("[cache]\nttl = \"0s\"", "cache.ttl"),
            (
                "[cache]\nmax_entries = 10\nmax_bytes = 5",
                "cache.max_bytes",
            ),
            ("[rate_limit]\nburst = 0", "rate_limit.burst"),
            ("deadline = \"0s\"", "deadline"),
            ("[hedge]\npercentile = 100.0", "hedge.percentile"),
            (
                "[hedge]\ndelay = \"10ms\"\npercentile = 90.0",
                "hedge.percentile",
            ),
            ("[hedge]\nmax_hedges = 0", "hedge.max_hedges"),
            (
                "[retry]\n[hedge]\nbudget = { retry_ratio = 0.5 }",
                "hedge.budget",
            ),
            ("attempt_timeout = \"0s\"", "attempt_timeout"),
            ("[fault]\nerror_rate = 1.5", "fault.error_rate"),
            ("[fault]\nerror_rate = -0.1", "fault.error_rate"),
            (
                "deadline = \"1s\"\nattempt_timeout = \"2s\"",
                "attempt_timeout",
            ),
            (
                "[circuit_breaker]\nfailure_rate_threshold = 0.5",
                "circuit_breaker.failure_rate_threshold",
            ),
        ];
        for (toml_text, field) in cases {
            let config: StackConfig = toml::from_str(toml_text).unwrap();
            let err = config.clone().into_layer("t").unwrap_err();
            assert_eq!(err.field(), *field, "{toml_text}");
            assert_eq!(config.validate().unwrap_err().field(), *field);
        }
    }

    #[test]
    fn the_footguns_of_other_libraries_are_caught() {
        // A fraction for a percentage: refused, with the percentage to write instead.
        let config: StackConfig =
            toml::from_str("[circuit_breaker]\nfailure_rate_threshold = 0.5").unwrap();
        let err = config.into_layer("t").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `circuit_breaker.failure_rate_threshold`: 0.5 means 0.5 %, not a \
             fraction: this is a percentage in [1, 100]; write 50 for 50 %"
        );
        // The retry budget can be turned off from TOML.
        let config: StackConfig = toml::from_str("[retry]\nbudget = false").unwrap();
        let layer = config.into_layer("t").unwrap();
        assert_eq!(layer.retry().unwrap().config().budget, None);
        // A duration without a unit shows the format, and where it is.
        let err = toml::from_str::<StackConfig>("[retry.backoff]\nbase = \"100\"").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("expected a duration such as \"250ms\" or \"2s\""),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");
    }

    /// `[fault]` sits innermost: its latency is cut by the attempt timeout, its errors are
    /// what the breaker records and retry retries; and it follows a reconfigure.
    #[tokio::test(start_paused = true)]
    async fn injected_faults_look_like_the_dependencys_own() {
        use tower::ServiceExt;

        let config: StackConfig = toml::from_str(
            "attempt_timeout = \"100ms\"\n\
             [fault]\nerror_rate = 1.0\n\
             [retry]\nmax_attempts = 3\nbudget = false\n\
             [circuit_breaker]\nminimum_calls = 3\nfailure_rate_threshold = 50",
        )
        .unwrap();
        let layer = config.clone().into_layer("faulty").unwrap();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let svc = layer.layer(tower::service_fn(move |_: ()| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Ok::<_, std::io::Error>(()) }
        }));
        // Every attempt fails with the injected error: retried, then the breaker opens.
        let err = svc.clone().oneshot(()).await.unwrap_err();
        assert!(matches!(
            crate::Error::from_boxed(err),
            crate::Error::InjectedFault(_)
        ));
        let snapshot = layer.snapshot();
        assert_eq!(snapshot.faults[0].injected_errors_total, 3);
        assert_eq!(
            snapshot.breakers[0].state,
            crate::circuit_breaker::CircuitState::Open
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 0);

        // Latency instead of errors, live: the attempt timeout cuts it.
        let slow = StackConfig {
            fault: Some(FaultConfig {
                latency: Duration::from_secs(1),
                error_rate: 0.0,
            }),
            ..config
        };
        layer.reconfigure(slow.clone()).unwrap();
        assert_eq!(layer.config().fault, slow.fault);
        layer.circuit_breaker().unwrap().reset();
        let err = svc.oneshot(()).await.unwrap_err();
        assert!(matches!(
            crate::Error::from_boxed(err),
            crate::Error::Timeout(_)
        ));
        assert_eq!(layer.snapshot().timeouts[0].timeouts_total, 3);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(toml::from_str::<StackConfig>("retries = 3").is_err());
        assert!(toml::from_str::<StackConfig>("[retry]\nmax_attempt = 3").is_err());
    }

    #[test]
    fn toml_and_json_round_trip() {
        let config = StackConfig {
            cache: Some(CacheConfig::default()),
            rate_limit: Some(RateLimitConfig::default()),
            fallback: Some(FallbackConfig::on([
                crate::fallback::FallbackOutcome::CircuitOpen,
                crate::fallback::FallbackOutcome::Failure,
            ])),
            bulkhead: Some(BulkheadConfig::default()),
            deadline: Some(Duration::from_millis(1500)),
            retry: Some(RetryConfig::default()),
            hedge: Some(HedgeConfig::default()),
            circuit_breaker: Some(CircuitBreakerConfig::default()),
            attempt_timeout: Some(Duration::from_millis(300)),
            fault: Some(FaultConfig {
                latency: Duration::from_millis(20),
                error_rate: 0.25,
            }),
        };
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains("deadline = \"1s 500ms\""), "{text}");
        assert_eq!(toml::from_str::<StackConfig>(&text).unwrap(), config);
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<StackConfig>(&json).unwrap(), config);

        let empty = StackConfig::default();
        assert_eq!(toml::to_string(&empty).unwrap(), "");
        assert_eq!(toml::from_str::<StackConfig>("").unwrap(), empty);
    }
}

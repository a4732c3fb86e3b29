//! The whole stack as a `reqwest_middleware::Middleware`.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::{Extensions, StatusCode, header};
use metrics::Counter;
use reqwest::{Request, Response, ResponseBuilderExt, Url};
use reqwest_middleware::{Middleware, Next};
use tokio::time::Instant;

use super::{
    HttpClassifier, HttpFailureClass, PROBLEM_JSON,
    classify::{answers_our_budget, classify_middleware_error, outcome_of},
    is_retry_safe, next_delay,
    registry::HostBreakers,
    retry_after, set_deadline_header,
};
use crate::{
    bulkhead::{BulkheadHandle, BulkheadLayer},
    circuit_breaker::CircuitBreakerHandle,
    config::ConfigError,
    deadline::{Deadline, current_deadline, deadline_exceeded, timeouts_counter},
    error::BoxError,
    rate_limit::{RateLimitHandle, RateLimitLayer},
    retry::RetryHandle,
    stack::{StackConfig, StackSnapshot},
    timeout::future::attempt_timed_out,
};

/// Runs the resilience stack around every call of a `reqwest_middleware` client:
///
/// **rate limiter → bulkhead → deadline → retry → per-host circuit breaker → attempt timeout →
/// request**
///
/// the same order, for the same reasons, as [`ResilienceLayer`](crate::stack::ResilienceLayer):
///
/// - the **bulkhead** bounds whole logical requests, retries included;
/// - the **deadline** (the configured one, or an earlier one inherited from
///   [`current_deadline`], for example set by [`AcceptDeadlineLayer`](super::AcceptDeadlineLayer)
///   on the request being served) bounds attempts and backoff sleeps, and is sent downstream
///   on every attempt in [`DEADLINE_HEADER`](super::DEADLINE_HEADER);
/// - **retry** follows [`HttpClassifier`] (`5xx`, `408`, `429`, timeouts and connection
///   errors), only for requests safe to repeat ([`is_retry_safe`]: idempotent methods, or
///   `POST`/`PATCH` with an `Idempotency-Key`, sent unchanged), only for requests whose body
///   can be cloned, within the retry budget, with exponential backoff raised to the upstream's
///   `Retry-After` ([`next_delay`]: one past the cap or the deadline gives up at once);
/// - a **circuit breaker per upstream `host:port`** (named `<name>@<host>:<port>`), held in a
///   bounded registry that evicts idle entries, so one failing host does not cut off a healthy
///   one; an open circuit fails the request at once and is never retried;
/// - the **attempt timeout** sits inside the breaker, so a hung attempt counts as a failure.
///
/// A failure of the caller's *own* deadline says nothing about the upstream: the deadline
/// running out, or a `504` that answers the budget this attempt sent (the whole budget used,
/// or a `urn:resilience:deadline-exceeded` problem: refused as too short) ends the request with
/// `DeadlineExceeded`; the breaker records it as neither failure nor success (a half-open probe
/// slot is given back) and retry does not repeat it. A `504` for any other reason while budget
/// was left is the upstream's failure.
///
/// Any piece missing from the [`StackConfig`] is not applied.
///
/// # Errors
///
/// The upstream's own answers (any status) come back as `Ok(response)`, and the transport's
/// errors as `reqwest_middleware::Error::Reqwest`, untouched. What the stack adds comes back
/// as `reqwest_middleware::Error::Middleware` wrapping a [`crate::Error`]; get it with
/// [`rejection`](super::rejection) or [`into_error`](super::into_error) and `match` it
/// (`CircuitOpen`, `HalfOpenFull`, `BulkheadFull`, `Timeout`, `DeadlineExceeded`).
///
/// # Example
///
/// ```
/// use resilience_layers::{http::ResilienceMiddleware, stack::StackConfig};
///
/// let config: StackConfig = toml::from_str(r#"
///     deadline = "2s"
///     attempt_timeout = "500ms"
///     [retry]
///     max_attempts = 3
///     [circuit_breaker]
/// "#).unwrap();
/// let resilience = ResilienceMiddleware::from_config("user-service", &config).unwrap();
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(resilience.clone())
///     .build();
/// // Keep `resilience` to report its state (for `GET /resilience`, health checks).
/// assert!(resilience.snapshot().breakers.is_empty()); // created per host on first use
/// # let _ = client;
/// ```
#[derive(Debug, Clone)]
pub struct ResilienceMiddleware {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    rate_limit: Option<RateLimitHandle>,
    bulkhead: Option<BulkheadHandle>,
    deadline: Option<Duration>,
    retry: Option<RetryHandle>,
    breakers: Option<HostBreakers>,
    attempt_timeout: Option<Duration>,
    max_retry_after: Duration,
    attempt_timeouts: Counter,
    deadline_timeouts: Counter,
}

/// Builds a [`ResilienceMiddleware`] with settings beyond the [`StackConfig`].
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::{http::ResilienceMiddleware, stack::StackConfig};
///
/// let resilience = ResilienceMiddleware::builder("users", StackConfig::default())
///     .max_hosts(16)
///     .idle_timeout(Duration::from_secs(120))
///     .max_retry_after(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// # let _ = resilience;
/// ```
#[derive(Debug, Clone)]
pub struct ResilienceMiddlewareBuilder {
    name: Arc<str>,
    config: StackConfig,
    max_hosts: usize,
    idle_timeout: Duration,
    max_retry_after: Duration,
}

impl ResilienceMiddlewareBuilder {
    /// Most upstream hosts with a breaker at once (default 64).
    #[must_use]
    pub fn max_hosts(mut self, n: usize) -> Self {
        self.max_hosts = n;
        self
    }

    /// A host's breaker unused this long may be evicted to make room (default 10 minutes).
    #[must_use]
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// The longest `Retry-After` the client will wait; one longer gives up at once
    /// (default: the backoff's `max`, or 30 s without retry).
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Validates the configuration and builds the middleware.
    pub fn build(self) -> Result<ResilienceMiddleware, ConfigError> {
        let Self {
            name,
            config,
            max_hosts,
            idle_timeout,
            max_retry_after,
        } = self;
        config.validate()?;
        let rate_limit = match config.rate_limit {
            Some(c) => Some(
                RateLimitLayer::new(name.clone(), c)
                    .map_err(|e| e.within("rate_limit"))?
                    .handle(),
            ),
            None => None,
        };
        let bulkhead = match config.bulkhead {
            Some(c) => Some(
                BulkheadLayer::new(name.clone(), c)
                    .map_err(|e| e.within("bulkhead"))?
                    .handle(),
            ),
            None => None,
        };
        let retry = match config.retry {
            Some(c) => Some(RetryHandle::new(name.clone(), c).map_err(|e| e.within("retry"))?),
            None => None,
        };
        let breakers = config
            .circuit_breaker
            .map(|c| HostBreakers::new(name.clone(), c, max_hosts, idle_timeout));
        Ok(ResilienceMiddleware {
            shared: Arc::new(Shared {
                rate_limit,
                bulkhead,
                deadline: config.deadline,
                retry,
                breakers,
                attempt_timeout: config.attempt_timeout,
                max_retry_after,
                attempt_timeouts: timeouts_counter(&name, "attempt"),
                deadline_timeouts: timeouts_counter(&name, "deadline"),
            }),
        })
    }
}

impl ResilienceMiddleware {
    /// The middleware for `config`, with default registry settings; `name` labels its
    /// bulkhead, retry and metrics, and prefixes its breakers' names.
    pub fn from_config(
        name: impl Into<Arc<str>>,
        config: &StackConfig,
    ) -> Result<Self, ConfigError> {
        Self::builder(name, config.clone()).build()
    }

    /// A builder, for the host registry's bounds and the `Retry-After` cap.
    pub fn builder(name: impl Into<Arc<str>>, config: StackConfig) -> ResilienceMiddlewareBuilder {
        let max_retry_after = config
            .retry
            .as_ref()
            .map_or(Duration::from_secs(30), |r| r.backoff.max);
        ResilienceMiddlewareBuilder {
            name: name.into(),
            config,
            max_hosts: 64,
            idle_timeout: Duration::from_secs(600),
            max_retry_after,
        }
    }

    /// Registers the breaker for `url`'s host up front and keeps it (never evicted), so
    /// snapshots and health checks list the upstream before the first call. `None` when no
    /// breaker is configured or the URL has no host.
    pub fn add_upstream(&self, url: &Url) -> Option<CircuitBreakerHandle> {
        self.shared.breakers.as_ref()?.pin(&authority(url)?)
    }

    /// The breakers held right now, by `host:port`.
    pub fn breakers(&self) -> Vec<(String, CircuitBreakerHandle)> {
        self.shared
            .breakers
            .as_ref()
            .map_or_else(Vec::new, HostBreakers::handles)
    }

    /// Snapshots of the bulkhead, the retry and every host's breaker.
    pub fn snapshot(&self) -> StackSnapshot {
        let s = &*self.shared;
        StackSnapshot {
            breakers: s
                .breakers
                .as_ref()
                .map_or_else(Vec::new, HostBreakers::snapshots),
            bulkheads: s.bulkhead.iter().map(BulkheadHandle::snapshot).collect(),
            retries: s.retry.iter().map(RetryHandle::snapshot).collect(),
            rate_limits: s.rate_limit.iter().map(RateLimitHandle::snapshot).collect(),
        }
    }

    async fn run(
        &self,
        req: Request,
        ext: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let s = &*self.shared;
        if let Some(rate_limit) = &s.rate_limit {
            rate_limit.acquire().await.map_err(reject)?;
        }
        let _permit = match &s.bulkhead {
            Some(bulkhead) => Some(bulkhead.acquire().await.map_err(reject)?),
            None => None,
        };
        let inherited = current_deadline();
        let deadline = match s.deadline {
            Some(budget) => Some(Deadline::after(budget).min_with(inherited)),
            None => inherited,
        };
        let Some(deadline) = deadline else {
            return self.attempts(req, ext, next, None).await;
        };
        let given = deadline.remaining();
        if !given.is_zero() {
            let bound = Some(Bound { deadline, given });
            let attempts = deadline.scope(self.attempts(req, ext, next, bound));
            if let Ok(result) = tokio::time::timeout_at(deadline.instant(), attempts).await {
                return result;
            }
        }
        Err(reject(deadline_exceeded(given, &s.deadline_timeouts)))
    }

    async fn attempts(
        &self,
        mut req: Request,
        ext: &mut Extensions,
        next: Next<'_>,
        bound: Option<Bound>,
    ) -> reqwest_middleware::Result<Response> {
        let s = &*self.shared;
        let breaker = match (&s.breakers, authority(req.url())) {
            (Some(breakers), Some(host)) => breakers.get(&host),
            _ => None,
        };
        let retry = s.retry.as_ref();
        if let Some(retry) = retry {
            retry.record_request();
        }
        let max_attempts = match retry {
            Some(retry) if is_retry_safe(req.method(), req.headers()) => retry.max_attempts(),
            _ => 1,
        };
        let mut backoff = None;
        let mut attempt = 1;
        loop {
            // Keep a copy for the next attempt; a streaming body cannot be cloned, and then
            // this attempt is the last.
            let spare = if attempt < max_attempts {
                req.try_clone()
            } else {
                None
            };
            let sent = bound.map(|b| {
                let sent = set_deadline_header(req.headers_mut(), b.deadline.remaining());
                (sent, b.given)
            });
            let permit = match &breaker {
                Some(breaker) => Some(breaker.try_acquire().map_err(reject)?),
                None => None,
            };
            let result = self.attempt(req, ext, &next, sent).await;
            let class = match &result {
                Ok(res) => HttpClassifier::classify_status(res.status()),
                Err(e) => Err(classify_middleware_error(e)),
            };
            if let Some(permit) = permit {
                permit.record(outcome_of(&class));
            }
            let (Err(class), Some(again), Some(retry)) = (class, spare, retry) else {
                return result;
            };
            if !class.is_retryable() {
                return result;
            }
            let asked = match &result {
                Ok(res) => retry_after(res.status(), res.headers(), SystemTime::now()),
                Err(_) => None,
            };
            let step = backoff
                .get_or_insert_with(|| retry.backoff())
                .next()
                .unwrap_or(retry.config().backoff.max);
            let left = bound.map(|b| b.deadline.remaining());
            let Some(delay) = next_delay(step, asked, s.max_retry_after, left) else {
                give_up(
                    retry,
                    attempt,
                    &class,
                    "retry-after or backoff past the deadline or cap",
                );
                return result;
            };
            if !retry.withdraw() {
                give_up(retry, attempt, &class, "retry budget exhausted");
                return result;
            }
            attempt += 1;
            retry.record_retry(attempt, delay);
            // Free the connection before sleeping.
            drop(result);
            tokio::time::sleep(delay).await;
            req = again;
        }
    }

    /// One attempt, bounded by the attempt timeout. `sent` is the budget written into the
    /// deadline header (and the whole request's budget): an answer that is about that budget
    /// ([`answers_our_budget`]) becomes [`DeadlineExceeded`](crate::error::DeadlineExceeded),
    /// which the breaker ignores and retry does not repeat.
    async fn attempt(
        &self,
        req: Request,
        ext: &mut Extensions,
        next: &Next<'_>,
        sent: Option<(Duration, Duration)>,
    ) -> reqwest_middleware::Result<Response> {
        let started = Instant::now();
        let call = async {
            let res = next.clone().run(req, ext).await?;
            match sent {
                Some((sent, given)) if res.status() == StatusCode::GATEWAY_TIMEOUT => {
                    let (res, problem_type) = read_problem_type(res).await;
                    if answers_our_budget(
                        res.status(),
                        sent,
                        started.elapsed(),
                        problem_type.as_deref(),
                    ) {
                        return Err(reject(deadline_exceeded(
                            given,
                            &self.shared.deadline_timeouts,
                        )));
                    }
                    Ok(res)
                }
                _ => Ok(res),
            }
        };
        let Some(timeout) = self.shared.attempt_timeout else {
            return call.await;
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(reject(attempt_timed_out(
                timeout,
                &self.shared.attempt_timeouts,
            ))),
        }
    }
}

/// The deadline a request runs under, and the budget it was given at the start.
#[derive(Debug, Clone, Copy)]
struct Bound {
    deadline: Deadline,
    given: Duration,
}

/// The largest problem body read to learn its `type`; problem bodies are a few hundred bytes.
const MAX_PROBLEM_BODY: u64 = 4 * 1024;

/// The problem `type` of `res`, when it is a small `application/problem+json` body with a
/// length, and the response rebuilt around the bytes read (same status, headers, URL and
/// extensions), so the caller still gets the whole answer.
async fn read_problem_type(mut res: Response) -> (Response, Option<String>) {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if !is_problem || res.content_length().is_none_or(|n| n > MAX_PROBLEM_BODY) {
        return (res, None);
    }
    let status = res.status();
    let version = res.version();
    let url = res.url().clone();
    let headers = std::mem::take(res.headers_mut());
    let extensions = std::mem::take(res.extensions_mut());
    let body = res.bytes().await.unwrap_or_default();
    let kind = serde_json::from_slice::<ProblemType>(&body)
        .ok()
        .map(|p| p.kind);
    let mut rebuilt = http::Response::builder()
        .status(status)
        .version(version)
        .url(url)
        .body(body)
        .expect("status and version came from a response");
    *rebuilt.headers_mut() = headers;
    rebuilt.extensions_mut().extend(extensions);
    (Response::from(rebuilt), kind)
}

/// The one member of a problem body that [`read_problem_type`] needs.
#[derive(serde::Deserialize)]
struct ProblemType {
    #[serde(rename = "type")]
    kind: String,
}

fn give_up(retry: &RetryHandle, attempts: u32, class: &HttpFailureClass, reason: &'static str) {
    tracing::debug!(target: "resilience", name = %retry.name(), attempts, failure = %class, reason, "giving up");
}

/// `host:port` of a URL, the key of its breaker.
fn authority(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    match url.port_or_known_default() {
        Some(port) => Some(format!("{host}:{port}")),
        None => Some(host.to_owned()),
    }
}

fn reject(err: BoxError) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(crate::Error::from_boxed(err))
}

/// The error this crate's stack added to a `reqwest_middleware` call, if it was one: an open
/// circuit, a full bulkhead, an attempt timeout, the deadline.
///
/// `None` for the transport's own errors (`reqwest_middleware::Error::Reqwest`) and for other
/// middlewares' errors. (The upstream's `5xx` answers are not errors at all: after the
/// retries they come back as `Ok(response)`.)
///
/// ```
/// use resilience_layers::{Error, http::rejection};
///
/// fn status_for(err: &reqwest_middleware::Error) -> u16 {
///     match rejection(err) {
///         Some(Error::CircuitOpen(_) | Error::HalfOpenFull(_) | Error::BulkheadFull(_)) => 503,
///         Some(Error::Timeout(_) | Error::DeadlineExceeded(_)) => 504,
///         _ => 502,
///     }
/// }
/// # let _ = status_for;
/// ```
pub fn rejection(err: &reqwest_middleware::Error) -> Option<&crate::Error> {
    match err {
        reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<crate::Error>(),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

/// Turns a `reqwest_middleware` error into this crate's [`crate::Error`]: the stack's
/// rejections keep their variant, anything else (a `reqwest::Error`, another middleware's
/// error) becomes [`crate::Error::Inner`]. The result works with
/// [`Problem::from_error`](super::Problem::from_error) to answer the caller.
///
/// ```
/// use resilience_layers::{Error, http::into_error};
///
/// async fn fetch(client: &reqwest_middleware::ClientWithMiddleware) -> Result<String, Error> {
///     let res = client.get("http://127.0.0.1:5001/users/1").send().await.map_err(into_error)?;
///     res.text().await.map_err(|e| Error::Inner(e.into()))
/// }
/// # let _ = fetch;
/// ```
pub fn into_error(err: reqwest_middleware::Error) -> crate::Error {
    match err {
        reqwest_middleware::Error::Middleware(e) => match e.downcast::<crate::Error>() {
            Ok(e) => e,
            Err(e) => crate::Error::Inner(e.into()),
        },
        reqwest_middleware::Error::Reqwest(e) => crate::Error::Inner(Box::new(e)),
    }
}

// Written out by hand (what `#[async_trait]` would generate) to avoid the proc-macro
// dependency; the future is boxed once per request, as the trait requires.
impl Middleware for ResilienceMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Pin<Box<dyn Future<Output = reqwest_middleware::Result<Response>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.run(req, extensions, next))
    }
}

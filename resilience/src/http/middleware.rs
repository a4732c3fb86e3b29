//! The whole stack as a `reqwest_middleware::Middleware`: the same tower stack as
//! [`ResilienceLayer::for_http`](crate::stack::ResilienceLayer::for_http), around a service
//! that sends each attempt through the rest of the middleware chain.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use http::{Extensions, StatusCode, header};
use reqwest::{Request, Response, ResponseBuilderExt, Url};
use reqwest_middleware::{Middleware, Next};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::{
    HttpClassifier, HttpRetryAfter, IdempotentRequests, PROBLEM_JSON, classify::answers_our_budget,
    set_deadline_header,
};
use crate::{
    circuit_breaker::CircuitBreakerHandle,
    config::ConfigError,
    deadline::{TimeoutCounter, current_deadline, deadline_exceeded, timeouts_counter},
    error::BoxError,
    keyed::{KeyedConfig, KeyedStacks},
    stack::{ResilienceLayer, StackConfig, StackSnapshot},
};

/// Runs the resilience stack around every call of a `reqwest_middleware` client:
///
/// **bulkhead → deadline → retry → per-host circuit breaker → attempt timeout → request**
///
/// It is not a copy of the stack: every request runs through the one tower stack that
/// [`ResilienceLayer::for_http`](crate::stack::ResilienceLayer::for_http) builds, around a
/// service that sends each attempt on through the rest of the middleware chain (`Next`). So
/// every decision (what is retried, after how long, when to give up, what the breaker counts)
/// is made in one place for the tower client and this one, in the same order, for the same
/// reasons:
///
/// - the **bulkhead** bounds whole logical requests, retries included;
/// - the **deadline** (the configured one, or an earlier one inherited from
///   [`current_deadline`], for example set by [`AcceptDeadlineLayer`](super::AcceptDeadlineLayer)
///   on the request being served) bounds attempts and backoff sleeps, and what is left of it is
///   sent downstream on every attempt in [`DEADLINE_HEADER`](super::DEADLINE_HEADER);
/// - **retry** ([`RetryPolicy`](crate::retry::RetryPolicy)) follows [`HttpClassifier`]:
///   `5xx`, `408`, `429`, timeouts and connection errors are retried, except `501` and `505`,
///   which count against the breaker but would only get the same answer again. Only requests
///   safe to repeat are retried ([`IdempotentRequests`]: idempotent methods, or `POST`/`PATCH`
///   with an `Idempotency-Key`, sent unchanged), and only when the body can be cloned (a
///   stream is sent once). The delay is the backoff's, raised to the upstream's `Retry-After`;
///   a `Retry-After` above the cap ([`max_retry_after`](ResilienceMiddlewareBuilder::max_retry_after),
///   default the backoff's `max`) or a delay that would end past the deadline gives up at
///   once, as does an empty retry budget. When the backoff ends, retrying ends (the
///   configured exponential backoff never does; `max_attempts` bounds it);
/// - a **circuit breaker per upstream `host:port`** (named `<name>@<host>:<port>`), or per
///   whatever key [`key_by`](ResilienceMiddlewareBuilder::key_by) chooses, is put in the
///   breaker's place of the stack for each request, so one failing host does not cut off a
///   healthy one; an open circuit fails the request at once and is never retried. The
///   breakers live in a [keyed](crate::keyed) registry: bounded
///   ([`max_hosts`](ResilienceMiddlewareBuilder::max_hosts), least recently used evicted when
///   full), idle hosts evicted, an evicted host's name and metric series freed;
/// - the **attempt timeout** sits inside the breaker, so a hung attempt counts as a failure.
///
/// A failure of the caller's *own* deadline says nothing about the upstream: the deadline
/// running out, or a `504` that answers the budget this attempt sent (the whole budget used,
/// or a `urn:resilience:deadline-exceeded` problem: refused as too short) ends the request with
/// `DeadlineExceeded`; the breaker records it as neither failure nor success (a half-open probe
/// slot is given back) and retry does not repeat it. A `504` for any other reason while budget
/// was left is the upstream's failure.
///
/// Any piece missing from the [`StackConfig`] is not applied. Each attempt starts from the
/// caller's request extensions as they were; the middlewares after this one see a copy, and
/// the caller gets back the extensions of the last attempt.
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

/// The stack the middleware runs: `for_http()`'s.
type HttpStack = ResilienceLayer<HttpClassifier, HttpRetryAfter, IdempotentRequests>;

struct Shared {
    /// Everything but the breaker, which comes per key from `breakers`.
    stack: HttpStack,
    /// Per key, a stack holding only the breaker.
    breakers: Option<KeyedStacks<String, HttpClassifier, HttpRetryAfter, IdempotentRequests>>,
    key_by: KeyBy,
    /// For a `504` that answers the budget an attempt was sent.
    deadline_timeouts: TimeoutCounter,
}

/// Which breaker a request meets: its key, or `None` for no breaker.
type KeyBy = Arc<dyn Fn(&Request) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stack", &self.stack)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
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
#[derive(Clone)]
pub struct ResilienceMiddlewareBuilder {
    name: Arc<str>,
    config: StackConfig,
    keyed: KeyedConfig,
    key_by: KeyBy,
    max_retry_after: Option<Duration>,
}

impl std::fmt::Debug for ResilienceMiddlewareBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilienceMiddlewareBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("keyed", &self.keyed)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}

impl ResilienceMiddlewareBuilder {
    /// Most keys (upstream hosts) with a breaker at once (default 64); a new one evicts the
    /// least recently used when full. Zero is a [`ConfigError`] on `keyed.max_keys`.
    #[must_use]
    pub fn max_hosts(mut self, n: usize) -> Self {
        self.keyed.max_keys = n;
        self
    }

    /// A key's breaker unused this long is evicted (default 10 minutes).
    #[must_use]
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.keyed.idle = idle;
        self
    }

    /// Chooses which breaker a request meets: requests with the same key share one, named
    /// `<name>@<key>`; `None` sends the request without a breaker. The default is the URL's
    /// `host:port`.
    ///
    /// ```
    /// use resilience_layers::{http::ResilienceMiddleware, stack::StackConfig};
    ///
    /// // One breaker per host and first path segment: `/payments` failing on an API gateway
    /// // does not cut off `/users` behind the same host.
    /// let resilience = ResilienceMiddleware::builder("gateway", toml::from_str("[circuit_breaker]").unwrap())
    ///     .key_by(|req: &reqwest::Request| {
    ///         let url = req.url();
    ///         let first = url.path_segments()?.next().unwrap_or("");
    ///         Some(format!("{}/{first}", url.host_str()?))
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let url = "http://10.0.0.7/payments/42".parse().unwrap();
    /// assert_eq!(resilience.add_upstream(&url).unwrap().name(), "gateway@10.0.0.7/payments");
    /// ```
    #[must_use]
    pub fn key_by(
        mut self,
        key: impl Fn(&Request) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key_by = Arc::new(key);
        self
    }

    /// The longest `Retry-After` the client will wait; one longer gives up at once
    /// (default: the backoff's `max`, as for
    /// [`for_http`](crate::stack::ResilienceLayer::for_http)).
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = Some(max);
        self
    }

    /// Validates the configuration and builds the middleware.
    pub fn build(self) -> Result<ResilienceMiddleware, ConfigError> {
        let Self {
            name,
            mut config,
            keyed,
            key_by,
            max_retry_after,
        } = self;
        config.validate()?;
        let breakers = match config.circuit_breaker.take() {
            Some(breaker) => {
                let only_breaker = StackConfig {
                    circuit_breaker: Some(breaker),
                    ..StackConfig::default()
                };
                let stacks = KeyedStacks::new(name.clone(), only_breaker, keyed)?;
                let (classifier, retry_after, clone_request) = (
                    HttpClassifier::new(),
                    HttpRetryAfter::new(),
                    IdempotentRequests,
                );
                Some(stacks.rehooked(classifier, retry_after, clone_request))
            }
            None => None,
        };
        let mut stack = config.into_layer(name.clone())?.for_http();
        if let Some(max) = max_retry_after {
            stack = stack.with_retry_after(HttpRetryAfter::new().with_max(max));
        }
        Ok(ResilienceMiddleware {
            shared: Arc::new(Shared {
                stack,
                breakers,
                key_by,
                deadline_timeouts: TimeoutCounter::new(timeouts_counter(&name, "deadline")),
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
        ResilienceMiddlewareBuilder {
            name: name.into(),
            config,
            keyed: KeyedConfig {
                max_keys: 64,
                idle: Duration::from_secs(600),
            },
            key_by: Arc::new(|req: &Request| authority(req.url())),
            max_retry_after: None,
        }
    }

    /// The configuration in force: the one the middleware was built from, with every
    /// [`reconfigure`](Self::reconfigure) since applied.
    pub fn config(&self) -> StackConfig {
        let s = &*self.shared;
        StackConfig {
            circuit_breaker: s.breakers.as_ref().and_then(|b| b.config().circuit_breaker),
            ..s.stack.config()
        }
    }

    /// Replaces the configuration of the running middleware, as
    /// [`ResilienceLayer::reconfigure`] does for a tower stack (the same checks, the same
    /// field-path errors, nothing applied if anything is refused); every key's breaker takes
    /// the new breaker settings, keeping its state, and breakers for new keys are built with
    /// them.
    ///
    /// ```
    /// use resilience_layers::{http::ResilienceMiddleware, stack::StackConfig};
    ///
    /// let config: StackConfig = toml::from_str("[retry]\nmax_attempts = 3\n[circuit_breaker]").unwrap();
    /// let resilience = ResilienceMiddleware::from_config("users", &config).unwrap();
    /// let fewer: StackConfig = toml::from_str("[retry]\nmax_attempts = 2\n[circuit_breaker]\nminimum_calls = 5").unwrap();
    /// resilience.reconfigure(&fewer).unwrap();
    /// assert_eq!(resilience.config(), fewer);
    /// let no_breaker: StackConfig = toml::from_str("[retry]\nmax_attempts = 2").unwrap();
    /// assert_eq!(resilience.reconfigure(&no_breaker).unwrap_err().field(), "circuit_breaker");
    /// ```
    pub fn reconfigure(&self, config: &StackConfig) -> Result<(), ConfigError> {
        config.validate()?;
        crate::stack::check_live_change(&self.config(), config)?;
        let s = &*self.shared;
        let mut rest = config.clone();
        let breaker = rest.circuit_breaker.take();
        s.stack.reconfigure(rest)?;
        if let (Some(breakers), Some(breaker)) = (&s.breakers, breaker) {
            breakers.reconfigure(&StackConfig {
                circuit_breaker: Some(breaker),
                ..StackConfig::default()
            })?;
        }
        Ok(())
    }

    /// Registers the breaker for `url` (its key, as a `GET` of it) up front and keeps it
    /// (never evicted), so snapshots and health checks list the upstream before the first
    /// call. `None` when no breaker is configured or the URL has no key.
    pub fn add_upstream(&self, url: &Url) -> Option<CircuitBreakerHandle> {
        let s = &*self.shared;
        let key = (s.key_by)(&Request::new(http::Method::GET, url.clone()))?;
        s.breakers.as_ref()?.pin(key).circuit_breaker()
    }

    /// The breakers held right now, by key (`host:port` unless [`key_by`] says otherwise).
    ///
    /// [`key_by`]: ResilienceMiddlewareBuilder::key_by
    pub fn breakers(&self) -> Vec<(String, CircuitBreakerHandle)> {
        let Some(breakers) = &self.shared.breakers else {
            return Vec::new();
        };
        breakers
            .entries()
            .into_iter()
            .filter_map(|(key, stack)| Some((key, stack.circuit_breaker()?)))
            .collect()
    }

    /// Snapshots of the bulkhead, the retry and every key's breaker.
    pub fn snapshot(&self) -> StackSnapshot {
        let s = &*self.shared;
        StackSnapshot {
            breakers: s
                .breakers
                .as_ref()
                .map_or_else(Vec::new, |b| b.snapshot().breakers),
            ..s.stack.snapshot()
        }
    }

    async fn run(
        &self,
        req: Request,
        ext: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let s = &*self.shared;
        let breaker = match (&s.breakers, (s.key_by)(&req)) {
            (Some(breakers), Some(key)) => {
                breakers.with(&key, |stack| stack.circuit_breaker_layer().cloned())
            }
            _ => None,
        };
        let last = Arc::new(Mutex::new(None));
        let send = SendThrough {
            next,
            extensions: ext.clone(),
            last: last.clone(),
            deadline_timeouts: s.deadline_timeouts.clone(),
        };
        let result = s
            .stack
            .layer_with_breaker(send, breaker.as_ref())
            .oneshot(req)
            .await;
        if let Some(extensions) = last.lock().unwrap_or_else(PoisonError::into_inner).take() {
            *ext = extensions;
        }
        result.map_err(|err| match err.downcast::<reqwest_middleware::Error>() {
            // The transport's (or a later middleware's) own error, as it was.
            Ok(err) => *err,
            Err(err) => reject(err),
        })
    }
}

/// The innermost service of the middleware's stack: sends one attempt on through the rest of
/// the middleware chain.
///
/// It writes what is left of the deadline in force into [`DEADLINE_HEADER`](super::DEADLINE_HEADER)
/// (the same as [`PropagateDeadline`](super::PropagateDeadline) on a tower client), and turns a
/// `504` that answers that budget into [`DeadlineExceeded`](crate::error::DeadlineExceeded).
/// Cloned once per request by tower's `Retry`; each attempt runs on its own copy of the
/// caller's extensions, and leaves them in `last` for the caller.
#[derive(Clone)]
struct SendThrough<'a> {
    next: Next<'a>,
    extensions: Extensions,
    last: Arc<Mutex<Option<Extensions>>>,
    deadline_timeouts: TimeoutCounter,
}

type Attempt<'a> = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send + 'a>>;

impl<'a> Service<Request> for SendThrough<'a> {
    type Response = Response;
    type Error = BoxError;
    type Future = Attempt<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Attempt<'a> {
        let sent = current_deadline().map(|deadline| {
            (
                set_deadline_header(req.headers_mut(), deadline.remaining()),
                Instant::now(),
            )
        });
        let next = self.next.clone();
        let mut extensions = self.extensions.clone();
        let last = self.last.clone();
        let deadline_timeouts = self.deadline_timeouts.clone();
        Box::pin(async move {
            let result = next.run(req, &mut extensions).await;
            *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(extensions);
            let res = result?;
            match sent {
                Some((sent, started)) if res.status() == StatusCode::GATEWAY_TIMEOUT => {
                    let (res, problem_type) = read_problem_type(res).await;
                    if answers_our_budget(
                        res.status(),
                        sent,
                        started.elapsed(),
                        problem_type.as_deref(),
                    ) {
                        return Err(deadline_exceeded(sent, &deadline_timeouts));
                    }
                    Ok(res)
                }
                _ => Ok(res),
            }
        })
    }
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
/// [`ProblemDetails::from_error`](super::ProblemDetails::from_error) to answer the caller.
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

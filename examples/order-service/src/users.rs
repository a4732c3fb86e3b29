//! The user-service client: reqwest through the library's resilience middleware, balanced
//! round robin over every configured instance, failing over past instances that cannot answer.
//!
//! Each instance gets its own circuit breaker (the middleware keeps one per `host:port`), so a
//! dead instance is ejected by its open circuit (a rejection costs no network round trip) and
//! the request moves on to the next instance; only when no instance can answer is the user
//! "unavailable", with the soonest time a breaker will let a probe through as `Retry-After`.
//!
//! Two failures are not user-service's and end the lookup at once, without failover: the
//! caller's deadline running out ([`LookupError::DeadlineExceeded`]: ours, or user-service
//! answering that the budget we sent was too short), and order-service's own limit on
//! concurrent lookups ([`LookupError::Overloaded`]: the bulkhead, shared by every instance).
//!
//! In front of all that, a cache of positive verifications (`USER_CACHE`, on by default;
//! [`resilience_layers::cache`]), keyed by user id: a user found in the last `ttl` is found
//! again with no round trip (and concurrent lookups of one user make one), and while no
//! instance can answer (or the deadline or the bulkhead refuse the lookup) a user found in
//! the last `ttl + stale_if_error` is still taken as existing. Only `Found` is stored: a
//! `NotFound` is passed on, never stored, and drops a stored `Found` for that user, so a user
//! that does not exist is never served as existing.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use reqwest::{StatusCode, Url};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use resilience_layers::{
    BoxError, Classify, Error, Outcome,
    cache::{CacheConfig, CacheHandle, CacheLayer, CacheSnapshot},
    circuit_breaker::CircuitState,
    deps::tower::Service,
    fallback::{Fallback, FallbackConfig, FallbackLayer, FallbackOutcome, Fault, FromFallback},
    http::{ResilienceMiddleware, into_error, parse_retry_after},
    stack::{StackConfig, StackSnapshot},
};
use service_kit::context::{RequestContext, outgoing};
use tower::{ServiceExt, util::BoxCloneSyncService};
use tracing::Instrument;

/// What user-service said about a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The user exists.
    Found,
    /// No such user (a definite answer from an instance).
    NotFound,
}

/// Why a lookup got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No instance could answer.
    Unavailable(Unavailable),
    /// The caller's deadline ran out (or was too short for user-service to start).
    DeadlineExceeded,
    /// order-service's own limit on concurrent lookups is reached; user-service was not called.
    Overloaded {
        /// The limit.
        max_concurrent: usize,
    },
}

impl std::error::Error for LookupError {}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Unavailable(u) => f.write_str(&u.reason),
            LookupError::DeadlineExceeded => f.write_str("the caller's deadline ran out"),
            LookupError::Overloaded { max_concurrent } => {
                write!(
                    f,
                    "the limit of {max_concurrent} concurrent lookups is reached"
                )
            }
        }
    }
}

/// No instance could answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// When a retry may succeed.
    pub retry_after: Duration,
    /// Why, per instance (logged, and summarised in the 503's detail).
    pub reason: String,
}

/// One upstream's circuit, for readiness.
#[derive(Debug, Clone)]
pub struct Circuit {
    /// The breaker's name (`user-service@127.0.0.1:5001`).
    pub name: String,
    /// Its state.
    pub state: CircuitState,
}

/// The client; clones share the connection pool, the breakers, the round-robin position and
/// the cache.
#[derive(Debug, Clone)]
pub struct UserClient {
    client: ClientWithMiddleware,
    resilience: Option<ResilienceMiddleware>,
    instances: Arc<[Url]>,
    next: Arc<AtomicUsize>,
    cache: Option<UserCache>,
}

type CachedLookup = BoxCloneSyncService<(i64, Option<RequestContext>), Lookup, BoxError>;

/// The lookup through the cache, and the cache's handle.
#[derive(Clone)]
struct UserCache {
    lookup: CachedLookup,
    handle: CacheHandle<i64, Lookup>,
}

impl std::fmt::Debug for UserCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCache")
            .field("handle", &self.handle)
            .finish()
    }
}

/// The cache's name: its metrics' `name` label.
pub const USER_CACHE: &str = "user-service-users";

/// What the user cache stores and answers stale: `Found` is stored; `NotFound` is neither
/// stored nor a failure; every lookup error is a failure (answered stale when it can be).
fn classify_lookup(result: Result<&Lookup, &BoxError>) -> Outcome {
    match result {
        Ok(Lookup::Found) => Outcome::Success,
        Ok(Lookup::NotFound) => Outcome::Ignored,
        Err(_) => Outcome::Failure,
    }
}

/// The middleware's name: breakers are `user-service@host:port`.
pub const UPSTREAM: &str = "user-service";

impl UserClient {
    /// A client for `instances`, through the stack built from `stack` (or through no stack at
    /// all when `stack` is `None`: the `RESILIENCE=off` baseline).
    pub fn new(instances: Vec<Url>, stack: Option<&StackConfig>) -> Result<Self, String> {
        if instances.is_empty() {
            return Err("at least one user-service URL is needed".into());
        }
        let base = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let (client, resilience) = match stack {
            Some(config) => {
                let mw = ResilienceMiddleware::from_config(UPSTREAM, config)
                    .map_err(|e| format!("resilience stack: {e}"))?;
                for url in &instances {
                    mw.add_upstream(url);
                }
                (ClientBuilder::new(base).with(mw.clone()).build(), Some(mw))
            }
            None => (ClientBuilder::new(base).build(), None),
        };
        Ok(Self {
            client,
            resilience,
            instances: instances.into(),
            next: Arc::new(AtomicUsize::new(0)),
            cache: None,
        })
    }

    /// Puts the lookups through a cache built from `config` (none when `None`).
    pub fn with_cache(mut self, config: Option<CacheConfig>) -> Result<Self, String> {
        let Some(config) = config else {
            self.cache = None;
            return Ok(self);
        };
        let layer = CacheLayer::new(USER_CACHE, config, |req: &(i64, Option<RequestContext>)| {
            Some(req.0)
        })
        .map_err(|e| format!("user cache: {e}"))?
        .with_classifier(classify_lookup);
        let handle = layer.handle();
        let bare = Self {
            cache: None,
            ..self.clone()
        };
        let lookup = tower::ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(
                move |(user_id, ctx): (i64, Option<RequestContext>)| {
                    let bare = bare.clone();
                    async move { bare.lookup_upstream(user_id, ctx.as_ref()).await }
                },
            ));
        self.cache = Some(UserCache {
            lookup: BoxCloneSyncService::new(lookup),
            handle,
        });
        Ok(self)
    }

    /// The user cache's figures; `None` with `USER_CACHE=off`.
    pub fn cache_snapshot(&self) -> Option<CacheSnapshot> {
        self.cache.as_ref().map(|c| c.handle.snapshot())
    }

    /// Whether `user_id` exists: from the cache when it knows (fresh, or stale while
    /// user-service cannot answer), else from user-service.
    pub async fn lookup(
        &self,
        user_id: i64,
        ctx: Option<&RequestContext>,
    ) -> Result<Lookup, LookupError> {
        let Some(cache) = &self.cache else {
            return self.lookup_upstream(user_id, ctx).await;
        };
        let result = cache.lookup.clone().oneshot((user_id, ctx.cloned())).await;
        match result {
            Ok(Lookup::NotFound) => {
                cache.handle.invalidate(&user_id).await;
                Ok(Lookup::NotFound)
            }
            Ok(found) => Ok(found),
            Err(e) => Err(match e.downcast::<LookupError>() {
                Ok(e) => *e,
                Err(e) => LookupError::Unavailable(Unavailable {
                    retry_after: Duration::from_secs(1),
                    reason: e.to_string(),
                }),
            }),
        }
    }

    /// Asks the instances, round robin with failover, whether `user_id` exists.
    async fn lookup_upstream(
        &self,
        user_id: i64,
        ctx: Option<&RequestContext>,
    ) -> Result<Lookup, LookupError> {
        let n = self.instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut soonest: Option<Duration> = None;
        let mut reasons = Vec::new();
        for i in 0..n {
            let base = &self.instances[(start + i) % n];
            let Ok(url) = base.join(&format!("users/{user_id}")) else {
                reasons.push(format!("{base}: bad URL"));
                continue;
            };
            // The client span covers every attempt the middleware makes (its retries and
            // rejections are the span's events) and names itself in `traceparent`.
            let call = outgoing(ctx, "GET /users/{id}", "GET", url.as_str());
            let mut req = self.client.get(url);
            for (name, value) in &call.headers {
                req = req.header(*name, value);
            }
            let sent = req.send().instrument(call.span.clone()).await;
            match &sent {
                Ok(resp) => call.answered(resp.status().as_u16()),
                Err(e) => call.failed(&e.to_string()),
            }
            let (wait, reason) = match sent {
                Ok(resp) if resp.status() == StatusCode::OK => return Ok(Lookup::Found),
                Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {
                    // A 404 from the fallback (wrong URL) is not an answer about the user.
                    let body = resp.text().await.unwrap_or_default();
                    if !body.contains("urn:problem:no-route") {
                        return Ok(Lookup::NotFound);
                    }
                    (None, "no /users route there".to_owned())
                }
                Ok(resp) => {
                    let wait = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    (wait, format!("answered {}", resp.status()))
                }
                Err(e) => {
                    let err = into_error(e);
                    let wait = match &err {
                        Error::CircuitOpen(open) => Some(open.retry_after()),
                        Error::DeadlineExceeded(_) => return Err(LookupError::DeadlineExceeded),
                        Error::BulkheadFull(full) => {
                            return Err(LookupError::Overloaded {
                                max_concurrent: full.max_concurrent(),
                            });
                        }
                        _ => None,
                    };
                    (wait, describe(&err))
                }
            };
            if let Some(w) = wait {
                soonest = Some(soonest.map_or(w, |s| s.min(w)));
            }
            reasons.push(format!("{base}: {reason}"));
        }
        Err(LookupError::Unavailable(Unavailable {
            retry_after: soonest.unwrap_or(Duration::from_secs(1)),
            reason: reasons.join("; "),
        }))
    }

    /// The stack's configuration in force; `None` with the stack off.
    pub fn stack_config(&self) -> Option<StackConfig> {
        self.resilience.as_ref().map(ResilienceMiddleware::config)
    }

    /// Replaces the running stack's configuration, keeping its state (see
    /// [`ResilienceMiddleware::reconfigure`]); the error names the field.
    pub fn reconfigure(&self, config: &StackConfig) -> Result<(), String> {
        match &self.resilience {
            Some(mw) => mw.reconfigure(config).map_err(|e| e.to_string()),
            None => Err("the resilience stack is off".to_owned()),
        }
    }

    /// Snapshots for `GET /resilience` (empty with the stack off).
    pub fn snapshot(&self) -> StackSnapshot {
        self.resilience
            .as_ref()
            .map(ResilienceMiddleware::snapshot)
            .unwrap_or_default()
    }

    /// Each instance's circuit (empty with the stack off).
    pub fn circuits(&self) -> Vec<Circuit> {
        let Some(mw) = &self.resilience else {
            return Vec::new();
        };
        let mut v: Vec<Circuit> = mw
            .breakers()
            .into_iter()
            .map(|(_, h)| Circuit {
                name: h.name().to_owned(),
                state: h.state(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

fn describe(err: &Error) -> String {
    match err {
        // The root cause: "connection refused" says more than "error sending request".
        Error::Inner(e) => resilience_layers::error::chain(&**e)
            .last()
            .unwrap_or(&**e)
            .to_string(),
        other => other.to_string(),
    }
}

/// What the order handler learns about a user: user-service's answer, or, in degraded mode
/// (`DEGRADED_MODE=accept`), the fallback's "not verified yet" when no instance could answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCheck {
    /// user-service answered.
    Answered(Lookup),
    /// No instance could answer and degraded mode accepted the order unverified (the
    /// library's fallback served this answer).
    Unverified(FromFallback),
}

/// [`UserClient::lookup`] as a tower service, so the library's layers can wrap it: the
/// request is the user id and the caller's context.
#[derive(Debug, Clone)]
pub struct LookupService {
    client: UserClient,
}

impl LookupService {
    /// Looks users up through `client`.
    pub fn new(client: UserClient) -> Self {
        Self { client }
    }
}

impl Service<(i64, Option<RequestContext>)> for LookupService {
    type Response = UserCheck;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UserCheck, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (user_id, ctx): (i64, Option<RequestContext>)) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            match client.lookup(user_id, ctx.as_ref()).await {
                Ok(lookup) => Ok(UserCheck::Answered(lookup)),
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// The degraded mode: the library's fallback around the lookup.
pub type DegradedLookup = FallbackLayer<AcceptUnverified, OnlyUnavailableFails>;

/// The degraded mode as an instance of the fallback layer (`resilience_fallback_total{name =
/// "user-lookup", outcome = "failure"}` counts orders accepted unverified): only an
/// unavailable user-service is a `failure` it answers. The caller's deadline running out and
/// order-service's own bulkhead are not about user-service, so they are `Ignored` and pass
/// through: neither becomes a pending order.
pub fn degraded_lookup() -> DegradedLookup {
    FallbackLayer::new(
        "user-lookup",
        FallbackConfig::on([FallbackOutcome::Failure]),
        AcceptUnverified,
    )
    .expect("a valid fallback config")
    .with_classifier(OnlyUnavailableFails)
}

/// The degraded mode's answer: the user is not verified yet (the order goes `pending`).
#[derive(Debug, Clone, Copy)]
pub struct AcceptUnverified;

impl Fallback<UserCheck> for AcceptUnverified {
    type Future = std::future::Ready<Result<UserCheck, BoxError>>;

    fn fallback(&self, fault: Fault<UserCheck>) -> Self::Future {
        if let Some(e) = fault.error() {
            tracing::warn!(reason = %e, "user-service unavailable; accepting order as pending");
        }
        std::future::ready(Ok(UserCheck::Unverified(FromFallback {
            outcome: fault.outcome(),
        })))
    }
}

/// The degraded mode's classifier: only [`LookupError::Unavailable`] is a failure.
#[derive(Debug, Clone, Copy)]
pub struct OnlyUnavailableFails;

impl Classify<UserCheck, BoxError> for OnlyUnavailableFails {
    fn classify(&self, result: Result<&UserCheck, &BoxError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => match e.downcast_ref::<LookupError>() {
                Some(LookupError::Unavailable(_)) => Outcome::Failure,
                _ => Outcome::Ignored,
            },
        }
    }
}

//! The cases of the peers benchmark: the per-call overhead of `resilience`'s layers next to
//! `tower-resilience`, `failsafe` and `tower`, on one bare service.
//!
//! Every case wraps the same `service_fn(|x: u64| async move { Ok(x) })`, drives it by hand
//! (`poll_ready`, `call`, poll the future) with `Waker::noop()` on the benchmark's own threads,
//! inside the context of one tokio runtime (time enabled; its single worker only drives the
//! timer wheel). Futures that return `Pending` (an async mutex held by the other thread, a
//! timer) are polled again until ready, so nothing parks.
//!
//! Users: `benches/peers.rs` (criterion, run by `run.sh`) and `src/bin/profile.rs` (one case
//! in a loop, for callgrind).

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, service_fn};

/// The bare service every case wraps.
pub fn bare()
-> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Clone + Send + 'static {
    service_fn(|x: u64| async move { Ok::<u64, Infallible>(x) })
}

/// One call through `svc`: wait for readiness, call, poll the response to completion.
/// `Pending` is polled again at once (the noop waker never wakes anyone).
#[inline(always)]
pub fn drive<S: Service<u64>>(
    svc: &mut S,
    cx: &mut Context<'_>,
    req: u64,
) -> Result<S::Response, S::Error> {
    loop {
        match svc.poll_ready(cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    let mut fut = pin!(svc.call(req));
    loop {
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => return r,
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

/// One worker drives the timer wheel in the background: a peer that parks a caller on a
/// timer (tower-resilience's open breaker does under contention) gets woken as in production
/// instead of hanging the benchmark. Nothing else ever runs on it.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("runtime")
}

/// Which outcome a case expects: keeps a case honest (a breaker that should be open is open).
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Every call succeeds.
    Ok,
    /// Every call is rejected.
    Err,
}

pub fn check<T, E>(r: &Result<T, E>, expect: Expect, case: &str) {
    match (r, expect) {
        (Ok(_), Expect::Ok) | (Err(_), Expect::Err) => {}
        _ => panic!(
            "{case}: unexpected outcome (expected {})",
            match expect {
                Expect::Ok => "success",
                Expect::Err => "rejection",
            }
        ),
    }
}

// ---------------------------------------------------------------- peers

/// failsafe is not a tower middleware: its documented use is `breaker.call(future)`.
/// This adapter does exactly that around the bare service (no boxing, no extra state).
#[derive(Clone)]
pub struct Failsafe<S, B> {
    inner: S,
    breaker: B,
}

impl<S, B> Service<u64> for Failsafe<S, B>
where
    S: Service<u64>,
    B: failsafe::futures::CircuitBreaker,
{
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<
        S::Future,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    fn call(&mut self, req: u64) -> Self::Future {
        self.breaker.call(self.inner.call(req))
    }
}

/// A service that is not `Clone` (tower's `RateLimit` and `Hedge`), made cloneable the only
/// way it can be without a `Buffer`: each clone is a fresh one from `make`. So each thread of
/// a 2-thread case has its own limiter or histogram: nothing is shared between the threads.
pub struct PerClone<S, F> {
    svc: S,
    make: F,
}

impl<S, F: Fn() -> S> PerClone<S, F> {
    pub fn new(make: F) -> Self {
        Self { svc: make(), make }
    }
}

impl<S, F: Fn() -> S + Clone> Clone for PerClone<S, F> {
    fn clone(&self) -> Self {
        Self::new(self.make.clone())
    }
}

impl<S: Service<u64>, F> Service<u64> for PerClone<S, F> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.svc.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: u64) -> Self::Future {
        self.svc.call(req)
    }
}

/// governor used bare, as a user without a rate-limit layer would: one `check()` per call
/// around the service (a refusal is an error at once), the limiter shared by every clone.
#[derive(Clone)]
pub struct Governed<S, C: governor::clock::Clock = governor::clock::DefaultClock> {
    inner: S,
    limiter: Arc<
        governor::RateLimiter<
            governor::state::NotKeyed,
            governor::state::InMemoryState,
            C,
            governor::middleware::NoOpMiddleware<C::Instant>,
        >,
    >,
}

#[derive(Debug)]
pub enum Limited<E> {
    RateLimited,
    Inner(E),
}

impl<S: Service<u64>, C: governor::clock::Clock> Service<u64> for Governed<S, C> {
    type Response = S::Response;
    type Error = Limited<S::Error>;
    type Future = futures_util::future::Either<
        futures_util::future::MapErr<S::Future, fn(S::Error) -> Limited<S::Error>>,
        futures_util::future::Ready<Result<S::Response, Limited<S::Error>>>,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Limited::Inner)
    }

    #[inline]
    fn call(&mut self, req: u64) -> Self::Future {
        use futures_util::future::{Either, TryFutureExt, ready};
        match self.limiter.check() {
            Ok(()) => Either::Left(
                self.inner
                    .call(req)
                    .map_err(Limited::Inner as fn(S::Error) -> Limited<S::Error>),
            ),
            Err(_) => Either::Right(ready(Err(Limited::RateLimited))),
        }
    }
}

/// Permits per second for every rate-limit case: far above what a core can call, so nothing
/// is rejected during a run (ours and governor's GCRA: burst = permits).
pub const RATE: u32 = 1_000_000_000;

/// Answers in the cache cases: the hit path cycles through this many keys.
pub const HOT_KEYS: u64 = 64;

/// A key no call has used before, for the miss path: a per-thread counter, each thread
/// starting at its own base, so 2 threads never share a key (the driver's requests are the
/// same sequence on both threads).
pub fn fresh_key() -> u64 {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    static BASE: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NEXT: Cell<u64> = Cell::new(BASE.fetch_add(1 << 40, Ordering::Relaxed));
    }
    NEXT.with(|n| {
        let k = n.get();
        n.set(k + 1);
        k
    })
}

/// The peers' side of each case.
pub mod peer {
    use super::*;
    use tower_resilience::bulkhead::BulkheadLayer;
    use tower_resilience::circuitbreaker::{
        CircuitBreakerHandle, CircuitBreakerLayer, DefaultClassifier,
    };
    use tower_resilience::retry::{RetryBudgetBuilder, RetryLayer};
    use tower_resilience::timelimiter::TimeLimiterLayer;

    /// Count-based window of 100 calls, 50 % failure rate, 20 calls before it judges: the
    /// same as ours.
    pub fn tr_breaker() -> (
        CircuitBreakerLayer<DefaultClassifier>,
        CircuitBreakerHandle<DefaultClassifier>,
    ) {
        CircuitBreakerLayer::builder()
            .name("bench")
            .failure_rate_threshold(0.5)
            .sliding_window_type(tower_resilience::circuitbreaker::SlidingWindowType::CountBased)
            .sliding_window_size(100)
            .minimum_number_of_calls(20)
            .wait_duration_in_open(Duration::from_secs(3600))
            .build_with_handle()
            .expect("tower-resilience breaker")
    }

    pub fn tr_breaker_closed() -> impl Service<u64> + Clone + Send {
        ServiceBuilder::new().layer(tr_breaker().0).service(bare())
    }

    pub fn tr_breaker_open(rt: &Runtime) -> impl Service<u64> + Clone + Send {
        let (layer, handle) = tr_breaker();
        let svc = ServiceBuilder::new().layer(layer).service(bare());
        rt.block_on(handle.force_open());
        svc
    }

    /// failsafe's default policy: success rate over a 30 s time window, or 5 consecutive failures.
    pub fn failsafe_default() -> impl Service<u64> + Clone + Send {
        Failsafe {
            inner: bare(),
            breaker: failsafe::Config::new().build(),
        }
    }

    /// failsafe's cheapest policy: a consecutive-failure counter.
    fn failsafe_consecutive_breaker() -> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync
    {
        let backoff = failsafe::backoff::constant(Duration::from_secs(3600));
        failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(5, backoff))
            .build()
    }

    pub fn failsafe_consecutive() -> impl Service<u64> + Clone + Send {
        Failsafe {
            inner: bare(),
            breaker: failsafe_consecutive_breaker(),
        }
    }

    /// Open by five recorded failures (failsafe has no forced-open switch).
    pub fn failsafe_open() -> impl Service<u64> + Clone + Send {
        let backoff = failsafe::backoff::constant(Duration::from_secs(3600));
        let breaker = failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(5, backoff))
            .build();
        for _ in 0..5 {
            breaker.on_error();
        }
        assert!(!breaker.is_call_permitted());
        Failsafe {
            inner: bare(),
            breaker,
        }
    }

    pub fn tr_bulkhead() -> impl Service<u64> + Clone + Send {
        let layer = BulkheadLayer::builder()
            .name("bench")
            .max_concurrent_calls(64)
            .max_wait_duration(Duration::from_millis(50))
            .build()
            .expect("tower-resilience bulkhead");
        ServiceBuilder::new().layer(layer).service(bare())
    }

    pub fn tower_concurrency_limit() -> impl Service<u64> + Clone + Send {
        ServiceBuilder::new().concurrency_limit(64).service(bare())
    }

    pub fn tr_timelimiter() -> impl Service<u64> + Clone + Send {
        let layer = TimeLimiterLayer::builder()
            .timeout_duration(Duration::from_secs(1))
            .name("bench")
            .build();
        ServiceBuilder::new().layer(layer).service(bare())
    }

    pub fn tower_timeout() -> impl Service<u64> + Clone + Send {
        ServiceBuilder::new()
            .timeout(Duration::from_secs(1))
            .service(bare())
    }

    /// A retry budget, as ours has by default: a token bucket (a success deposits a token).
    fn tr_budget() -> Arc<dyn tower_resilience::retry::RetryBudget> {
        RetryBudgetBuilder::new()
            .token_bucket()
            .tokens_per_second(10.0)
            .max_tokens(100)
            .build()
            .expect("budget")
    }

    pub fn tr_retry() -> impl Service<u64> + Clone + Send {
        let layer = RetryLayer::<u64, u64, Infallible>::builder()
            .name("bench")
            .max_attempts(3)
            .exponential_backoff(Duration::from_millis(10))
            .budget(tr_budget())
            .build();
        ServiceBuilder::new().layer(layer).service(bare())
    }

    /// tower's retry with the policy a user writes: 3 attempts, withdraw from a `TpsBudget`.
    #[derive(Clone)]
    pub struct Attempts {
        left: usize,
        budget: Arc<tower::retry::budget::TpsBudget>,
    }

    impl<E> tower::retry::Policy<u64, u64, E> for Attempts {
        type Future = tokio::time::Sleep;

        fn retry(&mut self, _req: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
            use tower::retry::budget::Budget;
            match result {
                Ok(_) => {
                    self.budget.deposit();
                    None
                }
                Err(_) if self.left > 1 && self.budget.withdraw() => {
                    self.left -= 1;
                    Some(tokio::time::sleep(Duration::from_millis(10)))
                }
                Err(_) => None,
            }
        }

        fn clone_request(&mut self, req: &u64) -> Option<u64> {
            Some(*req)
        }
    }

    pub fn tower_retry() -> impl Service<u64> + Clone + Send {
        let budget = Arc::new(tower::retry::budget::TpsBudget::new(
            Duration::from_secs(10),
            10,
            0.2,
        ));
        ServiceBuilder::new()
            .retry(Attempts { left: 3, budget })
            .service(bare())
    }

    // ------------------------------------------------------------ newer layers

    /// tower-resilience's rate limiter in rejection mode (timeout 0), its default fixed
    /// window: `RATE` permits per second.
    pub fn tr_rate_limiter() -> impl Service<u64> + Clone + Send {
        let layer = tower_resilience::ratelimiter::RateLimiterLayer::builder()
            .name("bench")
            .limit_for_period(RATE as usize)
            .refresh_period(Duration::from_secs(1))
            .timeout_duration(Duration::ZERO)
            .build()
            .expect("tower-resilience rate limiter");
        ServiceBuilder::new().layer(layer).service(bare())
    }

    /// governor's GCRA with its default clock (quanta), `RATE` per second, burst `RATE`.
    pub fn governor_bare() -> impl Service<u64> + Clone + Send {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::new(RATE).expect("rate"));
        Governed {
            inner: bare(),
            limiter: Arc::new(governor::RateLimiter::direct(quota)),
        }
    }

    /// The same on the standard library's monotonic clock (`std::time::Instant`, what tokio's
    /// `Instant` reads outside a paused runtime): isolates the cost of the clock.
    pub fn governor_std_clock() -> impl Service<u64> + Clone + Send {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::new(RATE).expect("rate"));
        Governed {
            inner: bare(),
            limiter: Arc::new(governor::RateLimiter::direct_with_clock(
                quota,
                governor::clock::MonotonicClock,
            )),
        }
    }

    /// tower's `RateLimit` (`RATE` per second): waits in `poll_ready` when the period's
    /// budget is spent, never rejects; one per clone (it is not `Clone`). Built in the
    /// runtime's context (its timer is made with it); clones are made in the case's.
    pub fn tower_rate_limit(rt: &Runtime) -> impl Service<u64> + Clone + Send {
        let _guard = rt.enter();
        PerClone::new(|| {
            ServiceBuilder::new()
                .rate_limit(u64::from(RATE), Duration::from_secs(1))
                .service(bare())
        })
    }

    /// tower-resilience's hedge: one hedge (2 attempts) after a fixed 1 s.
    pub fn tr_hedge() -> impl Service<u64> + Clone + Send {
        let layer = tower_resilience::hedge::HedgeLayer::builder()
            .name("bench")
            .delay(Duration::from_secs(1))
            .max_hedged_attempts(2)
            .build();
        ServiceBuilder::new().layer(layer).service(bare())
    }

    /// tower's hedge policy: every request may be sent twice.
    #[derive(Clone)]
    pub struct HedgeAll;

    impl tower::hedge::Policy<u64> for HedgeAll {
        fn clone_request(&self, req: &u64) -> Option<u64> {
            Some(*req)
        }

        fn can_retry(&self, _req: &u64) -> bool {
            true
        }
    }

    /// tower's hedge (percentile only): after the 95th percentile, once 100 latencies are
    /// recorded, histogram rotated every 10 s; one per clone (it is not `Clone`).
    pub fn tower_hedge(rt: &Runtime) -> impl Service<u64> + Clone + Send {
        let _guard = rt.enter();
        PerClone::new(|| {
            tower::hedge::Hedge::new::<u64>(bare(), HedgeAll, 100, 0.95, Duration::from_secs(10))
        })
    }

    /// tower-resilience's cache: 10,000 entries, 60 s TTL (LRU behind a mutex).
    fn tr_cache_layer<K: std::hash::Hash + Eq + Clone + Send + 'static>(
        key: fn(&u64) -> K,
        ttl: Duration,
    ) -> tower_resilience::cache::CacheLayer<u64, K> {
        tower_resilience::cache::CacheLayer::builder()
            .name("bench")
            .max_size(10_000)
            .ttl(ttl)
            .key_extractor(key)
            .build()
            .expect("tower-resilience cache")
    }

    /// Every call after the first `HOT_KEYS` a hit.
    pub fn tr_cache_hit() -> impl Service<u64> + Clone + Send {
        ServiceBuilder::new()
            .layer(tr_cache_layer(
                |r: &u64| *r % HOT_KEYS,
                Duration::from_secs(60),
            ))
            .service(bare())
    }

    /// Every call a new key: a miss, a call and a store (evicting once full).
    pub fn tr_cache_miss() -> impl Service<u64> + Clone + Send {
        ServiceBuilder::new()
            .layer(tr_cache_layer(
                |_: &u64| fresh_key(),
                Duration::from_secs(60),
            ))
            .service(bare())
    }

    /// tower-resilience's fallback with a value, on the success path.
    pub fn tr_fallback() -> impl Service<u64> + Clone + Send {
        let layer = tower_resilience::fallback::FallbackLayer::<u64, u64, Infallible>::value(0);
        ServiceBuilder::new().layer(layer).service(bare())
    }

    /// Bulkhead -> total time limit -> retry (token-bucket budget) -> breaker -> attempt time limit,
    /// the order DESIGN.md gives, in tower-resilience's own layers.
    pub fn tr_stack() -> impl Service<u64> + Clone + Send {
        let bulkhead = BulkheadLayer::builder()
            .name("bench")
            .max_concurrent_calls(64)
            .max_wait_duration(Duration::from_millis(50))
            .build()
            .expect("bulkhead");
        let total = TimeLimiterLayer::builder()
            .timeout_duration(Duration::from_secs(2))
            .name("total")
            .build();
        let attempt = TimeLimiterLayer::builder()
            .timeout_duration(Duration::from_secs(1))
            .name("attempt")
            .build();
        let inner = ServiceBuilder::new()
            .layer(tr_breaker().0)
            .layer(attempt)
            .service(bare());
        let retry = RetryLayer::builder()
            .name("bench")
            .max_attempts(3)
            .exponential_backoff(Duration::from_millis(10))
            .budget(tr_budget())
            .build();
        ServiceBuilder::new()
            .layer(bulkhead)
            .layer(total)
            .layer(retry)
            .service(inner)
    }
}

#[cfg(feature = "ours")]
pub mod ours;

/// Receives every case: `group` (what is measured), `name` (whose implementation).
pub trait Visit {
    /// One case: `svc` is fresh, in the state the case measures.
    fn case<S>(&mut self, group: &str, name: &str, expect: Expect, svc: S)
    where
        S: Service<u64> + Clone + Send;
}

/// Every case, in report order.
pub fn cases(rt: &Runtime, v: &mut impl Visit) {
    v.case("bare", "service_fn", Expect::Ok, bare());

    // Circuit breaker, closed (count window of 100), every call a success.
    #[cfg(feature = "ours")]
    v.case("breaker_closed", "ours", Expect::Ok, ours::breaker_closed());
    #[cfg(feature = "ours")]
    v.case(
        "breaker_closed",
        "ours_prometheus",
        Expect::Ok,
        ours::with_prometheus(ours::breaker_closed),
    );
    v.case(
        "breaker_closed",
        "tower_resilience",
        Expect::Ok,
        peer::tr_breaker_closed(),
    );
    v.case(
        "breaker_closed",
        "failsafe",
        Expect::Ok,
        peer::failsafe_default(),
    );
    v.case(
        "breaker_closed",
        "failsafe_consecutive",
        Expect::Ok,
        peer::failsafe_consecutive(),
    );

    // Circuit breaker, open: the rejection path.
    #[cfg(feature = "ours")]
    v.case("breaker_open", "ours", Expect::Err, ours::breaker_open());
    v.case(
        "breaker_open",
        "tower_resilience",
        Expect::Err,
        peer::tr_breaker_open(rt),
    );
    v.case(
        "breaker_open",
        "failsafe",
        Expect::Err,
        peer::failsafe_open(),
    );

    // Bulkhead with room: acquire and release a permit.
    #[cfg(feature = "ours")]
    v.case("bulkhead", "ours", Expect::Ok, ours::bulkhead());
    v.case(
        "bulkhead",
        "tower_resilience",
        Expect::Ok,
        peer::tr_bulkhead(),
    );
    v.case(
        "bulkhead",
        "tower_concurrency_limit",
        Expect::Ok,
        peer::tower_concurrency_limit(),
    );

    // Timeout that never fires.
    #[cfg(feature = "ours")]
    {
        v.case("timeout", "ours", Expect::Ok, ours::attempt_timeout());
        v.case("timeout", "ours_deadline", Expect::Ok, ours::deadline());
    }
    v.case(
        "timeout",
        "tower_resilience",
        Expect::Ok,
        peer::tr_timelimiter(),
    );
    v.case("timeout", "tower", Expect::Ok, peer::tower_timeout());

    // Retry, first attempt succeeds.
    #[cfg(feature = "ours")]
    v.case("retry", "ours", Expect::Ok, ours::retry());
    v.case("retry", "tower_resilience", Expect::Ok, peer::tr_retry());
    v.case("retry", "tower", Expect::Ok, peer::tower_retry());

    // The composed stack, success path.
    #[cfg(feature = "ours")]
    v.case("stack", "ours", Expect::Ok, ours::stack());
    #[cfg(feature = "ours")]
    v.case(
        "stack",
        "ours_prometheus",
        Expect::Ok,
        ours::with_prometheus(ours::stack),
    );
    v.case("stack", "tower_resilience", Expect::Ok, peer::tr_stack());

    // Rate limiter far below its limit (never rejects): take a permit per call.
    #[cfg(feature = "ours")]
    v.case("rate_limit", "ours", Expect::Ok, ours::rate_limit());
    v.case(
        "rate_limit",
        "tower_resilience",
        Expect::Ok,
        peer::tr_rate_limiter(),
    );
    v.case("rate_limit", "governor", Expect::Ok, peer::governor_bare());
    v.case(
        "rate_limit",
        "governor_std_clock",
        Expect::Ok,
        peer::governor_std_clock(),
    );
    v.case(
        "rate_limit",
        "tower",
        Expect::Ok,
        peer::tower_rate_limit(rt),
    );

    // Hedge that never fires: the bare service answers on the first poll.
    #[cfg(feature = "ours")]
    {
        v.case("hedge", "ours", Expect::Ok, ours::hedge());
        v.case(
            "hedge",
            "ours_percentile",
            Expect::Ok,
            ours::hedge_percentile(),
        );
    }
    v.case("hedge", "tower_resilience", Expect::Ok, peer::tr_hedge());
    v.case("hedge", "tower", Expect::Ok, peer::tower_hedge(rt));

    // Cache, fresh hit (64 keys, all stored after the first 64 calls).
    #[cfg(feature = "ours")]
    v.case("cache_hit", "ours", Expect::Ok, ours::cache_hit());
    v.case(
        "cache_hit",
        "tower_resilience",
        Expect::Ok,
        peer::tr_cache_hit(),
    );

    // Cache, miss: every call a new key, called and stored.
    #[cfg(feature = "ours")]
    v.case("cache_miss", "ours", Expect::Ok, ours::cache_miss());
    v.case(
        "cache_miss",
        "tower_resilience",
        Expect::Ok,
        peer::tr_cache_miss(),
    );

    // Fallback on the success path (nothing to answer).
    #[cfg(feature = "ours")]
    v.case("fallback", "ours", Expect::Ok, ours::fallback());
    v.case(
        "fallback",
        "tower_resilience",
        Expect::Ok,
        peer::tr_fallback(),
    );
}

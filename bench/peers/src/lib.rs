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
}

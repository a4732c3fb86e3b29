//! Hedging under a paused clock: when hedges go out, who wins, that losers are dropped, and
//! that hedges never multiply an outage (budget, open breaker, unsafe requests).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering::SeqCst},
    },
    time::Duration,
};

use resilience_layers::{
    BoxError, Error,
    circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer},
    hedge::{HedgeConfig, HedgeEvent, HedgeLayer},
    retry::BudgetConfig,
};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn, util::BoxCloneService};

const MS: Duration = Duration::from_millis(1);

/// Counts drops of the inner attempt futures that never completed.
struct DropGuard(Arc<AtomicU32>, bool);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, SeqCst);
        }
    }
}

/// A dependency that answers call `n` after `latencies[n]` (the last repeats), failing when
/// `fail` says so; it counts calls and the attempts dropped before they answered.
#[derive(Clone)]
struct Dependency {
    calls: Arc<AtomicU32>,
    cancelled: Arc<AtomicU32>,
    starts: Arc<Mutex<Vec<Instant>>>,
}

impl Dependency {
    fn new() -> Self {
        Self {
            calls: Arc::default(),
            cancelled: Arc::default(),
            starts: Arc::default(),
        }
    }

    fn service<Req: Send + 'static>(
        &self,
        latencies: Vec<Duration>,
        fail: bool,
    ) -> BoxCloneService<Req, u32, BoxError> {
        let dep = self.clone();
        let latencies = Arc::new(latencies);
        BoxCloneService::new(service_fn(move |_: Req| {
            let n = dep.calls.fetch_add(1, SeqCst);
            dep.starts.lock().unwrap().push(Instant::now());
            let latency = latencies[(n as usize).min(latencies.len() - 1)];
            let cancelled = dep.cancelled.clone();
            async move {
                let mut guard = DropGuard(cancelled, false);
                tokio::time::sleep(latency).await;
                guard.1 = true;
                if fail {
                    Err::<u32, BoxError>("down".into())
                } else {
                    Ok(n)
                }
            }
        }))
    }

    fn calls(&self) -> u32 {
        self.calls.load(SeqCst)
    }

    fn cancelled(&self) -> u32 {
        self.cancelled.load(SeqCst)
    }
}

fn fixed(delay: Duration) -> HedgeConfig {
    HedgeConfig {
        delay: Some(delay),
        percentile: None,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_hedged_and_the_loser_dropped() {
    let dep = Dependency::new();
    let layer = HedgeLayer::new("t", fixed(20 * MS)).unwrap();
    let mut events = layer.handle().subscribe();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(dep.service::<()>(vec![Duration::from_secs(1), 5 * MS], false));
    let start = Instant::now();
    let answer = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(answer, 1, "the hedge answered");
    assert_eq!(start.elapsed(), 25 * MS);
    assert_eq!(dep.calls(), 2);
    assert_eq!(dep.cancelled(), 1, "the slow first attempt was dropped");
    let s = layer.snapshot();
    assert_eq!((s.requests_total, s.sent_total, s.won_total), (1, 1, 1));
    assert!(matches!(
        events.recv().await.unwrap(),
        HedgeEvent::Sent { attempt: 2, .. }
    ));
    assert!(matches!(
        events.recv().await.unwrap(),
        HedgeEvent::Won { attempt: 2, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_sends_no_hedge() {
    let dep = Dependency::new();
    let layer = HedgeLayer::new("t", fixed(20 * MS)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(dep.service::<()>(vec![19 * MS], false));
    for _ in 0..5 {
        svc.ready().await.unwrap().call(()).await.unwrap();
    }
    assert_eq!(dep.calls(), 5);
    assert_eq!(layer.snapshot().sent_total, 0);
    assert_eq!(dep.cancelled(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_can_still_win_and_the_hedge_is_dropped() {
    let dep = Dependency::new();
    let layer = HedgeLayer::new("t", fixed(20 * MS)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(dep.service::<()>(vec![30 * MS, Duration::from_secs(1)], false));
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 0);
    assert_eq!(start.elapsed(), 30 * MS);
    assert_eq!(dep.cancelled(), 1, "the hedge was dropped");
    let s = layer.snapshot();
    assert_eq!((s.sent_total, s.won_total), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn max_hedges_spaced_by_the_delay() {
    let dep = Dependency::new();
    let config = HedgeConfig {
        max_hedges: 2,
        ..fixed(10 * MS)
    };
    let layer = HedgeLayer::new("t", config).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(dep.service::<()>(vec![Duration::from_secs(1)], false));
    let start = Instant::now();
    svc.ready().await.unwrap().call(()).await.unwrap();
    let starts: Vec<_> = dep
        .starts
        .lock()
        .unwrap()
        .iter()
        .map(|s| *s - start)
        .collect();
    assert_eq!(
        starts,
        [Duration::ZERO, 10 * MS, 20 * MS],
        "never a third hedge"
    );
    assert_eq!(dep.cancelled(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_hedge_does_not_win_and_all_failed_returns_a_failure() {
    let dep = Dependency::new();
    let layer = HedgeLayer::new("t", fixed(10 * MS)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(dep.service::<()>(vec![50 * MS, 5 * MS], true));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(err.to_string(), "down");
    // The hedge failed at 15 ms; the first attempt was still awaited.
    assert_eq!(start.elapsed(), 50 * MS);
    assert_eq!(layer.snapshot().won_total, 0);
}

#[tokio::test(start_paused = true)]
async fn never_more_hedges_than_the_budget_allows_with_the_dependency_down() {
    let dep = Dependency::new();
    let budget = BudgetConfig {
        ttl: Duration::from_secs(10),
        min_per_sec: 0,
        retry_ratio: 0.25,
    };
    let config = HedgeConfig {
        budget: Some(budget),
        max_hedges: 3,
        ..fixed(10 * MS)
    };
    let layer = HedgeLayer::new("t", config).unwrap();
    // Down: every attempt hangs 200 ms, then fails.
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(dep.service::<()>(vec![200 * MS], true));
    let requests = 200u32;
    let mut calls = Vec::new();
    for _ in 0..requests {
        calls.push(tokio::spawn(svc.clone().oneshot(())));
    }
    for call in calls {
        assert!(call.await.unwrap().is_err());
    }
    let s = layer.snapshot();
    let allowed = (f64::from(requests) * budget.retry_ratio) as u64;
    assert!(
        s.sent_total <= allowed,
        "{} hedges > {allowed}",
        s.sent_total
    );
    assert!(s.sent_total > 0);
    assert_eq!(u64::from(dep.calls()), u64::from(requests) + s.sent_total);
    // Without the budget, 3 hedges each: 600 more calls.
    assert!(s.budget_exhausted_total > 0);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_while_the_breaker_is_open() {
    let dep = Dependency::new();
    let breaker = CircuitBreakerLayer::new("t", CircuitBreakerConfig::default()).unwrap();
    let handle = resilience_layers::hedge::HedgeHandle::new("t", fixed(10 * MS))
        .unwrap()
        .with_breaker(breaker.handle());
    let layer = HedgeLayer::from_handle(handle);
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(dep.service::<()>(vec![50 * MS], false));
    breaker.handle().force_open();
    svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(dep.calls(), 1);
    assert_eq!(layer.snapshot().sent_total, 0);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_hedge_does_not_win_over_the_first_attempt_in_flight() {
    let dep = Dependency::new();
    let breaker = CircuitBreakerLayer::new("t", CircuitBreakerConfig::default()).unwrap();
    let layer = HedgeLayer::new("t", fixed(10 * MS)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(breaker.clone())
        .service(dep.service::<()>(vec![50 * MS], false));
    let call = tokio::spawn(svc.oneshot(()));
    tokio::time::advance(5 * MS).await;
    // The breaker opens while the first attempt is in flight: the hedge meets it.
    breaker.handle().force_open();
    let answer = call.await.unwrap();
    assert_eq!(
        answer.unwrap(),
        0,
        "the first attempt's answer, not the rejection"
    );
    assert_eq!(dep.calls(), 1);
    assert_eq!(layer.snapshot().won_total, 0);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_alone_is_returned_as_is() {
    let dep = Dependency::new();
    let breaker = CircuitBreakerLayer::new("t", CircuitBreakerConfig::default()).unwrap();
    breaker.handle().force_open();
    let layer = HedgeLayer::new("t", fixed(10 * MS)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .layer(breaker)
        .service(dep.service::<()>(vec![50 * MS], false));
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::CircuitOpen(_)));
    assert_eq!(dep.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_percentile_delay_waits_for_samples_then_follows_latency() {
    let dep = Dependency::new();
    let config = HedgeConfig {
        percentile: Some(90.0),
        min_samples: 20,
        ..Default::default()
    };
    let layer = HedgeLayer::new("t", config).unwrap();
    let mut latencies = vec![10 * MS; 20];
    latencies.push(Duration::from_secs(1)); // a slow one, hedged
    latencies.push(10 * MS);
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(dep.service::<()>(latencies, false));
    assert_eq!(layer.handle().delay(), None);
    for _ in 0..20 {
        svc.ready().await.unwrap().call(()).await.unwrap();
    }
    let delay = layer.handle().delay().unwrap();
    assert!((10 * MS..=13 * MS).contains(&delay), "{delay:?}");
    assert_eq!(
        layer.snapshot().sent_total,
        0,
        "nothing hedged while warming up"
    );
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 21);
    // The timer fires on the next millisecond tick after the delay.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= delay + 10 * MS && elapsed <= delay + 11 * MS,
        "{elapsed:?}"
    );
    assert_eq!(layer.snapshot().won_total, 1);
}

#[cfg(feature = "http")]
mod http {
    use super::*;
    use ::http::Request;
    use resilience_layers::http::IdempotentRequests;

    #[tokio::test(start_paused = true)]
    async fn no_hedge_of_an_unsafe_post_but_a_keyed_one_is_hedged() {
        let dep = Dependency::new();
        let layer = HedgeLayer::new("t", fixed(10 * MS))
            .unwrap()
            .with_clone_request(IdempotentRequests);
        let mut svc =
            ServiceBuilder::new()
                .layer(layer.clone())
                .service(dep.service::<Request<String>>(
                    vec![50 * MS, 50 * MS, 5 * MS, 50 * MS, 5 * MS],
                    false,
                ));
        let post = Request::post("/orders").body(String::new()).unwrap();
        assert_eq!(svc.ready().await.unwrap().call(post).await.unwrap(), 0);
        assert_eq!(dep.calls(), 1, "a POST is sent once");
        assert_eq!(layer.snapshot().sent_total, 0);

        let keyed = Request::post("/orders")
            .header("idempotency-key", "k1")
            .body(String::new())
            .unwrap();
        svc.ready().await.unwrap().call(keyed).await.unwrap();
        assert_eq!(layer.snapshot().sent_total, 1);
        let get = Request::get("/users/1").body(String::new()).unwrap();
        svc.ready().await.unwrap().call(get).await.unwrap();
        assert_eq!(layer.snapshot().sent_total, 2);
    }
}

mod in_the_stack {
    use super::*;
    use resilience_layers::stack::StackConfig;

    #[tokio::test(start_paused = true)]
    async fn hedges_and_retries_share_one_budget_with_the_dependency_down() {
        let config: StackConfig = toml::from_str(
            r#"
            [retry]
            max_attempts = 3
            backoff = { base = "5ms", max = "5ms", jitter = "none" }
            budget = { ttl = "10s", min_per_sec = 0, retry_ratio = 0.2 }
            [hedge]
            delay = "10ms"
            max_hedges = 2
            "#,
        )
        .unwrap();
        let layer = config.into_layer("down").unwrap();
        let dep = Dependency::new();
        let svc = ServiceBuilder::new()
            .layer(layer.clone())
            .service(dep.service::<()>(vec![50 * MS], true));
        let requests = 100u32;
        let mut calls = Vec::new();
        // Staggered: retry deposits when a first attempt completes, so the budget fills
        // as requests finish.
        for _ in 0..requests {
            calls.push(tokio::spawn(svc.clone().oneshot(())));
            tokio::time::sleep(10 * MS).await;
        }
        for call in calls {
            assert!(call.await.unwrap().is_err());
        }
        let snap = layer.snapshot();
        let (retries, hedges) = (snap.retries[0].retries_total, snap.hedges[0].sent_total);
        assert!(hedges > 0, "hedges went out while the budget lasted");
        // One budget: 20 % of 100 requests, for retries and hedges together.
        assert!(
            retries + hedges <= 20,
            "{retries} retries + {hedges} hedges"
        );
        assert_eq!(
            u64::from(dep.calls()),
            u64::from(requests) + retries + hedges
        );
        assert!(snap.hedges[0].budget_exhausted_total > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn each_attempt_is_recorded_by_the_breaker_and_the_loser_dropped() {
        let config: StackConfig = toml::from_str(
            r#"
            [hedge]
            delay = "10ms"
            [circuit_breaker]
            minimum_calls = 100
            "#,
        )
        .unwrap();
        let layer = config.into_layer("recorded").unwrap();
        let dep = Dependency::new();
        let mut svc = ServiceBuilder::new()
            .layer(layer.clone())
            .service(dep.service::<()>(vec![Duration::from_secs(1), 5 * MS], false));
        assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 1);
        assert_eq!(dep.cancelled(), 1);
        let snap = layer.snapshot();
        assert_eq!(snap.hedges[0].won_total, 1);
        // The winner is recorded; the dropped loser released its permit unrecorded.
        assert_eq!(snap.breakers[0].calls, 1);
        assert_eq!(snap.breakers[0].probes_in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_in_the_stack_stops_hedges() {
        let config: StackConfig =
            toml::from_str("[hedge]\ndelay = \"10ms\"\n[circuit_breaker]\n").unwrap();
        let layer = config.into_layer("open").unwrap();
        let dep = Dependency::new();
        let svc = ServiceBuilder::new()
            .layer(layer.clone())
            .service(dep.service::<()>(vec![50 * MS], false));
        let call = tokio::spawn(svc.oneshot(()));
        tokio::time::advance(5 * MS).await;
        layer.circuit_breaker().unwrap().force_open();
        assert_eq!(call.await.unwrap().unwrap(), 0);
        assert_eq!(dep.calls(), 1);
        let snap = layer.snapshot();
        assert_eq!(snap.hedges[0].sent_total, 0);
        assert_eq!(snap.hedges[0].budget_exhausted_total, 0, "no budget taken");
    }

    #[test]
    fn a_hedge_cannot_change_while_running() {
        let config: StackConfig = toml::from_str("[hedge]\ndelay = \"10ms\"").unwrap();
        let layer = config.clone().into_layer("live").unwrap();
        assert_eq!(layer.config(), config);
        let other: StackConfig = toml::from_str("[hedge]\ndelay = \"20ms\"").unwrap();
        assert_eq!(layer.reconfigure(other).unwrap_err().field(), "hedge");
    }

    #[cfg(feature = "http")]
    #[tokio::test(start_paused = true)]
    async fn the_http_stack_never_hedges_a_post() {
        let config: StackConfig = toml::from_str("[hedge]\ndelay = \"10ms\"").unwrap();
        let layer = config.into_layer("http").unwrap().for_http();
        let dep = Dependency::new();
        let inner = dep.service::<::http::Request<String>>(vec![50 * MS], false);
        let inner = tower::service_fn(move |req| {
            let mut inner = inner.clone();
            async move {
                inner.call(req).await.map(|n| {
                    ::http::Response::builder()
                        .status(200)
                        .body(n.to_string())
                        .unwrap()
                })
            }
        });
        let mut svc = ServiceBuilder::new().layer(layer.clone()).service(inner);
        let post = ::http::Request::post("/orders")
            .body(String::new())
            .unwrap();
        svc.ready().await.unwrap().call(post).await.unwrap();
        assert_eq!(dep.calls(), 1);
        let get = ::http::Request::get("/orders/1")
            .body(String::new())
            .unwrap();
        svc.ready().await.unwrap().call(get).await.unwrap();
        assert_eq!(dep.calls(), 3, "the GET was hedged");
        assert_eq!(layer.snapshot().hedges[0].sent_total, 1);
    }
}

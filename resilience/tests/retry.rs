//! Retry behaviour under a paused clock: attempts, backoff bands, classification,
//! rejections, deadlines, budgets, cancellation, idempotency and Retry-After.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use resilience_layers::{
    BoxError, Error, Outcome,
    bulkhead::{BulkheadConfig, BulkheadLayer},
    deadline::DeadlineLayer,
    retry::{BackoffConfig, BudgetConfig, GIVE_UP, Jitter, RetryConfig, RetryLayer},
};
use tokio::time::Instant;
use tokio_test::{assert_pending, task};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

/// Records when each attempt started; answers from `script` (the last answer repeats).
#[derive(Clone)]
struct Dependency {
    starts: Arc<Mutex<Vec<Instant>>>,
    script: Arc<Vec<Result<u16, &'static str>>>,
    latency: Duration,
}

impl Dependency {
    fn new(script: Vec<Result<u16, &'static str>>) -> Self {
        Self {
            starts: Arc::default(),
            script: Arc::new(script),
            latency: Duration::ZERO,
        }
    }

    fn failing() -> Self {
        Self::new(vec![Err("down")])
    }

    fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    fn attempts(&self) -> usize {
        self.starts.lock().unwrap().len()
    }

    fn gaps(&self) -> Vec<Duration> {
        let starts = self.starts.lock().unwrap();
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn service<Req>(
        &self,
    ) -> impl Service<Req, Response = u16, Error = BoxError, Future: Send> + Clone + use<Req> {
        let dep = self.clone();
        service_fn(move |_: Req| {
            let n = {
                let mut starts = dep.starts.lock().unwrap();
                starts.push(Instant::now());
                starts.len() - 1
            };
            let answer = dep.script[n.min(dep.script.len() - 1)];
            let latency = dep.latency;
            async move {
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                answer.map_err(BoxError::from)
            }
        })
    }
}

fn config(max_attempts: u32, base: Duration, jitter: Jitter) -> RetryConfig {
    RetryConfig {
        max_attempts,
        backoff: BackoffConfig {
            base,
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter,
        },
        budget: None,
    }
}

fn fixed(
    max_attempts: u32,
    delay: Duration,
) -> RetryLayer<
    resilience_layers::ErrorsAreFailures,
    (),
    resilience_layers::retry::FromIter<std::iter::Repeat<Duration>>,
> {
    RetryLayer::new(
        "test",
        config(max_attempts, Duration::from_millis(1), Jitter::None),
    )
    .unwrap()
    .with_backoff(std::iter::repeat(delay))
}

#[tokio::test(start_paused = true)]
async fn stops_after_max_attempts_with_the_last_result() {
    for max in [1, 2, 5] {
        let dep = Dependency::failing();
        let layer = fixed(max, Duration::ZERO);
        let err = layer.layer(dep.service()).oneshot(()).await.unwrap_err();
        assert_eq!(err.to_string(), "down");
        assert_eq!(dep.attempts(), max as usize);
        assert_eq!(layer.snapshot().retries_total, u64::from(max - 1));
        assert_eq!(layer.snapshot().requests_total, 1);
    }
    // Success on the third attempt ends it there.
    let dep = Dependency::new(vec![Err("a"), Err("b"), Ok(200)]);
    let got = fixed(5, Duration::ZERO)
        .layer(dep.service())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!((got, dep.attempts()), (200, 3));
}

#[tokio::test(start_paused = true)]
async fn each_delay_is_within_its_jitter_band_and_under_the_cap() {
    let base = Duration::from_millis(100);
    let exp = |n: usize| (base * 2u32.pow(n as u32)).min(Duration::from_secs(2));
    // tokio's timer has millisecond resolution: a sleep may end up to 1 ms late.
    let slack = Duration::from_millis(1);
    for round in 0..20 {
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            let dep = Dependency::failing();
            let layer = RetryLayer::new("test", config(8, base, jitter)).unwrap();
            let _ = layer.layer(dep.service()).oneshot(()).await;
            let gaps = dep.gaps();
            assert_eq!(gaps.len(), 7);
            let mut prev = base;
            for (n, gap) in gaps.iter().copied().enumerate() {
                let (lo, hi) = match jitter {
                    Jitter::None => (exp(n), exp(n)),
                    Jitter::Full => (Duration::ZERO, exp(n)),
                    Jitter::Equal => (exp(n) / 2, exp(n)),
                    Jitter::Decorrelated => (base, (prev * 3).min(Duration::from_secs(2))),
                };
                assert!(
                    gap >= lo && gap <= hi + slack,
                    "round {round} {jitter:?} #{n}: {gap:?} not in [{lo:?}, {hi:?}]"
                );
                assert!(gap <= Duration::from_secs(2) + slack);
                prev = gap;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn only_failures_are_retried() {
    // 503 is a failure, 404 is ignored, 200 a success: only the 503 is retried.
    let classify = |r: Result<&u16, &BoxError>| match r {
        Ok(503) => Outcome::Failure,
        Ok(404) => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(e) if e.to_string() == "bad request" => Outcome::Ignored,
        Err(_) => Outcome::Failure,
    };
    let cases: [(Vec<Result<u16, &'static str>>, usize); 4] = [
        (vec![Ok(503), Ok(503), Ok(200)], 3),
        (vec![Ok(404), Ok(200)], 1),
        (vec![Err("bad request"), Ok(200)], 1),
        (vec![Ok(200)], 1),
    ];
    for (script, want) in cases {
        let dep = Dependency::new(script);
        let layer = fixed(5, Duration::ZERO).with_classifier(classify);
        let _ = layer.layer(dep.service()).oneshot(()).await;
        assert_eq!(dep.attempts(), want);
    }
}

#[tokio::test(start_paused = true)]
async fn rejections_are_never_retried() {
    let dep = Dependency::new(vec![Ok(200)]).with_latency(Duration::from_secs(60));
    let bulkhead = BulkheadLayer::new(
        "b",
        BulkheadConfig {
            max_concurrent: 1,
            max_wait: Duration::ZERO,
            adaptive: None,
        },
    )
    .unwrap();
    let retry = fixed(5, Duration::ZERO);
    let mut svc = ServiceBuilder::new()
        .layer(retry.clone())
        .layer(bulkhead.clone())
        .service(dep.service());

    // Fill the bulkhead, then call: the rejection comes back once, not five times.
    let _held = task::spawn(svc.ready().await.unwrap().call(()));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::BulkheadFull(_)));
    assert_eq!(bulkhead.handle().snapshot().rejected_total, 1);
    assert_eq!(retry.snapshot().retries_total, 0);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_spans_all_attempts() {
    // Immediate failures, 300 ms apart: attempts at 0, 300, 600 and 900 ms; the next would
    // start at 1200 ms, past the 1 s deadline, so retry gives up at 900 ms with the last error.
    let dep = Dependency::failing();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new("test", Duration::from_secs(1)).unwrap())
        .layer(fixed(10, Duration::from_millis(300)))
        .service(dep.service());
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(err.to_string(), "down");
    assert_eq!(dep.attempts(), 4);
    assert_eq!(start.elapsed(), Duration::from_millis(900));

    // Slow attempts: the deadline cuts the third one short.
    let dep = Dependency::failing().with_latency(Duration::from_millis(400));
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new("test", Duration::from_secs(1)).unwrap())
        .layer(fixed(10, Duration::ZERO))
        .service(dep.service());
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::DeadlineExceeded(_)));
    assert_eq!(dep.attempts(), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

fn budgeted(
    min_per_sec: u32,
    retry_ratio: f64,
    ttl: Duration,
    max_attempts: u32,
) -> RetryLayer<
    resilience_layers::ErrorsAreFailures,
    (),
    resilience_layers::retry::FromIter<std::iter::Repeat<Duration>>,
> {
    let mut config = config(max_attempts, Duration::from_millis(1), Jitter::None);
    config.budget = Some(BudgetConfig {
        ttl,
        min_per_sec,
        retry_ratio,
    });
    RetryLayer::new("test", config)
        .unwrap()
        .with_backoff(std::iter::repeat(Duration::ZERO))
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_amplification_against_a_dead_dependency() {
    let (ratio, floor, secs) = (0.2, 1, 10);
    let dep = Dependency::failing();
    let layer = budgeted(floor, ratio, Duration::from_secs(secs), 5);
    let svc = layer.layer(dep.service());
    // 100 requests spread over 10 s.
    for _ in 0..100 {
        let _ = svc.clone().oneshot(()).await;
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    let attempts = dep.attempts() as f64;
    let bound = (1.0 + ratio) * 100.0 + f64::from(floor) * secs as f64;
    assert!(attempts <= bound, "{attempts} attempts > bound {bound}");
    assert!(
        attempts > 100.0,
        "the budget should still allow some retries"
    );
    let snap = layer.snapshot();
    assert_eq!(snap.requests_total, 100);
    assert!(snap.budget_exhausted_total > 0);
    assert_eq!(snap.retries_total as f64, attempts - 100.0);
}

#[tokio::test(start_paused = true)]
async fn the_floor_lets_a_quiet_client_retry() {
    let script = vec![Err("blip"), Ok(200)];
    // One request alone earns 0.2 of a retry: without a floor it is not retried...
    let dep = Dependency::new(script.clone());
    let layer = budgeted(0, 0.2, Duration::from_secs(10), 3);
    assert!(layer.layer(dep.service()).oneshot(()).await.is_err());
    assert_eq!(
        (dep.attempts(), layer.snapshot().budget_exhausted_total),
        (1, 1)
    );
    // ...with a floor of one retry a second it is.
    let dep = Dependency::new(script);
    let layer = budgeted(1, 0.2, Duration::from_secs(10), 3);
    assert_eq!(layer.layer(dep.service()).oneshot(()).await.unwrap(), 200);
    assert_eq!(dep.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn budget_deposits_expire_after_the_ttl() {
    for (idle, want_attempts) in [(Duration::ZERO, 5), (Duration::from_secs(3), 1)] {
        // Sixteen successful requests earn sixteen retries (ratio 1) for one second.
        let ok = Dependency::new(vec![Ok(200)]);
        let layer = budgeted(0, 1.0, Duration::from_secs(1), 5);
        for _ in 0..16 {
            layer.layer(ok.service()).oneshot(()).await.unwrap();
        }
        assert_eq!(layer.snapshot().budget_available, Some(16));
        tokio::time::advance(idle).await;
        let dep = Dependency::failing();
        let _ = layer.layer(dep.service()).oneshot(()).await;
        // Fresh deposits allow all four retries; expired ones allow none.
        assert_eq!(dep.attempts(), want_attempts, "after idling {idle:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_further_attempts() {
    // During an attempt.
    let dep = Dependency::failing().with_latency(Duration::from_secs(1));
    let mut fut = task::spawn(fixed(5, Duration::ZERO).layer(dep.service()).oneshot(()));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(500)).await;
    drop(fut);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(dep.attempts(), 1);

    // During a backoff sleep.
    let dep = Dependency::failing();
    let mut fut = task::spawn(
        fixed(5, Duration::from_secs(1))
            .layer(dep.service())
            .oneshot(()),
    );
    assert_pending!(fut.poll());
    assert_eq!(dep.attempts(), 1);
    tokio::time::advance(Duration::from_millis(500)).await;
    drop(fut);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(dep.attempts(), 1);
}

/// A request that cannot be copied (a streaming body, say).
struct Once;

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_cloned_is_sent_once() {
    let dep = Dependency::failing();
    let layer = fixed(5, Duration::ZERO).with_clone_request(|_: &Once| None);
    assert!(layer.layer(dep.service()).oneshot(Once).await.is_err());
    assert_eq!(dep.attempts(), 1);

    // Idempotency as a hook: only even requests may be repeated.
    let dep = Dependency::failing();
    let layer =
        fixed(3, Duration::ZERO).with_clone_request(|n: &u32| n.is_multiple_of(2).then_some(*n));
    let svc = layer.layer(dep.service());
    let _ = svc.clone().oneshot(1).await;
    assert_eq!(dep.attempts(), 1);
    let _ = svc.oneshot(2).await;
    assert_eq!(dep.attempts(), 1 + 3);
}

#[tokio::test(start_paused = true)]
async fn retry_after_raises_the_delay_and_can_end_the_retries() {
    // The hint: "retry after" encoded in the status, 700 ms for 503, none otherwise.
    let hint = |r: Result<&u16, &BoxError>| match r {
        Ok(503) => Some(Duration::from_millis(700)),
        _ => None,
    };
    let classify = |r: Result<&u16, &BoxError>| match r {
        Ok(200) => Outcome::Success,
        _ => Outcome::Failure,
    };
    let dep = Dependency::new(vec![Ok(503), Ok(500), Ok(200)]);
    let layer = fixed(5, Duration::from_millis(100))
        .with_classifier(classify)
        .with_retry_after(hint);
    assert_eq!(layer.layer(dep.service()).oneshot(()).await.unwrap(), 200);
    // 503 waits its hint (longer than the backoff); 500 has none and waits the backoff.
    assert_eq!(
        dep.gaps(),
        [Duration::from_millis(700), Duration::from_millis(100)]
    );

    // A hint that ends past the deadline means giving up now.
    let dep = Dependency::new(vec![Ok(503), Ok(200)]);
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new("test", Duration::from_millis(500)).unwrap())
        .layer(
            fixed(5, Duration::from_millis(100))
                .with_classifier(classify)
                .with_retry_after(hint),
        )
        .service(dep.service());
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 503);
    assert_eq!((dep.attempts(), start.elapsed()), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_give_up_hint_ends_the_retries_without_a_deadline() {
    // 429 asks for more than the hook will wait: it says GIVE_UP instead of a cut-down wait.
    let hint = |r: Result<&u16, &BoxError>| match r {
        Ok(429) => Some(GIVE_UP),
        Ok(503) => Some(Duration::from_millis(300)),
        _ => None,
    };
    let classify = |r: Result<&u16, &BoxError>| match r {
        Ok(200) => Outcome::Success,
        _ => Outcome::Failure,
    };
    let dep = Dependency::new(vec![Ok(503), Ok(429), Ok(200)]);
    let layer = fixed(5, Duration::from_millis(100))
        .with_classifier(classify)
        .with_retry_after(hint);
    let start = Instant::now();
    assert_eq!(layer.layer(dep.service()).oneshot(()).await.unwrap(), 429);
    // The 503's hint was waited; the 429 came back at once, not retried.
    assert_eq!(dep.attempts(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(layer.handle().snapshot().retries_total, 1);
}

#[tokio::test(start_paused = true)]
async fn clones_share_counters_and_budget() {
    let dep = Dependency::new(vec![Err("x"), Ok(200)]);
    let layer = fixed(3, Duration::ZERO);
    let a = layer.layer(dep.service());
    let b = a.clone();
    a.oneshot(()).await.unwrap();
    b.oneshot(()).await.unwrap();
    let snap = layer.handle().snapshot();
    assert_eq!((snap.requests_total, snap.retries_total), (2, 1));
    assert_eq!(snap.budget_available, None);
}

#[test]
fn the_service_and_its_future_are_send_and_sync() {
    fn check<S: Service<u32, Future: Send + 'static> + Send + Sync + Clone + 'static>(_: S) {}
    let inner = service_fn(|x: u32| std::future::ready(Ok::<_, BoxError>(x)));
    check(
        RetryLayer::new("t", RetryConfig::default())
            .unwrap()
            .layer(inner),
    );
}

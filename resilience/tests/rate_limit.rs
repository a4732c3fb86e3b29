//! Rate limiter behaviour on tokio's paused clock: permits per period under concurrency,
//! bursts, waits bounded by `max_wait` and by the deadline, the time a rejection carries.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use resilience_layers::{
    Error,
    deadline::Deadline,
    rate_limit::{RateLimitConfig, RateLimitEvent, RateLimitLayer, RateLimiter},
};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

fn config(
    permits: u32,
    period: Duration,
    burst: Option<u32>,
    max_wait: Duration,
) -> RateLimitConfig {
    RateLimitConfig {
        permits,
        period,
        burst,
        max_wait,
    }
}

type Echo = tower::util::BoxCloneService<u32, u32, resilience_layers::BoxError>;

fn limited(config: RateLimitConfig) -> (Echo, RateLimitLayer) {
    let layer = RateLimitLayer::new("test", config).unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(
            |x: u32| async move { Ok::<_, std::io::Error>(x) },
        ));
    (tower::util::BoxCloneService::new(svc), layer)
}

/// The time until the next permit, from a rejection; panics on anything else.
fn retry_after(err: resilience_layers::BoxError) -> Duration {
    match Error::from_boxed(err) {
        Error::RateLimited(e) => {
            assert_eq!(e.name(), "test");
            e.retry_after()
        }
        other => panic!("expected a rate limit, got {other}"),
    }
}

/// Many tasks, each calling as fast as it is let through (retrying 1 ms after a rejection),
/// for `periods` periods; returns how many calls got through in each period.
async fn hammer(config: RateLimitConfig, tasks: usize, periods: u32) -> Vec<u32> {
    let period = config.period;
    let (svc, _) = limited(config);
    let start = Instant::now();
    let end = start + period * periods;
    let admitted = Arc::new(Mutex::new(vec![0u32; periods as usize]));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let mut svc = svc.clone();
            let admitted = admitted.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    match svc.ready().await.unwrap().call(1).await {
                        Ok(_) => {
                            let window = (start.elapsed().as_nanos() / period.as_nanos()) as usize;
                            admitted.lock().unwrap()[window] += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(_) => tokio::time::sleep(MS).await,
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    Arc::try_unwrap(admitted).unwrap().into_inner().unwrap()
}

#[tokio::test(start_paused = true)]
async fn exactly_permits_per_period_under_concurrency() {
    // Evenly spaced (burst 1): exactly 10 in every second, from the first.
    let counts = hammer(
        config(10, Duration::from_secs(1), Some(1), Duration::ZERO),
        64,
        5,
    )
    .await;
    assert_eq!(counts, [10; 5]);
}

#[tokio::test(start_paused = true)]
async fn the_burst_is_honoured_once_then_the_rate() {
    // A full bucket of 5 on top of the first period's 10 (less the one the burst's last
    // permit stands for), then exactly the rate.
    let counts = hammer(
        config(10, Duration::from_secs(1), Some(5), Duration::ZERO),
        64,
        4,
    )
    .await;
    assert_eq!(counts, [14, 10, 10, 10]);
}

#[test]
fn threads_racing_on_one_limiter_never_overdraw_it() {
    // Real threads on one GCRA word: with the clock stopped, exactly the burst gets through,
    // and after one period exactly the permits of one period more.
    let clock = governor::clock::FakeRelativeClock::default();
    let limiter = Arc::new(
        RateLimiter::with_clock(
            &config(100, Duration::from_secs(1), Some(40), Duration::ZERO),
            clock.clone(),
        )
        .unwrap(),
    );
    let race = |limiter: &Arc<RateLimiter<_>>| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..5_000).filter(|_| limiter.check().is_allowed()).count()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>()
    };
    assert_eq!(race(&limiter), 40);
    clock.advance(Duration::from_millis(500));
    assert_eq!(race(&limiter), 40, "a full bucket again, never more");
    clock.advance(Duration::from_millis(100));
    assert_eq!(race(&limiter), 10);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_carries_the_time_until_the_next_permit() {
    let (mut svc, layer) = limited(config(10, Duration::from_secs(1), Some(2), Duration::ZERO));
    let start = Instant::now();
    for n in 0..2 {
        assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
    }
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert_eq!(retry_after(err), 100 * MS);
    tokio::time::advance(30 * MS).await;
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert_eq!(retry_after(err), 70 * MS);
    // Rejected at once: no time passed but what the test advanced.
    assert_eq!(start.elapsed(), 30 * MS);
    tokio::time::advance(70 * MS).await;
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
    let snapshot = layer.handle().snapshot();
    assert_eq!((snapshot.rejected_total, snapshot.delayed_total), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn wait_mode_paces_many_callers_one_interval_apart() {
    let (svc, layer) = limited(config(
        10,
        Duration::from_secs(1),
        Some(1),
        Duration::from_secs(10),
    ));
    let start = Instant::now();
    let tasks: Vec<_> = (0..30)
        .map(|n| {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.oneshot(n).await.unwrap();
                start.elapsed()
            })
        })
        .collect();
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await.unwrap());
    }
    done.sort();
    let expected: Vec<_> = (0..30).map(|n| 100 * MS * n).collect();
    assert_eq!(done, expected);
    let snapshot = layer.handle().snapshot();
    assert_eq!(
        (
            snapshot.rejected_total,
            snapshot.delayed_total,
            snapshot.waiting
        ),
        (0, 29, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_is_bounded_by_max_wait() {
    let (mut svc, _) = limited(config(1, Duration::from_secs(1), Some(1), 300 * MS));
    svc.ready().await.unwrap().call(0).await.unwrap();
    // The next permit is a second away, beyond the 300 ms allowed: refused at once, not
    // after a wait that could only end the same way.
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(retry_after(err), Duration::from_secs(1));
    assert_eq!(start.elapsed(), Duration::ZERO);
    // 200 ms away: waited for.
    tokio::time::advance(800 * MS).await;
    let start = Instant::now();
    svc.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(start.elapsed(), 200 * MS);
}

#[tokio::test(start_paused = true)]
async fn waiters_beyond_max_wait_are_rejected_no_later_than_it() {
    // Five callers at once, one permit per 100 ms, 250 ms of patience: the permits at 0, 100
    // and 200 ms go to three; the other two learn at 200 ms that the next (300 ms) is too late.
    let (svc, layer) = limited(config(10, Duration::from_secs(1), Some(1), 250 * MS));
    let mut events = layer.handle().subscribe();
    let start = Instant::now();
    let tasks: Vec<_> = (0..5)
        .map(|n| {
            let svc = svc.clone();
            tokio::spawn(async move { (svc.oneshot(n).await.is_ok(), start.elapsed()) })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            (false, 200 * MS),
            (false, 200 * MS),
            (true, Duration::ZERO),
            (true, 100 * MS),
            (true, 200 * MS)
        ]
    );
    let mut rejected = 0;
    while let Ok(event) = events.try_recv() {
        if let RateLimitEvent::Rejected { retry_after, .. } = event {
            assert_eq!(retry_after, 100 * MS);
            rejected += 1;
        }
    }
    assert_eq!(rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn a_wait_is_bounded_by_the_deadline_in_force() {
    let (svc, _) = limited(config(
        1,
        Duration::from_secs(1),
        Some(1),
        Duration::from_secs(10),
    ));
    svc.clone().oneshot(0).await.unwrap();
    // The caller has 300 ms left; the permit is a second away: refused at once.
    let start = Instant::now();
    let err = Deadline::after(300 * MS)
        .scope(svc.clone().oneshot(1))
        .await
        .unwrap_err();
    assert_eq!(retry_after(err), Duration::from_secs(1));
    assert_eq!(start.elapsed(), Duration::ZERO);
    // With 2 s left, it waits its second.
    let got = Deadline::after(Duration::from_secs(2))
        .scope(svc.oneshot(2))
        .await
        .unwrap();
    assert_eq!((got, start.elapsed()), (2, Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_leaves_the_count() {
    let (svc, layer) = limited(config(
        1,
        Duration::from_secs(1),
        Some(1),
        Duration::from_secs(5),
    ));
    let handle = layer.handle();
    svc.clone().oneshot(0).await.unwrap();
    let waiter = tokio::spawn(svc.clone().oneshot(1));
    tokio::time::sleep(10 * MS).await;
    assert_eq!(handle.snapshot().waiting, 1);
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(handle.snapshot().waiting, 0);
    // Nothing was held while waiting: the permit is there for the next caller.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(svc.oneshot(2).await.unwrap(), 2);
    assert_eq!(handle.snapshot().rejected_total, 0);
}

#[tokio::test(start_paused = true)]
async fn a_clone_does_not_inherit_a_permit() {
    let layer = RateLimitLayer::new(
        "test",
        config(1, Duration::from_secs(1), Some(1), Duration::ZERO),
    )
    .unwrap();
    let mut svc = layer.layer_fn();
    // The original takes the only permit in poll_ready; its clone must not spend it too.
    svc.ready().await.unwrap();
    let mut clone = svc.clone();
    let err = clone.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(retry_after(err), Duration::from_secs(1));
    assert_eq!(svc.call(0).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_handle_acquires_like_the_service() {
    let layer = RateLimitLayer::new(
        "test",
        config(2, Duration::from_secs(1), Some(1), Duration::from_secs(1)),
    )
    .unwrap();
    let handle = layer.handle();
    let start = Instant::now();
    handle.acquire().await.unwrap();
    handle.acquire().await.unwrap();
    assert_eq!(start.elapsed(), 500 * MS);
    let err = Deadline::after(100 * MS)
        .scope(handle.acquire())
        .await
        .unwrap_err();
    assert_eq!(retry_after(err), 500 * MS);
    assert_eq!(handle.snapshot().delayed_total, 1);
}

/// `layer.layer(service_fn(..))`, named for the tests above.
trait LayerFn {
    fn layer_fn(&self) -> resilience_layers::rate_limit::RateLimit<Echo>;
}

impl LayerFn for RateLimitLayer {
    fn layer_fn(&self) -> resilience_layers::rate_limit::RateLimit<Echo> {
        use tower::Layer;
        self.layer(tower::util::BoxCloneService::new(service_fn(
            |x: u32| async move { Ok::<_, resilience_layers::BoxError>(x) },
        )))
    }
}

#[tokio::test(start_paused = true)]
async fn in_the_stack_a_shed_request_costs_nothing_inside() {
    let config: resilience_layers::stack::StackConfig = toml::from_str(
        r#"
        deadline = "1s"
        [rate_limit]
        permits = 1
        period = "1s"
        [bulkhead]
        max_concurrent = 4
        [retry]
        max_attempts = 3
        "#,
    )
    .unwrap();
    let layer = config.into_layer("stacked").unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(
            |x: u32| async move { Ok::<_, std::io::Error>(x) },
        ));
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(matches!(Error::from_boxed(err), Error::RateLimited(e) if e.name() == "stacked"));
    let snapshot = layer.snapshot();
    // The retry saw one request (the one let through), and the rate limiter's rejection.
    assert_eq!(snapshot.retries[0].requests_total, 1);
    assert_eq!(snapshot.rate_limits[0].rejected_total, 1);
    assert_eq!(layer.rate_limit().unwrap().name(), "stacked");
    let json = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(json["rate_limits"][0]["permits"], 1);
}

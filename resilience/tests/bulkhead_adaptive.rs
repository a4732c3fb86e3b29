//! The adaptive bulkhead against a simulated dependency whose latency grows with the calls in
//! flight above a knee, on tokio's paused clock: the limit converges near the knee, falls
//! when the knee falls (the dependency got slower) and recovers when it rises again.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use resilience_layers::{
    BoxError,
    bulkhead::{AdaptiveConfig, BulkheadConfig, BulkheadHandle, BulkheadLayer, LimitAlgorithm},
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

/// The dependency: 10 ms up to `knee` calls in flight, growing linearly above.
#[derive(Clone, Default)]
struct Dependency {
    in_flight: Arc<AtomicUsize>,
    knee: Arc<AtomicUsize>,
}

impl Dependency {
    fn service(
        &self,
    ) -> impl Service<(), Response = (), Error = BoxError, Future: Send> + Clone + use<> {
        let this = self.clone();
        service_fn(move |()| {
            let this = this.clone();
            async move {
                let n = this.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                let knee = this.knee.load(Ordering::SeqCst);
                let base = Duration::from_millis(10);
                let latency = if n <= knee {
                    base
                } else {
                    base * n as u32 / knee as u32
                };
                tokio::time::sleep(latency).await;
                this.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(())
            }
        })
    }
}

/// 150 callers, each calling in a loop, for `secs` of (paused) time; the limit's lowest and
/// highest over the last half.
async fn load(
    svc: impl Service<(), Response = (), Error = BoxError, Future: Send> + Clone + Send + 'static,
    handle: &BulkheadHandle,
    secs: u64,
) -> (usize, usize) {
    let end = Instant::now() + Duration::from_secs(secs);
    let callers: Vec<_> = (0..150)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    let _ = svc.clone().oneshot(()).await;
                }
            })
        })
        .collect();
    let (mut lo, mut hi) = (usize::MAX, 0);
    for tick in 0..secs * 10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tick >= secs * 5 {
            let limit = handle.snapshot().max_concurrent;
            lo = lo.min(limit);
            hi = hi.max(limit);
        }
    }
    for c in callers {
        c.await.unwrap();
    }
    (lo, hi)
}

async fn converges(algorithm: LimitAlgorithm, near_40: (usize, usize), near_15: (usize, usize)) {
    let dependency = Dependency::default();
    dependency.knee.store(40, Ordering::SeqCst);
    let config = BulkheadConfig {
        max_concurrent: 200,
        max_wait: Duration::from_secs(5),
        adaptive: Some(AdaptiveConfig {
            algorithm,
            min_limit: 2,
            initial_limit: 10,
            tolerance: 1.2,
            ..Default::default()
        }),
    };
    let layer = BulkheadLayer::new(format!("adaptive-{algorithm:?}"), config).unwrap();
    let handle = layer.handle();
    assert_eq!(
        handle.snapshot().max_concurrent,
        10,
        "starts at initial_limit"
    );
    let svc = layer.layer(dependency.service());

    let in_range = |(lo, hi): (usize, usize), (min, max): (usize, usize)| lo >= min && hi <= max;
    let settled = load(svc.clone(), &handle, 30).await;
    assert!(
        in_range(settled, near_40),
        "{algorithm:?}: settled in {settled:?} for a knee of 40"
    );
    dependency.knee.store(15, Ordering::SeqCst);
    let fell = load(svc.clone(), &handle, 30).await;
    assert!(
        in_range(fell, near_15),
        "{algorithm:?}: settled in {fell:?} for a knee of 15"
    );
    dependency.knee.store(40, Ordering::SeqCst);
    let recovered = load(svc, &handle, 60).await;
    assert!(
        in_range(recovered, near_40),
        "{algorithm:?}: recovered to {recovered:?}"
    );
    eprintln!("{algorithm:?}: knee 40 {settled:?}, knee 15 {fell:?}, knee 40 again {recovered:?}");
    // Every permit given back.
    assert_eq!(handle.snapshot().in_use, 0);
}

#[tokio::test(start_paused = true)]
async fn aimd_limit_converges_near_the_knee_and_follows_it() {
    converges(LimitAlgorithm::Aimd, (28, 60), (10, 24)).await;
}

#[tokio::test(start_paused = true)]
async fn gradient2_limit_converges_near_the_knee_and_follows_it() {
    converges(LimitAlgorithm::Gradient2, (28, 80), (10, 35)).await;
}

#[tokio::test(start_paused = true)]
async fn a_fixed_limit_does_not_move_and_reconfigure_switches_modes() {
    let dependency = Dependency::default();
    dependency.knee.store(15, Ordering::SeqCst);
    let fixed = BulkheadConfig {
        max_concurrent: 100,
        max_wait: Duration::from_secs(5),
        adaptive: None,
    };
    let layer = BulkheadLayer::new("adaptive-switch", fixed.clone()).unwrap();
    let handle = layer.handle();
    let svc = layer.layer(dependency.service());
    assert_eq!(load(svc.clone(), &handle, 5).await, (100, 100));
    // Live to adaptive: it starts at initial_limit and falls towards the knee.
    let adaptive = BulkheadConfig {
        adaptive: Some(AdaptiveConfig {
            initial_limit: 50,
            tolerance: 1.2,
            ..Default::default()
        }),
        ..fixed.clone()
    };
    handle.reconfigure(adaptive).unwrap();
    assert_eq!(handle.snapshot().max_concurrent, 50);
    let (_, hi) = load(svc.clone(), &handle, 20).await;
    assert!(hi <= 24, "fell to at most {hi} for a knee of 15");
    // And back to the fixed limit.
    handle.reconfigure(fixed).unwrap();
    assert_eq!(load(svc, &handle, 5).await, (100, 100));
    assert_eq!(handle.snapshot().in_use, 0);
}

//! The metric names and labels promised in the observability contract, checked against a
//! small in-test recorder (the library never installs one).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use resilience_layers::{
    BoxError,
    bulkhead::{BulkheadConfig, BulkheadLayer},
    deadline::DeadlineLayer,
    fault::{FaultHandle, FaultLayer},
    retry::{BudgetConfig, RetryConfig, RetryLayer},
    timeout::AttemptTimeoutLayer,
};
use tower::{Layer, ServiceExt, service_fn};

/// Every value recorded, keyed by `name{label=value,...}`.
#[derive(Clone, Default)]
struct Capture {
    values: Arc<Mutex<BTreeMap<String, f64>>>,
}

struct Cell {
    key: String,
    values: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl Cell {
    fn add(&self, delta: f64) {
        *self
            .values
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += delta;
    }
}

impl metrics::CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.add(value as f64);
    }
    fn absolute(&self, _: u64) {}
}

impl metrics::GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.add(value);
    }
    fn decrement(&self, value: f64) {
        self.add(-value);
    }
    fn set(&self, value: f64) {
        self.values.lock().unwrap().insert(self.key.clone(), value);
    }
}

impl metrics::HistogramFn for Cell {
    // A histogram is captured as the count of its samples.
    fn record(&self, _: f64) {
        self.add(1.0);
    }
}

impl Capture {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let key = format!("{}{{{}}}", key.name(), labels.join(","));
        self.values.lock().unwrap().entry(key.clone()).or_default();
        Arc::new(Cell {
            key,
            values: self.values.clone(),
        })
    }

    fn get(&self, key: &str) -> f64 {
        *self.values.lock().unwrap().get(key).unwrap_or_else(|| {
            panic!(
                "metric {key} not registered: {:?}",
                self.values.lock().unwrap().keys()
            )
        })
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

#[tokio::test(start_paused = true)]
async fn bulkhead_metrics() {
    let capture = Capture::default();
    let layer = metrics::with_local_recorder(&capture, || {
        BulkheadLayer::new(
            "users",
            BulkheadConfig {
                max_concurrent: 1,
                max_wait: Duration::ZERO,
                adaptive: None,
            },
        )
        .unwrap()
    });
    let slow = service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>(())
    });
    let svc = layer.layer(slow);
    let held = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    assert_eq!(capture.get("resilience_bulkhead_in_use{name=users}"), 1.0);
    assert!(svc.clone().oneshot(()).await.is_err());
    assert_eq!(
        capture.get("resilience_bulkhead_rejected_total{name=users}"),
        1.0
    );
    held.await.unwrap().unwrap();
    assert_eq!(capture.get("resilience_bulkhead_in_use{name=users}"), 0.0);
    assert_eq!(capture.get("resilience_bulkhead_waiting{name=users}"), 0.0);

    // Permits taken through the handle count too, and a dropped future gives its count back.
    let permit = layer.handle().acquire().await.unwrap();
    assert_eq!(capture.get("resilience_bulkhead_in_use{name=users}"), 1.0);
    drop(permit);
    let pending = svc.oneshot(());
    let mut pending = tokio_test::task::spawn(pending);
    tokio_test::assert_pending!(pending.poll());
    assert_eq!(capture.get("resilience_bulkhead_in_use{name=users}"), 1.0);
    drop(pending);
    assert_eq!(capture.get("resilience_bulkhead_in_use{name=users}"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn timeout_metrics() {
    let capture = Capture::default();
    let (attempt, deadline) = metrics::with_local_recorder(&capture, || {
        (
            AttemptTimeoutLayer::new("users", Duration::from_millis(10)).unwrap(),
            DeadlineLayer::new("users", Duration::from_millis(10)).unwrap(),
        )
    });
    let slow = service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>(())
    });
    assert!(attempt.layer(slow).oneshot(()).await.is_err());
    assert!(deadline.layer(slow).oneshot(()).await.is_err());
    assert_eq!(
        capture.get("resilience_timeouts_total{name=users,kind=attempt}"),
        1.0
    );
    assert_eq!(
        capture.get("resilience_timeouts_total{name=users,kind=deadline}"),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn fault_metrics() {
    let capture = Capture::default();
    let (users, orders) = metrics::with_local_recorder(&capture, || {
        (FaultHandle::new("users"), FaultHandle::new("orders"))
    });
    users.set_error_rate(1.0).unwrap();
    orders.set_latency(Duration::from_millis(5));
    let ok = service_fn(|_: ()| async { Ok::<_, BoxError>(()) });
    for _ in 0..2 {
        assert!(
            FaultLayer::new(users.clone())
                .layer(ok)
                .oneshot(())
                .await
                .is_err()
        );
    }
    assert!(
        FaultLayer::new(orders.clone())
            .layer(ok)
            .oneshot(())
            .await
            .is_ok()
    );
    // One series per injector and kind: the two never add up into one.
    let series = |name: &str, kind: &str| {
        capture.get(&format!(
            "resilience_faults_injected_total{{name={name},kind={kind}}}"
        ))
    };
    assert_eq!(series("users", "error"), 2.0);
    assert_eq!(series("users", "latency"), 0.0);
    assert_eq!(series("orders", "error"), 0.0);
    assert_eq!(series("orders", "latency"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn retry_metrics() {
    let capture = Capture::default();
    let config = RetryConfig {
        max_attempts: 3,
        budget: Some(BudgetConfig {
            min_per_sec: 0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let layer =
        metrics::with_local_recorder(&capture, || RetryLayer::new("users", config).unwrap());
    let failing = service_fn(|_: ()| async { Err::<(), BoxError>("down".into()) });
    // Sixteen successes earn 16 * 0.2 = 3.2 retries: one failing request takes 2, a second 1.
    for _ in 0..16 {
        layer
            .layer(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }))
            .oneshot(())
            .await
            .unwrap();
    }
    assert!(layer.layer(failing).oneshot(()).await.is_err());
    assert!(layer.layer(failing).oneshot(()).await.is_err());
    assert_eq!(
        capture.get("resilience_retry_requests_total{name=users}"),
        18.0
    );
    assert_eq!(
        capture.get("resilience_retry_retries_total{name=users}"),
        3.0
    );
    assert_eq!(
        capture.get("resilience_retry_delay_seconds{name=users}"),
        3.0
    );
    assert_eq!(
        capture.get("resilience_retry_budget_exhausted_total{name=users}"),
        1.0
    );
    let snap = layer.snapshot();
    assert_eq!(
        (
            snap.requests_total,
            snap.retries_total,
            snap.budget_exhausted_total
        ),
        (18, 3, 1)
    );
}

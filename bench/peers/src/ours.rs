//! `resilience`'s side of each case, configured like the peers' (see `peer` in peers.rs).

use std::time::Duration;

use resilience_layers::bulkhead::{BulkheadConfig, BulkheadLayer};
use resilience_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow};
use resilience_layers::retry::{BackoffConfig, RetryConfig, RetryLayer};
use resilience_layers::stack::StackConfig;
use resilience_layers::timeout::{AttemptTimeoutLayer, DeadlineLayer};
use tower::{Service, ServiceBuilder};

use crate::bare;

/// Count window of 100, trips at 50 % after 20 calls (the defaults, spelled out).
fn breaker_config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: SlidingWindow::Count { size: 100 },
        failure_rate_threshold: 50.0,
        minimum_calls: 20,
        wait_in_open: Duration::from_secs(3600),
        ..CircuitBreakerConfig::default()
    }
}

fn bulkhead_config() -> BulkheadConfig {
    BulkheadConfig {
        max_concurrent: 64,
        max_wait: Duration::from_millis(50),
    }
        adaptive: None,
}

/// Three attempts, 10 ms base backoff, the default budget (20 % plus 10 retries a second).
fn retry_config() -> RetryConfig {
    RetryConfig {
        max_attempts: 3,
        backoff: BackoffConfig {
            base: Duration::from_millis(10),
            ..BackoffConfig::default()
        },
        ..RetryConfig::default()
    }
}

pub fn breaker_closed() -> impl Service<u64> + Clone + Send {
    let layer = CircuitBreakerLayer::new("bench", breaker_config()).expect("breaker");
    ServiceBuilder::new().layer(layer).service(bare())
}

pub fn breaker_open() -> impl Service<u64> + Clone + Send {
    let layer = CircuitBreakerLayer::new("bench", breaker_config()).expect("breaker");
    layer.handle().force_open();
    ServiceBuilder::new().layer(layer).service(bare())
}

pub fn bulkhead() -> impl Service<u64> + Clone + Send {
    let layer = BulkheadLayer::new("bench", bulkhead_config()).expect("bulkhead");
    ServiceBuilder::new().layer(layer).service(bare())
}

pub fn attempt_timeout() -> impl Service<u64> + Clone + Send {
    let layer = AttemptTimeoutLayer::new("bench", Duration::from_secs(1)).expect("timeout");
    ServiceBuilder::new().layer(layer).service(bare())
}

pub fn deadline() -> impl Service<u64> + Clone + Send {
    let layer = DeadlineLayer::new("bench", Duration::from_secs(1)).expect("deadline");
    ServiceBuilder::new().layer(layer).service(bare())
}

pub fn retry() -> impl Service<u64> + Clone + Send {
    let layer = RetryLayer::new("bench", retry_config()).expect("retry");
    ServiceBuilder::new().layer(layer).service(bare())
}

/// Bulkhead -> deadline -> retry -> breaker -> attempt timeout, all five pieces on.
pub fn stack() -> impl Service<u64> + Clone + Send {
    let config = StackConfig {
        rate_limit: None,
        fallback: None,
        bulkhead: Some(bulkhead_config()),
        deadline: Some(Duration::from_secs(2)),
        retry: Some(retry_config()),
        circuit_breaker: Some(breaker_config()),
        attempt_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let layer = config.into_layer("bench").expect("stack");
    ServiceBuilder::new().layer(layer).service(bare())
}

/// Builds a case with the services' Prometheus recorder in place, so the metric handles the
/// layers register are live counters (as in order-service) instead of no-ops: the benchmark
/// installs no global recorder, and without one every `increment` is free.
pub fn with_prometheus<T>(build: impl FnOnce() -> T) -> T {
    use std::sync::OnceLock;
    static RECORDER: OnceLock<metrics_exporter_prometheus::PrometheusRecorder> = OnceLock::new();
    let recorder = RECORDER
        .get_or_init(|| metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder());
    metrics::with_local_recorder(recorder, build)
}

//! `resilience`'s side of each case, configured like the peers' (see `peer` in peers.rs).

use std::time::Duration;

use resilience_layers::bulkhead::{BulkheadConfig, BulkheadLayer};
use resilience_layers::cache::{CacheConfig, CacheLayer};
use resilience_layers::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow,
};
use resilience_layers::fallback::{FallbackConfig, FallbackLayer, FallbackOutcome, Fault};
use resilience_layers::hedge::{HedgeConfig, HedgeLayer};
use resilience_layers::rate_limit::{RateLimitConfig, RateLimitLayer};
use resilience_layers::retry::{BackoffConfig, RetryConfig, RetryLayer};
use resilience_layers::stack::StackConfig;
use resilience_layers::timeout::{AttemptTimeoutLayer, DeadlineLayer};
use tower::{Service, ServiceBuilder};

use crate::{HOT_KEYS, RATE, bare, fresh_key};

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
        adaptive: None,
    }
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

// ---------------------------------------------------------------- newer layers

/// Reject mode, `RATE` permits a second (burst the same): never rejects during a run.
pub fn rate_limit() -> impl Service<u64> + Clone + Send {
    let config = RateLimitConfig {
        permits: RATE,
        period: Duration::from_secs(1),
        burst: None,
        max_wait: Duration::ZERO,
    };
    let layer = RateLimitLayer::new("bench", config).expect("rate limit");
    ServiceBuilder::new().layer(layer).service(bare())
}

/// One hedge after a fixed 1 s, the default budget: the plan is built on every call.
pub fn hedge() -> impl Service<u64> + Clone + Send {
    let config = HedgeConfig {
        delay: Some(Duration::from_secs(1)),
        ..HedgeConfig::default()
    };
    let layer = HedgeLayer::new("bench", config).expect("hedge");
    ServiceBuilder::new().layer(layer).service(bare())
}

/// The default: the 95th percentile once 100 latencies are in (as tower's hedge is set up).
pub fn hedge_percentile() -> impl Service<u64> + Clone + Send {
    let layer = HedgeLayer::new("bench", HedgeConfig::default()).expect("hedge");
    ServiceBuilder::new().layer(layer).service(bare())
}

/// 10,000 entries, 60 s fresh (the defaults but for stale-if-error, which the peer lacks).
fn cache_config() -> CacheConfig {
    CacheConfig {
        max_entries: 10_000,
        stale_if_error: Duration::ZERO,
        ..CacheConfig::default()
    }
}

pub fn cache_hit() -> impl Service<u64> + Clone + Send {
    let layer =
        CacheLayer::new("bench", cache_config(), |r: &u64| Some(*r % HOT_KEYS)).expect("cache");
    ServiceBuilder::new().layer(layer).service(bare())
}

pub fn cache_miss() -> impl Service<u64> + Clone + Send {
    let layer =
        CacheLayer::new("bench", cache_config(), |_: &u64| Some(fresh_key())).expect("cache");
    ServiceBuilder::new().layer(layer).service(bare())
}

/// Every outcome listed (so the response is classified too); a constant answer.
pub fn fallback() -> impl Service<u64> + Clone + Send {
    let layer = FallbackLayer::new(
        "bench",
        FallbackConfig::on(FallbackOutcome::ALL),
        |_: Fault<u64>| 0u64,
    )
    .expect("fallback");
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

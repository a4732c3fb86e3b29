//! Prometheus: one process-wide recorder, the request histogram, and the `/metrics` handler.
//!
//! The library only emits through the `metrics` facade; a service installs the recorder once
//! ([`install`]), so the breaker, bulkhead and retry metrics appear on `/metrics` next to
//! `http_server_request_duration_seconds`. Installing is idempotent, so tests that build many
//! apps in one process share the recorder.

use std::{sync::OnceLock, time::Duration};

use axum::response::{IntoResponse, Response};
use http::{Method, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Name of the server latency histogram.
pub const REQUEST_DURATION: &str = "http_server_request_duration_seconds";

/// Name of the counter of connections refused past `MAX_CONNECTIONS`.
pub const CONNECTIONS_REFUSED: &str = "http_server_connections_refused_total";

/// Histogram buckets (seconds), from sub-millisecond to the longest timeout we configure.
pub const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
///
/// A background thread runs the exporter's upkeep every five seconds so histograms do not grow
/// without bound. If another recorder was already installed, the handle still renders (empty).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                metrics::describe_histogram!(
                    REQUEST_DURATION,
                    metrics::Unit::Seconds,
                    "Server request latency by method, route template and status."
                );
                metrics::describe_counter!(
                    CONNECTIONS_REFUSED,
                    "Connections answered 503 (or closed) because MAX_CONNECTIONS were open."
                );
            }
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            handle
        })
        .clone()
}

/// Records one served request.
pub(crate) fn record_request(method: &Method, route: &str, status: u16, elapsed: Duration) {
    metrics::histogram!(
        REQUEST_DURATION,
        "method" => method.as_str().to_owned(),
        "route" => route.to_owned(),
        "status" => status.to_string(),
    )
    .record(elapsed.as_secs_f64());
}

/// `GET /metrics`: the Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain; version=0.0.4"))
)]
pub async fn render() -> Response {
    let body = install().render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

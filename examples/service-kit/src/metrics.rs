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

/// The `method` label: one of the nine methods of RFC 9110 and RFC 5789, or `_OTHER` for any
/// other token a client sends, as OpenTelemetry's HTTP conventions do. A client may send any
/// token as a method, and each distinct label value is a new series kept for the life of the
/// process.
///
/// ```
/// use http::Method;
/// use service_kit::metrics::method_label;
///
/// assert_eq!(method_label(&Method::PATCH), "PATCH");
/// assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "_OTHER");
/// ```
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// Records one served request. `route` is a route template or a fixed word, never a raw
/// path (see [`crate::context::observe`]); the status comes from this service's handlers.
pub(crate) fn record_request(method: &Method, route: &str, status: u16, elapsed: Duration) {
    metrics::histogram!(
        REQUEST_DURATION,
        "method" => method_label(method),
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

#[cfg(test)]
mod tests {
    use axum::{Router, routing::get};
    use http::{Method, Request, StatusCode};

    use crate::testing::{call, get as get_req};

    /// Series of the request histogram for `route`, as `method status` pairs.
    fn series(text: &str, route: &str) -> Vec<String> {
        let route = format!("route=\"{route}\"");
        text.lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
            .filter(|l| l.contains(&route))
            .map(str::to_owned)
            .collect()
    }

    /// A client picks the method and the path: neither may mint a series. 500 made-up
    /// methods on a routed path land in one `_OTHER` series, 500 made-up paths in the one
    /// `unmatched` route.
    #[tokio::test]
    async fn made_up_methods_and_paths_add_a_bounded_number_of_series() {
        let app = crate::finish(
            Router::new().route("/flood-probe/{id}", get(|| async { "ok" })),
            1024,
        );
        for i in 0..500 {
            let method = Method::from_bytes(format!("FLOOD{i}").as_bytes()).unwrap();
            let req = Request::builder()
                .method(method)
                .uri(format!("/flood-probe/{i}"))
                .body(axum::body::Body::empty())
                .unwrap();
            assert_eq!(call(&app, req).await.status, StatusCode::METHOD_NOT_ALLOWED);
            let r = call(&app, get_req(&format!("/flood-nowhere-{i}"))).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND);
        }
        assert_eq!(
            call(&app, get_req("/flood-probe/1")).await.status,
            StatusCode::OK
        );

        let text = super::install().render();
        let probe = series(&text, "/flood-probe/{id}");
        assert_eq!(probe.len(), 2, "{probe:#?}");
        assert!(probe.iter().any(|l| l.contains(r#"method="_OTHER""#)
            && l.contains(r#"status="405""#)
            && l.ends_with(" 500")));
        assert!(
            probe
                .iter()
                .any(|l| l.contains(r#"method="GET""#) && l.contains(r#"status="200""#))
        );
        assert!(!text.contains("FLOOD"), "a made-up method became a label");
        assert!(!text.contains("flood-nowhere"), "a raw path became a label");
        assert!(!series(&text, "unmatched").is_empty());
    }

    #[tokio::test]
    async fn every_metric_of_a_service_has_help_text() {
        let app = crate::finish(Router::new(), 1024);
        call(&app, get_req("/health/live")).await;
        let text = super::install().render();
        assert!(
            text.contains("http_server_request_duration_seconds"),
            "{text}"
        );
        assert_eq!(
            crate::testing::undescribed_metrics(&text),
            Vec::<&str>::new()
        );
    }
}

//! Prometheus: one process-wide recorder, the request histogram, and the `/metrics` handler.
//!
//! The library only emits through the `metrics` facade; a service installs the recorder once
//! ([`install`]), so the breaker, bulkhead and retry metrics appear on `/metrics` next to
//! `http_server_request_duration_seconds`. Installing is idempotent, so tests that build many
//! apps in one process share the recorder. Every scrape also carries the standard
//! `process_*` families ([`process`]), read from `/proc/self` on Linux.

use std::{sync::OnceLock, time::Duration};

use axum::response::{IntoResponse, Response};
use http::{Method, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub mod process;

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

/// What `/metrics` serves: every metric recorded through the facade, then the process
/// metrics of this moment.
pub fn exposition() -> String {
    let mut text = install().render();
    if let Some(p) = process::Process::read() {
        p.render(&mut text);
    }
    text
}

/// `GET /metrics`: the Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain; version=0.0.4"))
)]
pub async fn render() -> Response {
    let body = exposition();
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

    /// A scrape of `/metrics` carries the process families with the standard types and
    /// values that describe this test process: it opened the files it holds, it is using
    /// memory, and it started before now.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_scrape_carries_sane_process_metrics() {
        let app = crate::finish(Router::new(), 1024);
        let scrape = || async {
            let r = call(&app, get_req("/metrics")).await;
            assert_eq!(r.status, StatusCode::OK);
            let text = r.body.as_str().expect("text exposition").to_owned();
            let samples = prom_text::parse(&text);
            let value = |name: &str| {
                let found: Vec<f64> = samples
                    .iter()
                    .filter(|s| s.name == name)
                    .map(|s| s.value)
                    .collect();
                assert_eq!(found.len(), 1, "{name} in\n{text}");
                found[0]
            };
            let kinds = [
                ("process_cpu_seconds_total", "counter"),
                ("process_resident_memory_bytes", "gauge"),
                ("process_virtual_memory_bytes", "gauge"),
                ("process_open_fds", "gauge"),
                ("process_max_fds", "gauge"),
                ("process_start_time_seconds", "gauge"),
                ("process_threads", "gauge"),
            ];
            for (name, kind) in kinds {
                assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
                assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            }
            let names = kinds.map(|(n, _)| n);
            (names.map(value), text)
        };
        let ([cpu, rss, vsz, fds, max_fds, start, threads], text) = scrape().await;
        assert!(cpu >= 0.0, "{cpu}");
        assert!(
            rss > 1024.0 * 1024.0 && rss < vsz,
            "rss {rss}, virtual {vsz}"
        );
        assert!(fds >= 3.0 && fds < max_fds, "{fds} of {max_fds}");
        assert!(threads >= 1.0, "{threads}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Start time has the kernel's 10 ms tick; a test binary runs for minutes, not a day.
        assert!(
            start <= now + 0.01 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        assert_eq!(
            crate::testing::undescribed_metrics(&text),
            Vec::<&str>::new()
        );

        // Each scrape reads afresh: ten more open files are ten more descriptors, and the CPU
        // counter never goes back.
        let held: Vec<std::fs::File> = (0..10)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let ([cpu_after, _, _, fds_after, ..], _) = scrape().await;
        assert!(
            fds_after >= fds + 10.0,
            "{fds} then {fds_after} with 10 more open"
        );
        assert!(cpu_after >= cpu);
        drop(held);
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

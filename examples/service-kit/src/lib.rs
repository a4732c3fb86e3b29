//! What the reference services share, kept in one place so each service's own code is only
//! its domain: RFC 9457 errors ([`problem`]), extractors that reject with them ([`extract`]),
//! health reports ([`health`]), Prometheus metrics ([`metrics`]), the per-request context and
//! its middleware ([`context`]), the sqlx store ([`store`]), env configuration ([`config`]),
//! serving with graceful shutdown ([`serve`]), logs and traces ([`telemetry`]), the token-guarded admin check ([`admin`]),
//! the business-route layers and fault-injection admin routes ([`faults`]), and
//! what the services' tests share ([`testing`]).
//!
//! A service builds its business and operations routes and hands them to [`ops::app`], which
//! adds the shared operations routes (health, metrics, OpenAPI, admin) and then [`finish`],
//! the parts every route needs:
//!
//! ```
//! use axum::{Router, routing::get};
//!
//! let app: Router = service_kit::finish(Router::new().route("/hello", get(|| async { "hi" })), 64 * 1024);
//! ```

// Handlers return `Result<_, Problem>`: the error is a response body (168 bytes) built only on
// the error path, next to I/O; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod config;
pub mod context;
pub mod extract;
pub mod faults;
pub mod health;
pub mod metrics;
pub mod ops;
pub mod paging;
pub mod problem;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod testing;

use axum::{Router, extract::DefaultBodyLimit, middleware, routing::get};

use crate::problem::Problem;

/// Adds what every route needs: `/health/live` and `/metrics`, problem+json answers for unknown
/// paths (404) and methods (405), the body limit (413 above `body_limit` bytes), and the
/// [`context::observe`] middleware (request id, trace context, log span, panic -> 500,
/// latency histogram). Call it last, after the service's own routes and state.
pub fn finish(router: Router, body_limit: usize) -> Router {
    metrics::install();
    router
        .route("/health/live", get(health::live))
        .route("/metrics", get(metrics::render))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(context::observe))
}

async fn not_found() -> Problem {
    Problem::new(http::StatusCode::NOT_FOUND, "no-route", "Not Found")
        .with_detail("no route matches this path")
}

async fn method_not_allowed() -> Problem {
    Problem::method_not_allowed()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::routing::get;
    use http::StatusCode;

    use super::*;
    use crate::testing::{call, get as get_req};

    fn panicking_app() -> Router {
        let routes = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("secret internal state: db password is hunter2");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/log",
                get(|| async {
                    tracing::info!("inside the handler");
                    "ok"
                }),
            )
            .route(
                "/nested",
                get(|| async {
                    tracing::info_span!("lookup", user = 7)
                        .in_scope(|| tracing::info!("in a nested span"));
                    "ok"
                }),
            );
        finish(routes, 1024)
    }

    #[tokio::test]
    async fn a_panic_is_a_generic_500_with_the_request_id() {
        let r = call(&panicking_app(), get_req("/boom")).await;
        crate::testing::assert_problem(&r, 500);
        let text = r.body.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("secret"),
            "{text}"
        );
        assert!(
            r.body["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        // The process keeps serving.
        assert_eq!(
            call(&panicking_app(), get_req("/log")).await.status,
            StatusCode::OK
        );
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The JSON lines written while `req` is served by [`panicking_app`], plus one line logged
    /// outside any request.
    fn json_lines_of(req: http::Request<axum::body::Body>) -> Vec<serde_json::Value> {
        let buf = Buf::default();
        let sink = buf.clone();
        let config = config::Telemetry {
            log_format: config::LogFormat::Json,
            ..config::Telemetry::default()
        };
        let (sub, _) = telemetry::subscriber(&config, "test", move || sink.clone()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = tracing::subscriber::with_default(sub, || {
            tracing::info!(port = 5001_u16, "outside any request");
            rt.block_on(call(&panicking_app(), req))
        });
        assert_eq!(r.status, StatusCode::OK);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn every_json_log_line_of_a_request_carries_its_trace_span_and_request_ids() {
        let mut req = get_req("/log");
        req.headers_mut()
            .insert("x-request-id", "log-req-7".parse().unwrap());
        req.headers_mut().insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let lines = json_lines_of(req);
        let (outside, inside) = lines.split_first().unwrap();

        assert_eq!(outside["fields"]["message"], "outside any request");
        assert_eq!(outside["fields"]["port"], 5001, "numbers stay numbers");
        assert_eq!(outside["level"], "INFO");
        assert_eq!(outside["target"], "service_kit::tests");
        assert!(
            humantime::parse_rfc3339(outside["timestamp"].as_str().unwrap()).is_ok(),
            "{outside}"
        );
        for absent in ["trace_id", "span_id", "request_id", "span"] {
            assert!(outside.get(absent).is_none(), "{outside}");
        }

        assert!(inside.len() >= 2, "{inside:?}");
        let span_id = inside[0]["span_id"].as_str().unwrap().to_owned();
        for line in inside {
            assert_eq!(
                line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
                "{line}"
            );
            assert_eq!(line["span_id"], span_id.as_str(), "{line}");
            assert_eq!(line["request_id"], "log-req-7", "{line}");
            assert_eq!(line["span"]["name"], "request", "{line}");
            assert_eq!(line["span"]["route"], "/log", "{line}");
        }
        assert_eq!(span_id.len(), 16);
        assert!(span_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(span_id, "00f067aa0ba902b7", "our span, not the caller's");
        assert!(
            inside
                .iter()
                .any(|l| l["fields"]["message"] == "inside the handler")
        );
        assert!(inside.iter().any(|l| l["fields"]["status"] == 200));
    }

    #[test]
    fn a_line_in_a_nested_span_names_it_and_keeps_the_request_ids() {
        let lines = json_lines_of(get_req("/nested"));
        let nested = lines
            .iter()
            .find(|l| l["fields"]["message"] == "in a nested span")
            .unwrap();
        assert_eq!(nested["span"]["name"], "lookup");
        assert_eq!(nested["span"]["user"], 7);
        let request = lines
            .iter()
            .find(|l| l["fields"]["message"] == "request finished")
            .unwrap();
        for id in ["trace_id", "span_id", "request_id"] {
            assert!(nested[id].is_string(), "{nested}");
            assert_eq!(nested[id], request[id], "{id}");
        }
    }
}

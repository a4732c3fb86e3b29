//! What the reference services share, kept in one place so each service's own code is only
//! its domain: RFC 9457 errors ([`problem`]), extractors that reject with them ([`extract`]),
//! health reports ([`health`]), Prometheus metrics ([`metrics`]), the per-request context and
//! its middleware ([`context`]), the sqlx store ([`store`]), env configuration ([`config`]),
//! serving with graceful shutdown ([`serve`]), the token-guarded admin check ([`admin`]),
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

    #[test]
    fn every_json_log_line_of_a_request_carries_its_request_id() {
        let buf = Buf::default();
        let sink = buf.clone();
        let sub = serve::subscriber(config::LogFormat::Json, "info", move || sink.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = tracing::subscriber::with_default(sub, || {
            rt.block_on(async {
                let mut req = get_req("/log");
                req.headers_mut()
                    .insert("x-request-id", "log-req-7".parse().unwrap());
                call(&panicking_app(), req).await
            })
        });
        assert_eq!(r.status, StatusCode::OK);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines.len() >= 2, "{out}");
        for line in &lines {
            assert_eq!(line["span"]["request_id"], "log-req-7", "{line}");
            assert_eq!(line["span"]["trace_id"].as_str().unwrap().len(), 32);
        }
        assert!(
            lines
                .iter()
                .any(|l| l["fields"]["message"] == "inside the handler")
        );
        assert!(lines.iter().any(|l| l["fields"]["status"] == 200));
    }
}

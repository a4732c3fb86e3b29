//! Per-request context: request id, W3C trace context, the request's span (its log lines, and
//! its server span when traces are exported: [`crate::telemetry`]), panic safety and the
//! latency histogram, in one middleware ([`observe`]); and the span and headers of an
//! outgoing call made on its behalf ([`outgoing`]).
//!
//! Why one middleware and not five: each concern needs the same facts (the request id, the
//! matched route, the start time), and keeping them together means a panic response still gets
//! its request id, its log line and its histogram sample.
//!
//! The context is also kept in a task-local for the duration of the request, so code deep in a
//! handler (a [`Problem`] being rendered, an outgoing call that must carry `traceparent`) can
//! read it without threading it through every signature.

use std::{fmt, panic::AssertUnwindSafe, sync::Arc};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue};
use tracing::{Instrument, Span, field};

use crate::{problem::Problem, telemetry};

pub use crate::telemetry::TraceContext;

/// Header carrying the request id, in and out.
pub const REQUEST_ID: &str = "x-request-id";
/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// What every part of a request's handling may want to know about it.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The request id (taken from `x-request-id` when sane, else a new UUID v7).
    pub request_id: Arc<str>,
    /// This service's span in the caller's trace (or a new trace).
    pub trace: TraceContext,
    /// The request path, for `instance` in problem bodies.
    pub path: Arc<str>,
}

impl RequestContext {
    /// Builds the context from the incoming headers, with a span id of its own in the caller's
    /// trace (or a new trace).
    pub fn from_headers(headers: &HeaderMap, path: &str) -> Self {
        Self::for_span(&Span::none(), headers, path)
    }

    /// Builds the context of the request `span` serves (a server span not yet entered): when
    /// `span` is exported, the caller's span becomes its parent and the context carries its
    /// ids; otherwise as [`RequestContext::from_headers`].
    pub fn for_span(span: &Span, headers: &HeaderMap, path: &str) -> Self {
        let request_id = headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_sane_id(v))
            .map(Arc::<str>::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string()));
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse);
        let trace = telemetry::server_span_parent(span, parent.as_ref())
            .unwrap_or_else(|| parent.map_or_else(TraceContext::new_root, |p| p.child()));
        Self {
            request_id,
            trace,
            path: Arc::from(path),
        }
    }
}

/// An outgoing HTTP call: its client span, to instrument the call's future with, and the
/// headers the call carries (the request id, and a `traceparent` naming the client span).
#[derive(Debug)]
pub struct Outgoing {
    /// The client span, a child of the span current where [`outgoing`] was called.
    pub span: Span,
    /// `x-request-id` (when made on behalf of a request) and `traceparent` (when there is a
    /// trace to carry).
    pub headers: Vec<(&'static str, String)>,
}

impl Outgoing {
    /// Records the answer's status on the span (a 5xx marks it failed).
    pub fn answered(&self, status: u16) {
        telemetry::record_status(&self.span, status);
    }

    /// Marks the span failed: no answer came (refused, timed out, rejected by a layer).
    pub fn failed(&self, reason: &str) {
        telemetry::record_failure(&self.span, reason);
    }
}

/// The span and headers of an outgoing call made on behalf of `ctx` (or of no request, as in
/// background work). `name` is the span's name in OpenTelemetry's HTTP conventions: the method
/// and the route template (`GET /users/{id}`), not the raw URL. Every service that calls
/// another (order-service's user lookup; a proxy such as the gateway, per upstream request)
/// sends these headers and instruments the call with the span, so the callee's server span is
/// the call's child in one trace; the server span itself comes with [`observe`].
///
/// ```
/// use service_kit::context::{RequestContext, TRACEPARENT, outgoing};
///
/// let ctx = RequestContext::from_headers(&http::HeaderMap::new(), "/orders");
/// let call = outgoing(Some(&ctx), "GET /users/{id}", "GET", "http://127.0.0.1:5001/users/7");
/// let (_, traceparent) = call.headers.iter().find(|(n, _)| *n == TRACEPARENT).unwrap();
/// // With traces off, a new span in the request's trace.
/// assert!(traceparent.starts_with(&format!("00-{}-", ctx.trace.trace_id())));
/// assert!(!traceparent.contains(&ctx.trace.span_id()));
/// ```
pub fn outgoing(ctx: Option<&RequestContext>, name: &str, method: &str, url: &str) -> Outgoing {
    let (span, trace) = telemetry::client_span(name, method, url, || ctx.map(|c| c.trace.child()));
    let mut headers = Vec::with_capacity(2);
    if let Some(ctx) = ctx {
        headers.push((REQUEST_ID, ctx.request_id.to_string()));
    }
    if let Some(trace) = trace {
        headers.push((TRACEPARENT, trace.header()));
    }
    Outgoing { span, headers }
}

impl fmt::Display for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} trace={}", self.request_id, self.trace.trace_id())
    }
}

fn is_sane_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// The context of the request being handled on this task, if any.
pub fn current() -> Option<RequestContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` with `ctx` as the current request context (for background work done on behalf of
/// a request, and for tests).
pub async fn scope<F: Future>(ctx: RequestContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// The middleware: request id in and out, trace context, a log span holding both, a panic
/// caught as a generic 500, and one `http_server_request_duration_seconds` sample.
///
/// Add it with `Router::layer(axum::middleware::from_fn(observe))` so it runs after routing and
/// sees the matched route template (unmatched requests are labelled `unmatched`).
pub async fn observe(mut req: Request, next: Next) -> Response {
    let start = tokio::time::Instant::now();
    let method = req.method().clone();
    // A clone of the matched path shares its string; the request is moved into `next` below.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = field::Empty,
        method = %method,
        route = %route,
        "http.response.status_code" = field::Empty,
        request_id = field::Empty,
        trace_id = field::Empty,
        span_id = field::Empty,
    );
    let ctx = RequestContext::for_span(&span, req.headers(), req.uri().path());
    span.record(telemetry::REQUEST_ID, field::display(&ctx.request_id));
    span.record(telemetry::TRACE_ID, field::display(ctx.trace.trace_id()));
    span.record(telemetry::SPAN_ID, field::display(ctx.trace.span_id()));
    req.extensions_mut().insert(ctx.clone());

    let run = CURRENT.scope(ctx.clone(), AssertUnwindSafe(next.run(req)).catch_unwind());
    let mut response = match run.instrument(span.clone()).await {
        Ok(response) => response,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            span.in_scope(|| tracing::error!(panic = %msg, "handler panicked"));
            let mut p = Problem::internal();
            p.request_id = Some(ctx.request_id.to_string());
            p.instance = Some(ctx.path.to_string());
            p.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    telemetry::record_status(&span, status);
    crate::metrics::record_request(&method, route, status, elapsed);
    let quiet = route.starts_with("/health") || route == "/metrics" || route == "/resilience";
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if quiet {
            tracing::debug!(status, elapsed_ms = ms, "request finished");
        } else if status >= 500 {
            tracing::warn!(status, elapsed_ms = ms, "request finished");
        } else {
            tracing::info!(status, elapsed_ms = ms, "request finished");
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing_rejects_malformed_values() {
        for bad in [
            "",
            "00-abc-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
        let ok =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            ok.header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn request_id_is_taken_only_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(
            &*RequestContext::from_headers(&h, "/").request_id,
            "abc-123"
        );
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(
            &*RequestContext::from_headers(&h, "/").request_id,
            "has space"
        );
    }
}

//! Per-request context: request id, W3C trace context, the request's log span, panic safety and
//! the latency histogram, in one middleware ([`observe`]).
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
use tracing::Instrument;

use crate::problem::Problem;

/// Header carrying the request id, in and out.
pub const REQUEST_ID: &str = "x-request-id";
/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// W3C trace context of the current request.
///
/// ```
/// use service_kit::context::TraceContext;
///
/// let incoming = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// let ours = incoming.child();
/// assert_eq!(ours.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(ours.header().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
/// assert_ne!(ours.span_id(), incoming.span_id());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceContext {
    /// A new trace (no incoming context).
    pub fn new_root() -> Self {
        Self {
            trace_id: rand::random::<u128>().max(1),
            span_id: rand::random::<u64>().max(1),
            flags: 1,
        }
    }

    /// Parses a `traceparent` header value (version 00); `None` when malformed or all-zero.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let lower_hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(version, 2) || version == "ff" || !lower_hex(trace, 32) {
            return None;
        }
        if !lower_hex(span, 16)
            || !lower_hex(flags, 2)
            || (version == "00" && parts.next().is_some())
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// The same trace with a new span id: this service's span, or an outgoing call's.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: rand::random::<u64>().max(1),
            flags: self.flags,
        }
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The 16-hex-digit span id.
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The `traceparent` header value naming this span as the parent.
    pub fn header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

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
    /// Builds the context from the incoming headers.
    pub fn from_headers(headers: &HeaderMap, path: &str) -> Self {
        let request_id = headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_sane_id(v))
            .map(Arc::<str>::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string()));
        let trace = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse)
            .map(|t| t.child())
            .unwrap_or_else(TraceContext::new_root);
        Self {
            request_id,
            trace,
            path: Arc::from(path),
        }
    }

    /// Headers to put on an outgoing call made on behalf of this request: the same request id
    /// and a `traceparent` naming a new child span.
    pub fn outgoing_headers(&self) -> [(&'static str, String); 2] {
        [
            (REQUEST_ID, self.request_id.to_string()),
            (TRACEPARENT, self.trace.child().header()),
        ]
    }
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
    let ctx = RequestContext::from_headers(req.headers(), req.uri().path());
    req.extensions_mut().insert(ctx.clone());
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        request_id = %ctx.request_id,
        trace_id = %ctx.trace.trace_id(),
        span_id = %ctx.trace.span_id(),
    );

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

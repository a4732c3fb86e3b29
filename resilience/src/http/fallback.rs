//! The fallback at the HTTP edge: a static degraded response, and the marker header on every
//! response a fallback served.
//!
//! A response answered by a fallback carries [`FromFallback`] in its extensions (for the
//! layers and handlers around it: a cache refuses to store it) and the
//! [`FALLBACK_HEADER`] `x-resilience-fallback: <outcome>` (for the client: a degraded answer
//! is told apart from a real one). [`StaticResponse`] does both; [`MarkedFallback`] adds
//! them to any other fallback's responses.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Response, StatusCode};
//! use resilience_layers::{fallback::FromFallback, http::{FALLBACK_HEADER, StaticResponse}, stack::StackConfig};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config: StackConfig = toml::from_str(r#"
//!     [fallback]
//!     on = ["circuit_open"]
//!     [circuit_breaker]
//! "#).unwrap();
//! let degraded = StaticResponse::new(StatusCode::OK)
//!     .with_header("content-type", "application/json").unwrap()
//!     .with_body(r#"{"recommendations":[]}"#);
//! let stack = config.into_layer("recommendations").unwrap().for_server();
//! stack.circuit_breaker().unwrap().force_open();
//! let svc = ServiceBuilder::new()
//!     .option_layer(stack.fallback_layer(degraded))
//!     .layer(stack)
//!     .service(service_fn(|_: http::Request<()>| async {
//!     Ok::<_, std::io::Error>(Response::new(Bytes::from("live")))
//! }));
//! let resp = svc.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(resp.headers()[FALLBACK_HEADER], "circuit_open");
//! assert!(resp.extensions().get::<FromFallback>().is_some());
//! assert_eq!(resp.body(), r#"{"recommendations":[]}"#);
//! # }
//! ```

use std::{
    collections::BTreeMap,
    future::{Future, Ready, ready},
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};

use crate::{
    config::{ConfigError, ConfigProblem},
    error::BoxError,
    fallback::{Fallback, FallbackOutcome, Fault, FromFallback},
};

/// `x-resilience-fallback`: on a response a fallback served, the outcome it answered
/// (`circuit_open`, `timeout`, ...).
pub const FALLBACK_HEADER: HeaderName = HeaderName::from_static("x-resilience-fallback");

/// Marks `response` as served by a fallback for `outcome`: [`FromFallback`] in its
/// extensions and the [`FALLBACK_HEADER`].
///
/// ```
/// use resilience_layers::{fallback::{FallbackOutcome, FromFallback}, http::{FALLBACK_HEADER, mark_fallback}};
///
/// let mut resp = http::Response::new(());
/// mark_fallback(&mut resp, FallbackOutcome::Timeout);
/// assert_eq!(resp.headers()[FALLBACK_HEADER], "timeout");
/// assert_eq!(resp.extensions().get::<FromFallback>().unwrap().outcome, FallbackOutcome::Timeout);
/// ```
pub fn mark_fallback<B>(response: &mut Response<B>, outcome: FallbackOutcome) {
    response.extensions_mut().insert(FromFallback { outcome });
    response
        .headers_mut()
        .insert(FALLBACK_HEADER, HeaderValue::from_static(outcome.as_str()));
}

/// A static degraded response: the same status, headers and body for every fallback served,
/// marked with the outcome ([`mark_fallback`]).
///
/// Built in code ([`new`](Self::new) and the `with_` methods) or from config
/// ([`StaticResponseConfig`]).
#[derive(Debug, Clone)]
pub struct StaticResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl StaticResponse {
    /// An empty response with `status`.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header; refused when the name or value is not valid HTTP.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, BoxError> {
        self.headers
            .append(HeaderName::try_from(name)?, HeaderValue::try_from(value)?);
        Ok(self)
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The response for one fallback served.
    pub fn response<B: From<Bytes>>(&self, outcome: FallbackOutcome) -> Response<B> {
        let mut response = Response::new(B::from(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        mark_fallback(&mut response, outcome);
        response
    }
}

impl<B: From<Bytes>> Fallback<Response<B>> for StaticResponse {
    type Future = Ready<Result<Response<B>, BoxError>>;

    fn fallback(&self, fault: Fault<Response<B>>) -> Self::Future {
        ready(Ok(self.response(fault.outcome())))
    }
}

/// A static degraded response as config: `status`, `headers`, `body`; validated with
/// field-path errors.
///
/// ```
/// use resilience_layers::http::StaticResponseConfig;
///
/// let config: StaticResponseConfig = toml::from_str(r#"
///     status = 202
///     body = '{"status":"pending"}'
///     headers = { content-type = "application/json" }
/// "#).unwrap();
/// let degraded = config.build().unwrap();
/// let resp: http::Response<bytes::Bytes> = degraded.response(resilience_layers::fallback::FallbackOutcome::Failure);
/// assert_eq!(resp.status(), 202);
///
/// let bad: StaticResponseConfig = toml::from_str("status = 42").unwrap();
/// assert_eq!(bad.build().unwrap_err().field(), "status");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticResponseConfig {
    /// The status code (default 503).
    pub status: u16,
    /// Headers, by name.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: String,
}

impl Default for StaticResponseConfig {
    fn default() -> Self {
        Self {
            status: 503,
            headers: BTreeMap::new(),
            body: String::new(),
        }
    }
}

impl StaticResponseConfig {
    /// Validates and builds the response; the error names the field (`status`,
    /// `headers.<name>`).
    pub fn build(&self) -> Result<StaticResponse, ConfigError> {
        let status = StatusCode::from_u16(self.status)
            .ok()
            .filter(|_| self.status >= 100)
            .ok_or_else(|| {
                ConfigError::new(
                    "status",
                    ConfigProblem::Invalid(format!("{} is not an HTTP status", self.status).into()),
                )
            })?;
        let mut response = StaticResponse::new(status).with_body(self.body.clone());
        for (name, value) in &self.headers {
            response = response.with_header(name, value).map_err(|e| {
                ConfigError::new(
                    format!("headers.{name}"),
                    ConfigProblem::Invalid(e.to_string().into()),
                )
            })?;
        }
        Ok(response)
    }
}

/// Any fallback for HTTP responses, its answers marked ([`mark_fallback`]).
///
/// ```
/// use resilience_layers::{fallback::{Fallback, FallbackOutcome, Fault}, http::{FALLBACK_HEADER, MarkedFallback}};
///
/// # tokio_test::block_on(async {
/// let cached = MarkedFallback::new(|_: Fault<http::Response<String>>| http::Response::new("cached".to_owned()));
/// let resp = cached.fallback(Fault::new(FallbackOutcome::Timeout, Err("slow".into()))).await.unwrap();
/// assert_eq!(resp.headers()[FALLBACK_HEADER], "timeout");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct MarkedFallback<F> {
    inner: F,
}

impl<F> MarkedFallback<F> {
    /// Marks the answers of `inner`.
    pub fn new(inner: F) -> Self {
        Self { inner }
    }

    /// The wrapped fallback.
    pub fn into_inner(self) -> F {
        self.inner
    }
}

impl<F, B> Fallback<Response<B>> for MarkedFallback<F>
where
    F: Fallback<Response<B>>,
{
    type Future = MarkedFuture<F::Future>;

    fn fallback(&self, fault: Fault<Response<B>>) -> Self::Future {
        MarkedFuture {
            outcome: fault.outcome(),
            inner: self.inner.fallback(fault),
        }
    }
}

pin_project! {
    /// The future of a [`MarkedFallback`]'s answer.
    #[derive(Debug)]
    pub struct MarkedFuture<Fut> {
        #[pin]
        inner: Fut,
        outcome: FallbackOutcome,
    }
}

impl<Fut, B> Future for MarkedFuture<Fut>
where
    Fut: Future<Output = Result<Response<B>, BoxError>>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.inner.poll(cx).map_ok(|mut response| {
            mark_fallback(&mut response, *this.outcome);
            response
        })
    }
}

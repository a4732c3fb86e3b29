//! RFC 9457 problem details: the one error body every route answers with.
//!
//! Handlers return `Result<_, Problem>` (or an error type that converts into one), extractor
//! rejections are mapped to it, and the 404/405 fallbacks and the panic handler build it too, so a
//! client only ever has to parse one error shape. The request id of the current request is
//! filled in automatically (see [`crate::context`]), which lets an operator find the log lines of
//! any error a user reports, while no internal detail is ever sent.
//!
//! It has the members of the library's [`resilience_layers::http::ProblemDetails`] plus those a service adds
//! (`instance`, `request_id`, the invalid fields, `retry_after` in the body), as public fields
//! with `Deserialize` and an OpenAPI schema, which the library's type leaves out. What the two
//! share is the library's code: the media type, the `Retry-After` rounding and the response
//! ([`render`](resilience_layers::http::ProblemDetails::render)), and the layers' rejections convert into
//! this type ([`From`]), so every problem a service sends goes out the same way.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every error body.
pub use resilience_layers::http::PROBLEM_JSON;

/// One input field that failed validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Path of the field in the request (`email`, `quantity`).
    pub field: String,
    /// What is wrong with it.
    pub detail: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

/// An RFC 9457 problem details body.
///
/// ```
/// use service_kit::problem::Problem;
/// use http::StatusCode;
///
/// let p = Problem::not_found("no user 7");
/// assert_eq!(p.status, 404);
/// assert_eq!(p.status_code(), StatusCode::NOT_FOUND);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"type": "urn:problem:not-found", "title": "Not Found", "status": 404,
    "detail": "no user with id 7", "instance": "/users/7", "request_id": "0190c6f1-..."}))]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:problem:<slug>`).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened in this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path this occurrence belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id (also in the `x-request-id` header and every log line of the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Fields that failed validation (422 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds until a retry may succeed (also sent as `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of the given status; `slug` names the kind (`validation`, `not-found`).
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>) -> Self {
        Self {
            problem_type: format!("urn:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            request_id: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds the detail of this occurrence.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a `Retry-After` (rounded up to whole seconds, at least one).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(resilience_layers::http::ProblemDetails::retry_after_secs(
            after,
        ));
        self
    }

    /// The status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400: the request could not be read (malformed JSON, bad query or path, missing header).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad Request").with_detail(detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not Found").with_detail(detail)
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method Not Allowed",
        )
        .with_detail("this path does not accept the request method")
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict").with_detail(detail)
    }

    /// 413.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload Too Large",
        )
        .with_detail(detail)
    }

    /// 415.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported Media Type",
        )
        .with_detail(detail)
    }

    /// 422 naming each field that failed.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect::<Vec<_>>()
            .join("; ");
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Validation Failed",
        )
        .with_detail(detail);
        p.errors = errors;
        p
    }

    /// 401 for the admin routes.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").with_detail(detail)
    }

    /// 421: the request names (in `Host`) a server this one is not; sent to a browser led
    /// here under another site's name (DNS rebinding).
    pub fn misdirected(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected-request",
            "Misdirected Request",
        )
        .with_detail(detail)
    }

    /// 429 with `Retry-After`: this client asked too often; it may try again after the wait.
    pub fn too_many_requests(detail: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            "Too Many Requests",
        )
        .with_detail(detail)
        .with_retry_after(retry_after)
    }

    /// 503 with `Retry-After`: a dependency (store, upstream) is unavailable for now.
    pub fn unavailable(detail: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service Unavailable",
        )
        .with_detail(detail)
        .with_retry_after(retry_after)
    }

    /// 500 with no internals; the request id lets an operator find the logged cause.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal Server Error",
        )
        .with_detail(
            "the server failed to handle the request; quote the request_id when reporting it",
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// A rejection of the resilience layers (open circuit, full bulkhead, timeout, injected fault)
/// with its `type`, status, detail and `Retry-After` unchanged.
impl From<resilience_layers::http::ProblemDetails> for Problem {
    fn from(p: resilience_layers::http::ProblemDetails) -> Self {
        Self {
            problem_type: p.kind().to_owned(),
            title: p.title().to_owned(),
            status: p.status().as_u16(),
            detail: Some(p.detail().to_owned()),
            instance: None,
            request_id: None,
            errors: Vec::new(),
            retry_after: p
                .retry_after()
                .map(resilience_layers::http::ProblemDetails::retry_after_secs),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        if let Some(ctx) = crate::context::current() {
            if self.request_id.is_none() {
                self.request_id = Some(ctx.request_id.to_string());
            }
            if self.instance.is_none() {
                self.instance = Some(ctx.path.to_string());
            }
        }
        resilience_layers::http::ProblemDetails::render(self.status_code(), self.retry_after, &self)
    }
}

#[cfg(test)]
mod tests {
    use http::header;

    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let p = Problem::unavailable("x", Duration::from_millis(1500));
        assert_eq!(p.retry_after, Some(2));
        let p = Problem::unavailable("x", Duration::ZERO);
        assert_eq!(p.retry_after, Some(1));
        let resp = p.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn validation_names_each_field() {
        let p = Problem::validation(vec![
            FieldError::new("email", "must contain @"),
            FieldError::new("name", "must not be empty"),
        ]);
        assert_eq!(p.status, 422);
        assert_eq!(
            p.detail.as_deref(),
            Some("email: must contain @; name: must not be empty")
        );
    }

    #[tokio::test]
    async fn a_layer_rejection_keeps_its_type_status_and_retry_after() {
        use tower::{Layer, ServiceExt, service_fn};

        let faults = resilience_layers::fault::FaultHandle::new("test");
        faults.set_error_rate(1.0).unwrap();
        let svc = resilience_layers::fault::FaultLayer::new(faults).layer(service_fn(|()| async {
            Ok::<_, resilience_layers::BoxError>(())
        }));
        let err = svc.oneshot(()).await.unwrap_err();
        let lib = resilience_layers::http::ProblemDetails::from_error(&*err);
        let p = Problem::from(lib.clone());
        assert_eq!(p.problem_type, "urn:resilience:injected-fault");
        assert_eq!((p.status, p.title.as_str()), (503, lib.title()));
        assert_eq!(p.detail.as_deref(), Some(lib.detail()));
        assert_eq!(p.retry_after, Some(1));
        let resp = p.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}

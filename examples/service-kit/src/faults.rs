//! The layers in front of a service's business routes, and the admin routes that drive its
//! fault injection.
//!
//! [`business_layers`] wraps the domain routes (not health, metrics or admin, which must keep
//! answering during a chaos run) in, outermost first:
//!
//! - the caller's deadline ([`AcceptDeadlineLayer`], refusing a malformed header): an
//!   `x-request-deadline-ms` that is not a whole number of milliseconds is answered 400
//!   (`urn:resilience:malformed-deadline`) rather than ignored, which would run a caller's
//!   typo unbounded; work stops once the caller has given up,
//!   outgoing calls made by the handler inherit what is left of it, and a deadline shorter
//!   than `min_deadline` (`MIN_DEADLINE_MS`) is refused with 504 before any work;
//! - fault injection ([`FaultLayer`]): latency and an error rate set through
//!   `PUT /admin/faults`, plus per-request latency from `X-Simulate-Latency`, honoured only
//!   for a caller carrying the admin token ([`AdminLatencyHeader`]; ignored otherwise, so
//!   nobody else can park server tasks). Being inside the deadline layer, that latency is cut
//!   by the caller's deadline (504 when it passes);
//!
//! and turns what they add (deadline exceeded 504, injected fault 503 + `Retry-After`) into
//! this crate's problem+json, with the request id.
//!
//! The admin routes (`GET`, `PUT`, `DELETE /admin/faults`, routed by [`crate::ops::app`]
//! behind [`crate::admin::require_token`]) need `Authorization: Bearer $ADMIN_TOKEN`; with no
//! token configured they answer 404, so faults cannot be switched on in a default deployment.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Json,
    error_handling::HandleErrorLayer,
    extract::{Request, State},
    response::Response,
    routing::Route,
};
use resilience_layers::{
    BoxError,
    fault::{FaultHandle, FaultLayer, FaultSnapshot, RequestLatency},
    http::{AcceptDeadlineLayer, SimulateLatencyHeader},
};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service, ServiceBuilder};
use utoipa::{
    Modify, ToSchema,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use crate::{
    extract::{ApiJson, Validate},
    ops::Ops,
    problem::{FieldError, Problem},
};

/// The most latency `PUT /admin/faults` may set.
pub const MAX_LATENCY_MS: u64 = 30_000;

/// The layers for business routes (see the module docs); apply with `Router::layer`.
pub fn business_layers(
    faults: FaultHandle,
    min_deadline: Duration,
    admin_token: Option<String>,
) -> impl Layer<
    Route,
    Service: Service<Request, Response = Response, Error = Infallible, Future: Send>
                 + Clone
                 + Send
                 + Sync
                 + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(layer_error))
        .layer(
            AcceptDeadlineLayer::new()
                .with_min_budget(min_deadline)
                .refuse_malformed(),
        )
        .layer(FaultLayer::new(faults).with_request_latency(AdminLatencyHeader::new(admin_token)))
}

/// `X-Simulate-Latency` ([`SimulateLatencyHeader`]), honoured only when an admin token is
/// configured and the request carries `Authorization: Bearer <token>`; otherwise ignored.
///
/// ```
/// use std::time::Duration;
/// use resilience_layers::fault::RequestLatency;
/// use service_kit::faults::AdminLatencyHeader;
///
/// let hook = AdminLatencyHeader::new(Some("s3cret-token".into()));
/// let req = |auth: &str| {
///     http::Request::builder().header("x-simulate-latency", "250ms").header("authorization", auth).body(()).unwrap()
/// };
/// assert_eq!(hook.request_latency(&req("Bearer s3cret-token")), Some(Duration::from_millis(250)));
/// assert_eq!(hook.request_latency(&req("Bearer guess")), None);
/// assert_eq!(AdminLatencyHeader::new(None).request_latency(&req("Bearer s3cret-token")), None);
/// ```
#[derive(Clone)]
pub struct AdminLatencyHeader {
    token: Option<Arc<str>>,
}

impl AdminLatencyHeader {
    /// Honours the header for callers carrying `token`; `None` ignores it always.
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token.map(Into::into),
        }
    }
}

// Hand-written: the token must never reach a log line.
impl std::fmt::Debug for AdminLatencyHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminLatencyHeader")
            .field("enabled", &self.token.is_some())
            .finish()
    }
}

impl<B> RequestLatency<Request<B>> for AdminLatencyHeader {
    fn request_latency(&self, req: &Request<B>) -> Option<Duration> {
        let token = self.token.as_deref()?;
        // The header first: most requests have none, and then the token is not compared.
        let asked = SimulateLatencyHeader.request_latency(req)?;
        crate::admin::carries_token(req.headers(), token).then_some(asked)
    }
}

async fn layer_error(err: BoxError) -> Problem {
    let p = resilience_layers::http::ProblemDetails::from_error(&*err);
    // 500 is what the library makes of an error it does not know: a bug, not a rejection.
    if p.status() == http::StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %err, "unexpected layer error");
    } else {
        tracing::warn!(error = %err, status = p.status().as_u16(), "request failed in a layer");
    }
    p.into()
}

/// `PUT /admin/faults` body: the faults to run with from now on (absent fields are off).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"latency_ms": 800, "error_rate": 0.2}))]
pub struct FaultSettings {
    /// Latency added to every business request, in ms (0 to 30000).
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    #[schema(minimum = 0, maximum = 30000)]
    pub latency_ms: u64,
    /// Fraction of business requests failed with 503, 0 to 1.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub error_rate: f64,
}

impl Validate for FaultSettings {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.latency_ms > MAX_LATENCY_MS {
            errors.push(FieldError::new("latency_ms", "must be at most 30000"));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            errors.push(FieldError::new("error_rate", "must be between 0 and 1"));
        }
        errors
    }
}

/// The current fault settings and counts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FaultReport {
    /// Latency added to every business request, in ms.
    pub latency_ms: u64,
    /// Fraction of business requests failed on purpose.
    pub error_rate: f64,
    /// Errors injected so far.
    pub injected_errors_total: u64,
    /// Requests delayed so far.
    pub delayed_total: u64,
}

impl From<FaultSnapshot> for FaultReport {
    fn from(s: FaultSnapshot) -> Self {
        Self {
            latency_ms: s.latency_ms,
            error_rate: s.error_rate,
            injected_errors_total: s.injected_errors_total,
            delayed_total: s.delayed_total,
        }
    }
}

/// Reads the fault settings.
#[utoipa::path(
    get,
    path = "/admin/faults",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Current settings and counts", body = FaultReport),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Admin disabled (no ADMIN_TOKEN)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_faults(State(s): State<Ops>) -> Json<FaultReport> {
    Json(FaultReport::from(s.faults.snapshot()))
}

/// Replaces the fault settings.
#[utoipa::path(
    put,
    path = "/admin/faults",
    tag = "admin",
    security(("bearer" = [])),
    request_body(content = FaultSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "The new settings", body = FaultReport),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Admin disabled (no ADMIN_TOKEN)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Out-of-range or unknown field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_faults(
    State(s): State<Ops>,
    ApiJson(settings): ApiJson<FaultSettings>,
) -> Result<Json<FaultReport>, Problem> {
    s.faults
        .set_latency(Duration::from_millis(settings.latency_ms));
    if s.faults.set_error_rate(settings.error_rate).is_err() {
        return Err(Problem::validation(vec![FieldError::new(
            "error_rate",
            "must be between 0 and 1",
        )]));
    }
    tracing::warn!(
        latency_ms = settings.latency_ms,
        error_rate = settings.error_rate,
        "fault injection changed"
    );
    Ok(Json(FaultReport::from(s.faults.snapshot())))
}

/// Turns every fault off.
#[utoipa::path(
    delete,
    path = "/admin/faults",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "All faults off", body = FaultReport),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Admin disabled (no ADMIN_TOKEN)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_faults(State(s): State<Ops>) -> Json<FaultReport> {
    s.faults.reset();
    tracing::warn!("fault injection switched off");
    Json(FaultReport::from(s.faults.snapshot()))
}

/// Adds the `bearer` security scheme the admin routes refer to; use as
/// `#[openapi(modifiers(&service_kit::faults::BearerAuth))]`.
#[derive(Debug, Clone, Copy)]
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

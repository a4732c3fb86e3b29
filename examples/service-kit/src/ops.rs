//! The operations side every service shares, and assembling a service's router around it.
//!
//! A service writes its business routes, its own operations routes (order-service's
//! `/resilience`) and the checks its readiness depends on; [`app`] adds the rest, the same way
//! for every service:
//!
//! - `/health` and `/health/ready`: the service's checks plus the shutdown flag
//!   (`application/health+json`, 503 when a check fails);
//! - `/health/live`, `/metrics`, `/openapi.json` (the service's document merged with
//!   [`OpsApi`], the document of these routes);
//! - `/admin/faults` ([`crate::faults`]), and the business layers (caller's deadline, fault
//!   injection) on the business routes only;
//! - everything [`crate::finish`] adds (404/405 problems, body limit, request context).

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use axum::{Json, Router, extract::State, middleware, routing::get};
use resilience_layers::fault::FaultHandle;
use utoipa::OpenApi;

use crate::{
    faults::{self, BearerAuth, FaultReport, FaultSettings},
    health::{Check, Health, Readiness},
    problem::{FieldError, Problem},
    store::Store,
};

/// A future producing a service's readiness checks.
pub type ChecksFuture = Pin<Box<dyn Future<Output = Health> + Send>>;

/// What the shared operations routes need from a service.
#[derive(Clone)]
pub struct Ops {
    /// Fails readiness once shutdown starts.
    pub readiness: Readiness,
    /// The fault switches of the business routes.
    pub faults: FaultHandle,
    /// `ADMIN_TOKEN`; `None` disables `/admin/*`.
    pub admin_token: Option<String>,
    /// Largest accepted body.
    pub body_limit: usize,
    /// The shortest caller's deadline the business routes accept (`MIN_DEADLINE_MS`).
    pub min_deadline: Duration,
    /// The service's readiness checks (the store, upstream circuits).
    pub checks: Arc<dyn Fn() -> ChecksFuture + Send + Sync>,
    /// The service's OpenAPI document, without the operations routes.
    pub openapi: fn() -> utoipa::openapi::OpenApi,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("readiness", &self.readiness)
            .field("faults", &self.faults)
            .field("admin", &self.admin_token.is_some())
            .field("body_limit", &self.body_limit)
            .field("min_deadline", &self.min_deadline)
            .finish_non_exhaustive()
    }
}

/// The readiness check of a store: pass, or fail with the reason.
pub async fn store_check(store: &Store) -> Check {
    match store.ping(Duration::from_secs(2)).await {
        Ok(()) => Check::pass(),
        Err(e) => Check::fail(e),
    }
}

/// The service's router: `business` behind the business layers, `operations` as they are,
/// and the shared operations routes.
pub fn app<S>(business: Router<S>, operations: Router<S>, state: S, ops: Ops) -> Router
where
    S: Clone + Send + Sync + 'static,
{
    let body_limit = ops.body_limit;
    let require_token = middleware::from_fn_with_state(
        crate::admin::AdminGuard::new(ops.admin_token.clone()),
        crate::admin::require_token,
    );
    let service = business
        .layer(faults::business_layers(
            ops.faults.clone(),
            ops.min_deadline,
            ops.admin_token.clone(),
        ))
        .merge(operations)
        .with_state(state);
    let shared = Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route(
            "/admin/faults",
            get(faults::get_faults)
                .put(faults::put_faults)
                .delete(faults::delete_faults)
                .route_layer(require_token),
        )
        .with_state(ops);
    crate::finish(service.merge(shared), body_limit)
}

/// Readiness: the service's checks, and `shutdown` failing once shutdown starts.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready (`warn` when an upstream circuit is not closed)", body = Health, content_type = "application/health+json"),
        (status = 503, description = "Not ready", body = Health, content_type = "application/health+json"),
    )
)]
pub async fn ready(State(ops): State<Ops>) -> Health {
    let mut health = (ops.checks)().await;
    ops.readiness.check(&mut health);
    health
}

/// Seed-compatible health: the same report as `/health/ready`.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health, content_type = "application/health+json"),
        (status = 503, description = "Not ready", body = Health, content_type = "application/health+json"),
    )
)]
pub async fn health(ops: State<Ops>) -> Health {
    ready(ops).await
}

/// This document: the service's routes and the operations routes (the admin routes only when
/// `ADMIN_TOKEN` enables them: without it they answer 404 like any unknown path).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json"))
)]
pub async fn openapi(State(ops): State<Ops>) -> Json<utoipa::openapi::OpenApi> {
    Json(document((ops.openapi)(), ops.admin_token.is_some()))
}

/// `own` with the operations routes added, the admin routes only when `admin` is on, and the
/// request headers the business layers read on every business operation.
pub fn document(mut own: utoipa::openapi::OpenApi, admin: bool) -> utoipa::openapi::OpenApi {
    document_business_headers(&mut own, admin);
    let mut doc = own.merge_from(OpsApi::openapi());
    if !admin {
        doc.paths
            .paths
            .retain(|path, _| !path.starts_with("/admin/"));
    }
    doc
}

/// Adds the headers [`faults::business_layers`] reads to every operation of the service's own
/// document not tagged `operations` (those are served outside the business layers):
/// `x-request-deadline-ms` always, `x-simulate-latency` only when the admin token enables it.
/// Clients and fuzzers learn them from the document like any other parameter.
fn document_business_headers(doc: &mut utoipa::openapi::OpenApi, admin: bool) {
    use utoipa::openapi::{
        RefOr, Required, ResponseBuilder,
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{ObjectBuilder, Type},
    };
    let header = |name: &str, description: &str, schema: ObjectBuilder| -> Parameter {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema.build()))
            .build()
    };
    let mut headers = vec![header(
        "x-request-deadline-ms",
        "The caller's remaining time in whole milliseconds. The request is answered 504 when \
         it runs out, and at once (504, without doing the work) when it is below the service's \
         MIN_DEADLINE_MS; calls the service makes for this request carry what is left. Anything \
         but a whole number is refused with 400; above one day counts as one day.",
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0)),
    )];
    if admin {
        let latency = format!(
            "Latency to add to this request (fault injection), as `250ms`, `1.5s` or a number \
             of milliseconds, capped at {} s; honoured only with the admin token in \
             `Authorization`, ignored otherwise.",
            resilience_layers::fault::MAX_REQUEST_LATENCY.as_secs()
        );
        headers.push(header(
            "x-simulate-latency",
            &latency,
            ObjectBuilder::new().schema_type(Type::String),
        ));
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let tags = operation.tags.as_deref().unwrap_or_default();
            if tags.iter().any(|t| t == "operations") {
                continue;
            }
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .extend(headers.iter().cloned());
            let malformed = "a malformed `x-request-deadline-ms`";
            match operation.responses.responses.get_mut("400") {
                Some(RefOr::T(response)) => {
                    response.description = format!("{}; or {malformed}", response.description);
                }
                Some(RefOr::Ref(_)) => {}
                None => {
                    let response = ResponseBuilder::new()
                        .description(format!("{malformed}, problem+json"))
                        .build();
                    operation
                        .responses
                        .responses
                        .insert("400".into(), RefOr::T(response));
                }
            }
        }
    }
}

/// The OpenAPI document of the operations routes every service has.
#[derive(OpenApi)]
#[openapi(
    paths(
        ready,
        health,
        openapi,
        crate::health::live,
        crate::metrics::render,
        crate::faults::get_faults,
        crate::faults::put_faults,
        crate::faults::delete_faults,
    ),
    components(schemas(Problem, FieldError, Health, Check, FaultSettings, FaultReport)),
    modifiers(&BearerAuth)
)]
pub struct OpsApi;

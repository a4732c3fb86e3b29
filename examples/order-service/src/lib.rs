//! order-service: orders, each checked against user-service through the resilience stack.
//!
//! `POST /orders` needs an `Idempotency-Key`: the key and the order commit in one transaction
//! and the answer is stored with them, so a retried request replays the first answer and never
//! creates a second order, even across restarts. A repeat while the first is still in flight
//! gets 409; the same key with a different body gets 422. Keys are scoped per user (the body's
//! `user_id`), kept for `IDEMPOTENCY_RETENTION` (24 h by default; after that the same key
//! places a new order) and never shown in a response ([`idempotency`]). Concurrent orders
//! share their transaction, one commit (one sync of the log) for a batch, and none is answered
//! before that commit ([`group_commit`]).
//!
//! The user is verified through [`users::UserClient`] (round robin over `USER_SERVICE_URLS`,
//! one circuit breaker per instance). When no instance can answer, the default is to fail fast
//! with 503 and `Retry-After`; with `DEGRADED_MODE=accept` (the library's fallback layer around
//! the lookup, [`users::degraded_lookup`]) the order is stored as `pending` and
//! the [`verifier`] settles it (`confirmed` or `rejected`) once user-service answers again. A
//! user that does not exist is 422 in every mode.

// Handlers return `Result<_, Problem>`: the error is a response body (168 bytes) built only on
// the error path, next to I/O; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod group_commit;
pub mod idempotency;
pub mod reload;
pub mod store;
pub mod users;
pub mod verifier;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{FromRequestParts, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use resilience_layers::{
    bulkhead::BulkheadSnapshot,
    circuit_breaker::{CircuitSnapshot, CircuitState},
    deps::tower::{Layer, ServiceExt},
    fault::FaultHandle,
    retry::RetrySnapshot,
};
use serde::{Deserialize, Serialize};
use service_kit::{
    extract::{ApiJson, ApiPath, ApiQuery, Validate, check_text, text_schema},
    health::{Check, Health, Readiness, Status},
    ops::Ops,
    paging,
    problem::{FieldError, Problem},
    store::{Store, now_ms},
};
use utoipa::{IntoParams, OpenApi, ToSchema};

pub use crate::config::{Config, DEFAULT_STACK, DegradedMode, default_stack};
use crate::{
    group_commit::OrderWriter,
    idempotency::{InFlight, ScopedKey},
    store::{Inserted, NewOrder, StoredResponse},
    users::{DegradedLookup, Lookup, LookupError, LookupService, UserCheck, UserClient},
};

/// The service's name in logs, health, metrics and `/resilience`.
pub const SERVICE: &str = "order-service";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The order store.
    pub store: Store,
    /// The group commit every new order is written through.
    pub orders: OrderWriter,
    /// The user-service client.
    pub users: UserClient,
    /// Keys being handled right now.
    pub in_flight: std::sync::Arc<InFlight>,
    /// Fails readiness once shutdown starts.
    pub readiness: Readiness,
    /// What to do when user-service cannot answer.
    pub degraded: DegradedMode,
    /// The degraded mode's fallback around the lookup, applied when `degraded` is `Accept`.
    pub degraded_lookup: DegradedLookup,
    /// `ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// Largest accepted body.
    pub body_limit: usize,
    /// `MIN_DEADLINE_MS`: the shortest caller's deadline the business routes accept.
    pub min_deadline: Duration,
    /// Fault injection on the `/orders` routes (off until `PUT /admin/faults`).
    pub faults: FaultHandle,
}

impl AppState {
    /// State over an opened store; builds the user-service client from the config.
    pub fn new(store: Store, config: &Config) -> Result<Self, String> {
        // The recorder must exist before the stack registers its metric handles.
        service_kit::metrics::install();
        describe_metrics();
        crate::reload::describe_metrics();
        Ok(Self {
            orders: OrderWriter::spawn(store.clone(), config.writes, render_order),
            store,
            users: UserClient::new(config.user_service_urls.clone(), config.stack.as_ref())?
                .with_cache(config.user_cache.clone())?,
            in_flight: Default::default(),
            readiness: Readiness::new(),
            degraded: config.degraded,
            degraded_lookup: users::degraded_lookup(),
            admin_token: config.common.admin_token.clone(),
            body_limit: config.common.body_limit,
            min_deadline: config.common.min_deadline,
            faults: FaultHandle::new(SERVICE),
        })
    }
}

/// HELP text for this service's own counters (the handlers register them as they count).
fn describe_metrics() {
    metrics::describe_counter!(
        "orders_created_total",
        "Orders stored, by the status they were stored with."
    );
    metrics::describe_counter!(
        "orders_idempotent_replays_total",
        "Order requests answered from the stored answer of an earlier one with the same key."
    );
    metrics::describe_counter!(
        "orders_rejected_unavailable_total",
        "Orders refused with 503 because user-service was unavailable and degraded mode is off."
    );
    metrics::describe_counter!(
        "orders_settled_total",
        "Pending orders settled after user-service came back, by the status they settled to."
    );
    metrics::describe_counter!(
        "orders_rejected_deadline_total",
        "Orders refused with 504 because the caller's deadline ran out before the user was verified."
    );
    metrics::describe_counter!(
        "orders_rejected_overloaded_total",
        "Orders refused with 503 because order-service's own limit on concurrent user lookups was reached."
    );
    metrics::describe_counter!(
        "orders_write_batches_total",
        "Transactions the group commit committed, each holding one or more orders."
    );
    metrics::describe_counter!(
        "orders_write_batch_orders_total",
        "Orders in the committed group-commit transactions (over orders_write_batches_total: the mean batch size)."
    );
    metrics::describe_counter!(
        "orders_write_batch_failures_total",
        "Group-commit transactions that failed whole (begin or commit), none of their orders acknowledged."
    );
    metrics::describe_counter!(
        "orders_rejected_write_queue_full_total",
        "Orders refused with 503 because the group commit's queue was full."
    );
    metrics::describe_gauge!(
        "idempotency_keys_stored",
        "Idempotency-key records kept (each with its stored answer), as of the last sweep."
    );
    metrics::describe_counter!(
        "idempotency_keys_expired_total",
        "Idempotency-key records deleted by the sweeper after the retention passed."
    );
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// The user was verified when the order was placed (or later, for a pending one).
    Confirmed,
    /// Accepted while user-service was unavailable (`DEGRADED_MODE=accept`); not yet verified.
    Pending,
    /// Was pending; the user turned out not to exist.
    Rejected,
}

impl OrderStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Pending => "pending",
            OrderStatus::Rejected => "rejected",
        }
    }

    /// From the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirmed" => Some(OrderStatus::Confirmed),
            "pending" => Some(OrderStatus::Pending),
            "rejected" => Some(OrderStatus::Rejected),
            _ => None,
        }
    }
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 1, "user_id": 1, "product_id": "sku-42", "quantity": 2, "price": 9.99,
    "status": "confirmed", "created_at_ms": 1763891234567_i64, "updated_at_ms": 1763891234567_i64}))]
pub struct Order {
    /// The order's id.
    pub id: i64,
    /// Who ordered.
    pub user_id: i64,
    /// What.
    pub product_id: String,
    /// How many.
    pub quantity: i64,
    /// Unit price, if given.
    pub price: Option<f64>,
    /// confirmed, pending or rejected.
    pub status: OrderStatus,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// Last status change, ms since the Unix epoch.
    pub updated_at_ms: i64,
}

/// `POST /orders` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": 1, "product_id": "sku-42", "quantity": 2, "price": 9.99}))]
pub struct CreateOrder {
    /// An existing user's id (422 `urn:problem:unknown-user` when user-service says it does
    /// not exist).
    #[serde(deserialize_with = "service_kit::extract::whole_number")]
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub user_id: i64,
    /// The product: 1 to 100 characters, not only spaces, no control characters (stored
    /// trimmed).
    #[schema(schema_with = product_id_schema)]
    pub product_id: String,
    /// 1 to 10,000.
    #[serde(deserialize_with = "service_kit::extract::whole_number")]
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: i64,
    /// Unit price, 0 to 1,000,000,000 (optional).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000)]
    pub price: Option<f64>,
}

fn product_id_schema() -> utoipa::openapi::Object {
    text_schema(
        100,
        "The product: 1 to 100 characters, not only spaces, no control characters (stored trimmed).",
    )
}

impl Validate for CreateOrder {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.user_id < 1 {
            errors.push(FieldError::new("user_id", "must be a positive id"));
        }
        errors.extend(check_text("product_id", &self.product_id, 100));
        if !(1..=10_000).contains(&self.quantity) {
            errors.push(FieldError::new("quantity", "must be between 1 and 10000"));
        }
        if let Some(p) = self.price
            && !(p.is_finite() && (0.0..=1e9).contains(&p))
        {
            errors.push(FieldError::new("price", "must be between 0 and 1000000000"));
        }
        errors
    }
}

/// The `Idempotency-Key` header: required on `POST /orders`, exactly once, 1 to 255 visible
/// ASCII characters ([`IDEMPOTENCY_KEY_PATTERN`]).
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

/// The header's name.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What the header's value must match, as the OpenAPI document states it.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
        let Some(raw) = values.next() else {
            return Err(Problem::bad_request(
                "the Idempotency-Key header is required (any unique string per order, reused on retries)",
            ));
        };
        // Taking the first of several would guess which one the client meant.
        if values.next().is_some() {
            return Err(Problem::bad_request(
                "the Idempotency-Key header was sent more than once; send it exactly once",
            ));
        }
        match raw.to_str() {
            Ok(v) if !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(IdempotencyKey(v.to_owned()))
            }
            _ => Err(Problem::bad_request(
                "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
            )),
        }
    }
}

/// An order as its 201 body (stored with its key, so a replay answers the same bytes).
pub fn render_order(order: &Order) -> String {
    serde_json::to_string(order).unwrap_or_default()
}

fn json_response(status: StatusCode, body: String, order_id: i64, replayed: bool) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/orders/{order_id}")) {
        h.insert(header::LOCATION, v);
    }
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

fn replay(stored: &StoredResponse, fingerprint: &str) -> Result<Response, Problem> {
    if stored.fingerprint != fingerprint {
        return Err(key_reused());
    }
    metrics::counter!("orders_idempotent_replays_total").increment(1);
    let status = StatusCode::from_u16(stored.status_code).unwrap_or(StatusCode::CREATED);
    Ok(json_response(
        status,
        stored.body.clone(),
        stored.order_id,
        true,
    ))
}

/// 504: the caller's deadline ran out (or user-service refused what was left of it).
fn deadline_exceeded() -> Problem {
    metrics::counter!("orders_rejected_deadline_total").increment(1);
    let mut p = Problem::new(StatusCode::GATEWAY_TIMEOUT, "", "Deadline exceeded").with_detail(
        "the request's deadline (x-request-deadline-ms) ran out before the user could be verified; the order was not stored",
    );
    // The library's type: the same one the deadline layer answers with.
    resilience_layers::http::DEADLINE_EXCEEDED_TYPE.clone_into(&mut p.problem_type);
    p
}

/// 503 + `Retry-After`: order-service's own limit on concurrent user lookups is reached.
fn overloaded(max_concurrent: usize) -> Problem {
    metrics::counter!("orders_rejected_overloaded_total").increment(1);
    let mut p = Problem::unavailable(
        format!(
            "order-service is at its own limit of {max_concurrent} concurrent user lookups; user-service was not called and the order was not stored"
        ),
        Duration::from_secs(1),
    );
    resilience_layers::http::BULKHEAD_FULL_TYPE.clone_into(&mut p.problem_type);
    p
}

/// 422 with its own type: the body is well formed and valid, but names no user (the OpenAPI
/// document cannot say which ids exist, so a client and a fuzzer can tell this from a
/// `urn:problem:validation`).
fn unknown_user(user_id: i64) -> Problem {
    let mut p = Problem::validation(vec![FieldError::new(
        "user_id",
        format!("no user with id {user_id}"),
    )]);
    p.problem_type = "urn:problem:unknown-user".to_owned();
    p.title = "Unknown User".to_owned();
    p
}

fn key_reused() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
        "Idempotency-Key Reused",
    )
    .with_detail("this Idempotency-Key was used with a different request body")
}

/// Places an order.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", min_length = 1, max_length = 255,
        description = "Unique per order among the user's orders, reused unchanged on every retry of it; sent exactly once; 1-255 visible ASCII characters. Kept for `IDEMPOTENCY_RETENTION` (24 h by default), after which the same key places a new order.")),
    request_body(content = CreateOrder, content_type = "application/json"),
    responses(
        (status = 201, description = "Created (status `confirmed`, or `pending` in degraded mode); a replay of the same key and body returns the stored answer with `Idempotent-Replayed: true`", body = Order,
            headers(("location" = String, description = "/orders/{id}"))),
        (status = 400, description = "Missing, repeated or malformed Idempotency-Key, or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this key is still in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed (`urn:problem:validation`), unknown user (`urn:problem:unknown-user`), or key reused with a different body (`urn:problem:idempotency-key-reused`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "user-service or the store unavailable, order-service's own limit on concurrent lookups reached (`urn:resilience:bulkhead-full`), or an injected fault (with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The caller's deadline (`x-request-deadline-ms`) passed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_order(
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<CreateOrder>,
) -> Result<Response, Problem> {
    let fingerprint = serde_json::to_string(&body).unwrap_or_default();
    let scoped = ScopedKey::new(body.user_id, key);
    let _guard = match state.in_flight.begin(&scoped, &fingerprint) {
        Ok(g) => g,
        Err(idempotency::Busy::SameRequest) => {
            return Err(Problem::conflict(
                "a request with this Idempotency-Key is still in progress; retry shortly",
            )
            .with_retry_after(Duration::from_secs(1)));
        }
        Err(idempotency::Busy::DifferentRequest) => return Err(key_reused()),
    };
    let unavailable = |e: sqlx::Error| service_kit::store::unavailable(&e);
    if let Some(stored) = store::find_key(&state.store, scoped.user_id, &scoped.key)
        .await
        .map_err(unavailable)?
    {
        return replay(&stored, &fingerprint);
    }

    let ctx = service_kit::context::current();
    // Degraded mode is the library's fallback around the lookup (`users::degraded_lookup`).
    let lookup = LookupService::new(state.users.clone());
    let checked = match state.degraded {
        DegradedMode::Accept => {
            state
                .degraded_lookup
                .layer(lookup)
                .oneshot((body.user_id, ctx))
                .await
        }
        DegradedMode::Fail => lookup.oneshot((body.user_id, ctx)).await,
    };
    let status = match checked {
        Ok(UserCheck::Answered(Lookup::Found)) => OrderStatus::Confirmed,
        Ok(UserCheck::Answered(Lookup::NotFound)) => return Err(unknown_user(body.user_id)),
        Ok(UserCheck::Unverified(_)) => OrderStatus::Pending,
        Err(e) => match e.downcast::<LookupError>().map(|e| *e) {
            // Neither says anything about user-service, so neither becomes a pending order.
            Ok(LookupError::DeadlineExceeded) => return Err(deadline_exceeded()),
            Ok(LookupError::Overloaded { max_concurrent }) => {
                return Err(overloaded(max_concurrent));
            }
            Ok(LookupError::Unavailable(u)) => {
                tracing::warn!(reason = %u.reason, "user-service unavailable; failing fast");
                metrics::counter!("orders_rejected_unavailable_total").increment(1);
                return Err(Problem::unavailable(
                    "user-service is unavailable, so the user cannot be verified; the order was not stored",
                    u.retry_after,
                ));
            }
            Err(other) => {
                tracing::error!(error = %other, "user lookup failed");
                return Err(Problem::unavailable(
                    "the user cannot be verified; the order was not stored",
                    Duration::from_secs(1),
                ));
            }
        },
    };

    let new = NewOrder {
        user_id: body.user_id,
        product_id: body.product_id.trim(),
        quantity: body.quantity,
        price: body.price,
        status,
        idempotency_key: &scoped.key,
        fingerprint: &fingerprint,
        now_ms: now_ms(),
    };
    match state.orders.insert(&new).await.map_err(|e| e.problem())? {
        Inserted::Created(order, body) => {
            metrics::counter!("orders_created_total", "status" => order.status.as_str())
                .increment(1);
            tracing::info!(
                order_id = order.id,
                status = order.status.as_str(),
                "order stored"
            );
            Ok(json_response(StatusCode::CREATED, body, order.id, false))
        }
        Inserted::KeyTaken(stored) => replay(&stored, &fingerprint),
    }
}

/// Reads one order.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = i64, Path, minimum = 1, maximum = 9223372036854775807_i64, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 400, description = "The id is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable, or an injected fault (with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The caller's deadline (`x-request-deadline-ms`) passed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Order>, Problem> {
    match store::get(&state.store, id).await {
        Ok(Some(o)) => Ok(Json(o)),
        Ok(None) => Err(Problem::not_found(format!("no order with id {id}"))),
        Err(e) => Err(service_kit::store::unavailable(&e)),
    }
}

/// `GET /orders` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListOrders {
    /// Only this user's orders.
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    #[serde(default, deserialize_with = "service_kit::extract::query_integer")]
    pub user_id: Option<i64>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "service_kit::extract::query_integer")]
    pub limit: Option<i64>,
    /// Where to continue: the previous page's `next_cursor`; empty or absent for the first
    /// page.
    #[param(schema_with = service_kit::paging::cursor_schema)]
    pub cursor: Option<String>,
}

impl Validate for ListOrders {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = service_kit::paging::check(self.limit, self.cursor.as_deref());
        if self.user_id.is_some_and(|u| u < 1) {
            errors.push(FieldError::new("user_id", "must be a positive id"));
        }
        errors
    }
}

/// One page of orders.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    /// The orders, by id.
    pub items: Vec<Order>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Pages through orders (of one user with `user_id`).
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    params(ListOrders),
    responses(
        (status = 200, description = "One page", body = OrderPage),
        (status = 400, description = "Malformed query string", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Out-of-range paging parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable, or an injected fault (with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The caller's deadline (`x-request-deadline-ms`) passed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListOrders>,
) -> Result<Json<OrderPage>, Problem> {
    let limit = q.limit.unwrap_or(50);
    let after = paging::after(q.cursor.as_deref()).unwrap_or(0);
    let items = store::list(&state.store, q.user_id, after, limit)
        .await
        .map_err(|e| service_kit::store::unavailable(&e))?;
    let next_cursor = paging::next_cursor(&items, limit, |o| o.id);
    Ok(Json(OrderPage { items, next_cursor }))
}

/// `GET /resilience` body: the state of every breaker, bulkhead and retry budget.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResilienceReport {
    /// Always `order-service`.
    pub service: &'static str,
    /// One per user-service instance (`user-service@host:port`).
    #[schema(value_type = Vec<Object>)]
    pub breakers: Vec<CircuitSnapshot>,
    /// The bulkhead on calls to user-service.
    #[schema(value_type = Vec<Object>)]
    pub bulkheads: Vec<BulkheadSnapshot>,
    /// The retry and its budget.
    #[schema(value_type = Vec<Object>)]
    pub retries: Vec<RetrySnapshot>,
    /// The user cache's figures (absent with `USER_CACHE=off`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub user_cache: Option<resilience_layers::cache::CacheSnapshot>,
}

/// Snapshot of the resilience stack in front of user-service.
#[utoipa::path(
    get,
    path = "/resilience",
    tag = "operations",
    responses((status = 200, description = "Breakers, bulkheads and retry budgets (all empty with RESILIENCE=off)", body = ResilienceReport))
)]
pub async fn resilience_report(State(state): State<AppState>) -> Json<ResilienceReport> {
    let s = state.users.snapshot();
    Json(ResilienceReport {
        service: SERVICE,
        breakers: s.breakers,
        bulkheads: s.bulkheads,
        retries: s.retries,
        user_cache: state.users.cache_snapshot(),
    })
}

/// Readiness checks: the store, and each user-service instance's circuit (`warn` when not
/// closed: orders then fail fast or go pending, but the service itself works).
async fn checks(state: AppState) -> Health {
    let mut health = Health::new();
    health.add("store", service_kit::ops::store_check(&state.store).await);
    for c in state.users.circuits() {
        let status = match c.state {
            CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly => {
                Status::Pass
            }
            _ => Status::Warn,
        };
        health.add(
            format!("upstream:{}", c.name),
            Check::observed(status, c.state.as_str()),
        );
    }
    health
}

/// The OpenAPI document of the business routes and `/resilience` (the operations routes are
/// merged in by [`service_kit::ops`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Orders, verified against user-service through the resilience stack."
    ),
    paths(create_order, get_order, list_orders, resilience_report),
    components(schemas(Order, OrderStatus, CreateOrder, OrderPage, ResilienceReport))
)]
pub struct ApiDoc;

/// The router.
///
/// The `/orders` routes sit behind the caller's deadline (which the user-service lookups then
/// inherit) and fault injection ([`service_kit::faults::business_layers`]); `/resilience` and
/// the operations routes ([`service_kit::ops::app`]) do not, so they keep answering during a
/// chaos run.
pub fn app(state: AppState) -> Router {
    let for_checks = state.clone();
    let ops = Ops {
        readiness: state.readiness.clone(),
        faults: state.faults.clone(),
        admin_token: state.admin_token.clone(),
        body_limit: state.body_limit,
        min_deadline: state.min_deadline,
        checks: Arc::new(move || Box::pin(checks(for_checks.clone()))),
        openapi: ApiDoc::openapi,
    };
    let business = Router::new()
        .route("/orders", get(list_orders).post(create_order))
        .route("/orders/{id}", get(get_order));
    let operations = Router::new().route("/resilience", get(resilience_report));
    service_kit::ops::app(business, operations, state, ops)
}

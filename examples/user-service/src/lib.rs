//! user-service: users with their own store, the upstream that order-service protects itself
//! against.
//!
//! `POST /users` creates a user (a duplicate email is 409), `GET /users/{id}` reads one,
//! `GET /users?limit=&cursor=` pages through them by id. Operations routes (`/health/*`,
//! `/metrics`, `/openapi.json`, `/admin/faults`) are described in the OpenAPI document.
//!
//! The router is built by [`app`], which the tests call directly with `oneshot`.

// Handlers return `Result<_, Problem>`: the error is a response body (168 bytes) built only on
// the error path, next to I/O; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

pub mod store;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use resilience_layers::fault::FaultHandle;
use serde::{Deserialize, Serialize};
use service_kit::{
    config::{Common, ConfigErrors, Env},
    extract::{ApiJson, ApiPath, ApiQuery, Validate, check_text, text_schema},
    health::{Health, Readiness},
    ops::Ops,
    paging,
    problem::{FieldError, Problem},
    store::{Store, now_ms},
};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The service's name in logs, health and metrics.
pub const SERVICE: &str = "user-service";

/// Configuration, from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address, database, logging, admin token, shutdown timing.
    pub common: Common,
}

impl Config {
    /// Reads and validates the configuration: `USER_SERVICE_ADDR` (default 127.0.0.1:5001),
    /// `USER_SERVICE_DATABASE_URL` or `DATABASE_URL` (default `sqlite://data/users.db`), and the
    /// common settings (`LOG_FORMAT`, `RUST_LOG`, `ADMIN_TOKEN`, `SHUTDOWN_DELAY_MS`,
    /// `SHUTDOWN_TIMEOUT_MS`, `BODY_LIMIT_BYTES`).
    pub fn from_env(mut env: Env) -> Result<Self, ConfigErrors> {
        let common = Common::read(
            &mut env,
            "USER_SERVICE_ADDR",
            "127.0.0.1:5001",
            "USER_SERVICE_DATABASE_URL",
            "sqlite://data/users.db",
        );
        env.finish()?;
        Ok(Self { common })
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The user store.
    pub store: Store,
    /// Fails readiness once shutdown starts.
    pub readiness: Readiness,
    /// `ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// Largest accepted body.
    pub body_limit: usize,
    /// `MIN_DEADLINE_MS`: the shortest caller's deadline the business routes accept.
    pub min_deadline: Duration,
    /// Fault injection on the `/users` routes (off until `PUT /admin/faults`).
    pub faults: FaultHandle,
}

impl AppState {
    /// State over an opened store.
    pub fn new(store: Store, config: &Config) -> Self {
        Self {
            store,
            faults: FaultHandle::new(SERVICE),
            readiness: Readiness::new(),
            admin_token: config.common.admin_token.clone(),
            body_limit: config.common.body_limit,
            min_deadline: config.common.min_deadline,
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "created_at_ms": 1763891234567_i64}))]
pub struct User {
    /// The user's id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Email address (stored lower-cased; unique).
    pub email: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// `POST /users` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada Lovelace", "email": "ada@example.com"}))]
pub struct CreateUser {
    /// Display name: 1 to 200 characters, not only spaces, no control characters (stored
    /// trimmed).
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Email address: `local@domain` with one `@`, no spaces or control characters, a domain
    /// that neither starts nor ends with `.`, at most 254 characters; unique
    /// (case-insensitive).
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = "^[^@\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+@[^@.\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]([^@\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^@.\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?$"
    )]
    pub email: String,
}

fn name_schema() -> utoipa::openapi::Object {
    text_schema(
        200,
        "Display name: 1 to 200 characters, not only spaces, no control characters (stored trimmed).",
    )
}

impl Validate for CreateUser {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        errors.extend(check_text("name", &self.name, 200));
        if let Some(problem) = email_problem(&self.email) {
            errors.push(FieldError::new("email", problem));
        }
        errors
    }
}

/// The rule the schema's `pattern` and `maxLength` state: no trimming, so what the document
/// allows is exactly what is accepted.
fn email_problem(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("must not be empty");
    }
    if email.chars().count() > 254 {
        return Some("must be at most 254 characters");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces");
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            None
        }
        _ => Some("must look like name@domain"),
    }
}

/// `GET /users` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsers {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    #[serde(default, deserialize_with = "service_kit::extract::query_integer")]
    pub limit: Option<i64>,
    /// Where to continue: the previous page's `next_cursor`; empty or absent for the first
    /// page.
    #[param(schema_with = service_kit::paging::cursor_schema)]
    pub cursor: Option<String>,
}

impl Validate for ListUsers {
    fn validate(&self) -> Vec<FieldError> {
        service_kit::paging::check(self.limit, self.cursor.as_deref())
    }
}

/// One page of users.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    /// The users, by id.
    pub items: Vec<User>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Creates a user.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body(content = CreateUser, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = User,
            headers(("location" = String, description = "/users/{id}"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already registered", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed (unknown, missing or invalid field)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable, or an injected fault (with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The caller's deadline (`x-request-deadline-ms`) passed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_user(
    state: axum::extract::State<AppState>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<Response, Problem> {
    let name = body.name.trim();
    let email = body.email.to_lowercase();
    match store::insert(&state.store, name, &email, now_ms()).await {
        Ok(Some(user)) => {
            tracing::info!(user_id = user.id, "user created");
            let location = HeaderValue::from_str(&format!("/users/{}", user.id))
                .unwrap_or_else(|_| HeaderValue::from_static("/users"));
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(user),
            )
                .into_response())
        }
        // The detail does not repeat the address: a problem body ends up in client logs and
        // proxies, and the caller already knows which address it sent.
        Ok(None) => Err(Problem::conflict("a user with this email already exists")),
        Err(e) => Err(service_kit::store::unavailable(&e)),
    }
}

/// Reads one user.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    params(("id" = i64, Path, minimum = 1, maximum = 9223372036854775807_i64, description = "User id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, description = "The id is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable, or an injected fault (with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The caller's deadline (`x-request-deadline-ms`) passed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_user(
    state: axum::extract::State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<User>, Problem> {
    match store::get(&state.store, id).await {
        Ok(Some(user)) => Ok(Json(user)),
        Ok(None) => Err(Problem::not_found(format!("no user with id {id}"))),
        Err(e) => Err(service_kit::store::unavailable(&e)),
    }
}

/// Pages through users by id.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(ListUsers),
    responses(
        (status = 200, description = "One page", body = UserPage),
        (status = 400, description = "Malformed query string", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Out-of-range paging parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable, or an injected fault (with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The caller's deadline (`x-request-deadline-ms`) passed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_users(
    state: axum::extract::State<AppState>,
    ApiQuery(q): ApiQuery<ListUsers>,
) -> Result<Json<UserPage>, Problem> {
    let limit = q.limit.unwrap_or(20);
    let after = paging::after(q.cursor.as_deref()).unwrap_or(0);
    let items = store::list(&state.store, after, limit)
        .await
        .map_err(|e| service_kit::store::unavailable(&e))?;
    let next_cursor = paging::next_cursor(&items, limit, |u| u.id);
    Ok(Json(UserPage { items, next_cursor }))
}

/// The OpenAPI document of the `/users` routes (the operations routes are merged in by
/// [`service_kit::ops`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "user-service",
        description = "Users: the upstream of order-service."
    ),
    paths(create_user, get_user, list_users),
    components(schemas(User, CreateUser, UserPage))
)]
pub struct ApiDoc;

/// The router.
///
/// The `/users` routes sit behind the caller's deadline and fault injection
/// ([`service_kit::faults::business_layers`]); the operations routes
/// ([`service_kit::ops::app`]) do not, so health and metrics keep answering during a chaos run.
pub fn app(state: AppState) -> Router {
    let store = state.store.clone();
    let ops = Ops {
        readiness: state.readiness.clone(),
        faults: state.faults.clone(),
        admin_token: state.admin_token.clone(),
        body_limit: state.body_limit,
        min_deadline: state.min_deadline,
        checks: Arc::new(move || {
            let store = store.clone();
            Box::pin(async move {
                let mut health = Health::new();
                health.add("store", service_kit::ops::store_check(&store).await);
                health
            })
        }),
        openapi: ApiDoc::openapi,
    };
    let business = Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", get(get_user));
    service_kit::ops::app(business, Router::new(), state, ops)
}

//! Health reports in the `application/health+json` shape (draft-inadarei-api-health-check).
//!
//! Liveness says the process answers; readiness says it should get traffic: the store answers,
//! and the process is not shutting down. [`Readiness`] is flipped first on SIGTERM so a load
//! balancer (or `run.sh`) stops sending work before the listener closes.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of health reports.
pub const HEALTH_JSON: &str = "application/health+json";

/// pass / warn / fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Usable, with a degraded part (an upstream circuit not closed).
    Warn,
    /// Not usable.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// The check's status.
    pub status: Status,
    /// What was observed (a circuit state).
    #[serde(
        rename = "observedValue",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_value: Option<String>,
    /// Why it did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl Check {
    /// A passing check.
    pub fn pass() -> Self {
        Self {
            status: Status::Pass,
            observed_value: None,
            output: None,
        }
    }

    /// A failing check with its reason.
    pub fn fail(output: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            observed_value: None,
            output: Some(output.into()),
        }
    }

    /// A check with an observed value.
    pub fn observed(status: Status, value: impl Into<String>) -> Self {
        Self {
            status,
            observed_value: Some(value.into()),
            output: None,
        }
    }
}

/// A health report: 200 unless its status is `fail` (503).
///
/// ```
/// use service_kit::health::{Check, Health, Status};
///
/// let mut h = Health::new();
/// h.add("store", Check::pass());
/// h.add("upstream:users", Check::observed(Status::Warn, "open"));
/// assert_eq!(h.status, Status::Warn);
/// h.add("shutdown", Check::fail("draining"));
/// assert_eq!(h.status, Status::Fail);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "pass", "checks": {"store": [{"status": "pass"}],
    "upstream:user-service@127.0.0.1:5001": [{"status": "pass", "observedValue": "closed"}]}}))]
pub struct Health {
    /// The worst status of all checks.
    pub status: Status,
    /// Checks by component name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Vec<Check>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// An empty, passing report.
    pub fn new() -> Self {
        Self {
            status: Status::Pass,
            checks: BTreeMap::new(),
        }
    }

    /// Adds a check; the report's status becomes the worst seen.
    pub fn add(&mut self, name: impl Into<String>, check: Check) {
        self.status = self.status.max(check.status);
        self.checks.entry(name.into()).or_default().push(check);
    }
}

impl IntoResponse for Health {
    fn into_response(self) -> Response {
        let status = if self.status == Status::Fail {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON));
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// `GET /health/live`: the process is up and serving.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    responses((status = 200, description = "The process answers", body = Health, content_type = "application/health+json"))
)]
pub async fn live() -> Health {
    Health::new()
}

/// Whether the process is shutting down; clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    shutting_down: Arc<AtomicBool>,
}

impl Readiness {
    /// A ready flag (not shutting down).
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the process as shutting down: readiness fails from now on.
    pub fn start_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// True once shutdown started.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Adds the `shutdown` check when shutting down.
    pub fn check(&self, health: &mut Health) {
        if self.is_shutting_down() {
            health.add("shutdown", Check::fail("the process is shutting down"));
        }
    }
}

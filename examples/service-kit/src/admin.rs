//! Guarding the admin routes (fault injection) with a bearer token from the environment.
//!
//! With no `ADMIN_TOKEN` configured the admin routes answer 404 as if they did not exist, so
//! a default deployment exposes no way to inject faults.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, header};

use crate::problem::Problem;

/// Checks `Authorization: Bearer <token>` against the configured token.
///
/// ```
/// use http::HeaderMap;
/// use service_kit::admin::authorize;
///
/// let mut h = HeaderMap::new();
/// assert_eq!(authorize(&h, None).unwrap_err().status(), 404);
/// assert_eq!(authorize(&h, Some("s3cret-token")).unwrap_err().status(), 401);
/// h.insert("authorization", "Bearer s3cret-token".parse().unwrap());
/// assert!(authorize(&h, Some("s3cret-token")).is_ok());
/// ```
pub fn authorize(headers: &HeaderMap, token: Option<&str>) -> Result<(), Response> {
    let Some(expected) = token else {
        return Err(
            Problem::not_found("admin routes are disabled (no ADMIN_TOKEN configured)")
                .into_response(),
        );
    };
    if carries_token(headers, expected) {
        return Ok(());
    }
    let mut resp =
        Problem::unauthorized("a valid `Authorization: Bearer <ADMIN_TOKEN>` is required")
            .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(resp)
}

/// Whether `headers` carry `Authorization: Bearer <expected>`: [`authorize`]'s check, without
/// building the refusal, for callers that only honour something when it holds.
pub(crate) fn carries_token(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
}

/// Middleware guarding admin routes with [`authorize`] (state: the configured token). It runs
/// before the handler's extractors, so a caller without the token learns nothing from how a
/// body would have been parsed. Add it with `route_layer`, so a wrong method is still 405.
pub async fn require_token(
    State(token): State<Option<String>>,
    req: Request,
    next: Next,
) -> Response {
    match authorize(req.headers(), token.as_deref()) {
        Ok(()) => next.run(req).await,
        Err(refused) => refused,
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

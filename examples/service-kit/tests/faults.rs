//! `X-Simulate-Latency` is honoured only for a caller holding the admin token, and the
//! caller's own deadline still cuts it (paused clock: the elapsed times are exact).

use std::time::Duration;

use axum::{Router, body::Body, routing::get};
use http::{Request, StatusCode};
use resilience_layers::fault::{FaultHandle, MAX_REQUEST_LATENCY};
use service_kit::faults::business_layers;
use tokio::time::Instant;
use tower::ServiceExt;

const TOKEN: &str = "s3cret-admin-token";

fn app(token: Option<&str>) -> Router {
    Router::new()
        .route("/users/1", get(|| async { "ok" }))
        .layer(business_layers(
            FaultHandle::new("test"),
            Duration::ZERO,
            token.map(str::to_owned),
        ))
}

/// Status and (virtual) time taken for `GET /users/1` with `headers`.
async fn call(app: &Router, headers: &[(&str, &str)]) -> (StatusCode, Duration) {
    let mut req = Request::builder().uri("/users/1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let start = Instant::now();
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    (resp.status(), start.elapsed())
}

const AN_HOUR: (&str, &str) = ("x-simulate-latency", "1h");
const BEARER: &str = "Bearer s3cret-admin-token";

#[tokio::test(start_paused = true)]
async fn without_a_configured_token_the_header_is_ignored() {
    let app = app(None);
    assert_eq!(
        call(&app, &[AN_HOUR]).await,
        (StatusCode::OK, Duration::ZERO)
    );
    // Even a caller that sends some bearer token.
    let with_bearer = [AN_HOUR, ("authorization", BEARER)];
    assert_eq!(
        call(&app, &with_bearer).await,
        (StatusCode::OK, Duration::ZERO)
    );
}

#[tokio::test(start_paused = true)]
async fn with_a_token_configured_the_header_is_ignored_unless_the_caller_carries_it() {
    let app = app(Some(TOKEN));
    assert_eq!(
        call(&app, &[AN_HOUR]).await,
        (StatusCode::OK, Duration::ZERO)
    );
    for wrong in [
        "Bearer s3cret-admin-tokeN",
        "Bearer ",
        "s3cret-admin-token",
        "Basic eDp5",
    ] {
        let headers = [AN_HOUR, ("authorization", wrong)];
        assert_eq!(
            call(&app, &headers).await,
            (StatusCode::OK, Duration::ZERO),
            "{wrong:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_caller_with_the_token_is_delayed_capped_by_its_deadline() {
    let app = app(Some(TOKEN));
    let asked = [("x-simulate-latency", "250ms"), ("authorization", BEARER)];
    assert_eq!(
        call(&app, &asked).await,
        (StatusCode::OK, Duration::from_millis(250))
    );
    // An hour asked, 400 ms of deadline given: 504 at the deadline, not a late answer.
    let capped = [
        AN_HOUR,
        ("authorization", BEARER),
        ("x-request-deadline-ms", "400"),
    ];
    assert_eq!(
        call(&app, &capped).await,
        (StatusCode::GATEWAY_TIMEOUT, Duration::from_millis(400))
    );
    // No deadline: the library's cap on what a request may ask for.
    let uncapped = [AN_HOUR, ("authorization", BEARER)];
    assert_eq!(
        call(&app, &uncapped).await,
        (StatusCode::OK, MAX_REQUEST_LATENCY)
    );
}

#[tokio::test(start_paused = true)]
async fn a_malformed_deadline_is_refused_not_ignored() {
    let app = app(None);
    for bad in ["soon", "-5", "1.5", "", "12ms"] {
        let (status, _) = call(&app, &[("x-request-deadline-ms", bad)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let req = Request::builder()
        .uri("/users/1")
        .header("x-request-deadline-ms", "soon")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let req = Request::builder()
        .uri("/users/1")
        .header("x-request-deadline-ms", "soon")
        .body(Body::empty())
        .unwrap();
    let reply = service_kit::testing::call(&app, req).await;
    assert_eq!(reply.body["type"], "urn:resilience:malformed-deadline");
    assert_eq!(reply.body["status"], 400);
    // Well-formed values still work, with surrounding spaces, and 0 means already expired.
    assert_eq!(
        call(&app, &[("x-request-deadline-ms", " 850 ")]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, &[("x-request-deadline-ms", "0")]).await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
}

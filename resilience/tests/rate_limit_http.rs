//! A rate-limited route on an axum router: `429` with `Retry-After`, the IETF `RateLimit`
//! fields and a problem+json body; a wait bounded by the caller's deadline header.
#![cfg(feature = "http")]

use std::time::Duration;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
    routing::get,
};
use resilience_layers::{
    http::{AcceptDeadlineLayer, DEADLINE_HEADER, PROBLEM_JSON, ProblemLayer, RATE_LIMITED_TYPE},
    rate_limit::{RateLimitConfig, RateLimitLayer},
};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};

fn app(config: RateLimitConfig) -> Router {
    let limiter = RateLimitLayer::new("search", config).unwrap();
    Router::new()
        .route(
            "/search",
            get(|| async { "found" }).route_layer(
                ServiceBuilder::new()
                    .layer(ProblemLayer::new())
                    .layer(limiter),
            ),
        )
        .layer(
            ServiceBuilder::new()
                .layer(ProblemLayer::new())
                .layer(AcceptDeadlineLayer::new()),
        )
}

fn get_search() -> Request<Body> {
    Request::get("/search").body(Body::empty()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_rejection_is_429_with_retry_after_and_the_ratelimit_fields() {
    let app = app(RateLimitConfig {
        permits: 2,
        period: Duration::from_secs(10),
        burst: Some(1),
        ..Default::default()
    });
    assert_eq!(
        app.clone().oneshot(get_search()).await.unwrap().status(),
        200
    );
    tokio::time::advance(Duration::from_millis(1_500)).await;

    let res = app.clone().oneshot(get_search()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = res.headers();
    assert_eq!(headers["content-type"], PROBLEM_JSON);
    // The next permit is 3.5 s away: rounded up, in both fields alike.
    assert_eq!(headers["retry-after"], "4");
    assert_eq!(headers["ratelimit"], r#""search";r=0;t=4"#);
    assert_eq!(headers["ratelimit-policy"], r#""search";q=2;w=10"#);
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["type"], RATE_LIMITED_TYPE);
    assert_eq!(json["status"], 429);
    let detail = json["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("This service") && detail.contains("2 requests per 10s"),
        "{detail}"
    );

    tokio::time::advance(Duration::from_millis(3_500)).await;
    assert_eq!(app.oneshot(get_search()).await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_wait_stops_at_the_callers_deadline() {
    let app = app(RateLimitConfig {
        permits: 1,
        period: Duration::from_secs(1),
        burst: Some(1),
        max_wait: Duration::from_secs(5),
    });
    assert_eq!(
        app.clone().oneshot(get_search()).await.unwrap().status(),
        200
    );
    let start = tokio::time::Instant::now();
    // 250 ms left on the caller's clock and the permit a second away: 429 at once.
    let req = Request::get("/search")
        .header(DEADLINE_HEADER, "250")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(
        (res.status(), start.elapsed()),
        (StatusCode::TOO_MANY_REQUESTS, Duration::ZERO)
    );
    // With no deadline it waits for the permit (within max_wait).
    let res = app.oneshot(get_search()).await.unwrap();
    assert_eq!(
        (res.status(), start.elapsed()),
        (StatusCode::OK, Duration::from_secs(1))
    );
}

//! The fallback at the HTTP edge, on an axum router called with `oneshot`: a static degraded
//! response with the marker header and extension, an unlisted outcome left to `ProblemLayer`,
//! and a `5xx` the HTTP classifier calls a failure answered by the fallback.
#![cfg(feature = "http")]

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
    routing::get,
};
use resilience_layers::{
    fallback::{FallbackOutcome, FromFallback},
    http::{FALLBACK_HEADER, PROBLEM_JSON, ProblemLayer, StaticResponseConfig},
    stack::StackConfig,
};
use tower::{ServiceBuilder, ServiceExt};

fn app(
    on: &str,
    name: &str,
) -> (
    Router,
    resilience_layers::circuit_breaker::CircuitBreakerHandle,
) {
    let config: StackConfig = toml::from_str(&format!(
        "[fallback]\non = {on}\n[circuit_breaker]\nminimum_calls = 100"
    ))
    .unwrap();
    let degraded: StaticResponseConfig = toml::from_str(
        "status = 200\nbody = '{\"items\":[]}'\nheaders = { content-type = \"application/json\" }",
    )
    .unwrap();
    let layer = config.into_layer(name).unwrap().for_server();
    let fallback = layer.fallback_layer(degraded.build().unwrap()).unwrap();
    let breaker = layer.circuit_breaker().unwrap();
    let router = Router::new()
        .route("/items", get(|| async { "live" }))
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route_layer(
            ServiceBuilder::new()
                .layer(ProblemLayer::new())
                .layer(fallback)
                .layer(layer),
        );
    (router, breaker)
}

async fn get_path(app: &Router, path: &str) -> axum::response::Response {
    app.clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(resp: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_answered_by_the_static_response_and_marked() {
    let (app, breaker) = app(r#"["circuit_open"]"#, "http-open");
    let live = get_path(&app, "/items").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert!(live.headers().get(FALLBACK_HEADER).is_none());
    assert!(live.extensions().get::<FromFallback>().is_none());
    assert_eq!(body(live).await, "live");

    breaker.force_open();
    let degraded = get_path(&app, "/items").await;
    assert_eq!(degraded.status(), StatusCode::OK);
    assert_eq!(degraded.headers()[FALLBACK_HEADER], "circuit_open");
    assert_eq!(degraded.headers()["content-type"], "application/json");
    assert_eq!(
        degraded.extensions().get::<FromFallback>(),
        Some(&FromFallback {
            outcome: FallbackOutcome::CircuitOpen
        })
    );
    assert_eq!(body(degraded).await, r#"{"items":[]}"#);
}

#[tokio::test(start_paused = true)]
async fn an_unlisted_outcome_reaches_the_problem_layer() {
    let (app, breaker) = app(r#"["timeout"]"#, "http-unlisted");
    breaker.force_open();
    let resp = get_path(&app, "/items").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["content-type"], PROBLEM_JSON);
    assert!(resp.headers().get(FALLBACK_HEADER).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_server_error_the_classifier_calls_a_failure_is_answered() {
    let (app, _) = app(r#"["failure"]"#, "http-failure");
    let resp = get_path(&app, "/broken").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[FALLBACK_HEADER], "failure");
    // A success is not classified as a failure: untouched.
    let resp = get_path(&app, "/items").await;
    assert!(resp.headers().get(FALLBACK_HEADER).is_none());
}

#[test]
fn static_response_config_errors_name_the_field() {
    let bad: StaticResponseConfig = toml::from_str("headers = { \"bad name\" = \"x\" }").unwrap();
    assert_eq!(bad.build().unwrap_err().field(), "headers.bad name");
    let bad: StaticResponseConfig = toml::from_str("status = 1000").unwrap();
    assert_eq!(bad.build().unwrap_err().field(), "status");
    assert!(toml::from_str::<StaticResponseConfig>("code = 200").is_err());
}

//! The server side: `ProblemLayer`, `AcceptDeadlineLayer` and the stack on an axum router.
#![cfg(feature = "http")]

use std::{convert::Infallible, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
    routing::get,
};
use resilience_layers::{
    BoxError,
    http::{AcceptDeadlineLayer, DEADLINE_HEADER, HttpClassifier, PROBLEM_JSON, ProblemLayer},
    stack::{ResilienceLayer, SendOnce, StackConfig},
};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt, service_fn};

type ServerLayer = ResilienceLayer<HttpClassifier, (), SendOnce>;

fn stack(toml_text: &str) -> ServerLayer {
    named_stack(toml_text, "api")
}

fn named_stack(toml_text: &str, name: &str) -> ServerLayer {
    let config: StackConfig = toml::from_str(toml_text).unwrap();
    config.into_layer(name).unwrap().for_server()
}

/// A router with the server-side layers, as a service would build it: the caller's deadline
/// around the whole router, and a stack of its own on each route (`route_layer`), so one
/// route's failures open only that route's circuit, and unknown paths are plain 404s.
fn app(toml_text: &str) -> Router {
    let guard = |route: &str| {
        ServiceBuilder::new()
            .layer(ProblemLayer::new())
            .layer(named_stack(toml_text, route))
    };
    Router::new()
        .route("/ok", get(|| async { "fine" }).route_layer(guard("ok")))
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }).route_layer(guard("broken")),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            })
            .route_layer(guard("slow")),
        )
        .layer(
            ServiceBuilder::new()
                .layer(ProblemLayer::new())
                .layer(AcceptDeadlineLayer::new()),
        )
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// Status, `Retry-After` and the problem body of a response that must be a problem.
async fn problem(res: axum::response::Response) -> (StatusCode, Option<String>, Value) {
    assert_eq!(res.headers()["content-type"], PROBLEM_JSON);
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["status"], status.as_u16());
    for field in ["type", "title", "detail"] {
        assert!(json[field].is_string(), "{field} in {json}");
    }
    (status, retry, json)
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_answers_503_with_retry_after_until_the_next_probe() {
    let app = app(r#"
        [circuit_breaker]
        window = { kind = "count", size = 2 }
        minimum_calls = 2
        wait_in_open = "10s"
        "#);
    // The handler's own 500s pass through untouched, and trip the breaker.
    for _ in 0..2 {
        let res = app.clone().oneshot(get_req("/broken")).await.unwrap();
        assert_eq!(res.status(), 500);
        assert!(res.headers().get("content-type").is_none());
    }
    let res = app.clone().oneshot(get_req("/broken")).await.unwrap();
    let (status, retry, json) = problem(res).await;
    assert_eq!(status, 503);
    assert_eq!(retry.as_deref(), Some("10"));
    assert_eq!(json["type"], "urn:resilience:circuit-open");
    let detail = json["detail"].as_str().unwrap().to_lowercase();
    assert!(detail.contains("this service"), "{json}");

    // Only the failing route's circuit is open: the others answer, unknown paths are 404.
    assert_eq!(
        app.clone().oneshot(get_req("/ok")).await.unwrap().status(),
        200
    );
    assert_eq!(
        app.clone()
            .oneshot(get_req("/nope"))
            .await
            .unwrap()
            .status(),
        404
    );

    tokio::time::advance(Duration::from_millis(7_500)).await;
    let (_, retry, _) = problem(app.oneshot(get_req("/broken")).await.unwrap()).await;
    assert_eq!(retry.as_deref(), Some("3"), "rounded up to whole seconds");
}

#[tokio::test]
async fn a_full_bulkhead_answers_503_with_retry_after() {
    let app = app("[bulkhead]\nmax_concurrent = 1");
    let slow = tokio::spawn(app.clone().oneshot(get_req("/slow")));
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, retry, json) = problem(app.clone().oneshot(get_req("/slow")).await.unwrap()).await;
    assert_eq!((status.as_u16(), retry.as_deref()), (503, Some("1")));
    assert_eq!(json["type"], "urn:resilience:bulkhead-full");
    assert!(
        json["detail"].as_str().unwrap().contains("limit of 1"),
        "{json}"
    );
    slow.abort();
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_answers_504() {
    let app = app("attempt_timeout = \"100ms\"");
    let (status, retry, json) = problem(app.clone().oneshot(get_req("/slow")).await.unwrap()).await;
    assert_eq!((status.as_u16(), retry), (504, None));
    assert_eq!(json["type"], "urn:resilience:timeout");
    let res = app.oneshot(get_req("/ok")).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn the_callers_deadline_stops_the_handler_with_504() {
    let app = app("");
    let start = tokio::time::Instant::now();
    let req = Request::get("/slow")
        .header(DEADLINE_HEADER, "250")
        .body(Body::empty())
        .unwrap();
    let (status, _, json) = problem(app.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(status, 504);
    assert_eq!(json["type"], "urn:resilience:deadline-exceeded");
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    // Already expired on arrival: refused at once.
    let req = Request::get("/ok")
        .header(DEADLINE_HEADER, "0")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(req).await.unwrap().status(), 504);
}

#[tokio::test]
async fn other_errors_answer_a_generic_500_without_internals() {
    let failing = service_fn(|_: Request<Body>| async {
        Err::<axum::response::Response, BoxError>("password for db-1 rejected".into())
    });
    let app: Router =
        Router::new().route_service("/", tower::Layer::layer(&ProblemLayer::new(), failing));
    let res = app.oneshot(get_req("/")).await.unwrap();
    let (status, retry, json) = problem(res).await;
    assert_eq!((status.as_u16(), retry), (500, None));
    assert!(!json.to_string().contains("password"), "{json}");
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_deadline_travels_from_client_to_server_end_to_end() {
    use resilience_layers::{deadline::current_deadline, http::ResilienceMiddleware};

    // A server that reports the deadline its handler sees.
    let app: Router = Router::new()
        .route(
            "/deadline",
            get(|| async {
                current_deadline()
                    .map_or(0, |d| d.remaining().as_millis() as u64)
                    .to_string()
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(ProblemLayer::new())
                .layer(AcceptDeadlineLayer::new()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config: StackConfig = toml::from_str("deadline = \"1s\"").unwrap();
    let mw = ResilienceMiddleware::from_config("e2e", &config).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(mw)
        .build();
    let seen: u64 = client
        .get(format!("http://{addr}/deadline"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!((500..=1_000).contains(&seen), "server saw {seen} ms left");
    server.abort();
}

#[tokio::test]
async fn the_stack_is_infallible_for_axum_and_passes_success_through() {
    fn assert_infallible<S: tower::Service<Request<Body>, Error = Infallible>>(_: &S) {}
    let svc = ServiceBuilder::new()
        .layer(ProblemLayer::new())
        .layer(stack("[bulkhead]\n[circuit_breaker]"))
        .service(service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(axum::response::Response::new(Body::from("hi")))
        }));
    assert_infallible(&svc);
    let res = svc.oneshot(get_req("/")).await.unwrap();
    assert_eq!(res.status(), 200);
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"hi");
}

#[tokio::test]
async fn an_injected_fault_answers_503() {
    let faults = resilience_layers::fault::FaultHandle::new("test");
    faults.set_error_rate(1.0).unwrap();
    let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(
        ServiceBuilder::new()
            .layer(ProblemLayer::new())
            .layer(resilience_layers::fault::FaultLayer::new(faults.clone())),
    );
    let (status, retry, json) = problem(app.clone().oneshot(get_req("/")).await.unwrap()).await;
    assert_eq!((status.as_u16(), retry.as_deref()), (503, Some("1")));
    assert_eq!(json["type"], "urn:resilience:injected-fault");
    faults.reset();
    assert_eq!(app.oneshot(get_req("/")).await.unwrap().status(), 200);
}

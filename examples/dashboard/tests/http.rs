//! The dashboard's routes, called without a socket, and the poller against a fake service.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use dashboard::{AppState, Poller, ServiceConfig, Snapshot, app, encode};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

fn state() -> (watch::Sender<Arc<str>>, AppState) {
    let (tx, rx) = watch::channel(encode(&Snapshot::default()));
    (tx, AppState::new(rx))
}

async fn get_body(router: Router, uri: &str) -> (StatusCode, String, String) {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// Status, content type (empty when none) and body.
async fn send(router: Router, req: Request<Body>) -> (StatusCode, String, String) {
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn page_and_assets_are_embedded_and_self_contained() {
    let (_tx, state) = state();
    let (status, ctype, html) = get_body(app(state.clone()), "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/html"));
    assert!(html.contains(r#"id="services""#));
    assert!(html.contains(r#"id="feed""#));
    assert!(html.contains(r#"src="/assets/app.js""#));
    // Works offline: nothing is loaded from another origin.
    assert!(!html.contains("http://") && !html.contains("https://"));

    let (status, ctype, js) = get_body(app(state.clone()), "/assets/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/javascript"));
    assert!(js.contains("new EventSource(\"/events\")"));
    assert!(js.contains("dataset.circuitState"));
    let (status, ctype, css) = get_body(app(state.clone()), "/assets/app.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/css"));
    assert!(css.contains(".badge.state-open"));

    let resp = app(state)
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("connect-src 'self'"));
}

#[tokio::test]
async fn api_state_returns_the_latest_document() {
    let (tx, state) = state();
    let (status, ctype, body) = get_body(app(state.clone()), "/api/state").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/json");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["seq"], 0);
    tx.send_replace(Arc::from(r#"{"seq":7,"services":[]}"#));
    let (_, _, body) = get_body(app(state), "/api/state").await;
    assert_eq!(body, r#"{"seq":7,"services":[]}"#);
}

#[tokio::test]
async fn events_stream_the_current_document_then_each_update() {
    let (tx, state) = state();
    let resp = app(state)
        .oneshot(Request::get("/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let first = next_text(&mut body).await;
    assert!(first.starts_with("event: snapshot\ndata: {"), "{first}");
    assert!(first.contains(r#""seq":0"#));
    tx.send_replace(Arc::from(r#"{"seq":2}"#));
    let second = next_text(&mut body).await;
    assert_eq!(second, "event: snapshot\ndata: {\"seq\":2}\n\n");
    // The poller stopping ends the stream instead of leaving browsers hanging.
    drop(tx);
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    assert!(end.is_none());
}

async fn next_text(body: &mut Body) -> String {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("an event arrives")
        .expect("the stream is open")
        .unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn health_answers_pass() {
    let (_tx, state) = state();
    let (status, ctype, body) = get_body(app(state), "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/health+json");
    assert_eq!(body, r#"{"status":"pass"}"#);
}

/// A stand-in order-service on port 0 whose figures the test controls.
async fn fake_order_service(count: Arc<std::sync::atomic::AtomicU64>) -> String {
    let metrics = move || {
        let n = count.load(std::sync::atomic::Ordering::SeqCst);
        async move {
            format!(
                "# TYPE http_server_request_duration_seconds histogram\n\
                 http_server_request_duration_seconds_bucket{{method=\"POST\",route=\"/orders\",status=\"201\",le=\"0.005\"}} {n}\n\
                 http_server_request_duration_seconds_bucket{{method=\"POST\",route=\"/orders\",status=\"201\",le=\"+Inf\"}} {n}\n\
                 http_server_request_duration_seconds_count{{method=\"POST\",route=\"/orders\",status=\"201\"}} {n}\n"
            )
        }
    };
    let router = Router::new()
        .route(
            "/health/ready",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "application/health+json")],
                    r#"{"status":"fail","checks":{"store":[{"status":"pass"}],
                       "upstream:user-service":[{"status":"warn","observedValue":"open"}]}}"#,
                )
            }),
        )
        .route(
            "/resilience",
            get(|| async {
                axum::Json(serde_json::json!({
                    "service": "order-service",
                    "breakers": [{"name": "user-service", "state": "open", "calls": 20,
                                  "failures": 12, "failure_rate": 60.0, "transitions_total": 1,
                                  "retry_after_ms": 4000}],
                    "bulkheads": [{"name": "user-service", "max_concurrent": 32, "in_use": 1,
                                   "waiting": 0, "rejected_total": 0}],
                    "retries": [{"name": "user-service", "requests_total": 20, "retries_total": 5,
                                 "budget_exhausted_total": 0}]
                }))
            }),
        )
        .route("/metrics", get(metrics));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn poller_reads_health_resilience_and_metrics_of_configured_services() {
    let count = Arc::new(std::sync::atomic::AtomicU64::new(100));
    let order_url = fake_order_service(count.clone()).await;
    // Port 9 on loopback: nothing listens, so this one is down.
    let mut poller = Poller::new(
        vec![
            ServiceConfig::new("user-service", "http://127.0.0.1:9"),
            ServiceConfig::new("order-service", order_url),
        ],
        Duration::from_secs(2),
    );
    let first = poller.poll().await;
    assert_eq!(first.seq, 1);
    let user = &first.services[0];
    assert!(!user.up && !user.ready);
    assert_eq!(user.status, "down");
    assert!(user.error.is_some());
    let order = &first.services[1];
    assert!(order.up && !order.ready);
    assert_eq!(order.status, "fail");
    assert_eq!(order.checks.len(), 2);
    assert_eq!(order.breakers[0].name, "user-service");
    assert_eq!(order.breakers[0].state, "open");
    assert_eq!(order.breakers[0].snapshot["failures"], 12);
    assert_eq!(order.retries[0]["retries_total"], 5);
    assert_eq!(order.bulkheads[0]["max_concurrent"], 32);
    assert!(order.history.is_empty());

    count.store(150, std::sync::atomic::Ordering::SeqCst);
    let second = poller.poll().await;
    let point = second.services[1]
        .history
        .back()
        .expect("a rate after two polls");
    assert!(point.rps > 0.0);
    assert_eq!(point.p50_ms, Some(2.5));
    // The whole document is what the page receives.
    let doc: serde_json::Value = serde_json::from_str(&encode(&second)).unwrap();
    assert_eq!(
        doc["services"][1]["breakers"][0]["timeline"][0]["to"],
        "open"
    );
    assert_eq!(doc["services"][0]["up"], false);
}

#[test]
fn config_reads_the_environment_with_loopback_defaults() {
    let defaults = dashboard::Config::from_lookup(|_| None).unwrap();
    assert_eq!(defaults.addr.to_string(), "127.0.0.1:8080");
    let urls: Vec<_> = defaults
        .services
        .iter()
        .map(|s| s.base_url.as_str())
        .collect();
    assert_eq!(urls, ["http://127.0.0.1:5001", "http://127.0.0.1:5002"]);
    assert_eq!(defaults.interval, Duration::from_secs(1));

    let custom = dashboard::Config::from_lookup(|k| match k {
        "USER_SERVICE_URLS" => Some("http://127.0.0.1:6001, http://127.0.0.1:6003/".into()),
        "ORDER_SERVICE_URL" => Some("http://127.0.0.1:6002".into()),
        "DASHBOARD_ADDR" => Some("127.0.0.1:0".into()),
        _ => None,
    })
    .unwrap();
    let names: Vec<_> = custom.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["user-service-1", "user-service-2", "order-service"]);
    assert_eq!(custom.services[1].base_url, "http://127.0.0.1:6003");
    assert!(
        dashboard::Config::from_lookup(|k| (k == "ORDER_SERVICE_URL").then(|| "file:///etc".into()))
            .is_err()
    );

    // Two order-service replicas (ORDER_SERVICE_REPLICAS=2 ./run.sh up): both polled, under
    // run.sh's names; the list wins over the single URL.
    let replicas = dashboard::Config::from_lookup(|k| match k {
        "ORDER_SERVICE_URLS" => Some("http://127.0.0.1:6002,http://127.0.0.1:6004".into()),
        "ORDER_SERVICE_URL" => Some("http://127.0.0.1:6999".into()),
        _ => None,
    })
    .unwrap();
    let polled: Vec<_> = replicas
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.base_url.as_str()))
        .collect();
    assert_eq!(
        polled,
        [
            ("user-service", "http://127.0.0.1:5001"),
            ("order-service", "http://127.0.0.1:6002"),
            ("order-service-2", "http://127.0.0.1:6004"),
        ]
    );
}

#[tokio::test]
async fn a_service_without_resilience_is_not_asked_every_tick() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let misses = Arc::new(AtomicU64::new(0));
    let counter = misses.clone();
    let router = Router::new()
        .route("/health/ready", get(|| async { r#"{"status":"pass"}"# }))
        .route("/metrics", get(|| async { "" }))
        .fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::NOT_FOUND }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let mut poller = Poller::new(
        vec![ServiceConfig::new("user-service", format!("http://{addr}"))],
        Duration::from_secs(2),
    );
    for _ in 0..5 {
        let s = poller.poll().await;
        assert!(s.services[0].up && s.services[0].ready);
        assert!(s.services[0].breakers.is_empty());
    }
    assert_eq!(misses.load(Ordering::SeqCst), 1);
}

async fn get_with_host(router: Router, uri: &str, host: &str) -> (StatusCode, String, String) {
    let req = Request::get(uri).header(header::HOST, host);
    send(router, req.body(Body::empty()).unwrap()).await
}

/// DNS rebinding: a page served as `evil.example` whose name now resolves to 127.0.0.1
/// reaches the dashboard with `Host: evil.example:8080`; it must get nothing but a 421.
#[tokio::test]
async fn a_host_outside_the_allowlist_is_misdirected() {
    let (_tx, state) = state();
    for uri in ["/", "/api/state", "/events", "/metrics", "/no-such-page"] {
        let (status, ctype, body) =
            get_with_host(app(state.clone()), uri, "evil.example:8080").await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{uri}");
        assert_eq!(ctype, "application/problem+json", "{uri}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["status"], 421);
        assert!(!body.contains("evil.example"), "{body}");
    }
    for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"] {
        let (status, _, _) = get_with_host(app(state.clone()), "/api/state", host).await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
    for host in [
        "localhost:9999",
        "localhost",
        "127.0.0.1.evil.example:8080",
        "a@localhost:8080",
    ] {
        let (status, _, _) = get_with_host(app(state.clone()), "/api/state", host).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
}

#[test]
fn allowed_hosts_follow_the_bind_address_or_the_configured_list() {
    let config = dashboard::Config::from_lookup(|k| {
        (k == "DASHBOARD_ADDR").then(|| "127.0.0.1:6303".into())
    })
    .unwrap();
    assert!(config.allowed_hosts.allows("127.0.0.1:6303"));
    assert!(config.allowed_hosts.allows("localhost:6303"));
    assert!(!config.allowed_hosts.allows("localhost:8080"));

    let config = dashboard::Config::from_lookup(|k| {
        (k == "DASHBOARD_ALLOWED_HOSTS").then(|| "dash.internal:80, [::1]:8080".into())
    })
    .unwrap();
    assert!(config.allowed_hosts.allows("dash.internal"));
    assert!(config.allowed_hosts.allows("[::1]:8080"));
    assert!(
        !config.allowed_hosts.allows("localhost:8080"),
        "the list replaces the default"
    );
    for bad in ["", " , ", "host:port", "a b"] {
        assert!(
            dashboard::Config::from_lookup(|k| (k == "DASHBOARD_ALLOWED_HOSTS").then(|| bad.into()))
                .is_err(),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn metrics_are_served_with_help_text() {
    let (_tx, state) = state();
    get_with_host(app(state.clone()), "/api/state", "127.0.0.1:8080").await;
    let (status, ctype, text) =
        get_with_host(app(state.clone()), "/metrics", "127.0.0.1:8080").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(
        text.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains(r#"route="/api/state""#)
        ),
        "{text}"
    );
    assert!(
        service_kit::testing::undescribed_metrics(&text).is_empty(),
        "{text}"
    );
    let (status, _, _) = get_with_host(app(state), "/health/live", "127.0.0.1:8080").await;
    assert_eq!(status, StatusCode::OK);
}

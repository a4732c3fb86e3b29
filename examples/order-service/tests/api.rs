//! Router tests through `oneshot` (user-service is real, in this process, on loopback): every
//! status `POST /orders` promises, idempotency, degraded mode, health, `/resilience`, the
//! OpenAPI document, trace propagation, config validation, and the store on every backend.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, routing::get as get_route};
use http::{HeaderMap, Method, Request, StatusCode, header};
use order_service::{
    CreateOrder, DegradedMode, OrderStatus, app,
    idempotency::ScopedKey,
    store::{self, MIGRATIONS},
    verifier,
};
use serde_json::Value;
use service_kit::{
    config::Env,
    store::testing,
    testing::{assert_problem, call, get},
};
use support::*;

fn order_req(key: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri("/orders")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(k) = key {
        b = b.header("idempotency-key", k);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

async fn setup() -> (UserInstance, order_service::AppState, Router) {
    let users = UserInstance::start().await;
    let state = order_state(vec![users.url()], DegradedMode::Fail).await;
    let app = app(state.clone());
    (users, state, app)
}

#[tokio::test]
async fn an_order_for_a_known_user_is_created_and_readable() {
    let (users, _state, app) = setup().await;
    let uid = users.user("a@x.io").await;
    let r = call(&app, order_req(Some("k-1"), &order_body(uid, "sku-1"))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["status"], "confirmed");
    assert_eq!(r.body["user_id"], uid);
    assert_eq!(r.body["price"], 9.5);
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/orders/{id}").as_str()
    );
    assert!(r.headers.get("idempotent-replayed").is_none());

    let got = call(&app, get(&format!("/orders/{id}"))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, r.body);
    let list = call(&app, get(&format!("/orders?user_id={uid}"))).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["items"][0]["id"], id);
    let none = call(&app, get(&format!("/orders?user_id={}", uid + 1000))).await;
    assert_eq!(none.body["items"].as_array().unwrap().len(), 0);
    assert_problem(&call(&app, get("/orders/999999")).await, 404);
    let bad_id = call(&app, get("/orders/x")).await;
    assert_problem(&bad_id, 400);
    assert_eq!(bad_id.body["detail"], "invalid path: `x` is not an integer");
}

/// `promtool check metrics` reports a family without `# HELP`: every metric this service
/// and the library register must be described.
#[tokio::test]
async fn every_metric_on_metrics_has_help_text() {
    let (users, _state, app) = setup().await;
    let uid = users.user("help@x.io").await;
    for _ in 0..2 {
        let r = call(&app, order_req(Some("k-help"), &order_body(uid, "sku-1"))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let text = call(&app, get("/metrics")).await.body;
    let text = text.as_str().unwrap();
    for family in [
        "resilience_circuit_state",
        "resilience_retry_requests_total",
        "resilience_timeouts_total",
        "orders_created_total",
        "orders_idempotent_replays_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert_eq!(
        service_kit::testing::undescribed_metrics(text),
        Vec::<&str>::new()
    );
}

#[tokio::test]
async fn paging_orders_visits_each_once() {
    let (users, _state, app) = setup().await;
    let uid = users.user("p@x.io").await;
    for i in 0..5 {
        let r = call(
            &app,
            order_req(Some(&format!("pg-{i}")), &order_body(uid, &format!("s{i}"))),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut uri = format!("/orders?user_id={uid}&limit=2");
    loop {
        let r = call(&app, get(&uri)).await;
        assert_eq!(r.status, StatusCode::OK);
        for o in r.body["items"].as_array().unwrap() {
            seen.push(o["product_id"].as_str().unwrap().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/orders?user_id={uid}&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["s0", "s1", "s2", "s3", "s4"]);
    assert_problem(&call(&app, get("/orders?limit=1000")).await, 422);
    assert_problem(&call(&app, get("/orders?user_id=abc")).await, 400);
}

#[tokio::test]
async fn idempotency_key_is_required_and_checked() {
    let (users, state, app) = setup().await;
    let uid = users.user("k@x.io").await;
    let r = call(&app, order_req(None, &order_body(uid, "s"))).await;
    assert_problem(&r, 400);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    let long = "k".repeat(256);
    assert_problem(
        &call(&app, order_req(Some(&long), &order_body(uid, "s"))).await,
        400,
    );
    assert_eq!(store::count(&state.store).await.unwrap(), 0);
}

#[tokio::test]
async fn a_replayed_key_returns_the_stored_answer_and_stores_one_order() {
    let (users, state, app) = setup().await;
    let uid = users.user("r@x.io").await;
    let first = call(&app, order_req(Some("same"), &order_body(uid, "s"))).await;
    assert_eq!(first.status, StatusCode::CREATED);
    for _ in 0..3 {
        let again = call(&app, order_req(Some("same"), &order_body(uid, "s"))).await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(
            again.headers[header::LOCATION],
            first.headers[header::LOCATION]
        );
    }
    // The same key with another body is refused and changes nothing.
    let other = call(&app, order_req(Some("same"), &order_body(uid, "other"))).await;
    assert_problem(&other, 422);
    assert_eq!(other.body["type"], "urn:problem:idempotency-key-reused");
    assert_eq!(store::key_count(&state.store).await.unwrap(), 1);
    assert_eq!(store::count(&state.store).await.unwrap(), 1);
}

#[tokio::test]
async fn a_repeat_while_the_first_is_in_flight_is_409() {
    let (users, state, app) = setup().await;
    let uid = users.user("f@x.io").await;
    let body = order_body(uid, "s");
    let parsed: CreateOrder = serde_json::from_str(&body).unwrap();
    let fingerprint = serde_json::to_string(&parsed).unwrap();
    // Hold the key as the first request would while it verifies the user.
    let guard = state
        .in_flight
        .begin(&ScopedKey::new(uid, "busy"), &fingerprint)
        .unwrap();
    let r = call(&app, order_req(Some("busy"), &body)).await;
    assert_problem(&r, 409);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    let r = call(&app, order_req(Some("busy"), &order_body(uid, "different"))).await;
    assert_problem(&r, 422);
    drop(guard);
    assert_eq!(
        call(&app, order_req(Some("busy"), &body)).await.status,
        StatusCode::CREATED
    );
    assert!(
        state.in_flight.is_empty(),
        "the key is released after the request"
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_order() {
    let (users, state, app) = setup().await;
    let uid = users.user("c@x.io").await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let app = app.clone();
        let body = order_body(uid, "s");
        tasks.push(tokio::spawn(async move {
            call(&app, order_req(Some("race"), &body)).await
        }));
    }
    let mut created: Vec<Value> = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::CREATED => created.push(r.body),
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    assert!(!created.is_empty());
    assert!(
        created.windows(2).all(|w| w[0] == w[1]),
        "every 201 is the same order"
    );
    assert_eq!(store::count(&state.store).await.unwrap(), 1);
}

#[tokio::test]
async fn an_unknown_user_is_422_in_every_mode() {
    for mode in [DegradedMode::Fail, DegradedMode::Accept] {
        let users = UserInstance::start().await;
        let state = order_state(vec![users.url()], mode).await;
        let app = app(state.clone());
        let r = call(&app, order_req(Some("u"), &order_body(4242, "s"))).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["errors"][0]["field"], "user_id");
        assert_eq!(store::count(&state.store).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn bad_input_gets_the_right_problem() {
    let (users, state, app) = setup().await;
    let uid = users.user("b@x.io").await;
    assert_problem(&call(&app, order_req(Some("b1"), "{")).await, 400);
    let r = call(
        &app,
        Request::builder()
            .method(Method::POST)
            .uri("/orders")
            .header("idempotency-key", "b2")
            .header(header::CONTENT_TYPE, "application/xml")
            .body(Body::from("<order/>"))
            .unwrap(),
    )
    .await;
    assert_problem(&r, 415);
    for (body, field) in [
        (
            format!(r#"{{"user_id":{uid},"product_id":"s","quantity":0}}"#),
            "quantity",
        ),
        (
            format!(r#"{{"user_id":{uid},"product_id":"","quantity":1}}"#),
            "product_id",
        ),
        (
            format!(r#"{{"user_id":{uid},"product_id":"s","quantity":1,"price":-1}}"#),
            "price",
        ),
        (
            format!(r#"{{"user_id":{uid},"product_id":"s","quantity":1,"coupon":"x"}}"#),
            "coupon",
        ),
        (
            format!(r#"{{"user_id":{uid},"product_id":"s"}}"#),
            "quantity",
        ),
        (
            r#"{"user_id":"abc","product_id":"s","quantity":1}"#.to_owned(),
            "user_id",
        ),
        (
            r#"{"user_id":0,"product_id":"s","quantity":1}"#.to_owned(),
            "user_id",
        ),
    ] {
        let r = call(&app, order_req(Some("b3"), &body)).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["errors"][0]["field"], field, "{body}");
    }
    let big = order_body(uid, &"x".repeat(2000));
    assert_problem(&call(&app, order_req(Some("b4"), &big)).await, 413);
    let r = call(
        &app,
        Request::builder()
            .method(Method::PUT)
            .uri("/orders")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_problem(&r, 405);
    assert_problem(&call(&app, get("/nothing/here")).await, 404);
    assert_eq!(store::count(&state.store).await.unwrap(), 0);
}

#[tokio::test]
async fn user_service_down_fails_fast_with_503_and_retry_after() {
    let state = order_state(vec![dead_url().await], DegradedMode::Fail).await;
    let app = app(state.clone());
    for i in 0..6 {
        let r = call(&app, order_req(Some(&format!("d{i}")), &order_body(1, "s"))).await;
        assert_problem(&r, 503);
        assert!(r.headers.contains_key(header::RETRY_AFTER));
    }
    // By now the breaker is open: the answer comes without touching the network.
    let report = call(&app, get("/resilience")).await.body;
    assert_eq!(report["breakers"][0]["state"], "open", "{report}");
    let started = tokio::time::Instant::now();
    let r = call(&app, order_req(Some("d-open"), &order_body(1, "s"))).await;
    assert_problem(&r, 503);
    assert!(started.elapsed() < Duration::from_millis(150));
    assert_eq!(store::count(&state.store).await.unwrap(), 0);
    // Readiness stays 200 (the service still answers) and says which upstream is open.
    let ready = call(&app, get("/health/ready")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["status"], "warn");
    let upstream = ready.body["checks"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("upstream:user-service@127.0.0.1:"))
        .unwrap()
        .1;
    assert_eq!(upstream[0]["observedValue"], "open");
    assert_eq!(upstream[0]["status"], "warn");
}

#[tokio::test]
async fn degraded_mode_stores_pending_and_settles_it_later() {
    let mut users = UserInstance::start().await;
    let known = users.user("known@x.io").await;
    users.stop().await;
    let state = order_state(vec![users.url()], DegradedMode::Accept).await;
    let app = app(state.clone());
    let a = call(&app, order_req(Some("p1"), &order_body(known, "s"))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.body["status"], "pending");
    let b = call(&app, order_req(Some("p2"), &order_body(known + 99, "s"))).await;
    assert_eq!(b.status, StatusCode::CREATED);
    assert_eq!(b.body["status"], "pending");
    // Both were answered by the library's fallback layer (degraded mode is an instance of it).
    let fallback = state.degraded_lookup.handle();
    assert_eq!(fallback.name(), "user-lookup");
    assert_eq!(
        fallback.served(resilience_layers::fallback::FallbackOutcome::Failure),
        2
    );
    assert_eq!(fallback.snapshot().served_total, 2);
    // While user-service is down nothing settles.
    assert_eq!(verifier::verify_pending_once(&state).await.unwrap(), 0);

    users.restart().await;
    // Once the breaker admits calls again, the verifier settles both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut settled = 0;
    while settled < 2 && tokio::time::Instant::now() < deadline {
        settled += verifier::verify_pending_once(&state).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(settled, 2);
    let id_a = a.body["id"].as_i64().unwrap();
    let id_b = b.body["id"].as_i64().unwrap();
    assert_eq!(
        store::get(&state.store, id_a)
            .await
            .unwrap()
            .unwrap()
            .status,
        OrderStatus::Confirmed
    );
    assert_eq!(
        store::get(&state.store, id_b)
            .await
            .unwrap()
            .unwrap()
            .status,
        OrderStatus::Rejected
    );
    // A replay still returns the stored (pending) answer: the same response, not a new order.
    let again = call(&app, order_req(Some("p1"), &order_body(known, "s"))).await;
    assert_eq!(again.body, a.body);
    assert_eq!(store::count(&state.store).await.unwrap(), 2);
}

#[tokio::test]
async fn resilience_report_has_the_contract_shape() {
    let (users, _state, app) = setup().await;
    let r = call(&app, get("/resilience")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["service"], "order-service");
    let breakers = r.body["breakers"].as_array().unwrap();
    assert_eq!(breakers.len(), 1);
    assert_eq!(
        breakers[0]["name"],
        format!("user-service@{}", users.addr).as_str()
    );
    assert_eq!(breakers[0]["state"], "closed");
    for field in [
        "calls",
        "failures",
        "failure_rate",
        "rejected_total",
        "time_in_state_ms",
    ] {
        assert!(!breakers[0][field].is_null(), "breaker has {field}");
    }
    assert_eq!(r.body["bulkheads"][0]["name"], "user-service");
    assert_eq!(r.body["retries"][0]["name"], "user-service");

    let ready = call(&app, get("/health/ready")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.headers[header::CONTENT_TYPE],
        "application/health+json"
    );
    assert_eq!(ready.body["status"], "pass");
    assert_eq!(ready.body["checks"]["store"][0]["status"], "pass");
    let key = format!("upstream:user-service@{}", users.addr);
    assert_eq!(ready.body["checks"][&key][0]["observedValue"], "closed");
}

#[tokio::test]
async fn with_resilience_off_there_is_no_stack_and_orders_still_work() {
    let users = UserInstance::start().await;
    let uid = users.user("off@x.io").await;
    let store = testing::sqlite(&MIGRATIONS).await;
    let state = order_state_on(store, vec![users.url()], DegradedMode::Fail, None);
    let app = app(state);
    let r = call(&app, order_req(Some("o"), &order_body(uid, "s"))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let report = call(&app, get("/resilience")).await.body;
    assert_eq!(report["breakers"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn readiness_fails_once_shutdown_starts() {
    let (_users, state, app) = setup().await;
    state.readiness.start_shutdown();
    let r = call(&app, get("/health/ready")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["status"], "fail");
    assert_eq!(call(&app, get("/health/live")).await.status, StatusCode::OK);
}

/// The call to user-service carries the caller's trace id in a new span, and the request id.
#[tokio::test]
async fn traceparent_and_request_id_reach_user_service() {
    let seen: Arc<Mutex<Option<HeaderMap>>> = Arc::default();
    let record = seen.clone();
    let upstream = Router::new().route(
        "/users/{id}",
        get_route(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                *record.lock().unwrap() = Some(headers);
                axum::Json(serde_json::json!({"id": 1}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await.unwrap() });
    let url = reqwest::Url::parse(&format!("http://{addr}/")).unwrap();
    let state = order_state(vec![url], DegradedMode::Fail).await;
    let app = app(state);
    let mut req = order_req(Some("t"), &order_body(1, "s"));
    req.headers_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    req.headers_mut()
        .insert("x-request-id", "trace-me-1".parse().unwrap());
    let r = call(&app, req).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let headers = seen.lock().unwrap().clone().expect("upstream was called");
    let tp = headers["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(!tp.contains("00f067aa0ba902b7"), "a new span id: {tp}");
    assert_eq!(headers["x-request-id"], "trace-me-1");
}

#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let (users, _state, app) = setup().await;
    users.user("ada@example.com").await; // the example body's user_id 1
    let documented = service_kit::testing::check_openapi(&app, &[("id", "1")]).await;
    assert_eq!(
        documented,
        [
            "get /orders",
            "get /orders/{id}",
            "get /resilience",
            "post /orders"
        ]
    );
    let doc = call(&app, get("/openapi.json")).await.body;
    let params = doc["paths"]["/orders"]["post"]["parameters"]
        .as_array()
        .unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
    );
    assert_eq!(
        doc["components"]["schemas"]["CreateOrder"]["additionalProperties"],
        false
    );
    let key = params
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    assert_eq!(
        key["schema"]["pattern"],
        order_service::IDEMPOTENCY_KEY_PATTERN
    );
    // No ADMIN_TOKEN here: the admin routes answer 404, so they are not in the document.
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|p| !p.starts_with("/admin")),
        "{}",
        doc["paths"]
    );
}

/// What the document allows is accepted: `2.0` is an integer (as JSON Schema reads it), an
/// empty cursor is the first page; and an unknown user is a 422 of its own type, not a
/// validation failure.
#[tokio::test]
async fn what_the_document_allows_is_accepted() {
    let (users, _state, app) = setup().await;
    let uid = users.user("doc@x.io").await;
    let body = format!(r#"{{"user_id":{uid}.0,"product_id":"s","quantity":2e0}}"#);
    let r = call(&app, order_req(Some("whole"), &body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["quantity"], 2);
    let r = call(
        &app,
        order_req(Some("frac"), &order_body(uid, "s").replace(":2,", ":2.5,")),
    )
    .await;
    assert_problem(&r, 422);
    assert_eq!(r.body["errors"][0]["field"], "quantity");
    let page = call(
        &app,
        get(&format!("/orders?cursor=&user_id={uid}.0&limit=5")),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    assert_problem(&call(&app, get("/orders?cursor=%2B5")).await, 422);
    assert_problem(&call(&app, get("/orders?user_id=0")).await, 422);
    let r = call(&app, order_req(Some("nobody"), &order_body(uid + 999, "s"))).await;
    assert_problem(&r, 422);
    assert_eq!(r.body["type"], "urn:problem:unknown-user");
    assert_eq!(r.body["errors"][0]["field"], "user_id");
}

#[test]
fn config_is_validated_with_every_problem_named() {
    let err = order_service::Config::from_env(Env::from_pairs([
        ("ORDER_SERVICE_ADDR", "localhost"),
        ("USER_SERVICE_URLS", "http://127.0.0.1:5001,ftp://x,"),
        ("DEGRADED_MODE", "maybe"),
        ("RESILIENCE", "sometimes"),
        ("RESILIENCE_CONFIG", "/nonexistent/stack.toml"),
    ]))
    .unwrap_err()
    .to_string();
    for var in [
        "ORDER_SERVICE_ADDR",
        "USER_SERVICE_URLS",
        "DEGRADED_MODE",
        "RESILIENCE:",
        "RESILIENCE_CONFIG",
    ] {
        assert!(err.contains(var), "{var} missing from: {err}");
    }

    let dir = std::env::temp_dir().join(format!("stack-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[retry]\nmax_attempts = 0\n").unwrap();
    let err = order_service::Config::from_env(Env::from_pairs([(
        "RESILIENCE_CONFIG",
        bad.to_str().unwrap(),
    )]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("retry.max_attempts"), "{err}");

    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "attempt_timeout = \"250ms\"\n[circuit_breaker]\nwait_in_open = \"1s\"\n",
    )
    .unwrap();
    let c = order_service::Config::from_env(Env::from_pairs([
        ("RESILIENCE_CONFIG", good.to_str().unwrap()),
        (
            "USER_SERVICE_URLS",
            "http://127.0.0.1:5001, http://127.0.0.1:5003/",
        ),
        ("DEGRADED_MODE", "accept"),
    ]))
    .unwrap();
    assert_eq!(
        c.stack.unwrap().attempt_timeout,
        Some(Duration::from_millis(250))
    );
    assert_eq!(c.user_service_urls.len(), 2);
    assert_eq!(c.degraded, DegradedMode::Accept);
    assert!(c.common.addr.ip().is_loopback());

    let off = order_service::Config::from_env(Env::from_pairs([("RESILIENCE", "off")])).unwrap();
    assert!(off.stack.is_none());
    let default = order_service::Config::from_env(Env::from_pairs([])).unwrap();
    default.stack.unwrap().validate().unwrap();
}

#[tokio::test]
async fn store_keeps_one_order_per_key_on_every_backend() {
    for s in testing::all(&MIGRATIONS).await {
        let new = store::NewOrder {
            user_id: 1,
            product_id: "p",
            quantity: 1,
            price: None,
            status: OrderStatus::Pending,
            idempotency_key: "key-1",
            fingerprint: "fp",
            now_ms: 5,
        };
        let render = |o: &order_service::Order| serde_json::to_string(o).unwrap();
        let store::Inserted::Created(order, body) =
            store::insert_with_key(&s, &new, render).await.unwrap()
        else {
            panic!("first insert creates");
        };
        assert_eq!(order.price, None);
        let store::Inserted::KeyTaken(stored) =
            store::insert_with_key(&s, &new, render).await.unwrap()
        else {
            panic!("second insert finds the key");
        };
        assert_eq!(stored.body, body);
        assert_eq!(stored.order_id, order.id);
        assert_eq!(stored.status_code, 201);
        assert_eq!(store::count(&s).await.unwrap(), 1);
        assert_eq!(store::key_count(&s).await.unwrap(), 1);
        assert_eq!(store::pending(&s, 10).await.unwrap(), vec![order.clone()]);
        assert!(
            store::settle(&s, order.id, OrderStatus::Confirmed, 9)
                .await
                .unwrap()
        );
        assert!(
            !store::settle(&s, order.id, OrderStatus::Rejected, 10)
                .await
                .unwrap()
        );
        let got = store::get(&s, order.id).await.unwrap().unwrap();
        assert_eq!(got.status, OrderStatus::Confirmed);
        assert_eq!(got.updated_at_ms, 9);
        assert_eq!(
            store::list(&s, Some(1), 0, 10).await.unwrap(),
            vec![got.clone()]
        );
        assert_eq!(store::list(&s, None, 0, 10).await.unwrap(), vec![got]);
        assert!(store::list(&s, Some(2), 0, 10).await.unwrap().is_empty());
        s.close().await;
    }
}

/// Concurrent inserts with one key, straight at the store (no in-process guard): exactly one
/// order, and every loser gets the winner's stored answer.
#[tokio::test]
async fn racing_inserts_with_one_key_store_one_order_on_every_backend() {
    for s in testing::all(&MIGRATIONS).await {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let new = store::NewOrder {
                    user_id: 1,
                    product_id: "p",
                    quantity: 1,
                    price: Some(1.5),
                    status: OrderStatus::Confirmed,
                    idempotency_key: "race",
                    fingerprint: "fp",
                    now_ms: 1,
                };
                match store::insert_with_key(&s, &new, |o| serde_json::to_string(o).unwrap())
                    .await
                    .unwrap()
                {
                    store::Inserted::Created(o, _) => o.id,
                    store::Inserted::KeyTaken(st) => st.order_id,
                }
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(store::count(&s).await.unwrap(), 1);
        s.close().await;
    }
}

/// A slow user-service (latency beyond the attempt timeout) trips the breaker like a dead one.
#[tokio::test]
async fn a_slow_user_service_times_out_and_opens_the_breaker() {
    let users = UserInstance::start().await;
    let uid = users.user("slow@x.io").await;
    let state = order_state(vec![users.url()], DegradedMode::Fail).await;
    let app = app(state.clone());
    // Attempts time out after 400 ms; make user-service take 900 ms.
    let faults = users.faults.clone();
    faults.set_latency(Duration::from_millis(900));
    let mut last = StatusCode::OK;
    for i in 0..4 {
        let r = call(
            &app,
            order_req(Some(&format!("slow-{i}")), &order_body(uid, "s")),
        )
        .await;
        last = r.status;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    }
    assert_eq!(last, StatusCode::SERVICE_UNAVAILABLE);
    let report = call(&app, get("/resilience")).await.body;
    assert_eq!(report["breakers"][0]["state"], "open", "{report}");
    let t = tokio::time::Instant::now();
    assert_problem(
        &call(&app, order_req(Some("slow-x"), &order_body(uid, "s"))).await,
        503,
    );
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "fails fast once open"
    );
    assert_eq!(store::count(&state.store).await.unwrap(), 0);
}

/// Keys belong to the user the order is for: the same key from two users is two orders, not
/// a 422 for the second (no squatting on another client's key), and each replays its own.
#[tokio::test]
async fn one_key_used_by_two_users_makes_two_orders() {
    let (users, _state, app) = setup().await;
    let a = users.user("scope-a@x.io").await;
    let b = users.user("scope-b@x.io").await;
    let first = call(&app, order_req(Some("shared"), &order_body(a, "s"))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let second = call(&app, order_req(Some("shared"), &order_body(b, "s"))).await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    assert_ne!(first.body["id"], second.body["id"]);
    assert_eq!(second.body["user_id"], b);
    for (uid, want) in [(a, &first.body), (b, &second.body)] {
        let again = call(&app, order_req(Some("shared"), &order_body(uid, "s"))).await;
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(&again.body, want);
    }
    let all = call(&app, get("/orders")).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
}

/// No response that shows an order names the key it was created with.
#[tokio::test]
async fn order_responses_do_not_reveal_idempotency_keys() {
    let (users, _state, app) = setup().await;
    let uid = users.user("secret@x.io").await;
    let key = "s3cret-key-0b9f6a3e";
    let created = call(&app, order_req(Some(key), &order_body(uid, "s"))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_i64().unwrap();
    let replay = call(&app, order_req(Some(key), &order_body(uid, "s"))).await;
    for body in [
        created.body,
        replay.body,
        call(&app, get(&format!("/orders/{id}"))).await.body,
        call(&app, get("/orders")).await.body,
        call(&app, get(&format!("/orders?user_id={uid}")))
            .await
            .body,
    ] {
        let text = body.to_string();
        assert!(
            !text.contains(key) && !text.contains("idempotency_key"),
            "{text}"
        );
    }
}

/// Two `Idempotency-Key` headers are ambiguous: 400, and nothing is stored.
#[tokio::test]
async fn two_idempotency_key_headers_are_400() {
    let (users, _state, app) = setup().await;
    let uid = users.user("twice@x.io").await;
    let mut req = order_req(Some("first"), &order_body(uid, "s"));
    req.headers_mut()
        .append("idempotency-key", "second".parse().unwrap());
    let r = call(&app, req).await;
    assert_problem(&r, 400);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("more than once"),
        "{:?}",
        r.body
    );
    let all = call(&app, get("/orders")).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 0);
}

fn keyed(user_id: i64, key: &'static str, now_ms: i64) -> store::NewOrder<'static> {
    store::NewOrder {
        user_id,
        product_id: "p",
        quantity: 1,
        price: None,
        status: OrderStatus::Confirmed,
        idempotency_key: key,
        fingerprint: "fp",
        now_ms,
    }
}

/// The sweep deletes exactly the records older than the retention, in batches larger than
/// one statement's, and leaves every order in place; the time is the caller's.
#[tokio::test]
async fn the_sweep_deletes_expired_key_records_and_keeps_orders_on_every_backend() {
    use order_service::idempotency::{SWEEP_BATCH, Sweeper};

    let hour = 3_600_000_i64;
    for s in testing::all(&MIGRATIONS).await {
        let render = |o: &order_service::Order| serde_json::to_string(o).unwrap();
        // More expired records than one batch, and a few fresh ones (created 59 min ago).
        let expired = usize::try_from(SWEEP_BATCH).unwrap() + 7;
        let keys: Vec<&'static str> = (0..expired + 3)
            .map(|i| &*Box::leak(format!("k{i}").into_boxed_str()))
            .collect();
        let now = 100 * hour;
        for (i, key) in keys.iter().enumerate() {
            let at = if i < expired {
                now - 2 * hour - i as i64
            } else {
                now - hour + 60_000
            };
            store::insert_with_key(&s, &keyed(1, key, at), render)
                .await
                .unwrap();
        }
        let sweeper = Sweeper::new(s.clone(), Duration::from_secs(3600));
        assert_eq!(sweeper.sweep(now).await.unwrap(), expired as u64);
        assert_eq!(store::key_count(&s).await.unwrap(), 3);
        assert_eq!(store::count(&s).await.unwrap(), (expired + 3) as i64);
        assert!(store::find_key(&s, 1, keys[0]).await.unwrap().is_none());
        assert!(
            store::find_key(&s, 1, keys[expired])
                .await
                .unwrap()
                .is_some()
        );
        // Nothing more to do; an hour on, the rest go too.
        assert_eq!(sweeper.round(now).await.unwrap(), 0);
        assert_eq!(sweeper.sweep(now + hour).await.unwrap(), 3);
        assert_eq!(store::key_count(&s).await.unwrap(), 0);
        s.close().await;
    }
}

/// Once a key's record has expired the key is free: the same request places a new order (the
/// documented behaviour), while the first order stays readable.
#[tokio::test]
async fn an_expired_key_places_a_new_order() {
    use order_service::idempotency::Sweeper;

    let (users, state, app) = setup().await;
    let uid = users.user("expire@x.io").await;
    let first = call(&app, order_req(Some("old"), &order_body(uid, "s"))).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let sweeper = Sweeper::new(state.store.clone(), Duration::from_secs(60));
    let later = service_kit::store::now_ms() + 61_000;
    assert_eq!(sweeper.sweep(later).await.unwrap(), 1);
    let second = call(&app, order_req(Some("old"), &order_body(uid, "s"))).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert!(second.headers.get("idempotent-replayed").is_none());
    assert_ne!(second.body["id"], first.body["id"]);
    let id = first.body["id"].as_i64().unwrap();
    assert_eq!(
        call(&app, get(&format!("/orders/{id}"))).await.status,
        StatusCode::OK
    );
    assert_eq!(store::count(&state.store).await.unwrap(), 2);
}

/// A store made by the first schema (global keys, keys on orders) upgrades in place: each
/// record is scoped by its order's user, orders keep their ids, and new ids come after them.
#[tokio::test]
async fn migration_2002_scopes_existing_keys_by_user_on_every_backend() {
    let first = service_kit::store::Migrations {
        sqlite: &MIGRATIONS.sqlite[..1],
        postgres: &MIGRATIONS.postgres[..1],
    };
    let mut stores = vec![testing::sqlite(&first).await];
    stores.extend(testing::postgres(&first).await);
    for old in stores {
        let mut ids = Vec::new();
        for (user, key) in [(7_i64, "a"), (8, "b")] {
            let row = sqlx::query(
                "INSERT INTO orders (user_id, product_id, quantity, status, idempotency_key,
                    created_at_ms, updated_at_ms) VALUES ($1, 'p', 1, 'confirmed', $2, 5, 5)
                 RETURNING id",
            )
            .bind(user)
            .bind(key)
            .fetch_one(old.writer())
            .await
            .unwrap();
            let id: i64 = sqlx::Row::try_get(&row, 0).unwrap();
            sqlx::query(
                "INSERT INTO idempotency_keys (idempotency_key, fingerprint, status_code,
                    response_body, order_id, created_at_ms) VALUES ($1, 'fp', 201, '{}', $2, 5)",
            )
            .bind(key)
            .bind(id)
            .execute(old.writer())
            .await
            .unwrap();
            ids.push(id);
        }
        // Re-running the migrator on the same database applies 2002 only.
        let s = reopen(&old).await;
        assert_eq!(
            store::find_key(&s, 7, "a").await.unwrap().unwrap().order_id,
            ids[0]
        );
        assert_eq!(
            store::find_key(&s, 8, "b").await.unwrap().unwrap().order_id,
            ids[1]
        );
        assert!(store::find_key(&s, 8, "a").await.unwrap().is_none());
        assert_eq!(store::get(&s, ids[1]).await.unwrap().unwrap().user_id, 8);
        let render = |o: &order_service::Order| serde_json::to_string(o).unwrap();
        let store::Inserted::Created(o, _) = store::insert_with_key(&s, &keyed(8, "a", 6), render)
            .await
            .unwrap()
        else {
            panic!("user 8's key `a` is not user 7's");
        };
        assert!(o.id > ids[1], "{o:?}");
        s.close().await;
        old.close().await;
    }
}

#[test]
fn idempotency_retention_is_a_validated_duration() {
    let c = order_service::Config::from_env(Env::from_pairs([])).unwrap();
    assert_eq!(c.idempotency_retention, Duration::from_secs(24 * 3600));
    let c = order_service::Config::from_env(Env::from_pairs([("IDEMPOTENCY_RETENTION", "90m")]))
        .unwrap();
    assert_eq!(c.idempotency_retention, Duration::from_secs(90 * 60));
    for bad in ["soon", "0s", "400days"] {
        let err =
            order_service::Config::from_env(Env::from_pairs([("IDEMPOTENCY_RETENTION", bad)]))
                .unwrap_err()
                .to_string();
        assert!(err.contains("IDEMPOTENCY_RETENTION"), "{bad}: {err}");
    }
}

#[test]
fn group_commit_settings_are_validated() {
    let sqlite = order_service::Config::from_env(Env::from_pairs([])).unwrap();
    assert_eq!(
        sqlite.writes,
        order_service::group_commit::WriterConfig {
            max_batch: 256,
            queue: 1024,
            writers: 1
        }
    );
    let pg = "postgres://u:p@127.0.0.1:5432/orders";
    let on_pg = order_service::Config::from_env(Env::from_pairs([("DATABASE_URL", pg)])).unwrap();
    assert!(on_pg.writes.writers > 1, "{:?}", on_pg.writes);
    let set = order_service::Config::from_env(Env::from_pairs([
        ("DATABASE_URL", pg),
        ("ORDER_WRITE_BATCH", "1"),
        ("ORDER_WRITE_QUEUE", "10"),
        ("ORDER_WRITERS", "8"),
    ]))
    .unwrap();
    assert_eq!(
        (set.writes.max_batch, set.writes.queue, set.writes.writers),
        (1, 10, 8)
    );
    // SQLite has one writer connection; zero-sized batches and queues mean nothing.
    let err = order_service::Config::from_env(Env::from_pairs([
        ("ORDER_WRITERS", "2"),
        ("ORDER_WRITE_BATCH", "0"),
        ("ORDER_WRITE_QUEUE", "many"),
    ]))
    .unwrap_err()
    .to_string();
    for var in ["ORDER_WRITERS", "ORDER_WRITE_BATCH", "ORDER_WRITE_QUEUE"] {
        assert!(err.contains(var), "{var} missing from: {err}");
    }
}

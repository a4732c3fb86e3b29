//! Router tests through `oneshot`: every status the API promises, the health and metrics
//! routes, the OpenAPI document against the routes, and the store on every backend.

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use service_kit::{
    config::Env,
    store::testing,
    testing::{assert_problem, call, get, json_req},
};
use tower::ServiceExt;
use user_service::{AppState, Config, app, store};
use utoipa::OpenApi as _;

fn config(pairs: &[(&str, &str)]) -> Config {
    Config::from_env(Env::from_pairs(pairs.iter().copied())).unwrap()
}

async fn state() -> AppState {
    let store = testing::sqlite(&store::MIGRATIONS).await;
    AppState::new(store, &config(&[("BODY_LIMIT_BYTES", "1024")]))
}

#[tokio::test]
async fn create_then_read_a_user() {
    let app = app(state().await);
    let r = call(
        &app,
        json_req(
            Method::POST,
            "/users",
            r#"{"name":"  Ada ","email":"Ada@Example.com"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["name"], "Ada");
    assert_eq!(r.body["email"], "ada@example.com");
    assert_eq!(r.headers[header::LOCATION], format!("/users/{id}").as_str());

    let r = call(&app, get(&format!("/users/{id}"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["id"], id);
    assert_eq!(r.body["email"], "ada@example.com");

    let r = call(&app, get("/users/999999")).await;
    assert_problem(&r, 404);
    assert_eq!(r.body["instance"], "/users/999999");
    let r = call(&app, get("/users/abc")).await;
    assert_problem(&r, 400);
}

#[tokio::test]
async fn duplicate_email_is_409_case_insensitively() {
    let app = app(state().await);
    let body = r#"{"name":"A","email":"dup@example.com"}"#;
    assert_eq!(
        call(&app, json_req(Method::POST, "/users", body))
            .await
            .status,
        StatusCode::CREATED
    );
    let r = call(
        &app,
        json_req(
            Method::POST,
            "/users",
            r#"{"name":"B","email":"DUP@example.com"}"#,
        ),
    )
    .await;
    assert_problem(&r, 409);
    // Whether an address is registered is for its owner to learn, not for anyone who asks:
    // the answer names no address (so a log or a proxy of it holds none either).
    let text = r.body.to_string().to_lowercase();
    assert!(!text.contains("dup@example.com"), "{text}");
}

#[tokio::test]
async fn concurrent_creates_with_one_email_store_one_user() {
    let st = state().await;
    let app = app(st.clone());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"name":"n{i}","email":"same@example.com"}}"#);
            call(&app, json_req(Method::POST, "/users", &body))
                .await
                .status
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(store::count(&st.store).await.unwrap(), 1);
}

#[tokio::test]
async fn bad_input_gets_the_right_problem() {
    let app = app(state().await);
    // Malformed JSON.
    let r = call(&app, json_req(Method::POST, "/users", r#"{"name":"#)).await;
    assert_problem(&r, 400);
    // Not JSON at all, or no content type.
    let r = call(
        &app,
        Request::builder()
            .method(Method::POST)
            .uri("/users")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("name=a"))
            .unwrap(),
    )
    .await;
    assert_problem(&r, 415);
    let r = call(
        &app,
        Request::builder()
            .method(Method::POST)
            .uri("/users")
            .body(Body::from(r#"{"name":"a","email":"a@b.c"}"#))
            .unwrap(),
    )
    .await;
    assert_problem(&r, 415);
    // Unknown field, missing field, wrong type, failed rule: 422 naming the field.
    for (body, field) in [
        (r#"{"name":"a","email":"a@b.c","admin":true}"#, "admin"),
        (r#"{"name":"a"}"#, "email"),
        (r#"{"name":7,"email":"a@b.c"}"#, "name"),
        (r#"{"name":"a","email":"not-an-email"}"#, "email"),
        (r#"{"name":"   ","email":"a@b.c"}"#, "name"),
    ] {
        let r = call(&app, json_req(Method::POST, "/users", body)).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["errors"][0]["field"], field, "{body}: {:?}", r.body);
    }
    // Over the body limit (1 KiB in this test).
    let big = format!(r#"{{"name":"{}","email":"a@b.c"}}"#, "x".repeat(4096));
    let r = call(&app, json_req(Method::POST, "/users", &big)).await;
    assert_problem(&r, 413);
    // Wrong method, unknown path.
    let r = call(
        &app,
        Request::builder()
            .method(Method::DELETE)
            .uri("/users")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_problem(&r, 405);
    assert_eq!(r.headers[header::ALLOW], "GET,HEAD,POST");
    let r = call(&app, get("/nope")).await;
    assert_problem(&r, 404);
    // Bad paging.
    assert_problem(&call(&app, get("/users?limit=0")).await, 422);
    assert_problem(&call(&app, get("/users?limit=abc")).await, 400);
    assert_problem(&call(&app, get("/users?bogus=1")).await, 400);
    assert_problem(&call(&app, get("/users?cursor=zz")).await, 422);
}

#[tokio::test]
async fn paging_visits_every_user_once() {
    let app = app(state().await);
    for i in 0..5 {
        let body = format!(r#"{{"name":"u{i}","email":"u{i}@example.com"}}"#);
        assert_eq!(
            call(&app, json_req(Method::POST, "/users", &body))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let mut seen = Vec::new();
    let mut uri = "/users?limit=2".to_owned();
    loop {
        let r = call(&app, get(&uri)).await;
        assert_eq!(r.status, StatusCode::OK);
        for u in r.body["items"].as_array().unwrap() {
            seen.push(u["email"].as_str().unwrap().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/users?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..5)
            .map(|i| format!("u{i}@example.com"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn health_routes() {
    let st = state().await;
    let app = app(st.clone());
    let r = call(&app, get("/health/live")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": "pass"}));
    let r = call(&app, get("/health/ready")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/health+json");
    assert_eq!(
        r.body,
        json!({"status": "pass", "checks": {"store": [{"status": "pass"}]}})
    );
    assert_eq!(call(&app, get("/health")).await.status, StatusCode::OK);

    st.readiness.start_shutdown();
    let r = call(&app, get("/health/ready")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["status"], "fail");
    // Liveness is unaffected: the process still answers while it drains.
    assert_eq!(call(&app, get("/health/live")).await.status, StatusCode::OK);

    st.store.close().await;
    let r = call(&app, get("/health/ready")).await;
    assert_eq!(r.body["checks"]["store"][0]["status"], "fail");
}

#[tokio::test]
async fn store_down_is_503_not_500() {
    let st = state().await;
    let app = app(st.clone());
    st.store.close().await;
    let r = call(
        &app,
        json_req(Method::POST, "/users", r#"{"name":"a","email":"a@b.c"}"#),
    )
    .await;
    assert_problem(&r, 503);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert_problem(&call(&app, get("/users/1")).await, 503);
}

#[tokio::test]
async fn metrics_have_the_request_histogram_by_route_template() {
    let app = app(state().await);
    call(&app, get("/users/12345")).await;
    let r = app.clone().oneshot(get("/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_bucket")
                && l.contains(r#"route="/users/{id}""#)
                && l.contains(r#"status="404""#)
                && l.contains(r#"method="GET""#)
        })
        .unwrap_or_else(|| panic!("no histogram line in:\n{text}"));
    assert!(line.contains("le="));
}

#[tokio::test]
async fn request_id_and_traceparent_are_taken_from_the_caller() {
    let app = app(state().await);
    let r = call(
        &app,
        Request::builder()
            .uri("/users/424242")
            .header("x-request-id", "req-abc-1")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "req-abc-1");
    assert_eq!(r.body["request_id"], "req-abc-1");
}

/// The OpenAPI document matches the routes (see `service_kit::testing::check_openapi`), lists
/// exactly these operations, and its body schema refuses unknown properties as the route does.
#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let app = app(state().await);
    let documented = service_kit::testing::check_openapi(&app, &[("id", "1")]).await;
    assert_eq!(documented, ["get /users", "get /users/{id}", "post /users"]);
    let doc = call(&app, get("/openapi.json")).await.body;
    assert_eq!(
        doc["components"]["schemas"]["CreateUser"]["additionalProperties"],
        false
    );
    // The headers the business layers read are documented on every business operation (the
    // simulated latency only when the admin token enables it), and on no operations route.
    let headers = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "header")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (path, method) in [
        ("/users", "get"),
        ("/users", "post"),
        ("/users/{id}", "get"),
    ] {
        assert_eq!(
            headers(path, method),
            ["x-request-deadline-ms"],
            "{method} {path}"
        );
    }
    assert!(headers("/health/ready", "get").is_empty());
    assert_eq!(
        doc["paths"]["/users"]["post"]["parameters"][0]["schema"]["minimum"],
        0
    );
    assert_eq!(
        doc["paths"]["/users"]["post"]["responses"]["400"]["description"],
        "Malformed JSON; or a malformed `x-request-deadline-ms`"
    );
    let admin = service_kit::ops::document(user_service::ApiDoc::openapi(), true);
    let admin = serde_json::to_value(admin).unwrap();
    let names: Vec<_> = admin["paths"]["/users"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x-request-deadline-ms", "x-simulate-latency"]);
    let r = call(
        &app,
        json_req(
            Method::POST,
            "/users",
            r#"{"name":"x","email":"x@y.z","extra":1}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn store_works_on_every_backend() {
    for s in testing::all(&store::MIGRATIONS).await {
        let a = store::insert(&s, "A", "a@x.io", 1).await.unwrap().unwrap();
        assert!(
            store::insert(&s, "A2", "a@x.io", 2)
                .await
                .unwrap()
                .is_none()
        );
        let b = store::insert(&s, "B", "b@x.io", 3).await.unwrap().unwrap();
        assert!(b.id > a.id);
        assert_eq!(store::get(&s, a.id).await.unwrap(), Some(a.clone()));
        assert_eq!(store::get(&s, b.id + 100).await.unwrap(), None);
        let page = store::list(&s, a.id, 10).await.unwrap();
        assert_eq!(page, vec![b]);
        assert_eq!(store::count(&s).await.unwrap(), 2);
        s.close().await;
    }
}

#[tokio::test]
async fn acknowledged_users_survive_reopening_the_file() {
    let path = std::env::temp_dir().join(format!("users-{}.db", uuid::Uuid::now_v7().simple()));
    let url = format!("sqlite://{}", path.display());
    let s = service_kit::store::Store::connect(&url, &store::MIGRATIONS)
        .await
        .unwrap();
    let u = store::insert(&s, "A", "a@x.io", 1).await.unwrap().unwrap();
    drop(s);
    let s = service_kit::store::Store::connect(&url, &store::MIGRATIONS)
        .await
        .unwrap();
    assert_eq!(store::get(&s, u.id).await.unwrap(), Some(u));
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
}

fn admin(method: Method, token: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri("/admin/faults")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

/// Guessing the admin token: a few tries, then 429 with `Retry-After`, and the faults stay
/// as they were.
#[tokio::test]
async fn guessing_the_admin_token_is_rate_limited() {
    let store = testing::sqlite(&store::MIGRATIONS).await;
    let st = AppState::new(store, &config(&[("ADMIN_TOKEN", "s3cret-token")]));
    let app = app(st.clone());
    let mut statuses = Vec::new();
    for i in 0..20 {
        let guess = format!("guess-{i}");
        let r = call(
            &app,
            admin(Method::PUT, Some(&guess), r#"{"error_rate":1}"#),
        )
        .await;
        statuses.push(r.status.as_u16());
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_problem(&r, 429);
            assert!(r.headers.contains_key(header::RETRY_AFTER));
        }
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(st.faults.error_rate(), 0.0);
}

#[tokio::test]
async fn admin_routes_are_off_without_a_token_and_guarded_with_one() {
    let app_off = app(state().await);
    assert_problem(&call(&app_off, admin(Method::GET, None, "")).await, 404);
    assert_problem(
        &call(
            &app_off,
            admin(Method::PUT, Some("anything"), r#"{"error_rate":1}"#),
        )
        .await,
        404,
    );

    let store = testing::sqlite(&store::MIGRATIONS).await;
    let st = AppState::new(store, &config(&[("ADMIN_TOKEN", "s3cret-token")]));
    let app = app(st.clone());
    // The document lists the admin routes only when they answer.
    let admin_paths = |doc: serde_json::Value| {
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|p| p.starts_with("/admin/"))
            .count()
    };
    assert_eq!(
        admin_paths(call(&app_off, get("/openapi.json")).await.body),
        0
    );
    assert_eq!(admin_paths(call(&app, get("/openapi.json")).await.body), 1);
    let r = call(&app, admin(Method::PUT, None, r#"{"error_rate":1}"#)).await;
    assert_problem(&r, 401);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_problem(
        &call(
            &app,
            admin(Method::PUT, Some("wrong-token"), r#"{"error_rate":1}"#),
        )
        .await,
        401,
    );
    assert_eq!(
        st.faults.error_rate(),
        0.0,
        "refused requests change nothing"
    );

    let r = call(
        &app,
        admin(Method::PUT, Some("s3cret-token"), r#"{"error_rate":2}"#),
    )
    .await;
    assert_problem(&r, 422);
    assert_eq!(r.body["errors"][0]["field"], "error_rate");
    assert_problem(
        &call(
            &app,
            admin(Method::PUT, Some("s3cret-token"), r#"{"latency":1}"#),
        )
        .await,
        422,
    );
    assert_problem(
        &call(&app, admin(Method::PUT, Some("s3cret-token"), "{")).await,
        400,
    );

    let r = call(
        &app,
        admin(
            Method::PUT,
            Some("s3cret-token"),
            r#"{"latency_ms":5,"error_rate":0.5}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["latency_ms"], 5);
    assert_eq!(r.body["error_rate"], 0.5);
    let r = call(&app, admin(Method::GET, Some("s3cret-token"), "")).await;
    assert_eq!(r.body["error_rate"], 0.5);
    let r = call(&app, admin(Method::DELETE, Some("s3cret-token"), "")).await;
    assert_eq!(r.body["error_rate"], 0.0);
    assert_eq!(r.body["latency_ms"], 0);
}

#[tokio::test]
async fn injected_faults_hit_business_routes_only() {
    let store = testing::sqlite(&store::MIGRATIONS).await;
    let st = AppState::new(store, &config(&[("ADMIN_TOKEN", "s3cret-token")]));
    let app = app(st.clone());
    let r = call(
        &app,
        admin(Method::PUT, Some("s3cret-token"), r#"{"error_rate":1}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&app, get("/users/1")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(r.body["type"], "urn:resilience:injected-fault");
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert_eq!(
        r.body["request_id"].as_str().unwrap(),
        r.headers["x-request-id"].to_str().unwrap()
    );
    let r = call(
        &app,
        json_req(Method::POST, "/users", r#"{"name":"a","email":"a@b.c"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        store::count(&st.store).await.unwrap(),
        0,
        "an injected fault stores nothing"
    );
    // Operations routes keep answering.
    assert_eq!(
        call(&app, get("/health/ready")).await.status,
        StatusCode::OK
    );
    assert_eq!(call(&app, get("/metrics")).await.status, StatusCode::OK);
    st.faults.reset();
    assert_problem(&call(&app, get("/users/1")).await, 404);
}

#[tokio::test]
async fn latency_comes_from_the_switch_or_the_request_header_and_the_deadline_cuts_it() {
    let store = testing::sqlite(&store::MIGRATIONS).await;
    let st = AppState::new(store, &config(&[("ADMIN_TOKEN", "s3cret-admin-token")]));
    let app = app(st.clone());
    let slow = |extra: Option<(&'static str, &'static str)>| {
        let mut b = Request::builder().uri("/users/1");
        if let Some((k, v)) = extra {
            b = b.header(k, v);
        }
        b.body(Body::empty()).unwrap()
    };
    // The header is honoured for a caller with the admin token only.
    let t = tokio::time::Instant::now();
    let mut asked = slow(Some(("x-simulate-latency", "150ms")));
    asked.headers_mut().insert(
        header::AUTHORIZATION,
        "Bearer s3cret-admin-token".parse().unwrap(),
    );
    assert_eq!(call(&app, asked).await.status, StatusCode::NOT_FOUND);
    assert!(t.elapsed() >= std::time::Duration::from_millis(150));
    let t = tokio::time::Instant::now();
    let unauthorised = slow(Some(("x-simulate-latency", "10s")));
    assert_eq!(call(&app, unauthorised).await.status, StatusCode::NOT_FOUND);
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "ignored");

    st.faults.set_latency(std::time::Duration::from_millis(300));
    let t = tokio::time::Instant::now();
    call(&app, slow(None)).await;
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    // Health is not slowed down.
    let t = tokio::time::Instant::now();
    call(&app, get("/health/live")).await;
    assert!(t.elapsed() < std::time::Duration::from_millis(250));

    // A caller that gives us 30 ms gets 504 when they pass, not a late answer.
    st.faults.set_latency(std::time::Duration::from_secs(5));
    let t = tokio::time::Instant::now();
    let r = call(&app, slow(Some(("x-request-deadline-ms", "30")))).await;
    assert_problem(&r, 504);
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
}

//! `ResilienceMiddleware` against real local servers (wiremock on 127.0.0.1, its own thread).
//!
//! Tests that only wait on backoff or `Retry-After` run on tokio's paused clock: the server
//! lives on its own runtime, so the client's sleeps auto-advance and the elapsed (virtual)
//! time is exactly the delay the middleware chose.
#![cfg(feature = "reqwest")]

use std::time::{Duration, SystemTime};

use reqwest_middleware::ClientWithMiddleware;
use resilience_layers::{
    Error,
    circuit_breaker::CircuitState,
    deadline::Deadline,
    http::{DEADLINE_HEADER, IDEMPOTENCY_KEY, ResilienceMiddleware, into_error, rejection},
    stack::StackConfig,
};
use tokio::time::Instant;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

/// Three attempts, tiny jitter-free backoff (10 ms, 20 ms), no budget limit in the way.
const RETRY: &str = r#"
[retry]
max_attempts = 3
backoff = { base = "10ms", max = "10s", multiplier = 2.0, jitter = "none" }
"#;

fn config(extra: &str) -> StackConfig {
    // Top-level keys must come before the first table.
    toml::from_str(&format!("{extra}\n{RETRY}")).unwrap()
}

fn client(mw: &ResilienceMiddleware) -> ClientWithMiddleware {
    // No idle pool: its 90 s idle timer would be the next timer a paused clock jumps to
    // while a request waits on the socket.
    let reqwest = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    reqwest_middleware::ClientBuilder::new(reqwest)
        .with(mw.clone())
        .build()
}

/// GETs `route` on `server` through a client that runs `mw`.
async fn try_get(
    mw: &ResilienceMiddleware,
    server: &MockServer,
    route: &str,
) -> reqwest_middleware::Result<reqwest::Response> {
    client(mw)
        .get(format!("{}{route}", server.uri()))
        .send()
        .await
}

/// [`try_get`] for a request that must get an answer.
async fn get(mw: &ResilienceMiddleware, server: &MockServer, route: &str) -> reqwest::Response {
    try_get(mw, server, route).await.unwrap()
}

async fn hits(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// Mounts `first` for the first `n` requests to `route`, and `then` after.
async fn sequence(
    server: &MockServer,
    route: &str,
    n: u64,
    first: ResponseTemplate,
    then: ResponseTemplate,
) {
    Mock::given(path(route.to_owned()))
        .respond_with(first)
        .up_to_n_times(n)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(path(route.to_owned()))
        .respond_with(then)
        .with_priority(2)
        .mount(server)
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_503_503_200_sequence_succeeds_on_the_third_attempt() {
    let server = MockServer::start().await;
    sequence(
        &server,
        "/users/1",
        2,
        ResponseTemplate::new(503),
        ResponseTemplate::new(200),
    )
    .await;
    let mw = ResilienceMiddleware::from_config("users", &config("")).unwrap();

    let start = Instant::now();
    let res = get(&mw, &server, "/users/1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(hits(&server).await, 3);
    // Backoff 10 ms then 20 ms, no jitter.
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    let retry = &mw.snapshot().retries[0];
    assert_eq!((retry.requests_total, retry.retries_total), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_is_a_minimum_delay() {
    let server = MockServer::start().await;
    let busy = ResponseTemplate::new(503).insert_header("retry-after", "3");
    sequence(&server, "/r", 1, busy, ResponseTemplate::new(200)).await;
    let mw = ResilienceMiddleware::from_config("users", &config("")).unwrap();

    let start = Instant::now();
    let res = get(&mw, &server, "/r").await;
    assert_eq!(res.status(), 200);
    assert_eq!(hits(&server).await, 2);
    // The backoff said 10 ms; the server said 3 s, and wins.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured_on_429() {
    let server = MockServer::start().await;
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
    let busy = ResponseTemplate::new(429).insert_header("retry-after", at.as_str());
    sequence(&server, "/d", 1, busy, ResponseTemplate::new(200)).await;
    let mw = ResilienceMiddleware::from_config("users", &config("")).unwrap();

    let start = Instant::now();
    let res = get(&mw, &server, "/d").await;
    assert_eq!(res.status(), 200);
    // An HTTP-date has whole seconds: the wait is between 4 and 5 s from now.
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_secs(3) && waited <= Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn garbage_retry_after_is_ignored() {
    let server = MockServer::start().await;
    let busy = ResponseTemplate::new(503).insert_header("retry-after", "whenever");
    sequence(&server, "/g", 1, busy, ResponseTemplate::new(200)).await;
    let mw = ResilienceMiddleware::from_config("users", &config("")).unwrap();

    let start = Instant::now();
    let res = get(&mw, &server, "/g").await;
    assert_eq!(res.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_millis(10), "plain backoff");
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_cap_gives_up_at_once() {
    let server = MockServer::start().await;
    Mock::given(path("/long"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "3600"))
        .mount(&server)
        .await;

    // Above the cap (the backoff's `max`, 10 s): the 503 comes back after one attempt, at once.
    let mw = ResilienceMiddleware::from_config("users", &config("")).unwrap();
    let start = Instant::now();
    let res = get(&mw, &server, "/long").await;
    assert_eq!(res.status(), 503);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(hits(&server).await, 1);
    assert_eq!(mw.snapshot().retries[0].retries_total, 0);
}

// Real clock: a paused one would jump to the deadline while the request waits on the socket.
#[tokio::test]
async fn a_retry_after_past_the_deadline_gives_up_at_once() {
    let server = MockServer::start().await;
    Mock::given(path("/five"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "5"))
        .mount(&server)
        .await;

    // Under the cap but past the 2 s deadline: no point sleeping into a certain failure.
    let mw = ResilienceMiddleware::from_config("users", &config("deadline = \"2s\"")).unwrap();
    let start = Instant::now(); // not paused: real time
    let res = get(&mw, &server, "/five").await;
    assert_eq!(res.status(), 503);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(hits(&server).await, 1);
    assert_eq!(mw.snapshot().retries[0].retries_total, 0);
}

#[tokio::test(start_paused = true)]
async fn a_post_without_idempotency_key_is_sent_exactly_once() {
    let server = MockServer::start().await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let mw = ResilienceMiddleware::from_config("orders", &config("")).unwrap();

    let res = client(&mw)
        .post(format!("{}/orders", server.uri()))
        .body("{\"quantity\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(hits(&server).await, 1);
    // PATCH is no different; a GET to the same failing route is retried.
    let res = client(&mw)
        .patch(format!("{}/orders", server.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(hits(&server).await, 2);
    get(&mw, &server, "/orders").await;
    assert_eq!(hits(&server).await, 5);
}

#[tokio::test(start_paused = true)]
async fn a_post_with_idempotency_key_is_retried_with_the_same_key_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let mw = ResilienceMiddleware::from_config("orders", &config("")).unwrap();

    let res = client(&mw)
        .post(format!("{}/orders", server.uri()))
        .header(IDEMPOTENCY_KEY, "order-7f3a")
        .body("{\"quantity\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        503,
        "the last answer comes back after the last attempt"
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    for req in &requests {
        assert_eq!(req.headers[IDEMPOTENCY_KEY], "order-7f3a");
        assert_eq!(req.body, b"{\"quantity\":1}");
    }
}

#[tokio::test(start_paused = true)]
async fn client_errors_other_than_408_and_429_are_never_retried() {
    let server = MockServer::start().await;
    for status in [400u16, 401, 403, 404, 409, 422, 408, 429] {
        Mock::given(path(format!("/s/{status}")))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
    }
    let mw = ResilienceMiddleware::from_config("users", &config("")).unwrap();
    let mut seen = 0;
    for (status, attempts) in [
        (400, 1),
        (401, 1),
        (403, 1),
        (404, 1),
        (409, 1),
        (422, 1),
        (408, 3),
        (429, 3),
    ] {
        let res = get(&mw, &server, &format!("/s/{status}")).await;
        assert_eq!(res.status(), status);
        let now = hits(&server).await;
        assert_eq!(now - seen, attempts, "status {status}");
        seen = now;
    }
}

#[tokio::test]
async fn per_host_breakers_isolate_a_failing_host_from_a_healthy_one() {
    let failing = MockServer::start().await;
    let healthy = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&failing)
        .await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&healthy)
        .await;
    let config: StackConfig = toml::from_str(
        r#"
        [circuit_breaker]
        window = { kind = "count", size = 4 }
        minimum_calls = 4
        wait_in_open = "60s"
        "#,
    )
    .unwrap();
    let mw = ResilienceMiddleware::from_config("up", &config).unwrap();

    for _ in 0..4 {
        assert_eq!(get(&mw, &failing, "/x").await.status(), 500);
        assert_eq!(get(&mw, &healthy, "/x").await.status(), 200);
    }
    // The failing host's circuit is open: rejected without a request, and typed.
    let err = try_get(&mw, &failing, "/x").await.unwrap_err();
    match rejection(&err) {
        Some(Error::CircuitOpen(open)) => {
            assert_eq!(open.name(), format!("up@{}", failing.address()));
            assert!(open.retry_after() > Duration::from_secs(50));
        }
        other => panic!("expected an open circuit, got {other:?}"),
    }
    assert_eq!(hits(&failing).await, 4);
    // The healthy host is untouched.
    assert_eq!(get(&mw, &healthy, "/x").await.status(), 200);

    let breakers = mw.snapshot().breakers;
    assert_eq!(breakers.len(), 2);
    for b in &breakers {
        let want = if b.name.ends_with(&failing.address().to_string()) {
            CircuitState::Open
        } else {
            CircuitState::Closed
        };
        assert_eq!(b.state, want, "{}", b.name);
    }
    // And `into_error` gives the same variant by value.
    assert!(matches!(into_error(err), Error::CircuitOpen(_)));
}

#[tokio::test]
async fn the_key_chooses_the_breaker_and_the_registry_stays_bounded() {
    let server = MockServer::start().await;
    Mock::given(path("/payments/1"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    Mock::given(path("/users/1"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let config: StackConfig =
        toml::from_str("[circuit_breaker]\nconsecutive_failures = 2\nwait_in_open = \"60s\"")
            .unwrap();
    // One breaker per first path segment, on one host; room for two.
    let mw = ResilienceMiddleware::builder("api", config)
        .key_by(|req: &reqwest::Request| Some(req.url().path_segments()?.next()?.to_owned()))
        .max_hosts(2)
        .build()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(get(&mw, &server, "/payments/1").await.status(), 500);
    }
    let err = try_get(&mw, &server, "/payments/1").await.unwrap_err();
    assert!(matches!(rejection(&err), Some(Error::CircuitOpen(o)) if o.name() == "api@payments"));
    // Same host, other key: its own, closed breaker.
    assert_eq!(get(&mw, &server, "/users/1").await.status(), 200);
    let keys: Vec<_> = mw.breakers().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["payments", "users"]);
    // A third key finds the registry full: the least recently used (`payments`) goes.
    let res = get(&mw, &server, "/orders/1").await;
    assert_eq!(res.status(), 404);
    let keys: Vec<_> = mw.breakers().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["orders", "users"]);
}

#[tokio::test]
async fn an_open_circuit_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let mw = ResilienceMiddleware::from_config(
        "up",
        &config(
            r#"
            [circuit_breaker]
            window = { kind = "count", size = 2 }
            minimum_calls = 2
            "#,
        ),
    )
    .unwrap();
    // Two failing attempts open the circuit; the third attempt is refused by it, and that
    // refusal ends the request instead of being retried.
    let err = try_get(&mw, &server, "/x").await.unwrap_err();
    assert!(matches!(rejection(&err), Some(Error::CircuitOpen(_))));
    assert_eq!(hits(&server).await, 2);
    assert_eq!(mw.snapshot().retries[0].retries_total, 2);
}

#[tokio::test]
async fn the_deadline_travels_in_a_header_and_an_inherited_one_wins_when_earlier() {
    let server = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let mw = ResilienceMiddleware::from_config("up", &config("deadline = \"2s\"")).unwrap();

    get(&mw, &server, "/x").await;
    // An earlier deadline in force around the call (a server handling a request) wins.
    Deadline::after(Duration::from_millis(700))
        .scope(try_get(&mw, &server, "/x"))
        .await
        .unwrap();

    let requests = server.received_requests().await.unwrap();
    let sent: Vec<u64> = requests
        .iter()
        .map(|r| {
            r.headers[DEADLINE_HEADER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!((1_500..=2_000).contains(&sent[0]), "{sent:?}");
    assert!((200..=700).contains(&sent[1]), "{sent:?}");

    // Without any deadline, no header.
    let plain = ResilienceMiddleware::from_config("up", &StackConfig::default()).unwrap();
    get(&plain, &server, "/x").await;
    let requests = server.received_requests().await.unwrap();
    assert!(!requests[2].headers.contains_key(DEADLINE_HEADER));
}

#[tokio::test]
async fn attempt_timeouts_are_retried_and_count_against_the_breaker() {
    let server = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(500)))
        .mount(&server)
        .await;
    let mw = ResilienceMiddleware::from_config(
        "up",
        &config("attempt_timeout = \"40ms\"\n[circuit_breaker]\nminimum_calls = 10"),
    )
    .unwrap();
    let err = try_get(&mw, &server, "/slow").await.unwrap_err();
    assert!(
        matches!(rejection(&err), Some(Error::Timeout(_))),
        "{err:?}"
    );
    let snap = mw.snapshot();
    assert_eq!(snap.retries[0].retries_total, 2);
    assert_eq!((snap.breakers[0].calls, snap.breakers[0].failures), (3, 3));
}

#[tokio::test]
async fn the_deadline_bounds_all_attempts() {
    let server = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_millis(80)))
        .mount(&server)
        .await;
    let mw = ResilienceMiddleware::from_config("up", &config("deadline = \"120ms\"")).unwrap();
    let start = Instant::now(); // not paused: real time, as the server's delay is real
    let err = try_get(&mw, &server, "/slow").await.unwrap_err();
    assert!(
        matches!(rejection(&err), Some(Error::DeadlineExceeded(_))),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(400));
    assert_eq!(
        hits(&server).await,
        2,
        "the second attempt was cut off by the deadline"
    );
}

#[tokio::test]
async fn the_bulkhead_rejects_beyond_its_limit() {
    let server = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&server)
        .await;
    let mw =
        ResilienceMiddleware::from_config("up", &config("[bulkhead]\nmax_concurrent = 1")).unwrap();
    let client = client(&mw);
    let url = format!("{}/slow", server.uri());
    let (first, second) = tokio::join!(client.get(&url).send(), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.get(&url).send().await
    });
    assert_eq!(first.unwrap().status(), 200);
    let err = second.unwrap_err();
    assert!(matches!(rejection(&err), Some(Error::BulkheadFull(_))));
    assert_eq!(mw.snapshot().bulkheads[0].rejected_total, 1);
}

#[tokio::test]
async fn connection_errors_are_retried_and_pass_through_untouched() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mw =
        ResilienceMiddleware::from_config("up", &config("[circuit_breaker]\nminimum_calls = 10"))
            .unwrap();
    let err = client(&mw)
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(
        rejection(&err).is_none(),
        "the transport's own error: {err:?}"
    );
    assert!(err.is_connect());
    assert_eq!(mw.snapshot().retries[0].retries_total, 2);
    assert_eq!(mw.snapshot().breakers[0].failures, 3);
    assert!(matches!(into_error(err), Error::Inner(_)));
}

#[tokio::test]
async fn upstreams_can_be_registered_up_front() {
    let mw = ResilienceMiddleware::builder("orders", config("[circuit_breaker]"))
        .max_hosts(1)
        .build()
        .unwrap();
    let url = reqwest::Url::parse("http://127.0.0.1:5001/").unwrap();
    let handle = mw.add_upstream(&url).unwrap();
    assert_eq!(handle.name(), "orders@127.0.0.1:5001");
    let names: Vec<_> = mw.snapshot().breakers.into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["orders@127.0.0.1:5001"]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_request_during_backoff_stops_further_attempts() {
    let server = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let slow_backoff =
        "[retry]\nmax_attempts = 5\nbackoff = { base = \"1s\", max = \"10s\", jitter = \"none\" }";
    let mw =
        ResilienceMiddleware::from_config("up", &toml::from_str(slow_backoff).unwrap()).unwrap();
    let client = client(&mw);
    let url = format!("{}/x", server.uri());
    let request = tokio::spawn(async move { client.get(url).send().await });
    // Wait (on the real socket) for the first attempt to land, then give up during the backoff.
    while hits(&server).await == 0 {
        tokio::task::yield_now().await;
    }
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(hits(&server).await, 1);
}

/// A `504` problem answer with `problem_type`, as `ProblemLayer` writes one.
fn problem_504(problem_type: &str) -> ResponseTemplate {
    let body = format!(r#"{{"type":"{problem_type}","title":"t","status":504,"detail":"d"}}"#);
    ResponseTemplate::new(504).set_body_raw(body, "application/problem+json")
}

/// A 2 s deadline, a breaker that opens after two failures in a row.
const TRIPS_AFTER_TWO: &str = r#"deadline = "2s"
[circuit_breaker]
consecutive_failures = 2
minimum_calls = 100
wait_in_open = "60s"
"#;

#[tokio::test]
async fn deadline_answers_to_our_budget_are_ignored_by_the_breaker_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(problem_504("urn:resilience:deadline-exceeded"))
        .mount(&server)
        .await;
    let mw = ResilienceMiddleware::from_config("up", &config(TRIPS_AFTER_TWO)).unwrap();
    for _ in 0..20 {
        let err = try_get(&mw, &server, "/x").await.unwrap_err();
        assert!(
            matches!(rejection(&err), Some(Error::DeadlineExceeded(_))),
            "the caller's deadline, not the upstream's failure: {err:?}"
        );
    }
    assert_eq!(hits(&server).await, 20, "never retried");
    let snap = mw.snapshot();
    assert_eq!(snap.retries[0].retries_total, 0);
    let breaker = &snap.breakers[0];
    assert_eq!(breaker.state, CircuitState::Closed);
    assert_eq!(
        (breaker.calls, breaker.failures),
        (0, 0),
        "neither failure nor success"
    );
}

#[tokio::test]
async fn a_504_that_is_not_about_our_budget_counts_against_the_breaker() {
    let server = MockServer::start().await;
    // The upstream's own timeout (its dependency was slow) with plenty of our budget left.
    Mock::given(path("/x"))
        .respond_with(problem_504("urn:resilience:timeout"))
        .mount(&server)
        .await;
    let no_retry: StackConfig = toml::from_str(TRIPS_AFTER_TWO).unwrap();
    let mw = ResilienceMiddleware::from_config("up", &no_retry).unwrap();
    for _ in 0..2 {
        let res = get(&mw, &server, "/x").await;
        assert_eq!(res.status(), 504);
        // The body was read to look at its type, and is still there for the caller.
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["type"], "urn:resilience:timeout");
    }
    let err = try_get(&mw, &server, "/x").await.unwrap_err();
    assert!(matches!(rejection(&err), Some(Error::CircuitOpen(_))));
    assert_eq!(hits(&server).await, 2, "two failures opened the circuit");
    assert_eq!(mw.snapshot().breakers[0].failures, 2);
}

#[tokio::test]
async fn a_deadline_answer_gives_the_half_open_probe_slot_back() {
    let server = MockServer::start().await;
    Mock::given(path("/fail"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    Mock::given(path("/short"))
        .respond_with(problem_504("urn:resilience:deadline-exceeded"))
        .mount(&server)
        .await;
    Mock::given(path("/ok"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let config: StackConfig = toml::from_str(
        r#"deadline = "2s"
        [circuit_breaker]
        consecutive_failures = 2
        minimum_calls = 100
        wait_in_open = "50ms"
        permitted_calls_in_half_open = 1
        "#,
    )
    .unwrap();
    let mw = ResilienceMiddleware::from_config("up", &config).unwrap();
    for _ in 0..2 {
        assert_eq!(get(&mw, &server, "/fail").await.status(), 500);
    }
    assert_eq!(mw.snapshot().breakers[0].state, CircuitState::Open);
    tokio::time::sleep(Duration::from_millis(80)).await; // real time: the server is real
    // The probe's answer is about our deadline: it decides nothing and frees the slot...
    let err = try_get(&mw, &server, "/short").await.unwrap_err();
    assert!(
        matches!(rejection(&err), Some(Error::DeadlineExceeded(_))),
        "{err:?}"
    );
    assert_eq!(mw.snapshot().breakers[0].state, CircuitState::HalfOpen);
    assert_eq!(mw.snapshot().breakers[0].probes_in_flight, 0);
    // ...so the next call is admitted as the probe, and its success closes the circuit.
    assert_eq!(get(&mw, &server, "/ok").await.status(), 200);
    assert_eq!(mw.snapshot().breakers[0].state, CircuitState::Closed);
}

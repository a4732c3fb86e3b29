//! The stack on a tower HTTP client (`ResilienceLayer::for_http`), on a paused clock: the
//! same classification, `Retry-After` and idempotency rules as the reqwest middleware.
#![cfg(feature = "http")]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Method, Request, Response, StatusCode};
use resilience_layers::{
    BoxError,
    http::{DEADLINE_HEADER, IDEMPOTENCY_KEY, PropagateDeadlineLayer},
    stack::StackConfig,
};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};

type Seen = Arc<Mutex<Vec<Request<String>>>>;

/// A fake upstream answering with `statuses` in turn (the last one repeats), recording
/// every request it receives in `seen`.
fn upstream(
    seen: Seen,
    statuses: &'static [(u16, Option<&'static str>)],
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<String>, BoxError>> + Send,
> + Clone
+ Send {
    let script: Arc<Vec<_>> = Arc::new(statuses.to_vec());
    service_fn(move |req: Request<String>| {
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push(req);
            seen.len() - 1
        };
        let (status, retry_after) = script[n.min(script.len() - 1)];
        async move {
            let mut res = Response::builder().status(status);
            if let Some(v) = retry_after {
                res = res.header("retry-after", v);
            }
            Ok::<_, BoxError>(res.body(String::new()).unwrap())
        }
    })
}

fn config(extra: &str) -> StackConfig {
    toml::from_str(&format!(
        "{extra}\n[retry]\nmax_attempts = 3\nbackoff = {{ base = \"10ms\", max = \"10s\", jitter = \"none\" }}\n"
    ))
    .unwrap()
}

fn get(uri: &str) -> Request<String> {
    Request::get(uri).body(String::new()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_503_and_honours_retry_after_and_sends_the_deadline() {
    let seen = Seen::default();
    let upstream = upstream(seen.clone(), &[(503, Some("2")), (503, None), (200, None)]);
    let client = ServiceBuilder::new()
        .layer(
            config("deadline = \"5s\"")
                .into_layer("up")
                .unwrap()
                .for_http(),
        )
        .layer(PropagateDeadlineLayer::new())
        .service(upstream);

    let start = Instant::now();
    let res = client.oneshot(get("/users/1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Retry-After 2 s raised the first 10 ms backoff; the second is the plain 20 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(2_020));
    let sent: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.headers()[DEADLINE_HEADER].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["5000", "3000", "2980"]);
}

#[tokio::test(start_paused = true)]
async fn posts_are_retried_only_with_an_idempotency_key() {
    let seen = Seen::default();
    let upstream = upstream(seen.clone(), &[(503, None)]);
    let client = ServiceBuilder::new()
        .layer(config("").into_layer("up").unwrap().for_http())
        .service(upstream);

    let post = |key: Option<&str>| {
        let mut req = Request::builder().method(Method::POST).uri("/orders");
        if let Some(key) = key {
            req = req.header(IDEMPOTENCY_KEY, key);
        }
        req.body("{}".to_owned()).unwrap()
    };
    let res = client.clone().oneshot(post(None)).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(seen.lock().unwrap().len(), 1);

    client.oneshot(post(Some("k-1"))).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    assert!(
        seen[1..]
            .iter()
            .all(|r| r.headers()[IDEMPOTENCY_KEY] == "k-1")
    );
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_successes_and_never_retried() {
    let seen = Seen::default();
    let upstream = upstream(seen.clone(), &[(404, None)]);
    let layer = config("[circuit_breaker]")
        .into_layer("up")
        .unwrap()
        .for_http();
    let client = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let res = client.oneshot(get("/users/9")).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(seen.lock().unwrap().len(), 1);
    let breaker = layer.circuit_breaker().unwrap().snapshot();
    assert_eq!((breaker.calls, breaker.failures), (1, 0));
}

/// A `Retry-After` the stack will not wait for ends the call at once, with `want` and one request.
async fn gives_up_at_once(
    extra: &str,
    statuses: &'static [(u16, Option<&'static str>)],
    want: u16,
) {
    let seen = Seen::default();
    let client = ServiceBuilder::new()
        .layer(config(extra).into_layer("up").unwrap().for_http())
        .service(upstream(seen.clone(), statuses));
    let start = Instant::now();
    let res = client.oneshot(get("/")).await.unwrap();
    assert_eq!(res.status(), want);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_gives_up() {
    gives_up_at_once("deadline = \"1s\"", &[(429, Some("3")), (200, None)], 429).await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_backoff_cap_gives_up_without_a_deadline() {
    // 3600 s is above the backoff's `max` (10 s): give up, as the reqwest middleware does.
    gives_up_at_once("", &[(503, Some("3600")), (200, None)], 503).await;
}

#[tokio::test(start_paused = true)]
async fn failures_of_the_callers_deadline_leave_the_breaker_closed_and_are_not_retried() {
    use resilience_layers::{
        circuit_breaker::CircuitState,
        deadline::{Deadline, DeadlineLayer},
    };
    let calls = Arc::new(Mutex::new(0_u32));
    let counted = calls.clone();
    let hangs = service_fn(move |_: Request<String>| {
        *counted.lock().unwrap() += 1;
        async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, BoxError>(Response::new(String::new()))
        }
    });
    let layer = config("[circuit_breaker]\nconsecutive_failures = 2\nminimum_calls = 100")
        .into_layer("up")
        .unwrap()
        .for_http();
    // The call inside the breaker inherits the caller's deadline (as an outgoing call made
    // by a handler behind `AcceptDeadlineLayer` does) and fails when that deadline passes.
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(DeadlineLayer::new("test", Duration::from_secs(30)).unwrap())
        .service(hangs);
    for _ in 0..20 {
        let start = Instant::now();
        let err = Deadline::after(Duration::from_millis(5))
            .scope(client.clone().oneshot(get("/users/1")))
            .await
            .unwrap_err();
        assert!(matches!(
            resilience_layers::Error::from_boxed(err),
            resilience_layers::Error::DeadlineExceeded(_)
        ));
        assert_eq!(start.elapsed(), Duration::from_millis(5));
    }
    assert_eq!(*calls.lock().unwrap(), 20, "never retried");
    let snap = layer.snapshot();
    assert_eq!(snap.breakers[0].state, CircuitState::Closed);
    assert_eq!(snap.breakers[0].failures, 0);
    assert_eq!(snap.retries[0].retries_total, 0);
}

#[tokio::test(start_paused = true)]
async fn a_probe_failing_on_the_callers_deadline_gives_its_slot_back() {
    use resilience_layers::{
        circuit_breaker::CircuitState,
        deadline::{Deadline, DeadlineLayer},
    };
    let upstream = service_fn(|req: Request<String>| async move {
        match req.uri().path() {
            "/fail" => {
                Ok::<_, BoxError>(Response::builder().status(500).body(String::new()).unwrap())
            }
            "/hang" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Response::new(String::new()))
            }
            _ => Ok(Response::new(String::new())),
        }
    });
    let layer = StackConfig {
        retry: None,
        ..config(
            "[circuit_breaker]\nconsecutive_failures = 2\nminimum_calls = 100\n\
             wait_in_open = \"1s\"\npermitted_calls_in_half_open = 1",
        )
    }
    .into_layer("up")
    .unwrap()
    .for_http();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(DeadlineLayer::new("test", Duration::from_secs(30)).unwrap())
        .service(upstream);
    for _ in 0..2 {
        let res = client.clone().oneshot(get("/fail")).await.unwrap();
        assert_eq!(res.status(), 500);
    }
    assert_eq!(layer.snapshot().breakers[0].state, CircuitState::Open);
    tokio::time::advance(Duration::from_secs(1)).await;
    // The probe runs out of the caller's time: it decides nothing and frees its slot...
    let err = Deadline::after(Duration::from_millis(5))
        .scope(client.clone().oneshot(get("/hang")))
        .await
        .unwrap_err();
    assert!(matches!(
        resilience_layers::Error::from_boxed(err),
        resilience_layers::Error::DeadlineExceeded(_)
    ));
    let breaker = &layer.snapshot().breakers[0];
    assert_eq!(
        (breaker.state, breaker.probes_in_flight),
        (CircuitState::HalfOpen, 0)
    );
    // ...so the next call is admitted as the probe, and its success closes the circuit.
    let res = client.oneshot(get("/ok")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(layer.snapshot().breakers[0].state, CircuitState::Closed);
}

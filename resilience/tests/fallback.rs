//! The fallback on tokio's paused clock: each outcome answered only when listed, every
//! other outcome passed through unchanged, the happy path untouched, the marker, exact
//! counts (snapshot and metric), and its place in the stack (outside retry and the breaker,
//! inside the rate limiter).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use resilience_layers::{
    BoxError, Error, Outcome,
    fallback::{
        FallbackConfig, FallbackLayer, FallbackOutcome, FallbackService, Fault, FromFallback,
    },
    rate_limit::{RateLimitConfig, RateLimitLayer},
    stack::StackConfig,
};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

/// What the inner service does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Fail,
    /// Answers after 10 s.
    Slow,
}

/// The inner answer, or the fallback's (marked with its outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Real(u32),
    Fallback(FromFallback),
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "a fallback is given its fault by value"
)]
fn mark(fault: Fault<Answer>) -> Answer {
    Answer::Fallback(FromFallback {
        outcome: fault.outcome(),
    })
}

type Svc = tower::util::BoxCloneService<Mode, Answer, BoxError>;

/// The stack (its handles); [`mark`] is its fallback, put outside it.
type Marking = resilience_layers::stack::ResilienceLayer;

/// The inner service, counting its calls.
fn inner(
    calls: Arc<AtomicU32>,
) -> impl Service<Mode, Response = Answer, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(move |mode: Mode| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            match mode {
                Mode::Ok => Ok(Answer::Real(n)),
                Mode::Fail => Err::<_, BoxError>("down".into()),
                Mode::Slow => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok(Answer::Real(n))
                }
            }
        }
    })
}

/// The outcome an error is, as `Error::from_boxed` sorts it.
fn kind(err: BoxError) -> FallbackOutcome {
    match Error::from_boxed(err) {
        Error::CircuitOpen(_) => FallbackOutcome::CircuitOpen,
        Error::HalfOpenFull(_) => FallbackOutcome::HalfOpenFull,
        Error::BulkheadFull(_) => FallbackOutcome::BulkheadFull,
        Error::RateLimited(_) => FallbackOutcome::RateLimited,
        Error::Timeout(_) => FallbackOutcome::Timeout,
        Error::DeadlineExceeded(_) => FallbackOutcome::DeadlineExceeded,
        Error::Inner(e) => {
            assert_eq!(e.to_string(), "down");
            FallbackOutcome::Failure
        }
        other => panic!("{other}"),
    }
}

/// A stack from `toml` with a fallback answering `on`, around the counting inner service.
fn stack(name: &str, toml_text: &str, on: &[FallbackOutcome]) -> (Svc, Marking, Arc<AtomicU32>) {
    let mut config: StackConfig = toml::from_str(toml_text).unwrap();
    config.fallback = Some(FallbackConfig::on(on.iter().copied()));
    let layer = config.into_layer(name.to_owned()).unwrap();
    let fallback = layer.fallback_layer(mark as fn(Fault<Answer>) -> Answer);
    let calls = Arc::new(AtomicU32::new(0));
    let svc = Svc::new(
        ServiceBuilder::new()
            .layer(fallback.unwrap())
            .layer(layer.clone())
            .service(inner(calls.clone())),
    );
    (svc, layer, calls)
}

async fn call(svc: &mut Svc, mode: Mode) -> Result<Answer, BoxError> {
    svc.ready().await?.call(mode).await
}

/// Brings `svc` to the point where the next `Mode::Ok` call ends in `outcome`, then makes it.
async fn provoke(
    outcome: FallbackOutcome,
    on: &[FallbackOutcome],
) -> (Result<Answer, BoxError>, u64) {
    use FallbackOutcome::*;
    let name = format!("provoke-{outcome}-{}", on.len());
    let breaker = "[circuit_breaker]\nminimum_calls = 1\nwindow = { kind = \"count\", size = 1 }\nwait_in_open = \"1s\"\npermitted_calls_in_half_open = 1";
    let (toml_text, mode) = match outcome {
        CircuitOpen | HalfOpenFull => (breaker, Mode::Ok),
        BulkheadFull => ("[bulkhead]\nmax_concurrent = 1", Mode::Ok),
        Timeout => ("attempt_timeout = \"100ms\"", Mode::Slow),
        DeadlineExceeded => ("deadline = \"100ms\"", Mode::Slow),
        Failure => ("", Mode::Fail),
        RateLimited => (
            "[rate_limit]\npermits = 1\nperiod = \"1s\"\nburst = 1",
            Mode::Ok,
        ),
    };
    let (mut svc, layer, _) = stack(&name, toml_text, on);
    match outcome {
        CircuitOpen => layer.circuit_breaker().unwrap().force_open(),
        HalfOpenFull => {
            // A failure opens the circuit; after the wait a slow probe holds the only slot.
            let _ = call(&mut svc, Mode::Fail).await;
            tokio::time::advance(Duration::from_secs(1)).await;
            let mut probe = svc.clone();
            tokio::spawn(async move { call(&mut probe, Mode::Slow).await });
            tokio::task::yield_now().await;
        }
        RateLimited => {
            // The one permit is used; the next call is over quota.
            assert_eq!(call(&mut svc, Mode::Ok).await.unwrap(), Answer::Real(1));
        }
        BulkheadFull => {
            let mut holder = svc.clone();
            tokio::spawn(async move { call(&mut holder, Mode::Slow).await });
            tokio::task::yield_now().await;
        }
        _ => {}
    }
    let result = call(&mut svc, mode).await;
    let served = layer.fallback().unwrap().served(outcome);
    (result, served)
}

#[tokio::test(start_paused = true)]
async fn each_outcome_is_answered_only_when_listed() {
    for outcome in FallbackOutcome::ALL {
        // Listed: the fallback answers, marked with the outcome, counted once.
        let (result, served) = provoke(outcome, &[outcome]).await;
        assert_eq!(
            result.unwrap(),
            Answer::Fallback(FromFallback { outcome }),
            "{outcome}"
        );
        assert_eq!(served, 1, "{outcome}");
        // Every other outcome listed, not this one: the error passes through unchanged.
        let others: Vec<_> = FallbackOutcome::ALL
            .into_iter()
            .filter(|o| *o != outcome)
            .collect();
        let (result, served) = provoke(outcome, &others).await;
        assert_eq!(kind(result.unwrap_err()), outcome);
        assert_eq!(served, 0, "{outcome}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_inside_the_fallback_is_answered_only_when_listed() {
    for (on, answered) in [
        (vec![FallbackOutcome::RateLimited], true),
        (
            vec![FallbackOutcome::Failure, FallbackOutcome::CircuitOpen],
            false,
        ),
    ] {
        let limit = RateLimitConfig {
            permits: 1,
            period: Duration::from_secs(1),
            burst: Some(1),
            ..Default::default()
        };
        let fallback = FallbackLayer::new("inner-limit", FallbackConfig::on(on), mark).unwrap();
        let mut svc = ServiceBuilder::new()
            .layer(fallback.clone())
            .layer(RateLimitLayer::new("inner-limit", limit).unwrap())
            .service(inner(Arc::new(AtomicU32::new(0))));
        assert_eq!(
            svc.ready().await.unwrap().call(Mode::Ok).await.unwrap(),
            Answer::Real(1)
        );
        let second = svc.ready().await.unwrap().call(Mode::Ok).await;
        if answered {
            assert_eq!(
                second.unwrap(),
                Answer::Fallback(FromFallback {
                    outcome: FallbackOutcome::RateLimited
                })
            );
        } else {
            assert_eq!(kind(second.unwrap_err()), FallbackOutcome::RateLimited);
        }
        assert_eq!(
            fallback.handle().snapshot().served_total,
            u64::from(answered)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_stacks_own_rate_limiter_is_inside_the_fallback_so_the_config_chooses() {
    // Not listed: the shed request gets the limiter's rejection, and nothing more runs.
    let (mut svc, layer, calls) = stack(
        "outer-limit",
        "[rate_limit]\npermits = 1\nperiod = \"1s\"\nburst = 1",
        &[FallbackOutcome::Failure, FallbackOutcome::CircuitOpen],
    );
    assert_eq!(call(&mut svc, Mode::Ok).await.unwrap(), Answer::Real(1));
    assert_eq!(
        kind(call(&mut svc, Mode::Ok).await.unwrap_err()),
        FallbackOutcome::RateLimited
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer.snapshot().fallbacks[0].served_total, 0);
    // Listed: the degraded answer, still without calling the inner service.
    let (mut svc, layer, calls) = stack(
        "outer-limit-answered",
        "[rate_limit]\npermits = 1\nperiod = \"1s\"\nburst = 1",
        &[FallbackOutcome::RateLimited],
    );
    assert_eq!(call(&mut svc, Mode::Ok).await.unwrap(), Answer::Real(1));
    assert_eq!(
        call(&mut svc, Mode::Ok).await.unwrap(),
        Answer::Fallback(FromFallback {
            outcome: FallbackOutcome::RateLimited
        })
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer.snapshot().fallbacks[0].served_total, 1);
}

#[tokio::test(start_paused = true)]
async fn success_is_untouched_and_failing_responses_are_classified() {
    let (mut svc, layer, _) = stack("happy", "[retry]\n[circuit_breaker]", &FallbackOutcome::ALL);
    for n in 1..=5 {
        assert_eq!(call(&mut svc, Mode::Ok).await.unwrap(), Answer::Real(n));
    }
    assert_eq!(layer.fallback().unwrap().snapshot().served_total, 0);

    // A response the classifier calls a failure is answered by the fallback, which sees it.
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let layer = FallbackLayer::new(
        "classified",
        FallbackConfig::on([FallbackOutcome::Failure]),
        move |fault: Fault<u32>| {
            *seen2.lock().unwrap() = fault.response().copied();
            0
        },
    )
    .unwrap()
    .with_classifier(|r: Result<&u32, &BoxError>| match r {
        Ok(&s) if s >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    });
    let mut svc = layer.layer(service_fn(|s: u32| async move { Ok::<_, BoxError>(s) }));
    assert_eq!(svc.ready().await.unwrap().call(200).await.unwrap(), 200);
    assert_eq!(svc.ready().await.unwrap().call(503).await.unwrap(), 0);
    assert_eq!(*seen.lock().unwrap(), Some(503));
    assert_eq!(layer.handle().served(FallbackOutcome::Failure), 1);
}

#[tokio::test(start_paused = true)]
async fn the_fallback_catches_a_retrys_final_failure_and_an_open_breakers_rejection() {
    let (mut svc, layer, calls) = stack(
        "order",
        "[retry]\nmax_attempts = 3\n[circuit_breaker]\nminimum_calls = 3\nwindow = { kind = \"count\", size = 3 }\nwait_in_open = \"10s\"",
        &[FallbackOutcome::Failure, FallbackOutcome::CircuitOpen],
    );
    // Three attempts fail (retry is inside: it retried), and only then the fallback answers.
    assert_eq!(
        call(&mut svc, Mode::Fail).await.unwrap(),
        Answer::Fallback(FromFallback {
            outcome: FallbackOutcome::Failure
        })
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The breaker saw the three failures (the fallback did not hide them) and is open.
    let breaker = layer.circuit_breaker().unwrap();
    assert_eq!(
        breaker.snapshot().state,
        resilience_layers::circuit_breaker::CircuitState::Open
    );
    // The next call is rejected by the open circuit, not retried, and answered.
    assert_eq!(
        call(&mut svc, Mode::Ok).await.unwrap(),
        Answer::Fallback(FromFallback {
            outcome: FallbackOutcome::CircuitOpen
        })
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let snapshot = layer.snapshot().fallbacks.remove(0);
    assert_eq!(snapshot.served_total, 2);
    assert_eq!(
        snapshot.served,
        BTreeMap::from([("circuit_open".to_owned(), 1), ("failure".to_owned(), 1)])
    );
}

#[tokio::test(start_paused = true)]
async fn another_service_can_answer() {
    let replica = FallbackService::new(service_fn(|fault: Fault<Answer>| async move {
        assert_eq!(fault.error().unwrap().to_string(), "down");
        Ok::<_, BoxError>(Answer::Real(99))
    }));
    let layer = FallbackLayer::new(
        "replica",
        FallbackConfig::on([FallbackOutcome::Failure]),
        replica,
    )
    .unwrap();
    let mut svc = layer.layer(inner(Arc::new(AtomicU32::new(0))));
    assert_eq!(
        svc.ready().await.unwrap().call(Mode::Fail).await.unwrap(),
        Answer::Real(99)
    );
}

#[test]
fn config_errors_name_the_entry() {
    let config: StackConfig =
        toml::from_str("[fallback]\non = [\"circuit_open\", \"circuit_opened\"]").unwrap();
    let err = config.into_layer("bad").unwrap_err();
    assert_eq!(err.field(), "fallback.on[1]");
    assert_eq!(
        err.to_string(),
        "invalid `fallback.on[1]`: unknown outcome `circuit_opened`; expected one of \
         circuit_open, half_open_full, bulkhead_full, rate_limited, timeout, \
         deadline_exceeded, failure"
    );
    assert!(toml::from_str::<StackConfig>("[fallback]\nwhen = []").is_err());
}

/// Every value recorded, keyed by `name{label=value,...}`.
#[derive(Clone, Default)]
struct Capture {
    values: Arc<Mutex<BTreeMap<String, u64>>>,
}

struct Cell {
    key: String,
    values: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl metrics::CounterFn for Cell {
    fn increment(&self, value: u64) {
        *self
            .values
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += value;
    }
    fn absolute(&self, _: u64) {}
}

impl metrics::GaugeFn for Cell {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {}
}

impl metrics::HistogramFn for Cell {
    fn record(&self, _: f64) {}
}

impl Capture {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let key = format!("{}{{{}}}", key.name(), labels.join(","));
        self.values.lock().unwrap().entry(key.clone()).or_default();
        Arc::new(Cell {
            key,
            values: self.values.clone(),
        })
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

#[tokio::test(start_paused = true)]
async fn the_metric_counts_each_answer_by_outcome() {
    let capture = Capture::default();
    let layer = metrics::with_local_recorder(&capture, || {
        FallbackLayer::new(
            "metered",
            FallbackConfig::on([FallbackOutcome::Failure, FallbackOutcome::Timeout]),
            mark,
        )
        .unwrap()
    });
    let mut svc = layer.layer(inner(Arc::new(AtomicU32::new(0))));
    for mode in [Mode::Fail, Mode::Ok, Mode::Fail] {
        svc.ready().await.unwrap().call(mode).await.unwrap();
    }
    let values = capture.values.lock().unwrap().clone();
    assert_eq!(
        values["resilience_fallback_total{name=metered,outcome=failure}"],
        2
    );
    assert_eq!(
        values["resilience_fallback_total{name=metered,outcome=timeout}"],
        0
    );
    assert_eq!(values.len(), FallbackOutcome::ALL.len());
    assert_eq!(layer.handle().snapshot().served_total, 2);
}

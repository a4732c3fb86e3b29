//! A keyed layer and the metric series of its keys, against a small in-test recorder that
//! counts the updates of each series and keeps a handle on each: live keys' series keep being
//! updated (so an exporter's idle timeout spares them), an evicted key's handles are all let
//! go (so the exporter's idle timeout removes its series, and the storage is freed).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use resilience_layers::{
    keyed::{KeyedConfig, KeyedLayer},
    stack::StackConfig,
};
use tower::{Layer, ServiceExt, service_fn};

/// One series: how many times it was updated.
#[derive(Default)]
struct Series {
    updates: AtomicU64,
}

impl Series {
    fn bump(&self) {
        self.updates.fetch_add(1, Ordering::Relaxed);
    }
}

impl metrics::CounterFn for Series {
    fn increment(&self, _: u64) {
        self.bump();
    }
    fn absolute(&self, _: u64) {
        self.bump();
    }
}

impl metrics::GaugeFn for Series {
    fn increment(&self, _: f64) {
        self.bump();
    }
    fn decrement(&self, _: f64) {
        self.bump();
    }
    fn set(&self, _: f64) {
        self.bump();
    }
}

impl metrics::HistogramFn for Series {
    fn record(&self, _: f64) {
        self.bump();
    }
}

/// Every series registered, by `metric{label=value,...}`; the recorder keeps one handle.
#[derive(Clone, Default)]
struct Registry {
    series: Arc<Mutex<BTreeMap<String, Arc<Series>>>>,
}

impl Registry {
    fn series(&self, key: &Key) -> Arc<Series> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.series.lock().unwrap().entry(name).or_default().clone()
    }

    /// The series labelled `name="<name>"`, with their update counts and whether anything
    /// but the recorder still holds them.
    fn of(&self, name: &str) -> Vec<(String, u64, bool)> {
        let label = format!("name={name}");
        self.series
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                k.contains(&format!("{{{label},")) || k.contains(&format!("{{{label}}}"))
            })
            .map(|(k, s)| {
                (
                    k.clone(),
                    s.updates.load(Ordering::Relaxed),
                    Arc::strong_count(s) > 1,
                )
            })
            .collect()
    }
}

impl Recorder for Registry {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.series(key))
    }
}

type ByKey = fn(&&'static str) -> &'static str;

fn layer() -> KeyedLayer<&'static str, ByKey> {
    let config: StackConfig = toml::from_str(
        "attempt_timeout = \"1s\"\n[circuit_breaker]\n[bulkhead]\nmax_concurrent = 4\n[retry]",
    )
    .unwrap();
    let keyed = KeyedConfig {
        max_keys: 16,
        idle: Duration::from_secs(60),
    };
    let by_key: ByKey = |key| *key;
    KeyedLayer::new("hooks", config, keyed, by_key).unwrap()
}

async fn call(layer: &KeyedLayer<&'static str, ByKey>, key: &'static str) {
    let svc = layer.layer(service_fn(|_: &'static str| async {
        Ok::<_, std::io::Error>(())
    }));
    svc.oneshot(key).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn live_keys_series_stay_fresh_and_an_evicted_keys_are_let_go() {
    let recorder = Registry::default();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = layer();
    call(&layer, "a.example").await;
    call(&layer, "b.example").await;

    let a = recorder.of("hooks@a.example");
    let kinds: Vec<&str> = a
        .iter()
        .map(|(k, ..)| k.split('{').next().unwrap())
        .collect();
    for metric in [
        "resilience_circuit_state",
        "resilience_circuit_calls_total",
        "resilience_bulkhead_in_use",
        "resilience_retry_requests_total",
        "resilience_timeouts_total",
    ] {
        assert!(
            kinds.contains(&metric),
            "{metric} labelled by the key: {kinds:?}"
        );
    }
    assert!(
        a.iter().all(|(_, _, held)| *held),
        "a live key holds its series"
    );

    // Half the idle time on, a use of `a` marks every one of its counters and gauges as
    // updated, even those the call itself does not move (its state, its rejections).
    tokio::time::advance(Duration::from_secs(30)).await;
    call(&layer, "a.example").await;
    let before: BTreeMap<_, _> = a.iter().map(|(k, n, _)| (k.clone(), *n)).collect();
    let after = recorder.of("hooks@a.example");
    for (key, updates, _) in &after {
        if key.starts_with("resilience_retry_delay_seconds") {
            continue; // a histogram is not touched without a sample
        }
        assert!(updates > &before[key], "{key} updated on use ({updates})");
    }

    // `b` goes idle and is evicted: the layer holds none of its series any more.
    tokio::time::advance(Duration::from_secs(31)).await;
    call(&layer, "a.example").await;
    let keys: Vec<_> = layer.entries().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["a.example"]);
    let b = recorder.of("hooks@b.example");
    assert!(!b.is_empty());
    for (key, _, held) in &b {
        assert!(!held, "{key} let go on eviction");
    }
    assert!(
        recorder
            .of("hooks@a.example")
            .iter()
            .all(|(_, _, held)| *held)
    );
}

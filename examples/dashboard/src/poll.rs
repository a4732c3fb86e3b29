//! The feed: poll every configured service once per tick and keep what the page draws.
//!
//! Only the addresses in [`ServiceConfig`] are ever fetched; nothing from an
//! incoming request reaches the HTTP client. Each tick reads `/health/ready`,
//! `/resilience` and `/metrics` of every service concurrently, turns metric
//! counters into per-interval rates and latency quantiles, and records circuit
//! transitions so the page can draw a timeline even though it connected late.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prom_text::{self as prom, Histogram, Sample};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

/// The latency histogram every service exports.
pub const LATENCY_HISTOGRAM: &str = "http_server_request_duration_seconds";

/// How many traffic points each service keeps (one per tick: two minutes at 1 s).
pub const HISTORY_POINTS: usize = 120;

/// How many transitions each breaker keeps.
pub const TIMELINE_ENTRIES: usize = 40;

/// One service the dashboard watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Name shown on the page and used in `data-service`.
    pub name: String,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:5001`.
    pub base_url: String,
}

impl ServiceConfig {
    /// A service at `base_url` (a trailing `/` is dropped).
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        let mut base_url = base_url.into();
        while base_url.ends_with('/') {
            base_url.pop();
        }
        ServiceConfig {
            name: name.into(),
            base_url,
        }
    }
}

/// Everything the page shows, sent as one JSON document per tick.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Snapshot {
    /// Wall-clock time of this poll, milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// Poll number, starting at 1.
    pub seq: u64,
    /// One entry per configured service, in configuration order.
    pub services: Vec<ServiceView>,
}

/// One service as last seen.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ServiceView {
    /// Configured name.
    pub name: String,
    /// Configured base URL.
    pub url: String,
    /// The process answered at least one request this tick.
    pub up: bool,
    /// `/health/ready` answered 200.
    pub ready: bool,
    /// Health status from `/health/ready` (`pass`, `warn`, `fail`), or `down`.
    pub status: String,
    /// Readiness checks, flattened from the health+json `checks` object.
    pub checks: Vec<CheckView>,
    /// Why the service looks down, when it does.
    pub error: Option<String>,
    /// When the service last answered, ms since the epoch.
    pub last_seen_ms: Option<u64>,
    /// Request rate and latency over time (dashboard polling excluded).
    pub history: VecDeque<TrafficPoint>,
    /// Circuit breakers from `/resilience`, with the transitions seen so far.
    pub breakers: Vec<BreakerView>,
    /// Bulkheads from `/resilience`, as the service reported them.
    pub bulkheads: Vec<Value>,
    /// Retry policies from `/resilience`, as the service reported them.
    pub retries: Vec<Value>,
    /// `breakers`, `bulkheads` and `retries` are from an earlier tick (the service is down).
    pub stale: bool,
}

/// One readiness check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckView {
    /// The key in `checks`, e.g. `store` or `upstream:user-service`.
    pub name: String,
    /// `pass`, `warn` or `fail`.
    pub status: String,
    /// `observedValue`, when given (a circuit state for upstream checks).
    pub observed: Option<String>,
}

/// Traffic over one poll interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrafficPoint {
    /// End of the interval, ms since the epoch.
    pub t_ms: u64,
    /// Requests per second.
    pub rps: f64,
    /// Requests per second answered with a 5xx status.
    pub error_rps: f64,
    /// Median latency in milliseconds, when there were requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds, when there were requests.
    pub p99_ms: Option<f64>,
}

/// One circuit breaker: the service's snapshot plus the dashboard's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerView {
    /// Breaker name (usually the upstream it guards).
    pub name: String,
    /// Current state, e.g. `closed`, `open`, `half_open`.
    pub state: String,
    /// The snapshot exactly as `/resilience` returned it.
    pub snapshot: Value,
    /// State changes seen by the dashboard, oldest first.
    pub timeline: Vec<Transition>,
}

/// A state change observed between two polls.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Transition {
    /// When the dashboard noticed, ms since the epoch.
    pub t_ms: u64,
    /// Previous state; `None` for the first observation.
    pub from: Option<String>,
    /// New state.
    pub to: String,
    /// Transitions that happened between polls and were not seen (from `transitions_total`).
    pub missed: u64,
}

#[derive(Debug, Default)]
struct Memory {
    at: Option<Instant>,
    requests: f64,
    errors: f64,
    latency: Histogram,
    history: VecDeque<TrafficPoint>,
    breakers: HashMap<String, BreakerMemory>,
    last_view: Option<ServiceView>,
    /// `/resilience` answered 404: ask again only from this poll on (no noise on services without one).
    resilience_from_seq: u64,
}

/// Polls to wait before asking a service without `/resilience` again.
const RESILIENCE_RECHECK: u64 = 30;

#[derive(Debug, Default)]
struct BreakerMemory {
    state: String,
    transitions_total: Option<u64>,
    timeline: Vec<Transition>,
}

/// Polls the configured services and remembers what it needs for rates and timelines.
#[derive(Debug)]
pub struct Poller {
    client: reqwest::Client,
    services: Vec<ServiceConfig>,
    memory: Vec<Memory>,
    seq: u64,
}

impl Poller {
    /// A poller for `services`; each request gives up after `timeout`.
    pub fn new(services: Vec<ServiceConfig>, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client always builds");
        let memory = services.iter().map(|_| Memory::default()).collect();
        Poller {
            client,
            services,
            memory,
            seq: 0,
        }
    }

    /// Polls every service once, concurrently, and returns the page's state.
    pub async fn poll(&mut self) -> Snapshot {
        self.seq += 1;
        let seq = self.seq;
        let fetched = futures_util::future::join_all(
            self.services
                .iter()
                .zip(&self.memory)
                .map(|(s, m)| fetch(&self.client, &s.base_url, seq >= m.resilience_from_seq)),
        )
        .await;
        let now = Instant::now();
        let t_ms = epoch_ms();
        let services = self
            .services
            .iter()
            .zip(self.memory.iter_mut())
            .zip(fetched)
            .map(|((config, memory), raw)| {
                if raw.no_resilience {
                    memory.resilience_from_seq = seq + RESILIENCE_RECHECK;
                }
                view(config, memory, &raw, now, t_ms)
            })
            .collect();
        Snapshot {
            t_ms,
            seq: self.seq,
            services,
        }
    }
}

/// What one tick read from one service.
#[derive(Debug, Default)]
struct Raw {
    ready: Option<(u16, Option<Value>)>,
    resilience: Option<Value>,
    metrics: Option<String>,
    error: Option<String>,
    /// `/resilience` answered 404.
    no_resilience: bool,
}

async fn fetch(client: &reqwest::Client, base: &str, resilience: bool) -> Raw {
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    let resilience = async {
        if resilience {
            Some(get("/resilience").await)
        } else {
            None
        }
    };
    let (ready, resilience, metrics) =
        tokio::join!(get("/health/ready"), resilience, get("/metrics"));
    let mut raw = Raw::default();
    match ready {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.json::<Value>().await.ok();
            raw.ready = Some((status, body));
        }
        Err(e) => raw.error = Some(describe(&e)),
    }
    match resilience {
        Some(Ok(resp)) if resp.status().is_success() => {
            raw.resilience = resp.json::<Value>().await.ok();
        }
        Some(Ok(resp)) => raw.no_resilience = resp.status() == reqwest::StatusCode::NOT_FOUND,
        _ => {}
    }
    match metrics {
        Ok(resp) if resp.status().is_success() => raw.metrics = resp.text().await.ok(),
        Ok(_) => {}
        Err(e) => {
            raw.error.get_or_insert_with(|| describe(&e));
        }
    }
    raw
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection refused".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// Routes the dashboard itself (and probes) hit; excluded from the traffic figures.
fn is_probe(s: &Sample) -> bool {
    matches!(
        s.label("route"),
        Some("/metrics" | "/health/ready" | "/health/live" | "/resilience")
    )
}

fn view(
    config: &ServiceConfig,
    memory: &mut Memory,
    raw: &Raw,
    now: Instant,
    t_ms: u64,
) -> ServiceView {
    let up = raw.ready.is_some() || raw.metrics.is_some() || raw.resilience.is_some();
    let mut v = ServiceView {
        name: config.name.clone(),
        url: config.base_url.clone(),
        up,
        status: "down".to_owned(),
        error: if up { None } else { raw.error.clone() },
        ..ServiceView::default()
    };
    if let Some((code, body)) = &raw.ready {
        v.ready = *code == 200;
        v.status = body
            .as_ref()
            .and_then(|b| b.get("status"))
            .and_then(Value::as_str)
            .map_or_else(
                || if v.ready { "pass" } else { "fail" }.to_owned(),
                str::to_owned,
            );
        v.checks = body.as_ref().map(checks).unwrap_or_default();
    } else if up {
        v.status = "unknown".to_owned();
    }
    if up {
        v.last_seen_ms = Some(t_ms);
    } else {
        v.last_seen_ms = memory.last_view.as_ref().and_then(|l| l.last_seen_ms);
    }

    if let Some(text) = &raw.metrics {
        let samples = prom::parse(text);
        traffic(memory, &samples, now, t_ms);
    } else {
        // No figures this tick: forget the baseline so the next rate is not an average over the gap.
        memory.at = None;
    }
    v.history = memory.history.clone();

    match &raw.resilience {
        Some(doc) => {
            v.breakers = breakers(memory, doc, t_ms);
            v.bulkheads = list(doc, "bulkheads");
            v.retries = list(doc, "retries");
        }
        None if !up => {
            if let Some(last) = &memory.last_view {
                v.breakers = last.breakers.clone();
                v.bulkheads = last.bulkheads.clone();
                v.retries = last.retries.clone();
                v.stale = !v.breakers.is_empty() || !v.retries.is_empty();
            }
        }
        None => {}
    }
    memory.last_view = Some(v.clone());
    v
}

fn checks(body: &Value) -> Vec<CheckView> {
    let Some(map) = body.get("checks").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, entries) in map {
        let entries = match entries {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        for e in entries {
            out.push(CheckView {
                name: name.clone(),
                status: e
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned(),
                observed: e.get("observedValue").map(|o| match o {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
            });
        }
    }
    out
}

fn traffic(memory: &mut Memory, samples: &[Sample], now: Instant, t_ms: u64) {
    let count = format!("{LATENCY_HISTOGRAM}_count");
    let requests = prom::sum(samples, &count, |s| !is_probe(s));
    let errors = prom::sum(samples, &count, |s| {
        !is_probe(s) && s.label("status").is_some_and(|st| st.starts_with('5'))
    });
    let latency = Histogram::from_samples(samples, LATENCY_HISTOGRAM, |s| !is_probe(s));
    if let Some(at) = memory.at {
        let dt = now.duration_since(at).as_secs_f64().max(1e-3);
        let restarted = requests < memory.requests;
        let (dr, de) = if restarted {
            (requests, errors)
        } else {
            (
                requests - memory.requests,
                (errors - memory.errors).max(0.0),
            )
        };
        let window = latency.since(&memory.latency);
        memory.history.push_back(TrafficPoint {
            t_ms,
            rps: dr / dt,
            error_rps: de / dt,
            p50_ms: window.quantile(0.5).map(|s| s * 1000.0),
            p99_ms: window.quantile(0.99).map(|s| s * 1000.0),
        });
        while memory.history.len() > HISTORY_POINTS {
            memory.history.pop_front();
        }
    }
    memory.at = Some(now);
    memory.requests = requests;
    memory.errors = errors;
    memory.latency = latency;
}

fn list(doc: &Value, key: &str) -> Vec<Value> {
    doc.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn breakers(memory: &mut Memory, doc: &Value, t_ms: u64) -> Vec<BreakerView> {
    let mut out = Vec::new();
    for snap in list(doc, "breakers") {
        let Some(name) = snap.get("name").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        let state = snap
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let total = snap.get("transitions_total").and_then(Value::as_u64);
        let m = memory.breakers.entry(name.clone()).or_default();
        let first = m.timeline.is_empty() && m.state.is_empty();
        // Transitions the counter saw beyond the one state change we can see.
        let counted = match (m.transitions_total, total) {
            (Some(before), Some(now)) if now >= before => now - before,
            (Some(_), Some(now)) => now, // the service restarted
            _ => 0,
        };
        if first || m.state != state {
            let seen = u64::from(!first);
            m.timeline.push(Transition {
                t_ms,
                from: (!first).then(|| m.state.clone()),
                to: state.clone(),
                missed: counted.saturating_sub(seen),
            });
            if m.timeline.len() > TIMELINE_ENTRIES {
                m.timeline.remove(0);
            }
        } else if counted > 0 {
            // Left and came back between two polls (e.g. open -> half_open -> closed).
            m.timeline.push(Transition {
                t_ms,
                from: Some(m.state.clone()),
                to: state.clone(),
                missed: counted,
            });
        }
        m.state = state.clone();
        m.transitions_total = total;
        out.push(BreakerView {
            name,
            state,
            snapshot: snap,
            timeline: m.timeline.clone(),
        });
    }
    out
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metrics(count: u64, slow: u64) -> String {
        let fast = count - slow;
        format!(
            "http_server_request_duration_seconds_bucket{{route=\"/orders\",status=\"201\",le=\"0.01\"}} {fast}\n\
             http_server_request_duration_seconds_bucket{{route=\"/orders\",status=\"201\",le=\"1\"}} {count}\n\
             http_server_request_duration_seconds_bucket{{route=\"/orders\",status=\"201\",le=\"+Inf\"}} {count}\n\
             http_server_request_duration_seconds_count{{route=\"/orders\",status=\"201\"}} {count}\n\
             http_server_request_duration_seconds_count{{route=\"/metrics\",status=\"200\"}} 999\n"
        )
    }

    #[tokio::test(start_paused = true)]
    async fn rates_and_quantiles_come_from_the_difference_between_polls() {
        let config = ServiceConfig::new("order-service", "http://127.0.0.1:1/");
        assert_eq!(config.base_url, "http://127.0.0.1:1");
        let mut memory = Memory::default();
        let raw = |text: String| Raw {
            ready: Some((200, Some(json!({"status": "pass"})))),
            metrics: Some(text),
            ..Raw::default()
        };
        let t0 = Instant::now();
        let v = view(&config, &mut memory, &raw(metrics(100, 0)), t0, 1);
        assert!(v.history.is_empty(), "no rate without a previous poll");
        tokio::time::advance(Duration::from_secs(2)).await;
        let v = view(
            &config,
            &mut memory,
            &raw(metrics(120, 10)),
            Instant::now(),
            2,
        );
        let p = v.history.back().unwrap();
        assert_eq!(p.rps, 10.0);
        assert_eq!(p.error_rps, 0.0);
        // 10 of 20 new requests were fast: the median is the top of the first bucket.
        assert_eq!(p.p50_ms, Some(10.0));
        assert!(p.p99_ms.unwrap() > 900.0);
        // The process restarted: counters dropped, the new values are all new.
        tokio::time::advance(Duration::from_secs(1)).await;
        let v = view(&config, &mut memory, &raw(metrics(5, 0)), Instant::now(), 3);
        assert_eq!(v.history.back().unwrap().rps, 5.0);
        assert_eq!(v.history.len(), 2);
    }

    #[test]
    fn breaker_timeline_records_changes_and_missed_transitions() {
        let mut memory = Memory::default();
        let doc = |state: &str, total: u64| {
            json!({"service": "order-service", "breakers": [
                {"name": "user-service", "state": state, "transitions_total": total}
            ], "retries": [{"name": "user-service", "retries_total": 3}]})
        };
        let b = breakers(&mut memory, &doc("closed", 0), 1);
        assert_eq!(b[0].timeline.len(), 1);
        assert_eq!(b[0].timeline[0].from, None);
        assert_eq!(
            breakers(&mut memory, &doc("closed", 0), 2)[0]
                .timeline
                .len(),
            1
        );
        let b = breakers(&mut memory, &doc("open", 1), 3);
        assert_eq!(b[0].state, "open");
        let last = b[0].timeline.last().unwrap();
        assert_eq!(
            (last.from.as_deref(), last.to.as_str(), last.missed),
            (Some("closed"), "open", 0)
        );
        // open -> half_open -> closed between polls: one change seen, one missed.
        let b = breakers(&mut memory, &doc("closed", 3), 4);
        assert_eq!(b[0].timeline.last().unwrap().missed, 1);
        // open -> half_open -> open between polls: no visible change, still recorded.
        let b = breakers(&mut memory, &doc("closed", 5), 5);
        let last = b[0].timeline.last().unwrap();
        assert_eq!((last.to.as_str(), last.missed), ("closed", 2));
        assert_eq!(b[0].timeline.len(), 4);
    }

    #[test]
    fn a_down_service_keeps_its_last_breakers_marked_stale() {
        let config = ServiceConfig::new("order-service", "http://127.0.0.1:1");
        let mut memory = Memory::default();
        let now = Instant::now();
        let up = Raw {
            ready: Some((
                503,
                Some(json!({"status": "fail", "checks": {
                    "store": [{"status": "pass"}],
                    "upstream:user-service": [{"status": "warn", "observedValue": "open"}]
                }})),
            )),
            resilience: Some(json!({"breakers": [{"name": "user-service", "state": "open"}]})),
            ..Raw::default()
        };
        let v = view(&config, &mut memory, &up, now, 1);
        assert!(v.up && !v.ready);
        assert_eq!(v.status, "fail");
        assert_eq!(v.checks.len(), 2);
        assert_eq!(v.checks[1].observed.as_deref(), Some("open"));
        let down = Raw {
            error: Some("connection refused".into()),
            ..Raw::default()
        };
        let v = view(&config, &mut memory, &down, now, 2);
        assert!(!v.up && !v.ready);
        assert_eq!(v.status, "down");
        assert_eq!(v.error.as_deref(), Some("connection refused"));
        assert!(v.stale);
        assert_eq!(v.breakers[0].state, "open");
        assert_eq!(v.last_seen_ms, Some(1));
    }
}

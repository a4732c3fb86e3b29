//! Traces end to end: order-service and user-service each on a thread of its own, each with the
//! subscriber `service_kit::telemetry` installs in production (OTLP/HTTP export on), send their
//! spans to an OTLP receiver in this test, which decodes the protobuf the collector would get.
//!
//! The test plays the caller in front of order-service (the gateway's place): its `traceparent`
//! must become the parent of order-service's server span, whose client span for the user lookup
//! must be the parent of user-service's server span, all in the caller's trace.

mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::any_value::Value as AnyValue,
    trace::v1::{Span, span::SpanKind, status::StatusCode as SpanStatus},
};
use prost::Message;
use reqwest::{StatusCode, Url};
use service_kit::{
    config::{Env, LogFormat, Telemetry, TraceExport},
    store::testing,
    telemetry::{self, Traces},
};
use support::{dead_url, order_body, order_state_on};
use tokio::sync::oneshot;

/// A span as received, with the `service.name` of the resource it came in.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
    fn trace_id(&self) -> String {
        Self::hex(&self.span.trace_id)
    }
    fn span_id(&self) -> String {
        Self::hex(&self.span.span_id)
    }
    fn parent_id(&self) -> String {
        Self::hex(&self.span.parent_span_id)
    }
    fn attr(&self, key: &str) -> Option<AnyValue> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    }
    fn event_names(&self) -> Vec<&str> {
        self.span.events.iter().map(|e| e.name.as_str()).collect()
    }
}

/// The OTLP/HTTP receiver: `POST /v1/traces` with an `ExportTraceServiceRequest` body.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>);

impl Receiver {
    async fn start() -> (Self, SocketAddr) {
        let receiver = Self::default();
        let app = Router::new()
            .route("/v1/traces", post(Self::export))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, addr)
    }

    async fn export(
        State(this): State<Self>,
        body: Bytes,
    ) -> ([(&'static str, &'static str); 1], Vec<u8>) {
        let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
        let mut got = this.0.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.clone()?.value? {
                    AnyValue::StringValue(s) => Some(s),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    got.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        // An empty ExportTraceServiceResponse: everything accepted.
        ([("content-type", "application/x-protobuf")], Vec::new())
    }

    fn spans(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }
}

/// A service served on a thread of its own (a current-thread runtime under its own default
/// subscriber, so each service's spans carry its own `service.name`), like a process.
struct Service {
    addr: SocketAddr,
    traces: Arc<Traces>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start<F>(
        name: &'static str,
        collector: SocketAddr,
        app: impl FnOnce() -> F + Send + 'static,
    ) -> Self
    where
        F: Future<Output = Router>,
    {
        // What `OTEL_EXPORTER_OTLP_ENDPOINT=http://<collector>` reads to; the batch delay is the
        // SDK's default (5 s), so the test flushes instead of waiting.
        let mut env = Env::from_pairs([
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{collector}").leak() as &str,
            ),
            ("LOG_FORMAT", "json"),
        ]);
        let config = Telemetry::read(&mut env);
        env.finish().unwrap();
        assert_eq!(
            config.traces,
            Some(TraceExport {
                endpoint: format!("http://{collector}/v1/traces"),
                service_name: None
            })
        );
        assert_eq!(config.log_format, LogFormat::Json);
        let (subscriber, traces) = telemetry::subscriber(&config, name, std::io::sink).unwrap();
        assert!(traces.is_on());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tracing::subscriber::with_default(subscriber, || {
                rt.block_on(async move {
                    let app = app().await;
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await
                        .unwrap();
                });
            });
        });
        Self {
            addr: addr_rx.recv_timeout(Duration::from_secs(30)).unwrap(),
            traces: Arc::new(traces),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    /// Sends every finished span to the receiver now (the exporter's thread; this blocks).
    async fn flush(&self) {
        let traces = self.traces.clone();
        tokio::task::spawn_blocking(move || traces.flush())
            .await
            .unwrap()
            .unwrap();
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

fn user_service(collector: SocketAddr) -> Service {
    Service::start("user-service", collector, || async {
        let store = testing::sqlite(&user_service::store::MIGRATIONS).await;
        let config = user_service::Config::from_env(Env::from_pairs([])).unwrap();
        user_service::app(user_service::AppState::new(store, &config))
    })
}

fn order_service(collector: SocketAddr, users: Vec<Url>) -> Service {
    Service::start("order-service", collector, move || async move {
        let store = testing::sqlite(&order_service::store::MIGRATIONS).await;
        let state = order_state_on(
            store,
            users,
            order_service::DegradedMode::Fail,
            Some(support::fast_stack()),
        );
        order_service::app(state)
    })
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Creates user 1 in user-service, then orders for it through order-service as a caller whose
/// span is `CALLER_SPAN` in `CALLER_TRACE`; returns every span received once both services
/// have flushed and the order's spans are in.
async fn order_through(users: &Service, orders: &Service, receiver: &Receiver) -> Vec<Received> {
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}users", users.url()))
        .header("content-type", "application/json")
        .body(r#"{"name":"Ada","email":"ada@example.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let ordered = http
        .post(format!("{}orders", orders.url()))
        .header("content-type", "application/json")
        .header("idempotency-key", "trace-1")
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .body(order_body(1, "traced"))
        .send()
        .await
        .unwrap();
    assert_eq!(ordered.status(), StatusCode::CREATED);
    // The spans end as the answers are sent; bounded wait for the last to be handed over.
    for _ in 0..50 {
        orders.flush().await;
        users.flush().await;
        let spans = receiver.spans();
        let of_order = spans
            .iter()
            .filter(|s| s.trace_id() == CALLER_TRACE)
            .count();
        if of_order >= 3 && spans.iter().any(|s| s.span.name == "POST /orders") {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the order's spans did not arrive: {:#?}", receiver.spans());
}

fn only<'a>(spans: &'a [Received], what: &str, pick: impl Fn(&Received) -> bool) -> &'a Received {
    let found: Vec<_> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "{what}: {found:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_caller_through_order_service_to_user_service() {
    let (receiver, collector) = Receiver::start().await;
    let mut users = user_service(collector);
    let mut orders = order_service(collector, vec![users.url()]);
    let spans = order_through(&users, &orders, &receiver).await;
    let trace: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id() == CALLER_TRACE)
        .cloned()
        .collect();

    let server = only(&trace, "order-service's server span", |s| {
        s.service == "order-service" && s.span.kind == SpanKind::Server as i32
    });
    let client = only(&trace, "order-service's client span", |s| {
        s.service == "order-service" && s.span.kind == SpanKind::Client as i32
    });
    let callee = only(&trace, "user-service's server span", |s| {
        s.service == "user-service" && s.span.kind == SpanKind::Server as i32
    });
    assert_eq!(trace.len(), 3, "nothing else in the trace: {trace:#?}");

    assert_eq!(server.span.name, "POST /orders");
    assert_eq!(
        server.parent_id(),
        CALLER_SPAN,
        "a child of the caller's span"
    );
    assert_eq!(client.span.name, "GET /users/{id}");
    assert_eq!(
        client.parent_id(),
        server.span_id(),
        "the lookup is the request's child"
    );
    assert_eq!(
        client.attr("url.full"),
        Some(AnyValue::StringValue(format!("{}users/1", users.url())))
    );
    assert_eq!(
        client.attr("http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );
    assert_eq!(callee.span.name, "GET /users/{id}");
    assert_eq!(
        callee.parent_id(),
        client.span_id(),
        "user-service's span is the call's child"
    );
    assert_eq!(
        callee.attr("http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );
    assert_eq!(
        server.attr("http.response.status_code"),
        Some(AnyValue::IntValue(201))
    );
    for s in [server, client, callee] {
        assert_ne!(
            s.span.status.as_ref().map(|st| st.code),
            Some(SpanStatus::Error as i32),
            "{s:#?}"
        );
    }
    // The log lines name the same ids (the request span records them): the request's events
    // are its span events, among them the line that ends it.
    assert!(
        server.event_names().contains(&"request finished"),
        "{server:#?}"
    );
    assert_eq!(
        server.attr("trace_id"),
        Some(AnyValue::StringValue(CALLER_TRACE.into()))
    );
    assert_eq!(
        server.attr("span_id"),
        Some(AnyValue::StringValue(server.span_id()))
    );

    // user-service's own request (the POST /users) is a trace of its own.
    let create = only(&spans, "POST /users", |s| s.span.name == "POST /users");
    assert_eq!(create.service, "user-service");
    assert!(create.parent_id().is_empty(), "{create:#?}");
    assert_ne!(create.trace_id(), CALLER_TRACE);

    orders.stop();
    users.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_and_a_failover_are_events_and_spans_of_the_same_trace() {
    let (receiver, collector) = Receiver::start().await;
    let users = user_service(collector);
    // Round robin starts at the first: a dead instance, retried once, then the live one.
    let orders = order_service(collector, vec![dead_url().await, users.url()]);
    let spans = order_through(&users, &orders, &receiver).await;
    let server = only(&spans, "order-service's server span", |s| {
        s.trace_id() == CALLER_TRACE
            && s.span.kind == SpanKind::Server as i32
            && s.service == "order-service"
    });
    let mut calls: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id() == CALLER_TRACE && s.span.kind == SpanKind::Client as i32)
        .collect();
    calls.sort_by_key(|s| s.span.start_time_unix_nano);
    assert_eq!(
        calls.len(),
        2,
        "one client span per instance tried: {calls:#?}"
    );
    let (dead, live) = (calls[0], calls[1]);
    for call in [dead, live] {
        assert_eq!(call.parent_id(), server.span_id());
    }
    // The library's decisions inside the failed call are its events.
    let events = dead.event_names();
    assert!(events.contains(&"retrying"), "{events:?}");
    assert!(events.contains(&"giving up"), "{events:?}");
    assert_eq!(
        dead.span.status.as_ref().map(|st| st.code),
        Some(SpanStatus::Error as i32),
        "{dead:#?}"
    );
    let callee = only(&spans, "user-service's span for the lookup", |s| {
        s.trace_id() == CALLER_TRACE && s.service == "user-service"
    });
    assert_eq!(
        callee.parent_id(),
        live.span_id(),
        "the instance that answered"
    );
}

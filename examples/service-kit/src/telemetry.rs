//! Logs and traces: the one `tracing` subscriber every service installs ([`init`]), and the
//! W3C trace context ([`TraceContext`]) that ties a service's spans to its callers' and callees'.
//!
//! # Logs
//!
//! `LOG_FORMAT=auto` (the default) writes JSON lines when stdout is not a terminal, so what
//! `run.sh`, a container runtime or systemd collects is parseable as it stands, and text when a
//! person watches; `json`, `pretty` and `text` force one. `RUST_LOG` filters (default `info`).
//!
//! A JSON line ([`JsonLine`]) has the fields of `tracing-subscriber`'s JSON format
//! (`timestamp`, `level`, `target`, `fields` with the `message`, and `span`: the current span's
//! name and fields), plus `trace_id`, `span_id` and `request_id` at the top level, taken from
//! the innermost enclosing span that records them. The request span ([`crate::context`])
//! records all three and an outgoing call's span ([`client_span`]) its own span id, so every
//! line logged while a request is handled names its W3C trace and the span it was logged in,
//! and a log store can index them without digging into `span`:
//!
//! ```text
//! {"timestamp":"2025-01-01T12:00:00.000000Z","level":"INFO","target":"service_kit::context",
//!  "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",
//!  "request_id":"0194...","fields":{"message":"request finished","status":201,"elapsed_ms":3.1},
//!  "span":{"name":"request","method":"POST","route":"/orders",...}}
//! ```
//!
//! (one line in the output; wrapped here). `deploy/logging/vector.toml` ships these lines to a
//! log store.
//!
//! # Traces
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set
//! ([`crate::config::TraceExport`]); then spans go to that OTLP collector over HTTP/protobuf,
//! batched on a thread of the SDK's own, as service `OTEL_SERVICE_NAME` (default: the
//! service's name). The spans:
//!
//! - **server**: one per request, made by [`crate::context::observe`]; its parent is the
//!   caller's span named by the incoming `traceparent` ([`server_span_parent`]), else it starts
//!   a trace;
//! - **client**: one per outgoing call ([`client_span`]), a child of the span it is made in,
//!   named by the `traceparent` the call carries, so the callee's server span is its child;
//! - **events**: every `tracing` event inside a span is an event of that span. The library's
//!   resilience decisions (a retry, a breaker rejecting or changing state, a timeout, a
//!   bulkhead or budget saying no: target `resilience`, mostly at `debug`) are kept whatever
//!   `RUST_LOG` says, so a trace shows why a call took the time it did. Spans and other events
//!   are exported at `info` and above, or what `RUST_LOG` enables if that is more.
//!
//! With export off the same ids are made here instead (random, W3C-shaped) and sent the same
//! way, so logs still correlate across services. Spans are flushed when [`Traces::shutdown`]
//! runs (at the end of [`crate::serve::run`]).

use std::{fmt, io::IsTerminal, time::Duration};

use opentelemetry::{
    Context,
    trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
    },
};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{
    Event, Level, Span, Subscriber,
    field::{Field, Visit},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::{FilterExt, Targets},
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter,
        format::{JsonFields, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
};

use crate::config::{LogFormat, Telemetry, TraceExport};

/// The span fields lifted to the top of a JSON line.
pub const TRACE_ID: &str = "trace_id";
/// See [`TRACE_ID`].
pub const SPAN_ID: &str = "span_id";
/// See [`TRACE_ID`].
pub const REQUEST_ID: &str = "request_id";

/// The target of the library's events: kept as span events whatever `RUST_LOG` says.
const RESILIENCE_TARGET: &str = "resilience";

/// How long [`Traces::shutdown`] waits for the last spans to be sent.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets up `tracing` once for the process, writing logs to stdout and exporting spans when
/// `config.traces` says so (see the module docs). `service` names the service in its spans
/// unless `OTEL_SERVICE_NAME` did. Fails only when the OTLP exporter cannot be built.
pub fn init(config: &Telemetry, service: &str) -> Result<Traces, String> {
    let terminal = std::io::stdout().is_terminal();
    let (sub, traces) = build(config, service, terminal, std::io::stdout)?;
    let _ = tracing::subscriber::set_global_default(sub);
    if let Some(export) = &config.traces {
        tracing::info!(endpoint = %export.endpoint, "exporting traces over OTLP/HTTP");
    }
    Ok(traces)
}

/// The subscriber [`init`] installs, writing logs to `writer`, which is taken not to be a
/// terminal ([`LogFormat::Auto`] is JSON and text has no colour codes), and the trace export
/// it feeds (hold it, and flush or shut it down, for the spans to be sent).
pub fn subscriber<W>(
    config: &Telemetry,
    service: &str,
    writer: W,
) -> Result<(impl Subscriber + Send + Sync + use<W>, Traces), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build(config, service, false, writer)
}

fn build<W>(
    config: &Telemetry,
    service: &str,
    terminal: bool,
    writer: W,
) -> Result<(impl Subscriber + Send + Sync + use<W>, Traces), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        || EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match config.log_format.resolve(terminal) {
        LogFormat::Json | LogFormat::Auto => logs
            .event_format(JsonLine)
            .fmt_fields(JsonFields::new())
            .boxed(),
        LogFormat::Pretty => logs.pretty().with_ansi(terminal).boxed(),
        LogFormat::Text => logs.with_ansi(terminal).boxed(),
    };
    let mut layers = vec![logs.with_filter(filter()).boxed()];
    let provider = match &config.traces {
        Some(export) => {
            let provider = tracer_provider(export, service)?;
            let tracer = provider.tracer("service-kit");
            // What RUST_LOG enables, and never less than every span and event at info plus the
            // library's decisions: quieter logs must not empty the traces.
            let decisions = Targets::new()
                .with_default(Level::INFO)
                .with_target(RESILIENCE_TARGET, Level::DEBUG);
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(filter().or(decisions))
                    .boxed(),
            );
            Some(provider)
        }
        None => None,
    };
    Ok((Registry::default().with(layers), Traces { provider }))
}

fn tracer_provider(export: &TraceExport, service: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(&export.endpoint)
        .build()
        .map_err(|e| format!("OTLP exporter for {}: {e}", export.endpoint))?;
    let name = export.service_name.as_deref().unwrap_or(service).to_owned();
    Ok(SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(name).build())
        .with_batch_exporter(exporter)
        .build())
}

/// The trace export [`init`] started, if any: flush it, and shut it down before the process
/// exits so the last spans are sent.
#[derive(Debug, Default)]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// No export (what [`init`] returns when traces are off).
    pub fn off() -> Self {
        Self::default()
    }

    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends every finished span now. Blocks until the collector answered or the export
    /// timed out: call it from a blocking thread (`spawn_blocking`), not from async code.
    pub fn flush(&self) -> Result<(), String> {
        match &self.provider {
            Some(p) => p.force_flush().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Flushes and stops the export (at most [`SHUTDOWN_TIMEOUT`]), on a blocking thread.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        match done {
            Ok(Ok(())) => tracing::debug!("trace export flushed and stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "trace export did not stop cleanly"),
            Err(e) => tracing::warn!(error = %e, "trace export shutdown panicked"),
        }
    }
}

/// Makes the caller's span (`parent`, from the incoming `traceparent`) the parent of `span`, a
/// server span not yet entered, or makes `span` a trace's root when there is none. Returns
/// `span`'s own context when it is exported, `None` when traces are off (or `span` is
/// filtered out): then the caller makes one ([`TraceContext::child`] or
/// [`TraceContext::new_root`]).
pub fn server_span_parent(span: &Span, parent: Option<&TraceContext>) -> Option<TraceContext> {
    let cx = match parent {
        Some(p) => Context::new().with_remote_span_context(p.to_otel()),
        None => Context::new(),
    };
    span.set_parent(cx).ok()?;
    exported(span)
}

/// A client span for an outgoing HTTP call (`name` as OpenTelemetry's conventions have it,
/// `GET /users/{id}`), a child of the current span, and the trace context the call must carry
/// in `traceparent` so the callee's span is this span's child. With traces off the context
/// is `fallback` (a new child of the request's context, or none for work done on behalf of no
/// request). The span records `trace_id` and `span_id` for the log lines inside it.
pub fn client_span(
    name: &str,
    method: &str,
    url: &str,
    fallback: impl FnOnce() -> Option<TraceContext>,
) -> (Span, Option<TraceContext>) {
    let span = tracing::info_span!(
        "outgoing",
        otel.name = name,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        "http.request.method" = method,
        "url.full" = url,
        "http.response.status_code" = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let trace = exported(&span).or_else(fallback);
    if let Some(t) = &trace {
        span.record(TRACE_ID, tracing::field::display(t.trace_id()));
        span.record(SPAN_ID, tracing::field::display(t.span_id()));
    }
    (span, trace)
}

/// Records an HTTP answer on a server or client span: its status, and an error status for a
/// 5xx (what OpenTelemetry's HTTP conventions count as the span failing).
pub fn record_status(span: &Span, status: u16) {
    // As an integer attribute: tracing-opentelemetry sends unsigned values as text.
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// Marks a client span failed: the call got no answer (`reason` says why).
pub fn record_failure(span: &Span, reason: &str) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", reason);
}

/// `span`'s context when it is exported (starting it: set its parent first).
fn exported(span: &Span) -> Option<TraceContext> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| TraceContext::from_otel(&sc))
}

/// W3C trace context of the current request.
///
/// ```
/// use service_kit::telemetry::TraceContext;
///
/// let incoming = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// let ours = incoming.child();
/// assert_eq!(ours.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(ours.header().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
/// assert_ne!(ours.span_id(), incoming.span_id());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceContext {
    /// A new trace (no incoming context).
    pub fn new_root() -> Self {
        Self {
            trace_id: rand::random::<u128>().max(1),
            span_id: rand::random::<u64>().max(1),
            flags: 1,
        }
    }

    /// Parses a `traceparent` header value (version 00); `None` when malformed or all-zero.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let lower_hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(version, 2) || version == "ff" || !lower_hex(trace, 32) {
            return None;
        }
        if !lower_hex(span, 16)
            || !lower_hex(flags, 2)
            || (version == "00" && parts.next().is_some())
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// The same trace with a new span id: this service's span, or an outgoing call's.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: rand::random::<u64>().max(1),
            flags: self.flags,
        }
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The 16-hex-digit span id.
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// As OpenTelemetry's span context of a remote parent.
    fn to_otel(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from(self.trace_id),
            SpanId::from(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::NONE,
        )
    }

    fn from_otel(sc: &SpanContext) -> Self {
        Self {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            flags: sc.trace_flags().to_u8(),
        }
    }

    /// The `traceparent` header value naming this span as the parent.
    pub fn header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// The JSON line format (see the module docs). Span fields must be recorded as JSON
/// (`fmt_fields(JsonFields::new())`), as `tracing-subscriber`'s own JSON format requires.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    level: &'a str,
    target: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<Value>,
    fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span: Option<Map<String, Value>>,
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let mut line = Line {
            timestamp: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            level: meta.level().as_str(),
            target: meta.target(),
            trace_id: None,
            span_id: None,
            request_id: None,
            fields,
            span: None,
        };
        for (depth, span) in ctx.event_scope().into_iter().flatten().enumerate() {
            let ext = span.extensions();
            let mut recorded = match ext.get::<FormattedFields<N>>().map(|f| f.as_str()) {
                Some(text) if !text.is_empty() => match serde_json::from_str(text) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                },
                _ => Map::new(),
            };
            for (key, slot) in [
                (TRACE_ID, &mut line.trace_id),
                (SPAN_ID, &mut line.span_id),
                (REQUEST_ID, &mut line.request_id),
            ] {
                if slot.is_none() {
                    *slot = recorded.get(key).cloned();
                }
            }
            if depth == 0 {
                // The exporter's own fields say nothing a reader of the log needs.
                recorded.retain(|k, _| !k.starts_with("otel."));
                recorded.insert("name".into(), Value::from(span.name()));
                line.span = Some(recorded);
            }
            if line.trace_id.is_some() && line.span_id.is_some() && line.request_id.is_some() {
                break;
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// An event's fields as JSON values: numbers and booleans stay typed, the rest is text.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::from(value.to_string()), Value::Number);
        self.put(field, v);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let v = i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.put(field, v);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let v = u64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.put(field, v);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

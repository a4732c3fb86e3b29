//! Logs: the one `tracing` subscriber every service installs ([`init`]).
//!
//! `LOG_FORMAT=auto` (the default) writes JSON lines when stdout is not a terminal, so what
//! `run.sh`, a container runtime or systemd collects is parseable as it stands, and text when a
//! person watches; `json`, `pretty` and `text` force one. `RUST_LOG` filters (default `info`).
//!
//! A JSON line ([`JsonLine`]) has the fields of `tracing-subscriber`'s JSON format
//! (`timestamp`, `level`, `target`, `fields` with the `message`, and `span`: the current span's
//! name and fields), plus `trace_id`, `span_id` and `request_id` at the top level, taken from
//! the innermost enclosing span that records them. The request span ([`crate::context`])
//! records all three, so every line logged while a request is handled names its W3C trace and
//! this service's span in it, and a log store can index them without digging into `span`:
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

use std::{fmt, io::IsTerminal};

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter,
        format::{JsonFields, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
};

use crate::config::{LogFormat, Telemetry};

/// The span fields lifted to the top of a JSON line.
pub const TRACE_ID: &str = "trace_id";
/// See [`TRACE_ID`].
pub const SPAN_ID: &str = "span_id";
/// See [`TRACE_ID`].
pub const REQUEST_ID: &str = "request_id";

/// Sets up `tracing` once for the process, writing to stdout (see the module docs).
pub fn init(config: &Telemetry) {
    let terminal = std::io::stdout().is_terminal();
    let format = config.log_format.resolve(terminal);
    let sub = build(format, &config.log_filter, terminal, std::io::stdout);
    let _ = tracing::subscriber::set_global_default(sub);
}

/// The subscriber [`init`] installs, writing to `writer`, which is taken not to be a
/// terminal: [`LogFormat::Auto`] is JSON and text has no colour codes.
pub fn subscriber<W>(format: LogFormat, filter: &str, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build(format.resolve(false), filter, false, writer)
}

fn build<W>(format: LogFormat, filter: &str, ansi: bool, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json | LogFormat::Auto => logs
            .event_format(JsonLine)
            .fmt_fields(JsonFields::new())
            .boxed(),
        LogFormat::Pretty => logs.pretty().with_ansi(ansi).boxed(),
        LogFormat::Text => logs.with_ansi(ansi).boxed(),
    };
    Registry::default().with(logs.with_filter(filter))
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

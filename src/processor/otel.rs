//! OpenTelemetry (reference §3.2, §3.3): traces → `otel_traces`, metrics → `otel_metrics`, chosen by subject
//! (`traces` / `metrics` in it). OTLP protobuf export requests, and the JSON shapes ServiceRadar publishes
//! (span objects; `PerformanceMetric` objects or arrays on `otel.metrics.derived`).
//!
//! Fixed against the Go writer: exponential histograms and summaries become rows (their `sum`); `unit` is
//! stored; OTLP data points of one metric that differ only in attributes get distinct keys (`span_id` holds a
//! short hash of the point's attributes, which OTLP metric rows otherwise leave empty); JSON spans are accepted.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use prost::Message as _;
use serde_json::{Map, Value};

use super::json::{clean_text, each_object, parse_timestamp};
use super::logs::{attr_str, hex, kv_text, nanos};
use super::proto::common::{AnyValue, KeyValue, any_value};
use super::proto::metrics::{ExportMetricsServiceRequest, metric, number_data_point};
use super::proto::trace::ExportTraceServiceRequest;
use super::{BatchDefaults, DecodeError, Incoming, Processor, RowSize, Rows};
use crate::sql::qualified;

/// A row for one of the two tables.
#[derive(Debug, Clone, PartialEq)]
pub enum OtelRow {
    /// `otel_traces`.
    Span(SpanRow),
    /// `otel_metrics`.
    Metric(MetricRow),
}

/// One row of `otel_traces`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanRow {
    /// Span start.
    pub timestamp: DateTime<Utc>,
    /// Trace id (hex).
    pub trace_id: String,
    /// Span id (hex).
    pub span_id: String,
    /// Parent span id (hex, `""` for a root).
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// Span kind (OTLP enum number).
    pub kind: i32,
    /// Start, epoch ns.
    pub start_time_unix_nano: i64,
    /// End, epoch ns.
    pub end_time_unix_nano: i64,
    /// `service.name` (shared by the spans of one resource, like the other resource and scope fields).
    pub service_name: Arc<str>,
    /// `service.version`.
    pub service_version: Arc<str>,
    /// `service.instance.id`.
    pub service_instance: Arc<str>,
    /// Scope name.
    pub scope_name: Arc<str>,
    /// Scope version.
    pub scope_version: Arc<str>,
    /// Status code (OTLP enum number).
    pub status_code: i32,
    /// Status message.
    pub status_message: String,
    /// Attributes text.
    pub attributes: String,
    /// Resource attributes text.
    pub resource_attributes: Arc<str>,
    /// Events as JSON text.
    pub events: String,
    /// Links as JSON text.
    pub links: String,
}

/// One row of `otel_metrics`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricRow {
    /// Data point time.
    pub timestamp: DateTime<Utc>,
    /// Trace id (JSON input only).
    pub trace_id: String,
    /// Span id; for OTLP points a short hash of the point's attributes.
    pub span_id: String,
    /// `service.name` (shared by the points of one resource).
    pub service_name: Arc<str>,
    /// Metric (or span) name (shared by the points of one metric).
    pub span_name: Arc<str>,
    /// Span kind.
    pub span_kind: String,
    /// Value (or duration) in ms.
    pub duration_ms: Option<f64>,
    /// The same in seconds (ms / 1000, as ServiceRadar stores it).
    pub duration_seconds: Option<f64>,
    /// gauge | sum | histogram | exponential_histogram | summary (OTLP), or the JSON's type.
    pub metric_type: String,
    /// `http.method`.
    pub http_method: String,
    /// `http.route`.
    pub http_route: String,
    /// `http.status_code`.
    pub http_status_code: String,
    /// `rpc.service`.
    pub grpc_service: String,
    /// `rpc.method`.
    pub grpc_method: String,
    /// `rpc.grpc.status_code`.
    pub grpc_status_code: String,
    /// Slow span flag.
    pub is_slow: bool,
    /// Component.
    pub component: String,
    /// Level.
    pub level: String,
    /// Unit (shared by the points of one metric).
    pub unit: Arc<str>,
}

impl RowSize for OtelRow {
    fn size(&self) -> usize {
        match self {
            OtelRow::Span(r) => {
                48 + r.trace_id.len()
                    + r.span_id.len()
                    + r.parent_span_id.len()
                    + r.name.len()
                    + r.service_name.len()
                    + r.service_version.len()
                    + r.service_instance.len()
                    + r.scope_name.len()
                    + r.scope_version.len()
                    + r.status_message.len()
                    + r.attributes.len()
                    + r.resource_attributes.len()
                    + r.events.len()
                    + r.links.len()
            }
            OtelRow::Metric(r) => {
                32 + r.trace_id.len()
                    + r.span_id.len()
                    + r.service_name.len()
                    + r.span_name.len()
                    + r.span_kind.len()
                    + r.metric_type.len()
                    + r.http_method.len()
                    + r.http_route.len()
                    + r.http_status_code.len()
                    + r.grpc_service.len()
                    + r.grpc_method.len()
                    + r.grpc_status_code.len()
                    + r.component.len()
                    + r.level.len()
                    + r.unit.len()
            }
        }
    }
}

/// A text value that many rows share (a resource's, a scope's, a metric's), NUL-free, made once.
fn shared(mut text: String) -> Arc<str> {
    clean_text(&mut text);
    Arc::from(text)
}

/// The otel processor.
#[derive(Debug, Clone)]
pub struct Otel {
    traces_sql: String,
    metrics_sql: String,
}

impl Otel {
    /// 1,000 rows (sized by the benchmark, as telemetry), flushed after 1 s as the design this replaces.
    pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults { size: 1000, timeout: Duration::from_secs(1) };
    /// Spans go here.
    pub const TRACES: &str = "otel_traces";
    /// Metric points go here.
    pub const METRICS: &str = "otel_metrics";

    /// A processor writing to `schema`.
    pub fn new(schema: &str) -> Self {
        let traces = qualified(schema, Self::TRACES);
        let metrics = qualified(schema, Self::METRICS);
        Otel {
            traces_sql: format!(
                "INSERT INTO {traces} (timestamp, trace_id, span_id, parent_span_id, name, kind, start_time_unix_nano, \
                 end_time_unix_nano, service_name, service_version, service_instance, scope_name, scope_version, \
                 status_code, status_message, attributes, resource_attributes, events, links) \
                 SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], \
                 $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int4[], \
                 $15::text[], $16::text[], $17::text[], $18::text[], $19::text[]) \
                 ON CONFLICT (timestamp, trace_id, span_id) DO NOTHING"
            ),
            metrics_sql: format!(
                "INSERT INTO {metrics} (timestamp, trace_id, span_id, service_name, span_name, span_kind, duration_ms, \
                 duration_seconds, metric_type, http_method, http_route, http_status_code, grpc_service, grpc_method, \
                 grpc_status_code, is_slow, component, level, unit) \
                 SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::float8[], $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
                 $14::text[], $15::text[], $16::bool[], $17::text[], $18::text[], $19::text[]) \
                 ON CONFLICT (timestamp, span_name, service_name, span_id) DO NOTHING"
            ),
        }
    }
}

impl Processor for Otel {
    type Row = OtelRow;

    fn table_of(row: &OtelRow) -> usize {
        match row {
            OtelRow::Span(_) => 0,
            OtelRow::Metric(_) => 1,
        }
    }

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, OtelRow>) -> Result<(), DecodeError> {
        let json = matches!(msg.payload.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['));
        if msg.subject.contains("traces") {
            if json {
                decode_json_spans(msg, rows)
            } else {
                let request = ExportTraceServiceRequest::decode(msg.payload)
                    .map_err(|e| DecodeError::new(format!("not an OTLP ExportTraceServiceRequest: {e}")))?;
                decode_otlp_spans(&request, msg, rows)
            }
        } else if msg.subject.contains("metrics") {
            if json {
                decode_json_metrics(msg, rows)
            } else {
                let request = ExportMetricsServiceRequest::decode(msg.payload)
                    .map_err(|e| DecodeError::new(format!("not an OTLP ExportMetricsServiceRequest: {e}")))?;
                decode_otlp_metrics(&request, msg, rows)
            }
        } else {
            Err(DecodeError::new(format!(
                "subject {:?} names neither traces nor metrics; the otel processor cannot tell the table",
                msg.subject
            )))
        }
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[OtelRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let spans: Vec<&SpanRow> =
            rows.iter().filter_map(|r| if let OtelRow::Span(s) = r { Some(s) } else { None }).collect();
        let points: Vec<&MetricRow> =
            rows.iter().filter_map(|r| if let OtelRow::Metric(m) = r { Some(m) } else { None }).collect();
        let mut inserted = 0;
        if !spans.is_empty() {
            let stmt = tx.prepare_cached(&self.traces_sql).await?;
            let t = |f: fn(&SpanRow) -> &str| spans.iter().map(|r| f(r)).collect::<Vec<&str>>();
            let ts: Vec<DateTime<Utc>> = spans.iter().map(|r| r.timestamp).collect();
            let kind: Vec<i32> = spans.iter().map(|r| r.kind).collect();
            let start: Vec<i64> = spans.iter().map(|r| r.start_time_unix_nano).collect();
            let end: Vec<i64> = spans.iter().map(|r| r.end_time_unix_nano).collect();
            let status: Vec<i32> = spans.iter().map(|r| r.status_code).collect();
            inserted += tx
                .execute(
                    &stmt,
                    &[
                        &ts,
                        &t(|r| &r.trace_id),
                        &t(|r| &r.span_id),
                        &t(|r| &r.parent_span_id),
                        &t(|r| &r.name),
                        &kind,
                        &start,
                        &end,
                        &t(|r| &r.service_name),
                        &t(|r| &r.service_version),
                        &t(|r| &r.service_instance),
                        &t(|r| &r.scope_name),
                        &t(|r| &r.scope_version),
                        &status,
                        &t(|r| &r.status_message),
                        &t(|r| &r.attributes),
                        &t(|r| &r.resource_attributes),
                        &t(|r| &r.events),
                        &t(|r| &r.links),
                    ],
                )
                .await?;
        }
        if !points.is_empty() {
            let stmt = tx.prepare_cached(&self.metrics_sql).await?;
            let t = |f: fn(&MetricRow) -> &str| points.iter().map(|r| f(r)).collect::<Vec<&str>>();
            let ts: Vec<DateTime<Utc>> = points.iter().map(|r| r.timestamp).collect();
            let ms: Vec<Option<f64>> = points.iter().map(|r| r.duration_ms).collect();
            let secs: Vec<Option<f64>> = points.iter().map(|r| r.duration_seconds).collect();
            let slow: Vec<bool> = points.iter().map(|r| r.is_slow).collect();
            inserted += tx
                .execute(
                    &stmt,
                    &[
                        &ts,
                        &t(|r| &r.trace_id),
                        &t(|r| &r.span_id),
                        &t(|r| &r.service_name),
                        &t(|r| &r.span_name),
                        &t(|r| &r.span_kind),
                        &ms,
                        &secs,
                        &t(|r| &r.metric_type),
                        &t(|r| &r.http_method),
                        &t(|r| &r.http_route),
                        &t(|r| &r.http_status_code),
                        &t(|r| &r.grpc_service),
                        &t(|r| &r.grpc_method),
                        &t(|r| &r.grpc_status_code),
                        &slow,
                        &t(|r| &r.component),
                        &t(|r| &r.level),
                        &t(|r| &r.unit),
                    ],
                )
                .await?;
        }
        Ok(inserted)
    }
}

// --------------------------------------------------------------------------------------------------------------
// Traces
// --------------------------------------------------------------------------------------------------------------

fn kv_list(attrs: &[KeyValue]) -> Vec<Value> {
    attrs
        .iter()
        .map(|kv| Value::String(format!("{}={}", kv.key, kv.value.as_ref().map(any_plain).unwrap_or_default())))
        .collect()
}

/// An AnyValue as plain text (strings unquoted).
fn any_plain(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => format!("{d:.6}"),
        _ => super::logs::any_text(v),
    }
}

fn decode_otlp_spans(
    request: &ExportTraceServiceRequest,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, OtelRow>,
) -> Result<(), DecodeError> {
    for rs in &request.resource_spans {
        let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        // Made once per resource (and scope) and shared by its spans, never copied per span.
        let resource_text = shared(kv_text(resource));
        let res = |key: &str| shared(attr_str(resource, key));
        let (service_name, service_version, service_instance) =
            (res("service.name"), res("service.version"), res("service.instance.id"));
        for ss in &rs.scope_spans {
            let (scope_name, scope_version) =
                ss.scope.as_ref().map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            let (scope_name, scope_version) = (shared(scope_name.to_owned()), shared(scope_version.to_owned()));
            rows.reserve(ss.spans.len());
            for span in &ss.spans {
                let events: Vec<Value> = span
                    .events
                    .iter()
                    .map(|e| {
                        serde_json::json!({"time_unix_nano": e.time_unix_nano, "name": e.name, "attributes": kv_list(&e.attributes)})
                    })
                    .collect();
                let links: Vec<Value> = span
                    .links
                    .iter()
                    .map(|l| {
                        serde_json::json!({"trace_id": hex(&l.trace_id), "span_id": hex(&l.span_id), "attributes": kv_list(&l.attributes)})
                    })
                    .collect();
                let mut row = SpanRow {
                    timestamp: nanos(span.start_time_unix_nano).unwrap_or(msg.published),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind,
                    start_time_unix_nano: i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX),
                    end_time_unix_nano: i64::try_from(span.end_time_unix_nano).unwrap_or(i64::MAX),
                    service_name: service_name.clone(),
                    service_version: service_version.clone(),
                    service_instance: service_instance.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    status_code: span.status.as_ref().map_or(0, |s| s.code),
                    status_message: span.status.as_ref().map(|s| s.message.clone()).unwrap_or_default(),
                    attributes: kv_text(&span.attributes),
                    resource_attributes: resource_text.clone(),
                    events: Value::Array(events).to_string(),
                    links: Value::Array(links).to_string(),
                };
                clean_span(&mut row);
                rows.push(OtelRow::Span(row))?;
            }
        }
    }
    Ok(())
}

fn s(map: &Map<String, Value>, key: &str) -> String {
    match map.get(key) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn text_or_json(map: &Map<String, Value>, key: &str, empty: &str) -> String {
    match map.get(key) {
        None | Some(Value::Null) => empty.to_owned(),
        Some(Value::String(v)) => v.clone(),
        Some(v) => v.to_string(),
    }
}

fn time_of(map: &Map<String, Value>, key: &str) -> Option<DateTime<Utc>> {
    let raw = serde_json::value::to_raw_value(map.get(key)?).ok()?;
    parse_timestamp(&raw).ok().flatten()
}

fn decode_json_spans(msg: &Incoming<'_>, rows: &mut Rows<'_, OtelRow>) -> Result<(), DecodeError> {
    each_object(msg.payload, "span", |_, map, _| {
        let span_id = s(map, "span_id");
        if span_id.is_empty() {
            return Err(DecodeError::new("span_id: required and missing"));
        }
        let int = |key: &str| map.get(key).and_then(Value::as_i64).unwrap_or(0);
        let start = int("start_time_unix_nano");
        let mut row = SpanRow {
            timestamp: time_of(map, "timestamp").or_else(|| nanos(start.max(0) as u64)).unwrap_or(msg.published),
            trace_id: s(map, "trace_id"),
            span_id,
            parent_span_id: s(map, "parent_span_id"),
            name: s(map, "name"),
            kind: i32::try_from(int("kind")).unwrap_or(0),
            start_time_unix_nano: start,
            end_time_unix_nano: int("end_time_unix_nano"),
            service_name: shared(s(map, "service_name")),
            service_version: shared(s(map, "service_version")),
            service_instance: shared(s(map, "service_instance")),
            scope_name: shared(s(map, "scope_name")),
            scope_version: shared(s(map, "scope_version")),
            status_code: i32::try_from(int("status_code")).unwrap_or(0),
            status_message: s(map, "status_message"),
            attributes: text_or_json(map, "attributes", ""),
            resource_attributes: shared(text_or_json(map, "resource_attributes", "")),
            events: text_or_json(map, "events", "[]"),
            links: text_or_json(map, "links", "[]"),
        };
        clean_span(&mut row);
        rows.push(OtelRow::Span(row))
    })
}

/// NULs replaced (see [`super::json::NUL_REPLACEMENT`]) in the text a span owns; shared fields are cleaned once
/// by [`shared`]. These columns are `text`, so a raw NUL is all there is to replace.
fn clean_span(r: &mut SpanRow) {
    for v in [
        &mut r.trace_id,
        &mut r.span_id,
        &mut r.parent_span_id,
        &mut r.name,
        &mut r.attributes,
        &mut r.events,
        &mut r.links,
        &mut r.status_message,
    ] {
        clean_text(v);
    }
}

// --------------------------------------------------------------------------------------------------------------
// Metrics
// --------------------------------------------------------------------------------------------------------------

/// A short, stable hash of a data point's attributes (order-insensitive); `""` when it has none.
pub fn attributes_key(attrs: &[KeyValue]) -> String {
    if attrs.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = attrs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map(super::logs::any_text).unwrap_or_default()))
        .collect();
    pairs.sort();
    let mut h = Md5::new();
    for (k, v) in &pairs {
        h.update(k.len().to_be_bytes());
        h.update(k.as_bytes());
        h.update(v.len().to_be_bytes());
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// One OTLP data point, whatever its kind: what a row needs of it.
struct Point<'a> {
    kind: &'static str,
    attrs: &'a [KeyValue],
    time: u64,
    start: u64,
    value: Option<f64>,
}

/// What the points of one metric share: its resource's service, its name and unit (made once per metric).
struct MetricShared {
    service: Arc<str>,
    name: Arc<str>,
    unit: Arc<str>,
}

fn metric_row(m: &MetricShared, p: &Point<'_>, msg: &Incoming<'_>) -> MetricRow {
    let (kind, attrs, time, start, value) = (p.kind, p.attrs, p.time, p.start, p.value);
    let a = |keys: &[&str]| {
        keys.iter().map(|k| attr_str(attrs, k)).find(|v| !v.is_empty()).unwrap_or_else(|| {
            // Status codes often come as integers.
            keys.iter()
                .find_map(|k| attrs.iter().find(|kv| kv.key == *k))
                .and_then(|kv| kv.value.as_ref().map(any_plain))
                .unwrap_or_default()
        })
    };
    let mut row = MetricRow {
        timestamp: nanos(time).or_else(|| nanos(start)).unwrap_or(msg.published),
        trace_id: String::new(),
        span_id: attributes_key(attrs),
        service_name: m.service.clone(),
        span_name: m.name.clone(),
        span_kind: a(&["span.kind"]),
        duration_ms: value,
        duration_seconds: value.map(|v| v / 1000.0),
        metric_type: kind.to_owned(),
        http_method: a(&["http.method", "http.request.method"]),
        http_route: a(&["http.route"]),
        http_status_code: a(&["http.status_code", "http.response.status_code"]),
        grpc_service: a(&["rpc.service", "grpc.service"]),
        grpc_method: a(&["rpc.method", "grpc.method"]),
        grpc_status_code: a(&["rpc.grpc.status_code", "grpc.status_code"]),
        is_slow: false,
        component: a(&["component"]),
        level: a(&["level"]),
        unit: m.unit.clone(),
    };
    clean_metric(&mut row);
    row
}

fn decode_otlp_metrics(
    request: &ExportMetricsServiceRequest,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, OtelRow>,
) -> Result<(), DecodeError> {
    for rm in &request.resource_metrics {
        let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let service = shared(attr_str(resource, "service.name"));
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let one = MetricShared {
                    service: service.clone(),
                    name: shared(m.name.clone()),
                    unit: shared(m.unit.clone()),
                };
                let mut push = |kind: &'static str, attrs: &[KeyValue], time: u64, start: u64, value: Option<f64>| {
                    let point = Point { kind, attrs, time, start, value };
                    rows.push(OtelRow::Metric(metric_row(&one, &point, msg)))
                };
                let number = |v: &Option<number_data_point::Value>| match v {
                    Some(number_data_point::Value::AsDouble(d)) => Some(*d),
                    Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
                    None => None,
                };
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        for p in &g.data_points {
                            push("gauge", &p.attributes, p.time_unix_nano, p.start_time_unix_nano, number(&p.value))?;
                        }
                    }
                    Some(metric::Data::Sum(s)) => {
                        for p in &s.data_points {
                            push("sum", &p.attributes, p.time_unix_nano, p.start_time_unix_nano, number(&p.value))?;
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for p in &h.data_points {
                            push("histogram", &p.attributes, p.time_unix_nano, p.start_time_unix_nano, p.sum)?;
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            push(
                                "exponential_histogram",
                                &p.attributes,
                                p.time_unix_nano,
                                p.start_time_unix_nano,
                                p.sum,
                            )?;
                        }
                    }
                    Some(metric::Data::Summary(s)) => {
                        for p in &s.data_points {
                            push("summary", &p.attributes, p.time_unix_nano, p.start_time_unix_nano, Some(p.sum))?;
                        }
                    }
                    None => {}
                }
            }
        }
    }
    Ok(())
}

/// `PerformanceMetric` JSON (the collector's derived metrics), one object or an array.
fn decode_json_metrics(msg: &Incoming<'_>, rows: &mut Rows<'_, OtelRow>) -> Result<(), DecodeError> {
    each_object(msg.payload, "metric", |_, map, _| {
        let num = |key: &str| match map.get(key) {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(v)) => v.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        let duration_ms = num("duration_ms");
        let mut row = MetricRow {
            timestamp: time_of(map, "timestamp").unwrap_or(msg.published),
            trace_id: s(map, "trace_id"),
            span_id: s(map, "span_id"),
            service_name: shared(s(map, "service_name")),
            span_name: shared(s(map, "span_name")),
            span_kind: s(map, "span_kind"),
            duration_ms,
            duration_seconds: num("duration_seconds").or(duration_ms.map(|v| v / 1000.0)),
            metric_type: s(map, "metric_type"),
            http_method: s(map, "http_method"),
            http_route: s(map, "http_route"),
            http_status_code: s(map, "http_status_code"),
            grpc_service: s(map, "grpc_service"),
            grpc_method: s(map, "grpc_method"),
            grpc_status_code: s(map, "grpc_status_code"),
            is_slow: map.get("is_slow").and_then(Value::as_bool).unwrap_or(false),
            component: s(map, "component"),
            level: s(map, "level"),
            unit: shared(s(map, "unit")),
        };
        clean_metric(&mut row);
        rows.push(OtelRow::Metric(row))
    })
}

/// NULs replaced (see [`super::json::NUL_REPLACEMENT`]) in the text a point owns.
fn clean_metric(m: &mut MetricRow) {
    for v in [
        &mut m.trace_id,
        &mut m.span_id,
        &mut m.span_kind,
        &mut m.metric_type,
        &mut m.http_method,
        &mut m.http_route,
        &mut m.http_status_code,
        &mut m.grpc_service,
        &mut m.grpc_method,
        &mut m.grpc_status_code,
        &mut m.component,
        &mut m.level,
    ] {
        clean_text(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::proto::common::Resource;
    use crate::processor::proto::metrics::*;
    use crate::processor::proto::trace::*;
    use chrono::TimeZone;

    fn decode(subject: &str, payload: &[u8]) -> Result<Vec<OtelRow>, DecodeError> {
        let msg = Incoming {
            subject,
            payload,
            published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            stream: "events",
            sequence: 1,
        };
        let mut rows = Vec::new();
        Otel::new("platform").decode(&msg, &mut Rows::new(&mut rows, crate::processor::Limits::NONE)).map(|()| rows)
    }

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }) }
    }

    fn metrics_of(rows: Vec<OtelRow>) -> Vec<MetricRow> {
        rows.into_iter().map(|r| if let OtelRow::Metric(m) = r { m } else { panic!("not a metric") }).collect()
    }

    #[test]
    fn sample_16_json_span() {
        let payload = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/samples/16_otel.traces__elixir_otel_traces_test_json.json"
        ))
        .unwrap();
        let rows = decode("otel.traces", &payload).unwrap();
        let OtelRow::Span(r) = &rows[0] else { panic!() };
        assert_eq!(
            (r.trace_id.as_str(), r.span_id.as_str(), r.parent_span_id.as_str()),
            ("trace-abc123", "span-def456", "span-parent")
        );
        assert_eq!((r.name.as_str(), r.kind, r.status_code), ("HTTP GET /api/users", 2, 1));
        assert_eq!(r.timestamp, Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).unwrap());
        assert_eq!(r.attributes, r#"{"http.method":"GET","http.url":"/api/users"}"#);
        assert_eq!(r.links, "[]");
    }

    #[test]
    fn otlp_spans() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", any_value::Value::StringValue("api".into()))],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "GET /".into(),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_500_000_000,
                        attributes: vec![kv("http.status_code", any_value::Value::IntValue(200))],
                        events: vec![span::Event {
                            time_unix_nano: 5,
                            name: "retry".into(),
                            attributes: vec![kv("n", any_value::Value::IntValue(1))],
                        }],
                        status: Some(Status { message: "ok".into(), code: 1 }),
                        ..Default::default()
                    }],
                }],
            }],
        };
        let rows = decode("otel.traces.raw", &request.encode_to_vec()).unwrap();
        let OtelRow::Span(r) = &rows[0] else { panic!() };
        assert_eq!(r.trace_id, "01".repeat(16));
        assert_eq!(r.parent_span_id, "");
        assert_eq!(&*r.service_name, "api");
        assert_eq!(r.attributes, "http.status_code=200");
        assert_eq!(r.events, r#"[{"attributes":["n=1"],"name":"retry","time_unix_nano":5}]"#);
        assert_eq!((r.status_code, r.status_message.as_str()), (1, "ok"));
    }

    #[test]
    fn only_the_message_own_metric_rows_are_checked_not_the_whole_open_batch() {
        // The rows vector is the open batch; re-checking all of it for every message made batches quadratic.
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: None,
                scope_metrics: vec![ScopeMetrics {
                    scope: None,
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint { time_unix_nano: 1, ..Default::default() }],
                        })),
                        ..Default::default()
                    }],
                }],
            }],
        };
        let msg = Incoming {
            subject: "otel.metrics",
            payload: &request.encode_to_vec(),
            published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            stream: "events",
            sequence: 1,
        };
        let mut rows = Vec::new();
        let limits = crate::processor::Limits::NONE;
        Otel::new("platform").decode(&msg, &mut Rows::new(&mut rows, limits)).unwrap();
        // The open batch's rows are not this message's: decoding appends after them and touches none.
        if let OtelRow::Metric(m) = &mut rows[0] {
            m.span_name = "earlier".into();
        }
        let mut sink = Rows::new(&mut rows, limits);
        Otel::new("platform").decode(&msg, &mut sink).unwrap();
        assert_eq!(sink.added().len(), 1);
        assert_eq!(rows.len(), 2);
        assert!(matches!(&rows[0], OtelRow::Metric(m) if &*m.span_name == "earlier"));
    }

    #[test]
    fn otlp_metrics_of_every_kind_with_distinct_keys_per_attribute_set() {
        let point = |route: &str, v: f64| NumberDataPoint {
            attributes: vec![kv("http.route", any_value::Value::StringValue(route.into()))],
            time_unix_nano: 1_700_000_000_000_000_000,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", any_value::Value::StringValue("api".into()))],
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: None,
                    metrics: vec![
                        Metric {
                            name: "requests".into(),
                            unit: "1".into(),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![point("/a", 1.0), point("/b", 2.0)],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "bytes".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    value: Some(number_data_point::Value::AsInt(7)),
                                    time_unix_nano: 1,
                                    ..Default::default()
                                }],
                                ..Default::default()
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "latency".into(),
                            unit: "ms".into(),
                            data: Some(metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    sum: Some(12.5),
                                    count: 3,
                                    time_unix_nano: 1,
                                    ..Default::default()
                                }],
                                ..Default::default()
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "exp".into(),
                            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![ExponentialHistogramDataPoint {
                                    sum: Some(4.0),
                                    time_unix_nano: 1,
                                    ..Default::default()
                                }],
                                ..Default::default()
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "quantiles".into(),
                            data: Some(metric::Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint {
                                    sum: 9.0,
                                    count: 2,
                                    time_unix_nano: 1,
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                    ],
                }],
            }],
        };
        let rows = metrics_of(decode("otel.metrics.raw", &request.encode_to_vec()).unwrap());
        let kinds: Vec<&str> = rows.iter().map(|r| r.metric_type.as_str()).collect();
        assert_eq!(kinds, ["gauge", "gauge", "sum", "histogram", "exponential_histogram", "summary"]);
        assert_ne!(rows[0].span_id, rows[1].span_id, "two attribute sets, two keys");
        assert_eq!(rows[0].span_id.len(), 16);
        assert_eq!((rows[0].http_route.as_str(), &*rows[0].unit, &*rows[0].service_name), ("/a", "1", "api"));
        assert_eq!(rows[2].duration_ms, Some(7.0));
        assert_eq!(rows[3].duration_ms, Some(12.5));
        assert_eq!(rows[3].duration_seconds, Some(0.0125));
        assert_eq!(rows[5].duration_ms, Some(9.0));
        assert_eq!(rows[2].span_id, "", "no attributes, no key suffix");
    }

    #[test]
    fn attribute_keys_ignore_order() {
        let a = [kv("x", any_value::Value::IntValue(1)), kv("y", any_value::Value::StringValue("z".into()))];
        let b = [a[1].clone(), a[0].clone()];
        assert_eq!(attributes_key(&a), attributes_key(&b));
        assert_ne!(attributes_key(&a), attributes_key(&a[..1]));
    }

    #[test]
    fn sample_15_and_derived_arrays() {
        let payload = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/samples/15_otel.metrics__elixir_otel_metrics_test_json.json"
        ))
        .unwrap();
        let r = &metrics_of(decode("otel.metrics", &payload).unwrap())[0];
        assert_eq!(
            (&*r.service_name, &*r.span_name, r.span_kind.as_str()),
            ("test-service", "test-operation", "SERVER")
        );
        assert_eq!((r.duration_ms, r.duration_seconds), (Some(150.5), Some(0.1505)));
        assert_eq!(
            (r.http_method.as_str(), r.http_route.as_str(), r.http_status_code.as_str()),
            ("GET", "/api/test", "200")
        );
        let rows = metrics_of(
            decode("otel.metrics.derived", br#"[{"timestamp":"2024-01-15T10:30:00Z","span_name":"a","service_name":"s","span_id":"1","duration_ms":5,"is_slow":true},{"span_name":"b","span_id":"2"}]"#).unwrap(),
        );
        assert_eq!(rows.len(), 2);
        assert!(rows[0].is_slow);
    }

    #[test]
    fn bad_payloads_say_why() {
        assert!(decode("otel.logs", b"{}").unwrap_err().message.contains("neither traces nor metrics"));
        assert!(decode("otel.traces", b"\x0a\xff").unwrap_err().message.contains("ExportTraceServiceRequest"));
        assert!(decode("otel.metrics", b"\x0a\xff").unwrap_err().message.contains("ExportMetricsServiceRequest"));
        assert!(decode("otel.traces", br#"{"name": "no id"}"#).unwrap_err().message.contains("span_id"));
        assert!(decode("otel.metrics", b"[1]").unwrap_err().message.contains("JSON object"));
    }
}

//! Span samples → `otel_metrics` rows (reference §3.3, reference-today §4.8, §6.2): OTLP
//! `ExportMetricsServiceRequest` protobuf on `otel.metrics` (every point kind, each attribute set its own row),
//! ServiceRadar's derived span metrics as a `serviceradar.metric.v1` `MetricBatch` (what the collector publishes
//! on `otel.metrics.derived` today, mapped as its Elixir writer maps them), and the `PerformanceMetric` JSON of
//! older collectors. Every row carries the message's `Sr-*` attribution.
//!
//! Uses the otel rows, the processor api, the shared JSON and OTLP helpers and the prost messages.

use std::sync::Arc;

use md5::{Digest, Md5};
use serde_json::Value;

use super::row::{MetricRow, OtelRow, shared};
use crate::processor::api::IngestColumns;
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::json::{clean_text, each_object, field_text as s, time_field as time_of};
use crate::processor::otlp::id::{self};
use crate::processor::otlp::tree::{map_of, string_attr};
use crate::processor::otlp::{nanos, scalar_text};
use crate::processor::proto::common::{AnyValue, KeyValue, any_value};
use crate::processor::proto::metric::MetricBatch;
use crate::processor::proto::metrics::{ExportMetricsServiceRequest, metric, number_data_point};

/// A short, stable hash of a data point's attributes (order-insensitive); `""` when it has none.
pub fn attributes_key(attrs: &[KeyValue]) -> String {
    if attrs.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> =
        attrs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(key_text).unwrap_or_default())).collect();
    pairs.sort();
    let mut h = Md5::new();
    for (k, v) in &pairs {
        h.update(k.len().to_be_bytes());
        h.update(k.as_bytes());
        h.update(v.len().to_be_bytes());
        h.update(v.as_bytes());
    }
    crate::hex::encode(&h.finalize()[..8])
}

/// The text of a value in [`attributes_key`]: strings as they are, other kinds as serde_json writes them (bytes
/// as hex). Frozen: the key is stored, so this text must not change with how attributes are displayed.
fn key_text(v: &AnyValue) -> String {
    fn json(v: &AnyValue) -> Value {
        match &v.value {
            None => Value::Null,
            Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
            Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
            Some(any_value::Value::IntValue(i)) => Value::from(*i),
            Some(any_value::Value::DoubleValue(d)) => {
                serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
            }
            Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
            Some(any_value::Value::KvlistValue(kvs)) => Value::Object(
                kvs.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json))).collect(),
            ),
            Some(any_value::Value::BytesValue(b)) => Value::String(crate::hex::encode(b)),
        }
    }
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => json(v).to_string(),
        None => String::new(),
    }
}

/// One OTLP data point, whatever its kind: what a row needs of it.
struct Point<'a> {
    kind: &'static str,
    attrs: &'a [KeyValue],
    time: u64,
    start: u64,
    value: Option<f64>,
}

/// What the points of one metric share: its resource's service, its name and unit (made once per metric), and
/// the message's attribution.
struct MetricShared {
    service: Arc<str>,
    name: Arc<str>,
    unit: Arc<str>,
    ingest: IngestColumns,
}

fn metric_row(m: &MetricShared, p: &Point<'_>, msg: &Incoming<'_>) -> MetricRow {
    let (kind, attrs, time, start, value) = (p.kind, p.attrs, p.time, p.start, p.value);
    // The Go writer's keys first (the last attribute of a key wins, as its loop overwrites), then the newer
    // semantic-convention names; scalars as text, zero and false kept.
    let a = |keys: &[&str]| {
        keys.iter().find_map(|k| attrs.iter().rev().find(|kv| kv.key == *k).map(scalar_text)).unwrap_or_default()
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
        ingest: m.ingest.clone(),
    };
    clean_metric(&mut row);
    row
}

pub fn decode_otlp_metrics(
    request: &ExportMetricsServiceRequest,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, OtelRow>,
) -> Result<(), DecodeError> {
    let ingest = msg.attribution().columns();
    for rm in &request.resource_metrics {
        // A nil resource is valid OTLP: service "unknown" (the Go writer today).
        let service = match &rm.resource {
            None => Arc::from("unknown"),
            Some(r) => shared(string_attr(&map_of(&r.attributes), &["service.name", "service_name"]).to_owned()),
        };
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let one = MetricShared {
                    service: service.clone(),
                    name: shared(m.name.clone()),
                    unit: shared(m.unit.clone()),
                    ingest: ingest.clone(),
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

/// `PerformanceMetric` JSON (older collectors' derived metrics), one object or an array.
pub fn decode_json_metrics(msg: &Incoming<'_>, rows: &mut Rows<'_, OtelRow>) -> Result<(), DecodeError> {
    let ingest = msg.attribution().columns();
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
            ingest: ingest.clone(),
        };
        clean_metric(&mut row);
        rows.push(OtelRow::Metric(row))
    })
}

/// The collector's derived span metrics as a `MetricBatch`: one row per point, as ServiceRadar's Elixir writer
/// maps them (the Go writer cannot read them): span fields from the point's attributes, ids and the rest from its
/// metadata; the point's value is the duration in ms.
pub fn decode_derived(
    batch: &MetricBatch,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, OtelRow>,
) -> Result<(), DecodeError> {
    let ingest = msg.attribution().columns();
    for m in &batch.metrics {
        let unit = shared(m.unit.clone());
        rows.reserve(m.points.len());
        for p in &m.points {
            // entries_to_map: the last of a duplicate key wins.
            let attr = |k: &str| p.attributes.iter().rev().find(|e| e.key == k).map(|e| e.value.as_str());
            let meta = |k: &str| p.metadata.iter().rev().find(|e| e.key == k).map(|e| e.value.as_str());
            let owned = |v: Option<&str>| v.unwrap_or("").to_owned();
            let id_of = |k: &str, len| id::normalize(meta(k).unwrap_or("").as_bytes(), len).text().unwrap_or_default();
            let timestamp = nanos(p.observed_at_unix_nano)
                .or_else(|| {
                    meta("timestamp").and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc())
                })
                .unwrap_or(msg.published);
            let mut row = MetricRow {
                timestamp,
                trace_id: id_of("trace_id", id::TRACE),
                span_id: id_of("span_id", id::SPAN),
                service_name: shared(attr("service_name").unwrap_or("unknown").to_owned()),
                span_name: shared(attr("span_name").unwrap_or("unknown").to_owned()),
                span_kind: owned(attr("span_kind")),
                duration_ms: Some(p.value),
                duration_seconds: meta("duration_seconds").and_then(leading_float),
                metric_type: meta("metric_type").map_or_else(|| m.metric_type.clone(), str::to_owned),
                http_method: owned(attr("http_method")),
                http_route: owned(attr("http_route")),
                http_status_code: owned(attr("http_status_code")),
                grpc_service: owned(attr("grpc_service")),
                grpc_method: owned(attr("grpc_method")),
                grpc_status_code: owned(attr("grpc_status_code")),
                is_slow: meta("is_slow").is_some_and(|v| v.eq_ignore_ascii_case("true")),
                component: owned(meta("component")),
                level: owned(meta("level")),
                unit: unit.clone(),
                ingest: ingest.clone(),
            };
            clean_metric(&mut row);
            rows.push(OtelRow::Metric(row))?;
        }
    }
    Ok(())
}

/// Elixir's `Float.parse`: the leading number of the text (`"0.1505"`, `"12ms"` → 12.0), finite.
fn leading_float(s: &str) -> Option<f64> {
    let s = s.trim_start();
    let end = s
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_digit()
                || matches!(c, '.' | 'e' | 'E')
                || (matches!(c, '-' | '+') && (*i == 0 || s[..*i].ends_with(['e', 'E'])))
        })
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    (1..=end).rev().find_map(|n| s[..n].parse::<f64>().ok()).filter(|f| f.is_finite())
}

/// NULs replaced (see [`crate::processor::json::NUL_REPLACEMENT`]) in the text a point owns.
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

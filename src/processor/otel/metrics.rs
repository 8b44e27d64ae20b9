//! Metrics (reference §3.3): OTLP `ExportMetricsServiceRequest` protobuf (every point kind, each attribute set
//! its own row) and the collector's `PerformanceMetric` JSON → `otel_metrics` rows.
//!
//! Uses the otel rows, the processor api, the shared JSON and OTLP helpers and the prost messages.

use std::sync::Arc;

use md5::{Digest, Md5};
use serde_json::Value;

use super::row::{MetricRow, OtelRow, shared};
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::json::{clean_text, each_object, field_text as s, time_field as time_of};
use crate::processor::otlp::{any_plain, any_text, attr_str, nanos};
use crate::processor::proto::common::KeyValue;
use crate::processor::proto::metrics::{ExportMetricsServiceRequest, metric, number_data_point};

/// A short, stable hash of a data point's attributes (order-insensitive); `""` when it has none.
pub fn attributes_key(attrs: &[KeyValue]) -> String {
    if attrs.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> =
        attrs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(any_text).unwrap_or_default())).collect();
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

pub fn decode_otlp_metrics(
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
pub fn decode_json_metrics(msg: &Incoming<'_>, rows: &mut Rows<'_, OtelRow>) -> Result<(), DecodeError> {
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

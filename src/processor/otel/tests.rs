//! OpenTelemetry decoding: sample 16, OTLP spans and every metric kind, PerformanceMetric JSON, attribute keys.

use chrono::{TimeZone, Utc};
use prost::Message as _;

use super::metrics::attributes_key;
use super::*;
use crate::processor::api::{DecodeError, Incoming, Processor, Rows};
use crate::processor::proto::common::{AnyValue, KeyValue, any_value};

use crate::processor::proto::common::Resource;
use crate::processor::proto::metrics::*;
use crate::processor::proto::trace::*;

fn decode(subject: &str, payload: &[u8]) -> Result<Vec<OtelRow>, DecodeError> {
    let msg = Incoming {
        subject,
        payload,
        published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
        stream: "events",
        sequence: 1,
        headers: crate::processor::api::Headers::NONE,
        reply: "",
    };
    let mut rows = Vec::new();
    Otel::new(&crate::config::DatabaseConfig::for_schema("platform"))
        .decode(&msg, &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
        .map(|()| rows)
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
    // ServiceRadar's own sample carries ids that are no ids ("trace-abc123"): a span it cannot key, skipped (and
    // counted) as its writers drop it; a message of nothing but such spans is a dead letter, not silence.
    let e = decode("otel.traces", &payload).unwrap_err();
    assert!(e.message.contains("none of its 1 span(s) has a valid trace_id and span_id"), "{e}");
    let two = format!(
        "[{}, {}]",
        String::from_utf8(payload.clone()).unwrap(),
        String::from_utf8(payload.clone())
            .unwrap()
            .replace("trace-abc123", &"cd".repeat(16))
            .replace("span-def456", "1122334455667788")
    );
    let (rows, skipped) = decode_counting("otel.traces", two.as_bytes());
    assert_eq!(rows.len(), 1);
    assert_eq!(skipped, [(traces::NO_ID, 1)]);
    // The same span with real ids.
    let text = String::from_utf8(payload)
        .unwrap()
        .replace("trace-abc123", &"ab".repeat(16))
        .replace("span-def456", "0123456789ABCDEF");
    let rows = decode("otel.traces", text.as_bytes()).unwrap();
    let OtelRow::Span(r) = &rows[0] else { panic!() };
    assert_eq!((r.trace_id.as_str(), r.span_id.as_str()), ("ab".repeat(16).as_str(), "0123456789abcdef"));
    assert_eq!(r.parent_span_id, None, "span-parent is no id");
    assert_eq!((r.name.as_str(), r.kind, r.status_code), ("HTTP GET /api/users", 2, 1));
    assert_eq!(r.timestamp, Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).unwrap());
    assert_eq!(r.attributes, r#"{"http.method":"GET","http.url":"/api/users"}"#);
    assert_eq!(r.links, "[]");
}

fn decode_counting(subject: &str, payload: &[u8]) -> (Vec<OtelRow>, Vec<(&'static str, u64)>) {
    let msg = Incoming::bare(subject, payload, Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(), "events", 1);
    let mut rows = Vec::new();
    let mut sink = Rows::new(&mut rows, crate::processor::api::Limits::NONE);
    Otel::new(&crate::config::DatabaseConfig::for_schema("platform")).decode(&msg, &mut sink).unwrap();
    let skipped = sink.skipped().to_vec();
    (rows, skipped)
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
                        dropped_attributes_count: 2,
                    }],
                    links: vec![span::Link {
                        trace_id: vec![3; 16],
                        span_id: vec![],
                        trace_state: "k=v".into(),
                        attributes: vec![kv("ok", any_value::Value::BoolValue(false))],
                    }],
                    trace_state: "vendor=1".into(),
                    dropped_events_count: 4,
                    status: Some(Status { message: "ok".into(), code: 1 }),
                    ..Default::default()
                }],
            }],
        }],
    };
    let rows = decode("otel.traces.raw", &request.encode_to_vec()).unwrap();
    let OtelRow::Span(r) = &rows[0] else { panic!() };
    assert_eq!(r.trace_id, "01".repeat(16));
    assert_eq!(r.parent_span_id, None, "a root span's parent is NULL");
    assert_eq!(&*r.service_name, "api");
    assert_eq!(r.attributes, r#"{"http.status_code":200}"#);
    assert_eq!(r.events, r#"[{"attributes":{"n":1},"dropped_attributes_count":2,"name":"retry","time_unix_nano":5}]"#);
    assert_eq!(
        r.links,
        format!(
            r#"[{{"attributes":{{"ok":false}},"span_id":null,"trace_id":"{}","trace_state":"k=v"}}]"#,
            "03".repeat(16)
        )
    );
    assert_eq!((r.status_code, r.status_message.as_str()), (1, "ok"));
    assert_eq!((r.trace_state.as_deref(), r.dropped_events_count), (Some("vendor=1"), 4));
    assert_eq!(r.scope_attributes, None, "no scope: NULL");
    assert_eq!(&*r.resource_attributes, r#"{"service.name":"api"}"#);
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
        headers: crate::processor::api::Headers::NONE,
        reply: "",
    };
    let mut rows = Vec::new();
    let limits = crate::processor::api::Limits::NONE;
    Otel::new(&crate::config::DatabaseConfig::for_schema("platform"))
        .decode(&msg, &mut Rows::new(&mut rows, limits))
        .unwrap();
    // The open batch's rows are not this message's: decoding appends after them and touches none.
    if let OtelRow::Metric(m) = &mut rows[0] {
        m.span_name = "earlier".into();
    }
    let mut sink = Rows::new(&mut rows, limits);
    Otel::new(&crate::config::DatabaseConfig::for_schema("platform")).decode(&msg, &mut sink).unwrap();
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
    let rows = metrics_of(decode("otel.metrics", &request.encode_to_vec()).unwrap());
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
    assert_eq!((&*r.service_name, &*r.span_name, r.span_kind.as_str()), ("test-service", "test-operation", "SERVER"));
    assert_eq!((r.duration_ms, r.duration_seconds), (Some(150.5), Some(0.1505)));
    assert_eq!(
        (r.http_method.as_str(), r.http_route.as_str(), r.http_status_code.as_str()),
        ("GET", "/api/test", "200")
    );
    let rows = metrics_of(
        decode("otel.metrics.derived", br#"[{"timestamp":"2024-01-15T10:30:00Z","span_name":"a","service_name":"s","span_id":"1","duration_ms":5,"is_slow":true},{"span_name":"b","span_id":"2"}]"#).unwrap(),
    );
    // Older collectors' JSON on otel.metrics.derived is still taken (ServiceRadar's Elixir writer refuses it).
    assert_eq!(rows.len(), 2);
    assert!(rows[0].is_slow);
}

#[test]
fn bad_payloads_say_why() {
    assert!(decode("otel.logs", b"{}").unwrap_err().message.contains("neither traces nor metrics"));
    assert!(decode("otel.traces", b"\x0a\xff").unwrap_err().message.contains("ExportTraceServiceRequest"));
    assert!(decode("otel.metrics", b"\x0a\xff").unwrap_err().message.contains("ExportMetricsServiceRequest"));
    assert!(decode("otel.traces", br#"{"name": "no id"}"#).unwrap_err().message.contains("span_id"));
    assert!(decode("otel.metrics.raw", br#"{"name": "json"}"#).unwrap_err().message.contains("not JSON"));
    assert!(decode("otel.metrics.derived", b"\x0a\x16serviceradar.metric.v9").unwrap_err().message.contains("v9"));
    assert!(decode("otel.metrics", b"[1]").unwrap_err().message.contains("JSON object"));
}

mod today;

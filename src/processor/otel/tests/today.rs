//! ServiceRadar today (reference-today §4–§7): OTLP data points to `otel_metric_points`, derived span metrics as a
//! `MetricBatch`, `Sr-*` attribution, and the routing by subject. Ported from ServiceRadar's
//! `otelmetricpoints_test.go` (index id 69654358923) and `otel_metrics_test.exs` (67380183610).

use chrono::{TimeZone, Utc};
use prost::Message as _;

use super::super::*;
use crate::processor::api::{Headers, Incoming, Processor, Rows};
use crate::processor::proto::common::{AnyValue, InstrumentationScope, KeyValue, Resource, any_value};
use crate::processor::proto::metrics::*;

const POINT_TIME: u64 = 1_705_315_800_123_456_789;

fn s(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }) }
}

fn decode_with(subject: &str, payload: &[u8], headers: Option<&async_nats::HeaderMap>) -> Vec<OtelRow> {
    let msg = Incoming {
        headers: Headers::of(headers),
        ..Incoming::bare(subject, payload, Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(), "events", 1)
    };
    let mut rows = Vec::new();
    Otel::new(&crate::config::DatabaseConfig::for_schema("platform"))
        .decode(&msg, &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
        .unwrap();
    rows
}

fn points(subject: &str, request: &ExportMetricsServiceRequest) -> Vec<PointRow> {
    decode_with(subject, &request.encode_to_vec(), None)
        .into_iter()
        .map(|r| if let OtelRow::Point(p) = r { p } else { panic!("not a point: {r:?}") })
        .collect()
}

/// `buildMetricPointsResource` / `build_metrics_request`: one sum, one gauge, one histogram.
fn parity_request() -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![s("service.name", "metrics-service")] }),
            scope_metrics: vec![ScopeMetrics {
                scope: None,
                metrics: vec![
                    Metric {
                        name: "falcosecurity_falcosidekick_outputs".into(),
                        unit: "1".into(),
                        data: Some(metric::Data::Sum(Sum {
                            aggregation_temporality: 2,
                            is_monotonic: true,
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: POINT_TIME,
                                value: Some(number_data_point::Value::AsInt(42)),
                                attributes: vec![s("destination", "slack")],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "process_cpu_usage".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: POINT_TIME,
                                value: Some(number_data_point::Value::AsDouble(0.5)),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "http_request_duration".into(),
                        unit: "ms".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            aggregation_temporality: 1,
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: POINT_TIME,
                                count: 10,
                                sum: Some(123.5),
                                bucket_counts: vec![1, 2, 7],
                                explicit_bounds: vec![10.0, 100.0],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                ],
            }],
        }],
    }
}

#[test]
fn metric_points_match_both_serviceradar_writers() {
    let rows = points("otel.metrics.raw", &parity_request());
    assert_eq!(rows.len(), 3);
    let micros = Utc.timestamp_micros(1_705_315_800_123_456).unwrap();
    for r in &rows {
        assert_eq!(r.timestamp, micros, "truncated to the microsecond");
        assert_eq!((&*r.service_name, &*r.service_instance_id, &*r.scope_name), ("metrics-service", "", ""));
        assert_eq!(r.start_time_unix_nano, None);
    }
    let (sum, gauge, hist) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!((&*sum.metric_name, sum.metric_type), ("falcosecurity_falcosidekick_outputs", "sum"));
    assert_eq!((sum.unit.as_deref(), sum.temporality, sum.is_monotonic), (Some("1"), Some("cumulative"), Some(true)));
    assert_eq!((sum.value, sum.count), (Some(42.0), None));
    assert_eq!(sum.attributes, r#"{"destination":"slack"}"#);
    assert_eq!(sum.attributes_hash, "0a400c7afa11f7cb8f6b057bfc2ced04");
    assert_eq!((gauge.unit.as_deref(), gauge.temporality, gauge.is_monotonic), (None, None, None));
    assert_eq!((gauge.value, gauge.attributes.as_str()), (Some(0.5), "{}"));
    assert_eq!(gauge.attributes_hash, "5ad5cc4d26869082efd29c436b57384a");
    assert_eq!((hist.metric_type, hist.unit.as_deref(), hist.temporality), ("histogram", Some("ms"), Some("delta")));
    assert_eq!((hist.value, hist.count, hist.sum), (None, Some(10), Some(123.5)));
    assert_eq!(hist.bucket_counts.as_deref(), Some("[1,2,7]"));
    assert_eq!(hist.explicit_bounds.as_deref(), Some("[10.0,100.0]"));
    assert_eq!(hist.attributes_hash, "5ad5cc4d26869082efd29c436b57384a");
}

#[test]
fn a_nil_resource_keeps_its_points_with_an_empty_service() {
    let mut request = parity_request();
    request.resource_metrics[0].resource = None;
    let rows = points("otel.metrics.raw", &request);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.service_name.is_empty()));
}

#[test]
fn instance_and_scope_fill_their_columns_and_the_hash() {
    let build = |instance: &str, scope: &str| {
        let mut resource = vec![s("service.name", "metrics-service")];
        if !instance.is_empty() {
            resource.push(s("service.instance.id", instance));
        }
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: resource }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope { name: scope.into(), ..Default::default() }),
                    metrics: vec![Metric {
                        name: "hash_probe".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: POINT_TIME,
                                start_time_unix_nano: 1_705_315_000_000_000_000,
                                value: Some(number_data_point::Value::AsDouble(1.0)),
                                attributes: vec![s("destination", "slack")],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                }],
            }],
        };
        points("demo.otel.metrics.raw", &request).remove(0)
    };
    let both = build("instance-1", "scope-a");
    assert_eq!((&*both.service_instance_id, &*both.scope_name), ("instance-1", "scope-a"));
    assert_eq!(both.start_time_unix_nano, Some(1_705_315_000_000_000_000));
    assert_eq!(both.attributes_hash, "26821101abf833b1c4f0704c27412203");
    assert_eq!(build("instance-1", "").attributes_hash, "12fabac8ad8a527d447a7fe53fd5438b");
    assert_eq!(build("", "scope-a").attributes_hash, "152a33a6f1df3a16108b8d8d73f24c10");
    assert_eq!(build("", "").attributes_hash, "0a400c7afa11f7cb8f6b057bfc2ced04");
}

#[test]
fn exponential_histograms_and_summaries_become_rows_not_silence() {
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: None,
            scope_metrics: vec![ScopeMetrics {
                scope: None,
                metrics: vec![
                    Metric {
                        name: "latency_expo".into(),
                        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                time_unix_nano: POINT_TIME,
                                count: 4,
                                sum: Some(2.5),
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "latency_summary".into(),
                        data: Some(metric::Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                time_unix_nano: POINT_TIME,
                                count: 3,
                                sum: 9.0,
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                ],
            }],
        }],
    };
    let rows = points("otel.metrics.raw", &request);
    type Seen<'a> = (&'a str, Option<&'a str>, Option<i64>, Option<f64>, Option<f64>);
    let got: Vec<Seen<'_>> = rows.iter().map(|r| (r.metric_type, r.temporality, r.count, r.sum, r.value)).collect();
    assert_eq!(
        got,
        [
            ("exponential_histogram", Some("cumulative"), Some(4), Some(2.5), None),
            ("summary", None, Some(3), Some(9.0), None)
        ]
    );
}

#[test]
fn subjects_route_as_the_go_writer_routes_them() {
    assert_eq!(Signal::of("otel.metrics.raw"), Some(Signal::Points));
    assert_eq!(Signal::of("demo.otel.metrics.raw"), Some(Signal::Points));
    assert_eq!(Signal::of("otel.metrics"), Some(Signal::Samples));
    assert_eq!(Signal::of("otel.metrics.derived"), Some(Signal::Samples));
    assert_eq!(Signal::of("otel.traces.raw"), Some(Signal::Traces));
    assert_eq!(Signal::of("otel.logs"), None);
}

/// `derived_metric_payload` of `otel_metrics_test.exs`: the collector's span-derived metric batch.
fn derived(attrs: &[(&str, &str)], meta: &[(&str, &str)], value: f64) -> Vec<u8> {
    use crate::processor::proto::metric as m;
    let e = |pairs: &[(&str, &str)]| -> Vec<m::StringMapEntry> {
        pairs.iter().map(|(k, v)| m::StringMapEntry { key: (*k).into(), value: (*v).into() }).collect()
    };
    m::MetricBatch {
        schema_version: m::SCHEMA_VERSION.into(),
        resource: Some(m::MetricResource {
            service_name: "otel-derived".into(),
            service_type: "otel".into(),
            ..Default::default()
        }),
        ingest_identity: Some(m::IngestIdentity {
            source: "otel-metrics-derived".into(),
            payload_kind: m::SCHEMA_VERSION.into(),
            producer_id: "otel-collector".into(),
            producer_kind: "otel-collector".into(),
            ..Default::default()
        }),
        metrics: vec![m::Metric {
            name: "otel.span.duration_ms".into(),
            metric_type: "otel_span_derived".into(),
            kind: 1,
            unit: "ms".into(),
            points: vec![m::MetricPoint {
                value,
                raw_value: value.to_string(),
                raw_value_type: 1,
                observed_at_unix_nano: 1_705_315_800_000_000_000,
                attributes: e(attrs),
                metadata: e(meta),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

fn samples(rows: Vec<OtelRow>) -> Vec<MetricRow> {
    rows.into_iter().map(|r| if let OtelRow::Metric(m) = r { m } else { panic!("not a sample: {r:?}") }).collect()
}

#[test]
fn derived_metric_batches_become_span_samples_as_serviceradar_maps_them() {
    let payload = derived(
        &[
            ("service_name", "test-service"),
            ("span_name", "test-operation"),
            ("span_kind", "SERVER"),
            ("http_method", "GET"),
            ("http_route", "/api/test"),
            ("http_status_code", "200"),
        ],
        &[
            ("trace_id", "0123456789abcdef0123456789abcdef"),
            ("span_id", "0123456789abcdef"),
            ("duration_seconds", "0.1505"),
            ("metric_type", "http"),
            ("is_slow", "false"),
        ],
        150.5,
    );
    let r = &samples(decode_with("otel.metrics.derived", &payload, None))[0];
    assert_eq!((r.trace_id.as_str(), r.span_id.as_str()), ("0123456789abcdef0123456789abcdef", "0123456789abcdef"));
    assert_eq!((&*r.service_name, &*r.span_name, r.span_kind.as_str()), ("test-service", "test-operation", "SERVER"));
    assert_eq!((r.duration_ms, r.duration_seconds), (Some(150.5), Some(0.1505)));
    assert_eq!((r.metric_type.as_str(), r.http_method.as_str()), ("http", "GET"));
    assert_eq!((r.http_route.as_str(), r.http_status_code.as_str(), r.is_slow), ("/api/test", "200", false));
    assert_eq!(r.timestamp, Utc.timestamp_opt(1_705_315_800, 0).unwrap());
    assert_eq!(&*r.unit, "ms");

    // Upper-case ids are canonicalised; missing fields take ServiceRadar's defaults.
    let payload =
        derived(&[], &[("trace_id", "ABCDEF0123456789ABCDEF0123456789"), ("span_id", "ABCDEF0123456789")], 200.0);
    let r = &samples(decode_with("otel.metrics.derived", &payload, None))[0];
    assert_eq!((r.trace_id.as_str(), r.span_id.as_str()), ("abcdef0123456789abcdef0123456789", "abcdef0123456789"));
    assert_eq!((&*r.service_name, &*r.span_name), ("unknown", "unknown"));
    assert_eq!(r.metric_type, "otel_span_derived");
    let r = &samples(decode_with(
        "otel.metrics.derived",
        &derived(&[("grpc_service", "MyService"), ("grpc_method", "GetData"), ("grpc_status_code", "0")], &[], 1.0),
        None,
    ))[0];
    assert_eq!(
        (r.grpc_service.as_str(), r.grpc_method.as_str(), r.grpc_status_code.as_str()),
        ("MyService", "GetData", "0")
    );
    assert_eq!((r.trace_id.as_str(), r.span_id.as_str()), ("", ""), "no ids");
}

#[test]
fn sr_headers_stamp_every_row_and_absent_ones_are_empty() {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Sr-Ingest-Identity", "spiffe://serviceradar/gateway/gw-1");
    headers.insert("Sr-Agent-Id", "agent-7");
    headers.insert("sr-partition", "site-a");
    let rows = decode_with("otel.metrics.raw", &parity_request().encode_to_vec(), Some(&headers));
    assert_eq!(rows.len(), 3);
    for r in rows {
        let OtelRow::Point(p) = r else { panic!() };
        assert_eq!(
            (&*p.ingest.identity, &*p.ingest.agent_id, &*p.ingest.partition),
            ("spiffe://serviceradar/gateway/gw-1", "agent-7", "site-a"),
            "the partition header is matched ignoring case, as the Elixir writer matches it"
        );
    }
    let r = &samples(decode_with("otel.metrics.derived", &derived(&[], &[], 1.0), None))[0];
    assert_eq!((&*r.ingest.identity, &*r.ingest.agent_id, &*r.ingest.partition), ("", "", ""));
}

//! ServiceRadar as it is today (reference-today.md), end to end against real servers: payloads built the way its
//! publishers build them (protobufs constructed here with prost, its `Sr-*` headers) become exactly the rows its
//! writers store, keys computed independently (the series key by the SQL function in the database, the attributes
//! hash by the recipe written out again here), and a full redelivery of each format adds no row.

mod common;

use common::harness::Harness;
use common::*;
use prost::Message as _;

fn entries(pairs: &[(&str, &str)]) -> Vec<db_event_writer::processor::proto::metric::StringMapEntry> {
    use db_event_writer::processor::proto::metric::StringMapEntry;
    pairs.iter().map(|(k, v)| StringMapEntry { key: (*k).into(), value: (*v).into() }).collect()
}

/// An SNMP interface counter batch as the agent gateway publishes it on `metrics.snmp.<agent>`.
fn snmp_batch() -> Vec<u8> {
    use db_event_writer::processor::proto::metric::*;
    MetricBatch {
        schema_version: SCHEMA_VERSION.into(),
        resource: Some(MetricResource {
            agent_id: "agent-7".into(),
            gateway_id: "gw-1".into(),
            partition: "site-a".into(),
            service_type: "snmp".into(),
            ..Default::default()
        }),
        ingest_identity: Some(IngestIdentity {
            source: "snmp".into(),
            payload_kind: SCHEMA_VERSION.into(),
            producer_id: "agent-7".into(),
            producer_kind: "agent".into(),
            ..Default::default()
        }),
        ingress_id: "0190f7a2-1c3b-8d4e-9f00-123456789abc".into(),
        ingress_timestamp_unix_nano: 1_781_222_400_500_000_000,
        metrics: vec![
            Metric {
                name: "ifHCInOctets".into(),
                metric_type: "snmp".into(),
                kind: 2,
                temporality: 2,
                is_monotonic: true,
                unit: "By".into(),
                counter_width: 64,
                tags: entries(&[("host", "10.0.0.20"), ("target", "router-a"), ("ifName", "ge-0/0/1")]),
                points: vec![MetricPoint {
                    value: 123_456.0,
                    raw_value: "123456".into(),
                    raw_value_type: 3,
                    observed_at_unix_nano: 1_781_222_400_123_456_789,
                    if_index: 7,
                    interface_uid: "router-a:7".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            Metric {
                name: "sysDescr".into(),
                metric_type: "snmp".into(),
                kind: 1,
                points: vec![MetricPoint {
                    raw_value: "Juniper".into(),
                    raw_value_type: 5,
                    metadata: entries(&[("non_numeric", "true")]),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_batch_on_metrics_becomes_todays_timeseries_rows_once() {
    let mut h = Harness::on("telemetry", &["metrics.>"]).await;
    h.publish_with(
        "metrics.snmp.agent-7",
        &[("Nats-Msg-Id", "ingress-1"), ("Sr-Agent-Id", "agent-7"), ("Sr-Partition", "site-a")],
        snmp_batch(),
    )
    .await;
    // May's JSON from an older publisher, on the same stream.
    h.publish(vec![("metrics.legacy".to_owned(), metric(1))]).await;
    h.start();
    h.drained().await;
    let client = h.db.client().await;
    assert_eq!(h.db.count("timeseries_metrics").await, 2, "the non-numeric point is not a row");
    let r = client
        .query_one(
            "SELECT timestamp = '2026-06-12 00:00:00.123456+00'::timestamptz, gateway_id, agent_id, metric_name, \
             metric_type, device_id, value, unit, tags, partition, scale, is_delta, target_device_ip, if_index, \
             metadata, counter_width, series_key, \
             platform.build_timeseries_series_key(metric_type, metric_name, partition, agent_id, device_id, \
               target_device_ip, if_index, tags) \
             FROM platform.timeseries_metrics WHERE metric_name = 'ifHCInOctets'",
            &[],
        )
        .await
        .unwrap();
    assert!(r.get::<_, bool>(0), "observed_at, to the microsecond");
    assert_eq!(r.get::<_, String>(1), "gw-1");
    assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some("agent-7"));
    assert_eq!((r.get::<_, String>(3), r.get::<_, String>(4)), ("ifHCInOctets".into(), "snmp".into()));
    assert_eq!(r.get::<_, Option<String>>(5), None, "no device lookup by IP");
    assert_eq!(r.get::<_, f64>(6), 123_456.0);
    assert_eq!(r.get::<_, Option<String>>(7).as_deref(), Some("By"));
    assert_eq!(
        r.get::<_, serde_json::Value>(8),
        serde_json::json!({"host": "10.0.0.20", "target": "router-a", "ifName": "ge-0/0/1", "source": "snmp",
            "payload_kind": "serviceradar.metric.v1", "producer_id": "agent-7", "producer_kind": "agent",
            "interface_uid": "router-a:7"})
    );
    assert_eq!(r.get::<_, Option<String>>(9).as_deref(), Some("site-a"));
    assert_eq!(r.get::<_, Option<f64>>(10), None);
    assert_eq!(r.get::<_, Option<bool>>(11), Some(false));
    assert_eq!(r.get::<_, Option<String>>(12).as_deref(), Some("10.0.0.20"), "the host tag's IP wins over target");
    assert_eq!(r.get::<_, Option<i32>>(13), Some(7));
    assert_eq!(
        r.get::<_, serde_json::Value>(14),
        serde_json::json!({"schema": "serviceradar.metric.v1", "kind": "sum", "temporality": "cumulative",
            "is_monotonic": true, "counter_width": 64, "ingress_id": "0190f7a2-1c3b-8d4e-9f00-123456789abc",
            "ingress_timestamp_unix_nano": 1_781_222_400_500_000_000u64, "raw_value": "123456",
            "raw_value_type": "uint64"})
    );
    assert_eq!(r.get::<_, Option<i32>>(15), Some(64));
    assert_eq!(r.get::<_, String>(16), r.get::<_, String>(17), "the series key is the database function's");
    h.redeliver_everything("timeseries_metrics").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_on_metrics_is_still_taken_and_garbage_is_dead_lettered_with_its_reason() {
    let mut h = Harness::on("telemetry", &["metrics.>"]).await;
    h.publish(vec![
        ("metrics.sysmon.cpu".to_owned(), b"\x08\x01garbage".to_vec()),
        ("metrics.sysmon.cpu".to_owned(), metric(2)),
    ])
    .await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("timeseries_metrics").await, 1);
    let letters = dead_letters(&h.js, &h.stream.name).await;
    assert_eq!(letters.len(), 1);
    let reason = letters[0].header("Dlq-Reason");
    assert!(reason.contains("MetricBatch"), "{reason}");
    h.stop().await;
}

fn kv(
    key: &str,
    v: db_event_writer::processor::proto::common::any_value::Value,
) -> db_event_writer::processor::proto::common::KeyValue {
    use db_event_writer::processor::proto::common::{AnyValue, KeyValue};
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }) }
}

fn text(key: &str, v: &str) -> db_event_writer::processor::proto::common::KeyValue {
    kv(key, db_event_writer::processor::proto::common::any_value::Value::StringValue(v.into()))
}

const SR: [(&str, &str); 3] =
    [("Sr-Ingest-Identity", "agent:agent-7"), ("Sr-Agent-Id", "agent-7"), ("Sr-Partition", "site-a")];

/// The recipe-v2 hash written out again here, for string attributes: md5 of `{"k":"v",…}` (keys sorted, only `\`
/// and `"` escaped), a newline, the service instance, a newline, the scope name.
fn recipe_v2(attrs: &[(&str, &str)], instance: &str, scope: &str) -> String {
    use md5::{Digest, Md5};
    let mut sorted = attrs.to_vec();
    sorted.sort();
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let body: Vec<String> = sorted.iter().map(|(k, v)| format!("\"{}\":\"{}\"", esc(k), esc(v))).collect();
    let input = format!("{{{}}}\n{instance}\n{scope}", body.join(","));
    Md5::digest(input.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_points_are_keyed_as_serviceradar_keys_them_and_a_double_ingest_is_one_row() {
    use db_event_writer::processor::proto::common::{InstrumentationScope, Resource};
    use db_event_writer::processor::proto::metrics::*;
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![text("service.name", "checkout"), text("service.instance.id", "pod-1")],
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: "io.opentelemetry.http".into(), ..Default::default() }),
                metrics: vec![
                    Metric {
                        name: "http.server.requests".into(),
                        unit: "1".into(),
                        data: Some(metric::Data::Sum(Sum {
                            aggregation_temporality: 2,
                            is_monotonic: true,
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: 1_781_222_400_123_456_789,
                                start_time_unix_nano: 1_781_222_000_000_000_000,
                                value: Some(number_data_point::Value::AsInt(42)),
                                attributes: vec![text("route", "/cart"), text("method", "GET")],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "http.server.duration".into(),
                        unit: "ms".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            aggregation_temporality: 1,
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: 1_781_222_400_000_000_000,
                                count: 10,
                                sum: Some(123.5),
                                bucket_counts: vec![1, 2, 7],
                                explicit_bounds: vec![10.0, 100.0],
                                attributes: vec![text("route", "/cart")],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                ],
            }],
        }],
    };
    let mut h = Harness::on("otel", &["otel.metrics", "otel.metrics.>"]).await;
    h.publish_with("otel.metrics.raw", &SR, request.encode_to_vec()).await;
    // The same points again, as ServiceRadar's other writer's input or a publisher's retry would bring them.
    h.publish_with("otel.metrics.raw", &[], request.encode_to_vec()).await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("otel_metric_points").await, 2, "identical points are one row each");
    let client = h.db.client().await;
    let r = client
        .query_one(
            "SELECT timestamp = '2026-06-12 00:00:00.123456+00'::timestamptz, metric_type, unit, temporality, \
             is_monotonic, service_name, service_instance_id, scope_name, start_time_unix_nano, attributes, \
             attributes_hash, value, count, sum, bucket_counts, explicit_bounds, ingest_identity, ingest_agent_id, \
             ingest_partition FROM platform.otel_metric_points WHERE metric_name = 'http.server.requests'",
            &[],
        )
        .await
        .unwrap();
    assert!(r.get::<_, bool>(0), "time_unix_nano truncated to the microsecond");
    assert_eq!(
        (r.get::<_, String>(1), r.get::<_, String>(2), r.get::<_, String>(3)),
        ("sum".into(), "1".into(), "cumulative".into())
    );
    assert_eq!(r.get::<_, Option<bool>>(4), Some(true));
    assert_eq!(
        (r.get::<_, String>(5), r.get::<_, String>(6), r.get::<_, String>(7)),
        ("checkout".into(), "pod-1".into(), "io.opentelemetry.http".into())
    );
    assert_eq!(r.get::<_, Option<i64>>(8), Some(1_781_222_000_000_000_000));
    assert_eq!(r.get::<_, String>(9), r#"{"method":"GET","route":"/cart"}"#);
    assert_eq!(
        r.get::<_, String>(10),
        recipe_v2(&[("route", "/cart"), ("method", "GET")], "pod-1", "io.opentelemetry.http")
    );
    assert_eq!(
        (r.get::<_, Option<f64>>(11), r.get::<_, Option<i64>>(12), r.get::<_, Option<f64>>(13)),
        (Some(42.0), None, None)
    );
    assert_eq!((r.get::<_, Option<String>>(14), r.get::<_, Option<String>>(15)), (None, None));
    // The first message's attribution: the second was the same row, skipped.
    assert_eq!(
        (r.get::<_, String>(16), r.get::<_, String>(17), r.get::<_, String>(18)),
        ("agent:agent-7".into(), "agent-7".into(), "site-a".into())
    );
    let r = client
        .query_one(
            "SELECT temporality, is_monotonic, value, count, sum, bucket_counts, explicit_bounds, attributes_hash \
             FROM platform.otel_metric_points WHERE metric_name = 'http.server.duration'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, Option<bool>>(1), r.get::<_, Option<f64>>(2)),
        ("delta".into(), None, None)
    );
    assert_eq!((r.get::<_, Option<i64>>(3), r.get::<_, Option<f64>>(4)), (Some(10), Some(123.5)));
    assert_eq!((r.get::<_, String>(5), r.get::<_, String>(6)), ("[1,2,7]".into(), "[10.0,100.0]".into()));
    assert_eq!(r.get::<_, String>(7), recipe_v2(&[("route", "/cart")], "pod-1", "io.opentelemetry.http"));
    h.redeliver_everything("otel_metric_points").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_stored_with_typed_attributes_canonical_ids_and_todays_columns_once() {
    use db_event_writer::processor::proto::common::any_value::Value as V;
    use db_event_writer::processor::proto::common::{InstrumentationScope, Resource};
    use db_event_writer::processor::proto::trace::*;
    let trace_hex = "0af7651916cd43dd8448eb211c80319c";
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "checkout"),
                    text("service.namespace", "shop"),
                    text("deployment.environment.name", "prod"),
                    kv("replicas", V::IntValue(0)),
                ],
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tracer".into(),
                    version: "1.2".into(),
                    attributes: vec![kv("sampled", V::BoolValue(false))],
                }),
                spans: vec![
                    Span {
                        // ASCII hex in the bytes fields (the Erlang exporter): not hex-encoded twice.
                        trace_id: trace_hex.as_bytes().to_vec(),
                        span_id: b"B7AD6B7169203331".to_vec(),
                        parent_span_id: vec![0; 8],
                        trace_state: "rojo=00f067aa0ba902b7".into(),
                        name: "GET /cart".into(),
                        kind: 2,
                        start_time_unix_nano: 1_781_222_400_000_000_000,
                        end_time_unix_nano: 1_781_222_400_250_000_000,
                        attributes: vec![
                            kv("http.status_code", V::IntValue(200)),
                            kv("retry", V::BoolValue(false)),
                            text("q", "<a&b>"),
                        ],
                        dropped_attributes_count: 3,
                        dropped_links_count: 1,
                        ..Default::default()
                    },
                    // No span id: nobody can key it; skipped, the other span is written.
                    Span { trace_id: vec![1; 16], name: "no id".into(), ..Default::default() },
                ],
            }],
        }],
    };
    let mut h = Harness::on("otel", &["otel.traces", "otel.traces.raw"]).await;
    h.publish_with("otel.traces.raw", &SR, request.encode_to_vec()).await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("otel_traces").await, 1);
    let client = h.db.client().await;
    let r = client
        .query_one(
            "SELECT trace_id, span_id, parent_span_id, trace_state, service_name, service_namespace, \
             deployment_environment, scope_name, scope_version, scope_attributes, attributes, resource_attributes, \
             dropped_attributes_count, dropped_events_count, dropped_links_count, ingest_identity, ingest_agent_id, \
             ingest_partition, events, links FROM platform.otel_traces",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, String>(1)), (trace_hex.into(), "b7ad6b7169203331".into()));
    assert_eq!(r.get::<_, Option<String>>(2), None, "an all-zero parent is a root span: NULL");
    assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("rojo=00f067aa0ba902b7"));
    assert_eq!(
        (r.get::<_, String>(4), r.get::<_, String>(5), r.get::<_, String>(6)),
        ("checkout".into(), "shop".into(), "prod".into())
    );
    assert_eq!((r.get::<_, String>(7), r.get::<_, String>(8)), ("tracer".into(), "1.2".into()));
    assert_eq!(r.get::<_, Option<String>>(9).as_deref(), Some(r#"{"sampled":false}"#));
    assert_eq!(r.get::<_, String>(10), r#"{"http.status_code":200,"q":"\u003ca\u0026b\u003e","retry":false}"#);
    assert_eq!(
        r.get::<_, String>(11),
        r#"{"deployment.environment.name":"prod","replicas":0,"service.name":"checkout","service.namespace":"shop"}"#
    );
    assert_eq!((r.get::<_, i32>(12), r.get::<_, i32>(13), r.get::<_, i32>(14)), (3, 0, 1));
    assert_eq!(
        (r.get::<_, String>(15), r.get::<_, String>(16), r.get::<_, String>(17)),
        ("agent:agent-7".into(), "agent-7".into(), "site-a".into())
    );
    assert_eq!((r.get::<_, String>(18), r.get::<_, String>(19)), ("[]".into(), "[]".into()));
    h.redeliver_everything("otel_traces").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_source_ip_attribution_redaction_and_the_ingest_block_once() {
    use db_event_writer::processor::proto::common::{AnyValue, Resource, any_value::Value as V};
    use db_event_writer::processor::proto::logs::*;
    let otlp = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![text("service.name", "gateway")] }),
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: vec![LogRecord {
                    time_unix_nano: 1_781_222_400_000_000_000,
                    severity_text: "WARN".into(),
                    severity_number: 13,
                    body: Some(AnyValue { value: Some(V::StringValue("login password=hunter2 failed".into())) }),
                    attributes: vec![text("api_key", "k-123"), kv("attempt", V::IntValue(2))],
                    trace_id: vec![0xab; 16],
                    ..Default::default()
                }],
            }],
        }],
    };
    let mut h = Harness::on("logs", &["logs.>"]).await;
    h.publish_with("logs.otel", &SR, otlp.encode_to_vec()).await;
    h.publish(vec![(
        "logs.syslog".to_owned(),
        br#"{"host": "switch-1", "short_message": "interface changed", "level": 4, "_remote_addr": "default:10.208.254.4",
            "_syslog_format": "rfc3164", "timestamp": "2026-06-12T00:00:00Z"}"#
            .to_vec(),
    )])
    .await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("logs").await, 2);
    let client = h.db.client().await;
    let r = client
        .query_one(
            "SELECT body, attributes, trace_id, span_id, source, source_ip, ingest_identity, ingest_agent_id, \
             ingest_partition, scope_attributes, resource_attributes FROM platform.logs WHERE source = 'otel'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "login password=[REDACTED] failed");
    let attributes: serde_json::Value = serde_json::from_str(&r.get::<_, String>(1)).unwrap();
    assert_eq!(attributes["api_key"], "[REDACTED]");
    assert_eq!(attributes["attempt"], 2);
    let ingest = &attributes["serviceradar.ingest"];
    assert_eq!((ingest["subject"].as_str(), ingest["source_kind"].as_str()), (Some("logs.otel"), Some("otel")));
    assert!(ingest["reply_to"].as_str().is_some_and(|r| r.starts_with("$JS.ACK.")), "{ingest}");
    assert!(ingest["received_at"].as_str().is_some_and(|r| r.ends_with('Z')), "{ingest}");
    assert_eq!((r.get::<_, Option<String>>(2), r.get::<_, Option<String>>(3)), (Some("ab".repeat(16)), None));
    assert_eq!(r.get::<_, Option<String>>(5), None);
    assert_eq!(
        (r.get::<_, String>(6), r.get::<_, String>(7), r.get::<_, String>(8)),
        ("agent:agent-7".into(), "agent-7".into(), "site-a".into())
    );
    assert_eq!(r.get::<_, String>(9), "", "no scope: empty, as the Go writer stores it");
    assert_eq!(r.get::<_, String>(10), r#"{"service.name":"gateway"}"#);
    let r = client
        .query_one(
            "SELECT severity_text, severity_number, service_name, source, source_ip, ingest_identity, attributes \
             FROM platform.logs WHERE source = 'syslog'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, i32>(1)), ("WARN".into(), 15));
    assert_eq!((r.get::<_, String>(2), r.get::<_, String>(3)), ("switch-1".into(), "syslog".into()));
    assert_eq!(r.get::<_, Option<String>>(4).as_deref(), Some("10.208.254.4"));
    assert_eq!(r.get::<_, String>(5), "", "no Sr-* headers: empty, as the column default");
    let attributes: serde_json::Value = serde_json::from_str(&r.get::<_, String>(6)).unwrap();
    assert_eq!(attributes["_remote_addr"], "default:10.208.254.4");
    h.redeliver_everything("logs").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_and_attributed_flows_are_stored_once_with_sampling_and_partition() {
    use db_event_writer::processor::proto::flow::{AttributedFlowMessage, FlowAttribution, FlowMessage};
    let flow = FlowMessage {
        r#type: 4,
        time_flow_end_ns: 1_781_222_400_000_000_000,
        sampling_rate: 1024,
        src_addr: vec![10, 0, 0, 5],
        dst_addr: vec![10, 0, 0, 9],
        src_port: 40000,
        dst_port: 53,
        proto: 17,
        bytes: 2_000,
        packets: 4,
        bytes_out: 1_200,
        ..Default::default()
    };
    let attributed = AttributedFlowMessage {
        event_type: "attributed_flow".into(),
        flow: Some(FlowMessage { dst_port: 443, proto: 6, ..flow.clone() }),
        attribution: Some(FlowAttribution { pid: 77, comm: "curl".into(), ..Default::default() }),
        agent_id: "agent-7".into(),
        partition: String::new(),
    };
    let mut h = Harness::on("netflow", &["flows.raw.netflow", "flow.attributed.>"]).await;
    h.publish(vec![
        ("flows.raw.netflow".to_owned(), flow.encode_to_vec()),
        ("flow.attributed.site-a".to_owned(), attributed.encode_to_vec()),
    ])
    .await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("ocsf_network_activity").await, 2);
    let client = h.db.client().await;
    let rows = client
        .query(
            "SELECT partition, sampling_rate, bytes_in, bytes_out, packets_in, protocol_name, \
             ocsf_payload->>'message', ocsf_payload->'attribution'->>'comm', src_prefix_tags IS NULL \
             FROM platform.ocsf_network_activity ORDER BY dst_endpoint_port",
            &[],
        )
        .await
        .unwrap();
    let raw = &rows[0];
    assert_eq!((raw.get::<_, String>(0), raw.get::<_, i64>(1)), ("default".into(), 1024));
    assert_eq!(
        (raw.get::<_, Option<i64>>(2), raw.get::<_, Option<i64>>(3), raw.get::<_, Option<i64>>(4)),
        (None, Some(1_200), None)
    );
    assert_eq!(raw.get::<_, String>(5), "UDP");
    assert_eq!(raw.get::<_, String>(6), "UDP traffic: 10.0.0.5:40000 -> 10.0.0.9:53 (4 pkts, 2.0 KB)");
    assert!(raw.get::<_, bool>(8), "prefix tags need ServiceRadar's datasets: NULL");
    let attributed = &rows[1];
    assert_eq!(attributed.get::<_, String>(0), "site-a");
    assert_eq!(attributed.get::<_, Option<String>>(7).as_deref(), Some("curl"));
    h.redeliver_everything("ocsf_network_activity").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powerdns_dns_activity_on_pdns_ocsf_becomes_an_ocsf_event_once() {
    let mut h = Harness::on("events", &["pdns.ocsf", "pdns.ocsf.>"]).await;
    let dns = br#"{"id": "5b6e2a3c-1d4f-4e8a-9b7c-2f1e0d9c8b7a", "time": 1781222400000, "class_uid": 4003,
        "category_uid": 4, "type_uid": 400301, "activity_id": 1, "severity_id": 1,
        "message": "DNS query example.com A", "query": {"hostname": "example.com", "type": "A"},
        "src_endpoint": {"ip": "10.0.0.5"}, "metadata": {"product": {"name": "PowerDNS"}, "version": "1.7.0"}}"#;
    h.publish(vec![("pdns.ocsf".to_owned(), dns.to_vec()), ("pdns.ocsf.recursor".to_owned(), dns.to_vec())]).await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("ocsf_events").await, 1, "the same event twice is one row");
    let client = h.db.client().await;
    let r = client
        .query_one(
            "SELECT class_uid, type_uid, message, src_endpoint->>'ip', time = to_timestamp(1781222400) \
             FROM platform.ocsf_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((r.get::<_, i32>(0), r.get::<_, i32>(1)), (4003, 400301));
    assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some("DNS query example.com A"));
    assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("10.0.0.5"));
    assert!(r.get::<_, bool>(4));
    h.redeliver_everything("ocsf_events").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_span_metrics_as_a_metric_batch_land_in_otel_metrics_once() {
    use db_event_writer::processor::proto::metric::*;
    let e = |k: &str, v: &str| StringMapEntry { key: k.into(), value: v.into() };
    let batch = MetricBatch {
        schema_version: SCHEMA_VERSION.into(),
        resource: Some(MetricResource {
            service_name: "otel-derived".into(),
            service_type: "otel".into(),
            ..Default::default()
        }),
        metrics: vec![Metric {
            name: "otel.span.duration_ms".into(),
            metric_type: "otel_span_derived".into(),
            kind: 1,
            unit: "ms".into(),
            tags: vec![e("metric_family", "otel_span_derived")],
            points: vec![MetricPoint {
                value: 150.5,
                raw_value: "150.5".into(),
                raw_value_type: 1,
                observed_at_unix_nano: 1_781_222_400_000_000_000,
                attributes: vec![e("service_name", "checkout"), e("span_name", "GET /cart"), e("http_method", "GET")],
                metadata: vec![
                    e("trace_id", "0AF7651916CD43DD8448EB211C80319C"),
                    e("span_id", "b7ad6b7169203331"),
                    e("is_slow", "true"),
                    e("duration_seconds", "0.1505"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut h = Harness::on("otel", &["otel.metrics", "otel.metrics.>"]).await;
    h.publish_with("otel.metrics.derived", &SR, batch.encode_to_vec()).await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("otel_metrics").await, 1);
    let client = h.db.client().await;
    let r = client
        .query_one(
            "SELECT trace_id, span_id, service_name, span_name, duration_ms, duration_seconds, is_slow, http_method, \
             metric_type, unit, ingest_partition FROM platform.otel_metrics",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1)),
        ("0af7651916cd43dd8448eb211c80319c".into(), "b7ad6b7169203331".into())
    );
    assert_eq!((r.get::<_, String>(2), r.get::<_, String>(3)), ("checkout".into(), "GET /cart".into()));
    assert_eq!((r.get::<_, f64>(4), r.get::<_, f64>(5), r.get::<_, bool>(6)), (150.5, 0.1505, true));
    assert_eq!(
        (r.get::<_, String>(7), r.get::<_, String>(8), r.get::<_, String>(9)),
        ("GET".into(), "otel_span_derived".into(), "ms".into())
    );
    assert_eq!(r.get::<_, String>(10), "site-a");
    h.redeliver_everything("otel_metrics").await;
    h.stop().await;
}

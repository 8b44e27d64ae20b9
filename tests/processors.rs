//! Each processor against a real nats-server and PostgreSQL: real-format payloads (the reference samples, OTLP
//! built here) become the rows the reference describes; bad payloads are terminated; and a full redelivery
//! (consumer deleted and recreated: JetStream hands every message out again, same sequences) adds no row.

mod common;

use std::time::Duration;

use common::harness::Harness;
use common::*;
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/samples/");

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!("{SAMPLES}{name}")).unwrap_or_else(|e| panic!("sample {name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_json_and_otlp_become_rows_once() {
    use db_event_writer::processor::proto::common::{AnyValue, KeyValue, Resource, any_value};
    use db_event_writer::processor::proto::logs::{ExportLogsServiceRequest, LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message as _;

    let mut h = Harness::new("logs").await;
    let s = |suffix: &str| h.stream.subject(suffix);
    let otlp = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("collector".into())) }),
                }],
            }),
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        severity_number: 13,
                        severity_text: "WARN".into(),
                        body: Some(AnyValue { value: Some(any_value::Value::StringValue("disk 91%".into())) }),
                        ..Default::default()
                    },
                    LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        body: Some(AnyValue { value: Some(any_value::Value::StringValue("same time".into())) }),
                        ..Default::default()
                    },
                ],
            }],
        }],
    };
    h.publish(vec![
        (s("logs.syslog.processed"), sample("03_logs.syslog.processed__go_test_single.json")),
        (s("logs.syslog.processed"), sample("04_logs.syslog.processed__go_test_array.json")),
        (s("logs.otel.processed"), sample("05_logs.otel.processed__go_test_charcode_body.json")),
        (s("logs.snmp.processed"), sample("07_logs.snmp.processed__go_test_with_body.json")),
        (s("logs.otel.processed"), sample("14_logs__elixir_logs_test_otel_json.json")),
        (s("logs.otel"), otlp.encode_to_vec()),
        (s("logs.syslog.processed"), b"{\"message\": ".to_vec()),
        (s("logs.otel"), vec![0x0a, 0xff, 0xff]),
        (s("logs.syslog.processed"), b"[1, 2]".to_vec()),
    ])
    .await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("logs").await, 8, "1 + 2 + 1 + 1 + 1 JSON rows and 2 OTLP records; 3 bad messages");

    let client = h.db.client().await;
    let row = client
        .query_one(
            "SELECT body, severity_text, severity_number, service_name, source, timestamp = to_timestamp(1700000000) \
             FROM platform.logs WHERE body = 'test log'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "ERROR");
    assert_eq!(row.get::<_, i32>(2), 19);
    assert_eq!(row.get::<_, String>(3), "device-1");
    assert_eq!(row.get::<_, String>(4), "syslog");
    assert!(row.get::<_, bool>(5));
    let row = client
        .query_one(
            "SELECT severity_text, severity_number, service_name, source, resource_attributes \
             FROM platform.logs WHERE body = 'disk 91%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "WARN");
    assert_eq!(row.get::<_, i32>(1), 13);
    assert_eq!(row.get::<_, String>(2), "collector");
    assert_eq!(row.get::<_, String>(3), "otel");
    assert_eq!(row.get::<_, String>(4), r#"{"service.name":"collector"}"#, "typed JSON, as ServiceRadar stores it");
    let snmp: String = client
        .query_one("SELECT source FROM platform.logs WHERE attributes LIKE '%varbinds%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(snmp, "snmp");

    h.redeliver_everything("logs").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_events_become_rows_once_and_bad_ones_are_terminated() {
    let mut h = Harness::new("events").await;
    let subject = h.stream.subject("events.ocsf.processed");
    let sample_01 = sample("01_events.ocsf.processed__cnpg_smoke.json");
    let sample_02 = sample("02_events.ocsf.processed__go_test.json");
    h.publish(vec![
        (subject.clone(), sample_01.clone()),
        (subject.clone(), sample_02.clone()),
        // The same event again (a publisher retry): one row.
        (subject.clone(), sample_01),
        // No id, and an id that is not a UUID: never written, never retried.
        (subject.clone(), br#"{"class_uid":1008,"category_uid":1,"type_uid":100801,"activity_id":1}"#.to_vec()),
        (
            subject.clone(),
            br#"{"id":"nope","time":"2025-01-01T00:00:00Z","class_uid":1008,"category_uid":1,"type_uid":100801,"activity_id":1}"#
                .to_vec(),
        ),
    ])
    .await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("ocsf_events").await, 2);

    let client = h.db.client().await;
    let row = client
        .query_one(
            "SELECT message, severity_id, log_provider, metadata::text, unmapped->>'device_id', observables::text, \
             device::text, raw_data, time = '2026-05-01T12:00:00Z' \
             FROM platform.ocsf_events WHERE id = '3f1c2a9e-5d7b-4e8a-9c21-7b0e4d6a1f55'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "CNPG smoke event for smoke-3f1c2a9e-5d7b-4e8a-9c21-7b0e4d6a1f55");
    assert_eq!(row.get::<_, i32>(1), 2);
    assert_eq!(row.get::<_, String>(2), "cnpg-smoke-test");
    assert_eq!(row.get::<_, String>(3), r#"{"smoke": true, "version": "1.7.0"}"#);
    assert_eq!(row.get::<_, String>(4), "smoke-3f1c2a9e-5d7b-4e8a-9c21-7b0e4d6a1f55");
    assert_eq!(row.get::<_, String>(5), "[]", "absent observables default to [] (the Go writer violated NOT NULL)");
    assert_eq!(row.get::<_, String>(6), "{}");
    assert_eq!(row.get::<_, String>(7), "cnpg-smoke");
    assert!(row.get::<_, bool>(8));
    let raw: String = client
        .query_one("SELECT raw_data FROM platform.ocsf_events WHERE id = 'c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw.as_bytes(), sample_02.as_slice(), "raw_data is the whole payload when it has none");

    h.redeliver_everything("ocsf_events").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_results_become_rows_once() {
    let mut h = Harness::new("sweep").await;
    let subject = h.stream.subject("sweep.results");
    let result =
        br#"{"host_ip": "192.168.1.100", "gateway_id": "gateway-1", "agent_id": "agent-1", "partition": "default",
        "network_cidr": "192.168.1.0/24", "hostname": "server1", "mac": "00:11:22:33:44:55", "icmp_available": true,
        "icmp_response_time_ns": 1500000, "last_sweep_time": "2024-01-01T00:00:00Z", "execution_id": "exec-1",
        "sweep_group_id": "group-1", "config_hash": "h", "tcp_ports_scanned": [22, 80, 443], "tcp_ports_open": [22]}"#;
    h.publish(vec![
        (subject.clone(), result.to_vec()),
        (subject.clone(), result.to_vec()),
        (
            subject.clone(),
            br#"[{"hostIp": "10.0.0.2", "executionId": "exec-1", "lastSweepTime": 1704067200}]"#.to_vec(),
        ),
        (subject.clone(), br#"{"hostname": "no address"}"#.to_vec()),
    ])
    .await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("sweep_results").await, 2);
    let row =
        h.db.client()
            .await
            .query_one(
                "SELECT tcp_ports_scanned, tcp_ports_open, icmp_available, icmp_response_time_ns, raw->>'hostname' \
             FROM platform.sweep_results WHERE host_ip = '192.168.1.100'",
                &[],
            )
            .await
            .unwrap();
    assert_eq!(row.get::<_, Vec<i32>>(0), [22, 80, 443]);
    assert_eq!(row.get::<_, Vec<i32>>(1), [22]);
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, i64>(3), 1_500_000);
    assert_eq!(row.get::<_, String>(4), "server1");
    h.redeliver_everything("sweep_results").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_traces_and_metrics_become_rows_once() {
    use db_event_writer::processor::proto::common::{AnyValue, KeyValue, Resource, any_value};
    use db_event_writer::processor::proto::metrics::{
        ExportMetricsServiceRequest, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
        number_data_point,
    };
    use db_event_writer::processor::proto::trace::{ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;

    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
    };
    let resource = Some(Resource { attributes: vec![kv("service.name", "api")] });
    let spans = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource.clone(),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: (0u8..3)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: vec![i + 1; 8],
                        name: format!("op-{i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_100_000_000,
                        ..Default::default()
                    })
                    .collect(),
            }],
        }],
    };
    // Two points of one metric at one time, differing only in attributes: the Go writer kept one.
    let point = |route: &str| NumberDataPoint {
        attributes: vec![kv("http.route", route)],
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsDouble(1.5)),
        ..Default::default()
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource,
            scope_metrics: vec![ScopeMetrics {
                scope: None,
                metrics: vec![Metric {
                    name: "http.server.duration".into(),
                    unit: "ms".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points: vec![point("/a"), point("/b")] })),
                    ..Default::default()
                }],
            }],
        }],
    };
    let mut h = Harness::new("otel").await;
    let s = |suffix: &str| h.stream.subject(suffix);
    h.publish(vec![
        (s("otel.traces.raw"), spans.encode_to_vec()),
        // ServiceRadar's sample carries ids that are no ids: a span nobody can key, dead-lettered with the reason.
        (s("otel.traces"), sample("16_otel.traces__elixir_otel_traces_test_json.json")),
        // OTLP on otel.metrics → otel_metrics (span samples), on otel.metrics.raw → otel_metric_points.
        (s("otel.metrics"), metrics.encode_to_vec()),
        (s("otel.metrics.raw"), metrics.encode_to_vec()),
        (s("otel.metrics"), sample("15_otel.metrics__elixir_otel_metrics_test_json.json")),
        (
            s("otel.metrics.derived"),
            br#"[{"timestamp":"2024-01-15T10:31:00Z","span_name":"GET /x","service_name":"gw","span_id":"s1","duration_ms":120.0,"metric_type":"http","is_slow":true}]"#.to_vec(),
        ),
        (s("otel.traces.raw"), vec![0x0a, 0xff]),
    ])
    .await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("otel_traces").await, 3);
    assert_eq!(h.db.count("otel_metrics").await, 4, "two OTLP points, sample 15, one derived");
    assert_eq!(h.db.count("otel_metric_points").await, 2, "the same two points, keyed by their attributes' hash");
    let letters = dead_letters(&h.js, &h.stream.name).await;
    let reasons: Vec<&str> = letters.iter().map(|l| l.header("Dlq-Reason")).collect();
    assert_eq!(letters.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("valid trace_id and span_id")), "{reasons:?}");
    let client = h.db.client().await;
    let routes: Vec<String> = client
        .query(
            "SELECT http_route FROM platform.otel_metrics WHERE span_name = 'http.server.duration' \
             AND unit = 'ms' AND service_name = 'api' ORDER BY http_route",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(routes, ["/a", "/b"]);
    let slow: bool =
        client.query_one("SELECT is_slow FROM platform.otel_metrics WHERE span_id = 's1'", &[]).await.unwrap().get(0);
    assert!(slow);
    h.redeliver_everything("otel_traces").await;
    assert_eq!(h.db.count("otel_metrics").await, 4);
    assert_eq!(h.db.count("otel_metric_points").await, 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_become_rows_once_through_the_ledger() {
    use db_event_writer::processor::proto::flow::FlowMessage;
    use prost::Message as _;

    let flow = |src: [u8; 4], bytes: u64, kind: i32| FlowMessage {
        r#type: kind,
        time_received_ns: 1_705_363_200_000_000_000,
        time_flow_start_ns: 1_705_363_100_000_000_000,
        time_flow_end_ns: 1_705_363_210_000_000_000,
        sampler_address: vec![10, 1, 0, 1],
        src_addr: src.to_vec(),
        dst_addr: vec![198, 51, 100, 50],
        src_port: 49876,
        dst_port: 443,
        proto: 6,
        bytes,
        packets: 1000,
        bytes_in: 900_000,
        bytes_out: 600_000,
        packets_in: 600,
        packets_out: 400,
        in_if: 10,
        out_if: 20,
        src_as: 64512,
        dst_as: 64515,
        tcp_flags: 18,
        protocol_name: "TCP".into(),
        ..Default::default()
    };
    let mut h = Harness::new("netflow").await;
    let (nf, sf) = (h.stream.subject("flows.raw.netflow"), h.stream.subject("flows.raw.sflow"));
    h.publish(vec![
        (nf.clone(), flow([10, 1, 0, 100], 1_500_000, 3).encode_to_vec()),
        (sf.clone(), flow([10, 1, 0, 101], 42, 1).encode_to_vec()),
        (
            nf.clone(),
            br#"{"type": "NETFLOW_V5", "src_addr": "10.9.9.9", "dst_addr": "10.8.8.8", "proto": 17, "bytes": 5}"#
                .to_vec(),
        ),
        (nf.clone(), vec![0x0a, 0xff, 0xff]),
    ])
    .await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("ocsf_network_activity").await, 3);
    let client = h.db.client().await;
    let row = client
        .query_one(
            "SELECT src_endpoint_ip, dst_endpoint_port, protocol_name, bytes_total, packets_in, sampler_address, \
             ocsf_payload->>'message', ocsf_payload->>'flow_source', partition, time = to_timestamp(1705363210) \
             FROM platform.ocsf_network_activity WHERE src_endpoint_ip = '10.1.0.100'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(1), 443);
    assert_eq!(row.get::<_, String>(2), "TCP");
    assert_eq!(row.get::<_, i64>(3), 1_500_000);
    assert_eq!(row.get::<_, i64>(4), 600);
    assert_eq!(row.get::<_, String>(5), "10.1.0.1");
    assert_eq!(row.get::<_, String>(6), "TCP traffic: 10.1.0.100:49876 -> 198.51.100.50:443 (1000 pkts, 1.5 MB)");
    assert_eq!(row.get::<_, String>(7), "NetFlow v9");
    assert_eq!(row.get::<_, String>(8), "default");
    assert!(row.get::<_, bool>(9));
    let ledger: i64 =
        client.query_one("SELECT count(*) FROM platform.db_event_writer_ledger", &[]).await.unwrap().get(0);
    assert_eq!(ledger, 3, "one ledger entry per committed message");

    h.redeliver_everything("ocsf_network_activity").await;

    // Pruning forgets only what is older than the retention.
    client
        .batch_execute(
            "UPDATE platform.db_event_writer_ledger SET committed_at = now() - interval '8 days' WHERE sequence = 1",
        )
        .await
        .unwrap();
    let pool = db_event_writer::db::pool(&h.config.database).unwrap();
    let removed = db_event_writer::ledger::prune(&pool, "platform", Duration::from_secs(7 * 86_400)).await.unwrap();
    assert_eq!(removed, 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_rows_survive_a_full_redelivery() {
    let mut h = Harness::new("telemetry").await;
    let subject = h.stream.subject("cpu");
    h.publish((0..50).map(|i| (subject.clone(), metric(i))).collect()).await;
    // Arrays too: several rows from one message.
    h.publish(vec![(
        subject.clone(),
        br#"[{"metric_name": "a", "value": 1}, {"metric_name": "b", "value": "2.5"}]"#.to_vec(),
    )])
    .await;
    h.start();
    h.drained().await;
    assert_eq!(h.db.count("timeseries_metrics").await, 52);
    h.redeliver_everything("timeseries_metrics").await;
    h.stop().await;
}

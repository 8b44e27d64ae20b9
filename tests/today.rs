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

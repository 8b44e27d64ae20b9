//! Telemetry decoding: the reference sample, aliases and fallbacks, defaults, arrays, refusals, series keys.

use chrono::{TimeZone, Utc};
use md5::{Digest, Md5};

use super::series_key::{SeriesIdentity, Volatile, series_key};
use super::*;
use crate::processor::api::{DecodeError, Incoming, Processor, Rows};

fn incoming(payload: &str) -> Incoming<'_> {
    Incoming {
        subject: "telemetry.cpu",
        payload: payload.as_bytes(),
        published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
        stream: "events",
        sequence: 1,
        headers: crate::processor::api::Headers::NONE,
        reply: "",
    }
}

fn decode(payload: &str) -> Result<Vec<MetricRow>, DecodeError> {
    let mut rows = Vec::new();
    Telemetry::new(&crate::config::DatabaseConfig::for_schema("platform"))
        .decode(&incoming(payload), &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
        .map(|()| rows)
}

const SAMPLE: &str = r#"{"timestamp": "2024-01-01T00:00:00Z", "gateway_id": "gateway-1", "agent_id": "agent-1",
    "metric_name": "cpu_usage", "metric_type": "gauge", "device_id": "device-1", "value": 45.5,
    "unit": "percent", "tags": {"host": "server1"}}"#;

#[test]
fn decodes_the_reference_sample() {
    let rows = decode(SAMPLE).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.timestamp, Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
    assert_eq!(r.gateway_id, "gateway-1");
    assert_eq!(r.agent_id.as_deref(), Some("agent-1"));
    assert_eq!(r.metric_name, "cpu_usage");
    assert_eq!(r.device_id.as_deref(), Some("device-1"));
    assert_eq!(r.value, 45.5);
    assert_eq!(r.unit.as_deref(), Some("percent"));
    assert_eq!(r.tags.as_deref(), Some(r#"{"host": "server1"}"#));
    assert!(!r.is_delta);
    assert_eq!(r.series_key.len(), 32);
}

#[test]
fn camel_case_aliases_and_fallbacks() {
    let rows = decode(
        r#"{"gatewayId": "g", "agentId": "a", "name": "if_in", "type": "counter", "deviceId": "d",
            "isDelta": true, "targetDeviceIp": "10.0.0.1", "ifIndex": 3, "value": "12.5", "tags": "{\"x\": 1}"}"#,
    )
    .unwrap();
    let r = &rows[0];
    assert_eq!((r.gateway_id.as_str(), r.metric_name.as_str(), r.metric_type.as_str()), ("g", "if_in", "counter"));
    assert!(r.is_delta);
    assert_eq!(r.if_index, Some(3));
    assert_eq!(r.target_device_ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(r.value, 12.5);
    assert_eq!(r.tags.as_deref(), Some(r#"{"x": 1}"#));
}

#[test]
fn defaults_apply_and_the_time_comes_from_jetstream() {
    let r = &decode(r#"{"value": 1}"#).unwrap()[0];
    assert_eq!(
        (r.gateway_id.as_str(), r.metric_name.as_str(), r.metric_type.as_str()),
        ("unknown", "unknown", "gauge")
    );
    assert_eq!(r.timestamp, incoming("").published);
}

#[test]
fn arrays_give_one_row_each() {
    assert_eq!(decode(r#"[{"value": 1}, {"value": 2}, {"value": 3}]"#).unwrap().len(), 3);
    assert_eq!(decode("[]").unwrap().len(), 0);
    let e = decode(r#"[{"value": 1}, {"nope": 2}]"#).unwrap_err();
    assert!(e.message.starts_with("[1]: value: missing"), "{e}");
}

#[test]
fn bad_payloads_say_why() {
    for (payload, why) in [
        ("\u{0}\u{1}garbage", "neither telemetry JSON (an object or an array) nor a serviceradar.metric.v1"),
        ("{\"value\": ", "EOF while parsing"),
        (r#"{"value": "abc"}"#, "value"),
        (r#"{"value": 1, "device_id": 7}"#, "device_id"),
        (r#"{"value": 1, "tags": [1]}"#, "tags: must be a JSON object"),
        (r#"{"value": 1, "if_index": 99999999999}"#, "if_index"),
        (r#"{"value": 1, "timestamp": "soon"}"#, "timestamp"),
        ("42", "neither telemetry JSON"),
    ] {
        let e = decode(payload).expect_err(payload);
        assert!(e.message.contains(why), "{payload}: {e}");
    }
    let mut rows = Vec::new();
    let bytes = [b'{', 0xff, 0xfe, b'}'];
    let msg = Incoming { payload: &bytes, ..incoming("") };
    let e = Telemetry::new(&crate::config::DatabaseConfig::for_schema("p"))
        .decode(&msg, &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
        .unwrap_err();
    assert!(e.message.contains("UTF-8"));
}

#[test]
fn series_key_of_the_empty_identity_is_md5_of_nothing() {
    assert_eq!(key(&SeriesIdentity::default()), "d41d8cd98f00b204e9800998ecf8427e");
}

#[test]
fn series_key_ignores_unstable_and_blank_tags_and_the_value() {
    let a = &decode(r#"{"metric_name": "m", "value": 1, "tags": {"host": "h", "available": true, "blank": "  "}}"#)
        .unwrap()[0];
    let b = &decode(r#"{"metric_name": "m", "value": 2, "tags": {"host": "h", "packet_loss": 3}}"#).unwrap()[0];
    let c = &decode(r#"{"metric_name": "m", "value": 1, "tags": {"host": "other"}}"#).unwrap()[0];
    assert_eq!(a.series_key, b.series_key);
    assert_ne!(a.series_key, c.series_key);
}

#[test]
fn series_key_is_length_prefixed() {
    // Without length prefixes these two would collide ("a|b" vs "a" + "|b").
    let x = key(&SeriesIdentity { agent_id: Some("a|b"), ..Default::default() });
    let y = key(&SeriesIdentity { agent_id: Some("a"), device_id: Some("|b"), ..Default::default() });
    assert_ne!(x, y);
    // Known value: md5("11:metric_type=5:gauge").
    let z = key(&SeriesIdentity { metric_type: Some("gauge"), ..Default::default() });
    let expected = format!("{:x}", Md5::digest(b"11:metric_type=5:gauge"));
    assert_eq!(z, expected);
}

fn key(id: &SeriesIdentity<'_>) -> String {
    series_key(id, [], &Volatile::default())
}

// ServiceRadar's metric envelope. The cases marked "ported" come from ServiceRadar's
// `elixir/serviceradar_core/test/serviceradar/observability/metric_envelope_test.exs` (index id 67414549097), with
// its fixtures (agent-1 / gateway-1 / default partition, point time 1_781_222_400_000_000_000).

mod envelope {
    use chrono::DateTime;
    use prost::Message as _;

    use super::*;
    use crate::processor::proto::metric::{
        IngestIdentity, Metric, MetricBatch, MetricPoint, MetricResource, StringMapEntry,
    };

    const POINT_TIME: u64 = 1_781_222_400_000_000_000;

    fn entries(pairs: &[(&str, &str)]) -> Vec<StringMapEntry> {
        pairs.iter().map(|(k, v)| StringMapEntry { key: (*k).into(), value: (*v).into() }).collect()
    }

    fn batch(metrics: Vec<Metric>, resource: MetricResource) -> MetricBatch {
        MetricBatch {
            schema_version: "serviceradar.metric.v1".into(),
            resource: Some(resource),
            ingest_identity: Some(IngestIdentity {
                source: "metrics".into(),
                payload_kind: "serviceradar.metric.v1".into(),
                producer_id: "agent-1".into(),
                producer_kind: "agent".into(),
                ..Default::default()
            }),
            emitted_at_unix_nano: POINT_TIME,
            metrics,
            ..Default::default()
        }
    }

    fn resource() -> MetricResource {
        MetricResource {
            agent_id: "agent-1".into(),
            gateway_id: "gateway-1".into(),
            partition: "default".into(),
            service_name: "metrics".into(),
            service_type: "metrics".into(),
            ..Default::default()
        }
    }

    fn snmp_metric(tags: &[(&str, &str)]) -> Metric {
        Metric {
            name: "ifHCInOctets".into(),
            metric_type: "snmp".into(),
            kind: 2,
            temporality: 2,
            is_monotonic: true,
            unit: "By".into(),
            counter_width: 64,
            tags: entries(tags),
            points: vec![MetricPoint {
                value: 1234.5,
                raw_value: "1234".into(),
                raw_value_type: 3,
                observed_at_unix_nano: POINT_TIME,
                if_index: 7,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn gauge_metric(name: &str, metric_type: &str, value: f64, tags: &[(&str, &str)], hint: &str) -> Metric {
        Metric {
            name: name.into(),
            metric_type: metric_type.into(),
            kind: 1,
            unit: "%".into(),
            tags: entries(tags),
            points: vec![MetricPoint {
                value,
                raw_value: format!("{value:?}"),
                raw_value_type: 1,
                observed_at_unix_nano: POINT_TIME,
                series_identity_hint: hint.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn decode_batch(b: &MetricBatch) -> Vec<MetricRow> {
        let payload = b.encode_to_vec();
        let mut rows = Vec::new();
        let msg = Incoming { payload: &payload, ..incoming("") };
        Telemetry::new(&crate::config::DatabaseConfig::for_schema("platform"))
            .decode(&msg, &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
            .unwrap();
        rows
    }

    fn one(metric: Metric) -> MetricRow {
        let rows = decode_batch(&batch(vec![metric], resource()));
        assert_eq!(rows.len(), 1);
        rows.into_iter().next().unwrap()
    }

    fn json(text: &Option<String>) -> serde_json::Value {
        serde_json::from_str(text.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn target_device_ip_prefers_the_ip_bearing_host_tag_ported() {
        assert_eq!(
            one(snmp_metric(&[("target", "router-a"), ("host", "10.0.0.20")])).target_device_ip.unwrap(),
            "10.0.0.20"
        );
        assert_eq!(one(snmp_metric(&[("target", "router-a")])).target_device_ip.unwrap(), "router-a");
        let b = batch(
            vec![gauge_metric("cpu.usage_percent", "sysmon.cpu", 12.5, &[], "")],
            MetricResource { host_ip: "10.0.2.13".into(), ..resource() },
        );
        assert_eq!(decode_batch(&b)[0].target_device_ip.as_deref(), Some("10.0.2.13"));
        // device_id stays what the gateway attested: no lookup by IP.
        assert_eq!(decode_batch(&b)[0].device_id, None);
    }

    #[test]
    fn counter_width_is_a_column_and_metadata_ported() {
        let r = one(snmp_metric(&[("host", "10.0.0.20")]));
        assert_eq!(r.counter_width, Some(64));
        assert_eq!(json(&r.metadata)["counter_width"], 64);
        assert_eq!(one(gauge_metric("memory.used_percent", "sysmon.memory", 42.0, &[], "")).counter_width, None);
    }

    #[test]
    fn the_series_hint_is_kept_as_metadata_and_never_the_key_ported() {
        let r =
            one(gauge_metric("memory.used_percent", "sysmon.memory", 50.0, &[("host_id", "host-1")], "spoofed-key"));
        assert_eq!(json(&r.metadata)["series_identity_hint"], "spoofed-key");
        let without = one(gauge_metric("memory.used_percent", "sysmon.memory", 50.0, &[("host_id", "host-1")], ""));
        assert_eq!(r.series_key, without.series_key);
        assert_ne!(r.series_key, "spoofed-key");
        assert!(json(&without.metadata).get("series_identity_hint").is_none());
    }

    #[test]
    fn volatile_tags_do_not_split_series_and_real_dimensions_do_ported() {
        let key = |m: Metric| one(m).series_key;
        let mem = |used: &str| {
            gauge_metric(
                "memory.used_percent",
                "sysmon.memory",
                50.0,
                &[("used_bytes", used), ("total_bytes", "1000")],
                "",
            )
        };
        assert_eq!(key(mem("500")), key(mem("600")));
        let sweep = |exec: &str, group: &str| {
            gauge_metric(
                "sweep.host.available",
                "sweep",
                1.0,
                &[
                    ("target", "10.0.0.10"),
                    ("network", "edge-lan"),
                    ("execution_id", exec),
                    ("sweep_group_id", group),
                    ("source", "sweep-metrics"),
                    ("payload_kind", "serviceradar.metric.v1"),
                    ("producer_id", "agent-1"),
                    ("producer_kind", "agent-sweep"),
                ],
                "",
            )
        };
        assert_eq!(key(sweep("exec-1", "group-1")), key(sweep("exec-2", "group-2")));
        let disk = |mount: &str| {
            gauge_metric(
                "disk.used_percent",
                "sysmon.disk",
                1.0,
                &[("mount_point", mount), ("used_bytes", "500"), ("total_bytes", "1000")],
                "",
            )
        };
        assert_ne!(key(disk("/")), key(disk("/var")));
        let process = |status: &str| {
            gauge_metric(
                "process.cpu_usage",
                "sysmon.process",
                1.0,
                &[("pid", "1234"), ("name", "nginx"), ("start_time", "2026-06-22T12:00:00Z"), ("status", status)],
                "",
            )
        };
        assert_eq!(key(process("Running")), key(process("Sleeping")));
    }

    #[test]
    fn rows_follow_the_envelope_mapping() {
        let mut m = snmp_metric(&[("host", "10.0.0.20"), ("ifName", "eth0"), ("source", "metric-tag")]);
        m.metadata = entries(&[("poller", "p1")]);
        m.scale = 8.0;
        m.points[0].attributes = entries(&[("ifName", "eth1"), ("lane", "2")]);
        m.points[0].interface_uid = "if-7".into();
        m.points[0].metadata = entries(&[("kind", "point-kind")]);
        m.points[0].start_time_unix_nano = 5;
        let mut b = batch(vec![m], resource());
        b.ingress_id = "0190a-ingress".into();
        b.ingress_timestamp_unix_nano = 99;
        let r = &decode_batch(&b)[0];
        assert_eq!(r.timestamp, DateTime::from_timestamp(1_781_222_400, 0).unwrap());
        assert_eq!((r.gateway_id.as_str(), r.agent_id.as_deref()), ("gateway-1", Some("agent-1")));
        assert_eq!((r.metric_name.as_str(), r.metric_type.as_str()), ("ifHCInOctets", "snmp"));
        assert_eq!((r.value, r.unit.as_deref(), r.scale), (1234.5, Some("By"), Some(8.0)));
        assert_eq!((r.partition.as_deref(), r.if_index, r.is_delta), (Some("default"), Some(7), false));
        // Tags: the metric's, the ingest identity where absent (the metric's own source wins), the point's
        // attributes over both, interface_uid where absent.
        assert_eq!(
            json(&r.tags),
            serde_json::json!({"host": "10.0.0.20", "ifName": "eth1", "lane": "2", "source": "metric-tag",
                "payload_kind": "serviceradar.metric.v1", "producer_id": "agent-1", "producer_kind": "agent",
                "interface_uid": "if-7"})
        );
        // Metadata: the metric's, the batch's where absent, the point's over both, the point's fields where absent.
        assert_eq!(
            json(&r.metadata),
            serde_json::json!({"poller": "p1", "schema": "serviceradar.metric.v1", "kind": "point-kind",
                "temporality": "cumulative", "is_monotonic": true, "counter_width": 64, "ingress_id": "0190a-ingress",
                "ingress_timestamp_unix_nano": 99, "raw_value": "1234", "raw_value_type": "uint64",
                "start_time_unix_nano": 5})
        );
    }

    #[test]
    fn defaults_non_numeric_points_and_deltas() {
        let m = Metric {
            kind: 2,
            temporality: 1,
            points: vec![
                MetricPoint { value: 3.0, ..Default::default() },
                MetricPoint { metadata: entries(&[("non_numeric", "true")]), ..Default::default() },
            ],
            ..Default::default()
        };
        let rows = decode_batch(&batch(vec![m], MetricResource::default()));
        assert_eq!(rows.len(), 1, "the non-numeric point is skipped");
        let r = &rows[0];
        assert_eq!(
            (r.gateway_id.as_str(), r.metric_name.as_str(), r.metric_type.as_str()),
            ("unknown", "unknown", "sum")
        );
        assert!(r.is_delta);
        assert_eq!(r.timestamp, incoming("").published, "no observed time: the JetStream time, stable on redelivery");
        assert_eq!(json(&r.metadata)["is_monotonic"], false, "false is kept, as ServiceRadar keeps it");
        assert_eq!(r.scale, None);
        let payload = batch(vec![], resource()).encode_to_vec();
        let mut out = Vec::new();
        let msg = Incoming { payload: &payload, ..incoming("") };
        let mut sink = Rows::new(&mut out, crate::processor::api::Limits::NONE);
        Telemetry::new(&crate::config::DatabaseConfig::for_schema("p")).decode(&msg, &mut sink).unwrap();
        assert!(out.is_empty(), "a batch without points is accepted and writes nothing");
    }

    #[test]
    fn a_batch_of_another_schema_is_refused_with_its_version() {
        let b = MetricBatch { schema_version: "serviceradar.metric.v2".into(), ..batch(vec![], resource()) };
        let payload = b.encode_to_vec();
        let msg = Incoming { payload: &payload, ..incoming("") };
        let e = Telemetry::new(&crate::config::DatabaseConfig::for_schema("p"))
            .decode(&msg, &mut Rows::new(&mut Vec::new(), crate::processor::api::Limits::NONE))
            .unwrap_err();
        assert!(e.message.contains("serviceradar.metric.v2"), "{e}");
    }

    #[test]
    fn nul_in_a_tag_is_replaced_before_the_key() {
        let a = one(gauge_metric("m", "t", 1.0, &[("k", "a\0b")], ""));
        let b = one(gauge_metric("m", "t", 1.0, &[("k", "a\u{FFFD}b")], ""));
        assert_eq!(a.series_key, b.series_key);
        assert_eq!(json(&a.tags)["k"], "a\u{FFFD}b");
    }
}

//! Every decoder against hostile input: arbitrary bytes, arbitrary JSON, and valid protobufs cut short.
//! The only acceptable outcomes are rows or a `DecodeError`: never a panic.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use prost::Message as _;

use super::events::Events;
use super::logs::Logs;
use super::netflow::Netflow;
use super::otel::Otel;
use super::sweep::Sweep;
use super::telemetry::Telemetry;
use super::{Incoming, Processor};

const SUBJECTS: &[&str] = &[
    "telemetry.x",
    "logs.syslog.processed",
    "otel.traces.raw",
    "otel.metrics.raw",
    "events.ocsf.processed",
    "flows.raw.netflow",
    "sweep.x",
];

fn decode_everywhere(payload: &[u8]) {
    let published = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    for subject in SUBJECTS {
        let msg = Incoming { subject, payload, published, stream: "events", sequence: 1 };
        let _ = Telemetry::new("p").decode(&msg, &mut Vec::new());
        let _ = Logs::new("p").decode(&msg, &mut Vec::new());
        let _ = Otel::new("p").decode(&msg, &mut Vec::new());
        let _ = Events::new("p").decode(&msg, &mut Vec::new());
        let _ = Netflow::new("p", "events").decode(&msg, &mut Vec::new());
        let _ = Sweep::new("p").decode(&msg, &mut Vec::new());
    }
}

/// Arbitrary JSON, biased toward the keys the decoders look at.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop::sample::select(vec![
        "timestamp",
        "time",
        "value",
        "tags",
        "id",
        "class_uid",
        "category_uid",
        "type_uid",
        "activity_id",
        "body",
        "message",
        "severity",
        "level",
        "severity_number",
        "attributes",
        "resource",
        "scope",
        "varbinds",
        "host_ip",
        "tcp_ports_open",
        "span_id",
        "trace_id",
        "duration_ms",
        "src_addr",
        "bytes",
        "metadata",
        "if_index",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key.clone().prop_map(str::to_owned), inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(payload in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everywhere(&payload);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        decode_everywhere(value.to_string().as_bytes());
    }
}

#[test]
fn every_truncation_of_valid_protobufs_is_handled() {
    use super::proto::common::{AnyValue, KeyValue, any_value};
    use super::proto::flow::FlowMessage;
    use super::proto::logs::{ExportLogsServiceRequest, LogRecord, ResourceLogs, ScopeLogs};
    let record = LogRecord {
        time_unix_nano: 1,
        body: Some(AnyValue { value: Some(any_value::Value::StringValue("hello".into())) }),
        attributes: vec![KeyValue {
            key: "k".into(),
            value: Some(AnyValue { value: Some(any_value::Value::IntValue(3)) }),
        }],
        trace_id: vec![1; 16],
        ..Default::default()
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: None,
            scope_logs: vec![ScopeLogs { scope: None, log_records: vec![record; 3] }],
        }],
    }
    .encode_to_vec();
    let flow =
        FlowMessage { src_addr: vec![10, 0, 0, 1], bytes: 100, protocol_name: "TCP".into(), ..Default::default() }
            .encode_to_vec();
    for payload in [logs, flow] {
        for cut in 0..payload.len() {
            decode_everywhere(&payload[..cut]);
        }
    }
}

#[test]
fn payloads_up_to_a_mebibyte_decode() {
    use super::proto::trace::{ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span};
    // The collector splits at 900 KiB; NATS allows 1 MiB.
    let span = |i: u32| Span {
        trace_id: vec![1; 16],
        span_id: i.to_be_bytes().repeat(2),
        name: "x".repeat(200),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans { scope: None, spans: (0..4000).map(span).collect() }],
        }],
    };
    let payload = request.encode_to_vec();
    assert!(payload.len() > 900 * 1024 && payload.len() < 1024 * 1024, "{}", payload.len());
    let msg = Incoming {
        subject: "otel.traces.raw",
        payload: &payload,
        published: Utc::now(),
        stream: "events",
        sequence: 1,
    };
    let mut rows = Vec::new();
    Otel::new("p").decode(&msg, &mut rows).unwrap();
    assert_eq!(rows.len(), 4000);
}

//! Logs decoding: every reference sample, the severity table, sources, attributes, OTLP records, ids, refusals.

use chrono::{TimeZone, Utc};
use prost::Message as _;
use serde_json::{Map, Value};

use super::json::{Fields, RESERVED, source_from_subject};
use super::row::record_id;
use super::*;
use crate::processor::api::{DecodeError, Incoming, Processor, Rows};
use crate::processor::otlp::any_text;
use crate::processor::proto::common::{AnyValue, KeyValue, any_value};

#[test]
fn the_key_signature_never_hides_a_present_key() {
    let keys = RESERVED.iter().copied().chain(["", "a", "é", "x.y", "timestamp", "trace_flags", "flags"]);
    let map: Map<String, Value> = keys.clone().map(|k| (k.to_owned(), Value::from(1))).collect();
    let fields = Fields::new(&map);
    for k in keys {
        assert!(fields.get(k).is_some(), "{k:?}");
    }
    let one: Map<String, Value> = [("message".to_owned(), Value::from("m"))].into_iter().collect();
    let fields = Fields::new(&one);
    assert!(fields.get("message").is_some() && fields.get("host").is_none());
}

#[test]
fn reserved_keys_are_sorted_for_binary_search() {
    assert!(RESERVED.windows(2).all(|w| w[0] < w[1]), "RESERVED must stay sorted");
}
use crate::processor::proto::common::{InstrumentationScope, Resource};
use crate::processor::proto::logs::{LogRecord, ResourceLogs, ScopeLogs};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/samples/");

fn incoming<'a>(subject: &'a str, payload: &'a [u8]) -> Incoming<'a> {
    Incoming {
        subject,
        payload,
        published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
        stream: "events",
        sequence: 42,
        headers: crate::processor::api::Headers::NONE,
        reply: "",
    }
}

fn decode(subject: &str, payload: &[u8]) -> Result<Vec<LogRow>, DecodeError> {
    let mut rows = Vec::new();
    Logs::new(&crate::config::DatabaseConfig::for_schema("platform"))
        .decode(&incoming(subject, payload), &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
        .map(|()| rows)
}

/// A row's attributes without the `serviceradar.ingest` block every row carries (checked on its own below).
fn attrs(r: &LogRow) -> Value {
    let mut v: Value = serde_json::from_str(&r.attributes).unwrap_or_else(|e| panic!("{}: {e}", r.attributes));
    let block = v.as_object_mut().unwrap().remove("serviceradar.ingest");
    assert!(block.is_some(), "every row carries the ingest block: {}", r.attributes);
    v
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!("{SAMPLES}{name}")).unwrap_or_else(|e| panic!("sample {name}: {e}"))
}

#[test]
fn sample_03_single_syslog_log() {
    let rows = decode("logs.syslog.processed", &sample("03_logs.syslog.processed__go_test_single.json")).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.body, "test log");
    assert_eq!((r.severity_text.as_str(), r.severity_number), ("ERROR", 19));
    assert_eq!(&*r.service_name, "device-1");
    assert_eq!(r.source, "syslog");
    assert_eq!(r.timestamp, Utc.timestamp_opt(1_700_000_000, 0).unwrap());
    assert_eq!(&*r.resource_attributes, r#"{"host":"device-1"}"#);
    assert_eq!(attrs(r), serde_json::json!({}));
}

#[test]
fn sample_04_array_gives_two_rows_with_distinct_ids() {
    let rows = decode("logs.syslog.processed", &sample("04_logs.syslog.processed__go_test_array.json")).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].body.as_str(), rows[0].severity_text.as_str(), rows[0].severity_number), ("first", "INFO", 11));
    assert_eq!(
        (rows[1].body.as_str(), rows[1].severity_text.as_str(), rows[1].severity_number),
        ("second", "WARN", 15)
    );
    assert_ne!(rows[0].id, rows[1].id);
}

#[test]
fn sample_05_char_code_body() {
    let r = &decode("logs.otel.processed", &sample("05_logs.otel.processed__go_test_charcode_body.json")).unwrap()[0];
    assert_eq!(r.body, "Test");
    assert_eq!((r.severity_text.as_str(), r.severity_number), ("INFO", 11));
    assert_eq!(&*r.service_name, "core-elx");
    assert_eq!(r.source, "otel");
}

#[test]
fn sample_07_snmp_trap_is_normalised_as_serviceradar_normalises_logs_snmp() {
    let r = &decode("logs.snmp.processed", &sample("07_logs.snmp.processed__go_test_with_body.json")).unwrap()[0];
    assert_eq!(r.source, "snmp");
    assert_eq!(&*r.service_name, "snmp");
    assert!(r.body.contains("I 03/08/26 20:28:41 04911 ntp"), "{}", r.body);
    assert_eq!(r.source_ip.as_deref(), Some("192.168.10.154"));
    let a = attrs(r);
    assert_eq!(a["snmp"]["source"], "192.168.10.154:161", "{a}");
    assert!(a.get("varbinds").is_some(), "{a}");
}

#[test]
fn body_falls_back_to_a_varbind_that_is_a_message_then_the_subject() {
    let r = &decode(
        "logs.traps",
        br#"{"varbinds": [{"oid": "1.3.6.1.2.1.1.3.0", "value": "TIMETICKS: 5"},
        {"oid": "1.3", "value": "OCTET STRING: hello"}]}"#,
    )
    .unwrap()[0];
    assert_eq!(r.body, "hello", "sysUpTime is no message");
    let r = &decode("logs.snmp.processed", br#"{"severity": "low"}"#).unwrap()[0];
    assert_eq!(r.body, "logs.snmp.processed");
}

#[test]
fn sample_14_otel_json_keeps_the_given_fields() {
    let r = &decode("logs.otel.processed", &sample("14_logs__elixir_logs_test_otel_json.json")).unwrap()[0];
    // "trace-123" is no id in any shape: NULL, as ServiceRadar's writers store it today; "span-456" is 8 bytes,
    // so raw bytes by the contract (its otel_id_test: "an 8-byte non-hex binary is treated as raw bytes").
    assert_eq!((r.trace_id.as_deref(), r.span_id.as_deref()), (None, Some("7370616e2d343536")));
    assert_eq!((r.severity_text.as_str(), r.severity_number), ("INFO", 9));
    assert_eq!(r.body, "Application started successfully");
    assert_eq!((&*r.service_name, &*r.service_version), ("my-service", "1.0.0"));
    assert_eq!((&*r.service_instance, &*r.scope_name), ("instance-1", "my-scope"));
    assert_eq!(attrs(r), serde_json::json!({"key": "value"}));
    assert_eq!(&*r.resource_attributes, r#"{"host.name":"server1"}"#);
}

#[test]
fn severity_table() {
    for (payload, text, number) in [
        (r#"{"severity": "Very High"}"#, "FATAL", 23),
        (r#"{"severity_text": "critical"}"#, "FATAL", 23),
        (r#"{"severity": "warning"}"#, "WARN", 15),
        (r#"{"severity": "notice"}"#, "INFO", 11),
        (r#"{"severity": "gibberish"}"#, "INFO", 11),
        (r#"{"severity": "trace"}"#, "DEBUG", 7),
        // A bare numeric level: ServiceRadar's severity_from_level today (its log_promotion_parser_test.exs,
        // index id 67203755031, and logs_test.exs: 4 → WARN 15, 6 → INFO 9).
        (r#"{"level": 0}"#, "FATAL", 21),
        (r#"{"level": 1}"#, "FATAL", 21),
        (r#"{"level": 2}"#, "FATAL", 21),
        (r#"{"level": 3}"#, "ERROR", 19),
        (r#"{"level": 4}"#, "WARN", 15),
        (r#"{"level": 5}"#, "INFO", 9),
        (r#"{"level": 6}"#, "INFO", 9),
        (r#"{"level": 7}"#, "DEBUG", 5),
        (r#"{"level": 42}"#, "INFO", 9),
        (r#"{"level": 3.6}"#, "WARN", 15),
        (r#"{"level": "4"}"#, "WARN", 15),
        (r#"{"level": " 6 info"}"#, "INFO", 9),
        (r#"{"level": 4, "severity_number": 13}"#, "WARN", 13),
        (r#"{"level": "debug"}"#, "DEBUG", 7),
        (r#"{"level": "warning"}"#, "WARN", 15),
        (r#"{"severity_number": 18}"#, "ERROR", 18),
        (r#"{}"#, "INFO", 11),
        (r#"{"event_name": "waf.finding", "severity": "critical"}"#, "critical", 21),
        (r#"{"attributes": {"event_type": "waf.finding"}, "severity": "medium"}"#, "warning", 15),
        (r#"{"event_name": "waf.finding", "severity": "alert"}"#, "alert", 22),
    ] {
        let r = &decode("logs.syslog.processed", payload.as_bytes()).unwrap()[0];
        assert_eq!((r.severity_text.as_str(), r.severity_number), (text, number), "{payload}");
    }
}

#[test]
fn waf_findings_keep_their_payload_source() {
    let r =
        &decode("logs.syslog.processed", br#"{"event_name": "waf.finding", "source": "waf", "msg": "x"}"#).unwrap()[0];
    assert_eq!(r.source, "waf");
}

#[test]
fn sources_from_subjects() {
    assert_eq!(source_from_subject("logs.syslog.processed"), Some("syslog"));
    assert_eq!(source_from_subject("demo.logs.otel.processed"), Some("otel"));
    assert_eq!(source_from_subject("logs.internal.core"), Some("internal"));
    assert_eq!(source_from_subject("falco.logs.processed"), Some("falco"));
    assert_eq!(source_from_subject("x.syslog.y"), Some("syslog"));
    assert_eq!(source_from_subject("other"), None);
}

#[test]
fn unknown_keys_become_attributes_and_resource_strings_are_parsed() {
    let r = &decode(
        "logs.internal.processed",
        br#"{"msg": "m", "custom": 1, "empty": "", "attributes": {"a": "b"}, "resource": "k=v, x = y"}"#,
    )
    .unwrap()[0];
    assert_eq!(attrs(r), serde_json::json!({"a": "b", "custom": 1}));
    assert_eq!(&*r.resource_attributes, r#"{"k":"v","x":"y"}"#);
}

#[test]
fn ids_are_stable_per_message_and_record() {
    assert_eq!(record_id("events", 42, 0), record_id("events", 42, 0));
    assert_ne!(record_id("events", 42, 0), record_id("events", 42, 1));
    assert_ne!(record_id("events", 42, 0), record_id("events", 43, 0));
    assert_ne!(record_id("events", 42, 0), record_id("other", 42, 0));
    let id = record_id("events", 1, 0);
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "3", "version 3 layout: {id}");
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }) }
}

#[test]
fn otlp_records_become_rows() {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", any_value::Value::StringValue("api".into())),
                    kv("service.version", any_value::Value::StringValue("2.0".into())),
                    kv("pid", any_value::Value::IntValue(7)),
                    kv("debug", any_value::Value::BoolValue(false)),
                ],
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "lib".into(), version: "1".into(), attributes: vec![] }),
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_700_000_000_123_456_789,
                        observed_time_unix_nano: 1_700_000_001_000_000_000,
                        severity_number: 17,
                        severity_text: String::new(),
                        body: Some(AnyValue { value: Some(any_value::Value::StringValue("boom".into())) }),
                        attributes: vec![kv("ratio", any_value::Value::DoubleValue(0.5))],
                        flags: 0x101,
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01, 0x02],
                        event_name: "ev".into(),
                    },
                    LogRecord::default(),
                ],
            }],
        }],
    };
    let rows = decode("logs.otel", &request.encode_to_vec()).unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.timestamp.timestamp_nanos_opt(), Some(1_700_000_000_123_456_789));
    assert_eq!((r.severity_text.as_str(), r.severity_number), ("ERROR", 17));
    assert_eq!(r.body, "boom");
    assert_eq!(r.trace_id, Some("ab".repeat(16)));
    assert_eq!(r.span_id, None, "two bytes are no span id");
    assert_eq!(r.trace_flags, Some(1));
    assert_eq!((&*r.service_name, &*r.service_version), ("api", "2.0"));
    // Typed JSON: false and zero kept, keys sorted, as the Go writer marshals them.
    assert_eq!(&*r.resource_attributes, r#"{"debug":false,"pid":7,"service.name":"api","service.version":"2.0"}"#);
    assert_eq!(attrs(r), serde_json::json!({"ratio": 0.5}));
    assert_eq!(&*r.scope_attributes, "{}");
    assert_eq!((&*r.scope_name, &*r.scope_version, r.event_name.as_str()), ("lib", "1", "ev"));
    assert_eq!(r.source, "otel");
    // An empty record: no time of its own, so the message's; no flags.
    assert_eq!(rows[1].timestamp, incoming("", b"").published);
    assert_eq!(rows[1].trace_flags, None);
    assert_ne!(rows[0].id, rows[1].id);
}

#[test]
fn structured_bodies_are_kept_as_json() {
    let body = AnyValue {
        value: Some(any_value::Value::KvlistValue(crate::processor::proto::common::KeyValueList {
            values: vec![kv("a", any_value::Value::IntValue(1))],
        })),
    };
    assert_eq!(any_text(&body), r#"{"a":1}"#);
}

#[test]
fn bad_payloads_say_why() {
    assert!(decode("logs.x", b"").unwrap_err().message.contains("empty"));
    assert!(decode("logs.x", b"{\"msg\": ").unwrap_err().message.contains("bad JSON"));
    assert!(decode("logs.x", b"[1, 2]").unwrap_err().message.contains("JSON object"));
    assert!(decode("logs.x", b"\x0a\xff\xff\xff").unwrap_err().message.contains("OTLP"));
    assert!(decode("logs.x", b"\"just a string\"").unwrap_err().message.contains("OTLP"));
}

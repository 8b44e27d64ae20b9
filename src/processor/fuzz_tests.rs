//! Every decoder against hostile input: arbitrary bytes, arbitrary JSON, and valid protobufs cut short.
//! The only acceptable outcomes are rows or a `DecodeError`: never a panic.

use chrono::Utc;
use proptest::prelude::*;
use prost::Message as _;

use super::logs::Logs;
use super::telemetry::Telemetry;
use super::{Incoming, Limits, Processor, ProcessorKind, Rows, validate};

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
    for subject in SUBJECTS {
        for kind in ProcessorKind::ALL {
            let _ = validate(kind, subject, payload, "events");
        }
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
            scope_spans: vec![ScopeSpans { scope: None, spans: (1..=4000).map(span).collect() }],
        }],
    };
    let payload = request.encode_to_vec();
    assert!(payload.len() > 900 * 1024 && payload.len() < 1024 * 1024, "{}", payload.len());
    let msg = message("otel.traces.raw", &payload);
    let mut rows = Vec::new();
    let limits = Limits::for_payload(payload.len(), Limits::DEFAULT_MAX_ROWS, Limits::DEFAULT_EXPANSION);
    super::otel::Otel::new(&crate::config::DatabaseConfig::for_schema("p"))
        .decode(&msg, &mut Rows::new(&mut rows, limits))
        .unwrap();
    assert_eq!(rows.len(), 4000);
}

/// A message of `subject` as a decoder sees it (stream "events", sequence 1, published now).
fn message<'a>(subject: &'a str, payload: &'a [u8]) -> Incoming<'a> {
    Incoming {
        subject,
        payload,
        published: Utc::now(),
        stream: "events",
        sequence: 1,
        headers: crate::processor::api::Headers::NONE,
        reply: "",
    }
}

/// Runs `f` on a thread with a stack of `kib` KiB: smaller than a tokio worker's 2 MiB, so recursion that would
/// overflow there overflows here first (and aborts the test binary, which is the failure we want to see).
fn on_small_stack(kib: usize, f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(kib * 1024).spawn(f).unwrap().join().unwrap();
}

fn nested_arrays(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn json_nested_100000_deep_is_an_error_in_every_decoder_not_a_stack_overflow() {
    for depth in [129, 1_000, 10_000, 100_000] {
        on_small_stack(512, move || {
            let deep = nested_arrays(depth);
            let telemetry = format!(r#"{{"value": 1, "tags": {{"t": {deep}}}}}"#);
            let in_string = format!(r#"{{"value": 1, "tags": "{{\"t\": {deep}}}"}}"#);
            let generic = format!(r#"{{"id": "x", "message": "m", "attributes": {{"a": {deep}}}, "x": {deep}}}"#);
            for payload in [telemetry.as_str(), in_string.as_str(), generic.as_str(), deep.as_str()] {
                decode_everywhere(payload.as_bytes());
            }
            let mut rows = Vec::new();
            let msg = message("telemetry.x", telemetry.as_bytes());
            let e = Telemetry::new(&crate::config::DatabaseConfig::for_schema("p"))
                .decode(&msg, &mut Rows::new(&mut rows, Limits::NONE))
                .unwrap_err();
            assert!(e.message.contains("nested deeper than 128"), "{depth}: {e}");
        });
    }
}

/// An OTLP `AnyValue` nested `depth` kvlists deep, encoded by hand from the inside out (prost's own encoder
/// would recurse as deep).
fn nested_any_value(depth: usize) -> Vec<u8> {
    fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + 12);
        prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }
    // AnyValue { string_value = "x" }
    let mut any = field(1, b"x");
    for _ in 0..depth {
        // KeyValue { key = "k", value = any }
        let mut kv = field(1, b"k");
        kv.extend(field(2, &any));
        // AnyValue { kvlist_value (6) = KeyValueList { values (1) = [kv] } }
        any = field(6, &field(1, &kv));
    }
    any
}

#[test]
fn protobuf_nested_100000_deep_is_an_error_not_a_stack_overflow() {
    on_small_stack(512, || {
        // Each level is three messages (AnyValue, KeyValueList, KeyValue); prost allows 100 in all.
        for depth in [30, 100_000] {
            let any = nested_any_value(depth);
            // LogRecord { body (5) = any }, in ScopeLogs (2), in ResourceLogs (2), in the request (1).
            let wrap = |number: u32, bytes: Vec<u8>| {
                let mut out = Vec::new();
                prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
                prost::encoding::encode_varint(bytes.len() as u64, &mut out);
                out.extend(bytes);
                out
            };
            let logs = wrap(1, wrap(2, wrap(2, wrap(5, any.clone()))));
            let mut rows = Vec::new();
            let msg = message("logs.otel", &logs);
            let result = Logs::new(&crate::config::DatabaseConfig::for_schema("p"))
                .decode(&msg, &mut Rows::new(&mut rows, Limits::NONE));
            if depth < 33 {
                result.unwrap();
                assert_eq!(rows.len(), 1);
            } else {
                assert!(result.unwrap_err().message.contains("recursion limit"), "depth {depth}");
            }
            // The same value as a span attribute and a metric point's attribute.
            let span = wrap(
                1,
                wrap(
                    2,
                    wrap(2, {
                        let mut kv = wrap(1, b"k".to_vec());
                        kv.extend(wrap(2, any.clone()));
                        wrap(9, kv)
                    }),
                ),
            );
            decode_everywhere(&span);
        }
    });
}

#[test]
fn small_payloads_cannot_expand_without_bound() {
    use super::proto::common::{AnyValue, KeyValue, Resource, any_value};
    use super::proto::logs::{ExportLogsServiceRequest, LogRecord, ResourceLogs, ScopeLogs};
    // One 64 KiB resource attribute and 10,000 empty records: 85 KB that would be 640 MB of rows.
    let big = KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue("x".repeat(64 * 1024))) }),
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![big] }),
            scope_logs: vec![ScopeLogs { scope: None, log_records: vec![LogRecord::default(); 10_000] }],
        }],
    }
    .encode_to_vec();
    assert!(request.len() < 100 * 1024);
    let msg = message("logs.otel", &request);
    let limits = Limits::for_payload(request.len(), Limits::DEFAULT_MAX_ROWS, Limits::DEFAULT_EXPANSION);
    let mut rows = Vec::new();
    let e = Logs::new(&crate::config::DatabaseConfig::for_schema("p"))
        .decode(&msg, &mut Rows::new(&mut rows, limits))
        .unwrap_err();
    assert!(e.over_limit && e.message.contains("max_expansion"), "{e}");
    // The limit stopped it early: far fewer rows were ever made than the message asks for.
    assert!(rows.len() < 100, "{}", rows.len());

    // 100,001 rows in one message: over the row limit whatever their size.
    let tiny = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: None,
            scope_logs: vec![ScopeLogs { scope: None, log_records: vec![LogRecord::default(); 100_001] }],
        }],
    }
    .encode_to_vec();
    let msg = message("logs.otel", &tiny);
    let limits = Limits { max_rows: Limits::DEFAULT_MAX_ROWS, max_bytes: usize::MAX };
    let e = Logs::new(&crate::config::DatabaseConfig::for_schema("p"))
        .decode(&msg, &mut Rows::new(&mut Vec::new(), limits))
        .unwrap_err();
    assert!(e.over_limit && e.message.contains("max_rows_per_message"), "{e}");

    // 4,000 tags of 1e99999: each would be a 100,001-digit string.
    let tags: Vec<String> = (0..4000).map(|i| format!("\"t{i}\": 1e99999")).collect();
    let payload = format!(r#"{{"value": 1, "tags": {{{}}}}}"#, tags.join(", "));
    let msg = message("telemetry.x", payload.as_bytes());
    let e = Telemetry::new(&crate::config::DatabaseConfig::for_schema("p"))
        .decode(&msg, &mut Rows::new(&mut Vec::new(), Limits::NONE))
        .unwrap_err();
    assert!(e.over_limit && e.message.contains("exponent beyond"), "{e}");
}

#[test]
fn nul_characters_become_the_replacement_character_and_escaped_backslashes_stay() {
    use super::json::clean_jsonb;
    assert_eq!(clean_jsonb(r#"{"a": "x\u0000y"}"#), r#"{"a": "x\ufffdy"}"#);
    // `\\u0000` is an escaped backslash followed by the text u0000 (a Windows path): PostgreSQL stores it.
    assert_eq!(clean_jsonb(r#"{"p": "C:\\u0000dir"}"#), r#"{"p": "C:\\u0000dir"}"#);
    assert_eq!(clean_jsonb(r#"{"p": "\\\u0000"}"#), r#"{"p": "\\\ufffd"}"#);
    assert_eq!(clean_jsonb(r#"["u0000", "\u00001"]"#), r#"["u0000", "\ufffd1"]"#);

    let payload = r#"{"value": 1, "agent_id": "a\u0000b", "tags": {"path": "C:\\u0000", "n": "\u0000"}}"#;
    let msg = message("telemetry.x", payload.as_bytes());
    let mut rows = Vec::new();
    Telemetry::new(&crate::config::DatabaseConfig::for_schema("p"))
        .decode(&msg, &mut Rows::new(&mut rows, Limits::NONE))
        .unwrap();
    assert_eq!(rows[0].agent_id.as_deref(), Some("a\u{FFFD}b"));
    assert_eq!(rows[0].tags.as_deref(), Some(r#"{"path": "C:\\u0000", "n": "\ufffd"}"#));

    let msg =
        Incoming::bare("logs.syslog.processed", br#"{"msg": "a\u0000b", "custom": "c\u0000"}"#, Utc::now(), "e", 1);
    let mut rows = Vec::new();
    Logs::new(&crate::config::DatabaseConfig::for_schema("p"))
        .decode(&msg, &mut Rows::new(&mut rows, Limits::NONE))
        .unwrap();
    assert_eq!(rows[0].body, "a\u{FFFD}b");
    assert!(rows[0].attributes.starts_with(r#"{"custom":"c\ufffd","serviceradar.ingest":"#), "{}", rows[0].attributes);
}

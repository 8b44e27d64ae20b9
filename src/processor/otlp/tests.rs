//! The attribute texts and ids against ServiceRadar's own test vectors. Ported from
//! `go/pkg/consumers/db-event-writer/otelmetricpoints_test.go` (index id 69654358923),
//! `elixir/.../event_writer/processors/otel_metrics_test.exs` (67380183610),
//! `elixir/.../event_writer/otlp_attributes_test.exs` (67374012778) and
//! `elixir/.../event_writer/otel_id_test.exs` (67243486434); the float and escaping cases follow Go's
//! `strconv` and `encoding/json` as the reference describes them (§4.4, §5.1).

use base64::Engine as _;

use super::id::{Id, SPAN, TRACE, normalize};
use super::tree::{Map, Tree, display, display_float, hash_v2, map_of, marshal, marshal_float};
use crate::processor::proto::common::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }) }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

fn any(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

/// The "rich" fixture both ServiceRadar writers assert.
fn rich() -> Vec<KeyValue> {
    vec![
        s("str", "va\"l\\ue"),
        KeyValue { key: "none".into(), value: Some(AnyValue { value: None }) },
        kv(
            "nested",
            Value::KvlistValue(KeyValueList {
                values: vec![
                    s("z", "last"),
                    kv(
                        "a",
                        Value::KvlistValue(KeyValueList {
                            values: vec![kv(
                                "deep",
                                Value::ArrayValue(ArrayValue {
                                    values: vec![any(Value::IntValue(1)), any(Value::IntValue(2))],
                                }),
                            )],
                        }),
                    ),
                ],
            }),
        ),
        kv("neg", Value::DoubleValue(-1.5)),
        kv("int", Value::IntValue(42)),
        kv("float", Value::DoubleValue(0.5)),
        kv("bytes", Value::BytesValue(vec![0xff, 0x00, 0x01])),
        kv("bool", Value::BoolValue(true)),
        kv(
            "arr",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    any(Value::StringValue("x".into())),
                    any(Value::IntValue(1)),
                    any(Value::DoubleValue(2.5)),
                    any(Value::BoolValue(false)),
                ],
            }),
        ),
    ]
}

#[test]
fn recipe_v2_hashes_match_both_serviceradar_writers() {
    let h = |attrs: &[KeyValue], instance: &str, scope: &str| hash_v2(&map_of(attrs), instance, scope);
    assert_eq!(h(&[s("destination", "slack")], "", ""), "0a400c7afa11f7cb8f6b057bfc2ced04");
    assert_eq!(h(&[], "", ""), "5ad5cc4d26869082efd29c436b57384a");
    assert_eq!(h(&[s("a", "1"), s("b", "2")], "", ""), "08d15b1d3dba45bfb72b5ba30c440f5c");
    assert_eq!(h(&[s("b", "2"), s("a", "1")], "", ""), "08d15b1d3dba45bfb72b5ba30c440f5c", "order-insensitive");
    assert_eq!(h(&rich(), "instance-7", "sr.scope"), "94d9dd949b532a243809a41937972918");
    let nested = |first_a: bool| {
        let inner = if first_a { vec![s("a", "1"), s("b", "2")] } else { vec![s("b", "2"), s("a", "1")] };
        vec![s("z", "last"), kv("outer", Value::KvlistValue(KeyValueList { values: inner }))]
    };
    assert_eq!(h(&nested(true), "", ""), "f821d4197b5dc05ea9fa366ea480f027");
    assert_eq!(h(&nested(false), "", ""), "f821d4197b5dc05ea9fa366ea480f027");
    assert_eq!(h(&[kv("answer", Value::IntValue(42))], "", ""), "bd3a40e04fa406b8d985c73e85e536b5");
    assert_eq!(h(&[kv("answer", Value::DoubleValue(42.0))], "", ""), "c7c4a09614b3e28324a32a8ca9d5a726");
    assert_eq!(h(&[kv("blob", Value::BytesValue(vec![1, 2, 0xfe]))], "", ""), "919d5b66db28fb4d165cc2237b4ba2ea");
    assert_eq!(h(&[s("blob", "AQL+")], "", ""), "d36ca93e4a2e8b1eed4c0d86b05afaa7");
    let dest = [s("destination", "slack")];
    assert_eq!(h(&dest, "instance-1", "scope-a"), "26821101abf833b1c4f0704c27412203");
    assert_eq!(h(&dest, "instance-1", ""), "12fabac8ad8a527d447a7fe53fd5438b");
    assert_eq!(h(&dest, "", "scope-a"), "152a33a6f1df3a16108b8d8d73f24c10");
}

#[test]
fn display_json_matches_both_serviceradar_writers() {
    assert_eq!(
        display(&map_of(&rich())),
        r#"{"arr":["x",1,2.5,false],"bool":true,"bytes":"/wAB","float":0.5,"int":42,"neg":-1.5,"nested":{"a":{"deep":[1,2]},"z":"last"},"none":null,"str":"va\"l\\ue"}"#
    );
    assert_eq!(display(&map_of(&[s("destination", "slack")])), r#"{"destination":"slack"}"#);
    assert_eq!(display(&Map::new()), "{}");
    assert_eq!(display(&map_of(&[kv("answer", Value::IntValue(42))])), r#"{"answer":42}"#);
    assert_eq!(display(&map_of(&[kv("answer", Value::DoubleValue(42.0))])), r#"{"answer":42.0}"#);
    assert_eq!(display(&map_of(&[kv("blob", Value::BytesValue(vec![1, 2, 0xfe]))])), r#"{"blob":"AQL+"}"#);
    // No HTML escaping in display JSON; controls and line separators escaped.
    assert_eq!(display(&map_of(&[s("h", "<a&b>\n\u{1}\u{2028}")])), "{\"h\":\"<a&b>\\n\\u0001\\u2028\"}");
}

#[test]
fn empty_keys_are_skipped_and_the_last_duplicate_wins() {
    let kvs = [s("", "x"), s("k", "first"), s("k", "second")];
    let m = map_of(&kvs);
    assert_eq!(m.len(), 1);
    assert_eq!(m["k"], Tree::Str("second".into()));
    // Zero, false and empty values are kept (the old k=v text dropped them).
    let kvs = [kv("zero", Value::IntValue(0)), kv("no", Value::BoolValue(false)), s("empty", "")];
    let m = map_of(&kvs);
    assert_eq!(marshal(&m).unwrap(), r#"{"empty":"","no":false,"zero":0}"#);
}

#[test]
fn floats_are_written_as_go_writes_them() {
    // canonicalJSONFloat (display JSON, explicit_bounds).
    for (f, want) in [
        (1.25, "1.25"),
        (42.0, "42.0"),
        (3.0, "3.0"),
        (-7.0, "-7.0"),
        (0.0, "0.0"),
        (10.0, "10.0"),
        (0.5, "0.5"),
        (1_234_567.5, "1.2345675e+06"),
        (123_456.5, "123456.5"),
        (5e-05, "5e-05"),
        (0.0001, "0.0001"),
        (1e15, "1e+15"),
        (1e100, "1e+100"),
        (f64::NAN, "null"),
        (f64::INFINITY, "null"),
    ] {
        assert_eq!(display_float(f), want, "display {f}");
    }
    // encoding/json (json.Marshal of logs and traces attributes).
    for (f, want) in [
        (42.0, "42"),
        (-0.0, "-0"),
        (0.5, "0.5"),
        (1e-7, "1e-7"),
        (1.5e-6, "0.0000015"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e-10, "1.5e-10"),
        (123456789.125, "123456789.125"),
    ] {
        assert_eq!(marshal_float(f), want, "marshal {f}");
    }
}

#[test]
fn marshal_escapes_html_and_fails_on_non_finite_numbers() {
    let kvs = [s("q", "<a&b>\"\\\t\u{8}\u{c}\u{7f}é")];
    let m = map_of(&kvs);
    assert_eq!(marshal(&m).unwrap(), "{\"q\":\"\\u003ca\\u0026b\\u003e\\\"\\\\\\t\\b\\f\u{7f}é\"}");
    assert!(marshal(&map_of(&[kv("x", Value::DoubleValue(f64::NAN))])).is_err());
    assert_eq!(super::tree::marshal_or_empty(&map_of(&[kv("x", Value::DoubleValue(f64::INFINITY))])), "{}");
}

#[test]
fn ids_normalise_as_serviceradar_normalises_them() {
    let raw_trace: [u8; 16] = [102, 88, 99, 99, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 255];
    let hex_trace = "665863630102030405060708090a0bff";
    let raw_span: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 255];
    let hex_span = "01020304050607ff";
    let valid = |s: &str| Id::Valid(s.to_owned());
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let hex_of = |b: &[u8]| crate::hex::encode(b);

    assert_eq!(normalize(b"", TRACE), Id::Absent);
    assert_eq!(normalize(&raw_trace, TRACE), valid(hex_trace));
    assert_eq!(normalize(b"abcdefghijklmnop", TRACE), valid(&hex_of(b"abcdefghijklmnop")), "16 bytes are raw bytes");
    assert_eq!(normalize(hex_trace.as_bytes(), TRACE), valid(hex_trace), "ASCII hex is not hexed again");
    assert_eq!(normalize(hex_trace.to_uppercase().as_bytes(), TRACE), valid(hex_trace));
    assert_eq!(normalize(hex_of(hex_trace.as_bytes()).as_bytes(), TRACE), valid(hex_trace), "double hex folds");
    assert_eq!(
        normalize(hex_of(hex_trace.to_uppercase().as_bytes()).to_uppercase().as_bytes(), TRACE),
        valid(hex_trace)
    );
    assert_eq!(normalize(hex_of(&[255; 32]).as_bytes(), TRACE), Id::Invalid, "64 hex not of hex text");
    assert_eq!(normalize(b64(&raw_trace).as_bytes(), TRACE), valid(hex_trace));
    assert_eq!(normalize(b64(&[1, 2, 3]).as_bytes(), TRACE), Id::Invalid);
    for zero in [vec![0u8; 16], vec![b'0'; 32], vec![b'0'; 64], b64(&[0; 16]).into_bytes()] {
        assert_eq!(normalize(&zero, TRACE), Id::Absent);
    }
    for garbage in ["trace-123", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", &"g".repeat(64)] {
        assert_eq!(normalize(garbage.as_bytes(), TRACE), Id::Invalid, "{garbage}");
    }
    assert_eq!(normalize(&[1; 5], TRACE), Id::Invalid);
    assert_eq!(normalize(hex_trace.as_bytes(), TRACE), normalize(&raw_trace, TRACE), "idempotent");

    assert_eq!(normalize(&raw_span, SPAN), valid(hex_span));
    assert_eq!(normalize(hex_span.as_bytes(), SPAN), valid(hex_span));
    assert_eq!(normalize(hex_span.to_uppercase().as_bytes(), SPAN), valid(hex_span));
    assert_eq!(normalize(hex_of(hex_span.as_bytes()).as_bytes(), SPAN), valid(hex_span));
    assert_eq!(normalize(b64(&raw_span).as_bytes(), SPAN), valid(hex_span));
    for zero in [vec![0u8; 8], vec![b'0'; 16], vec![b'0'; 32]] {
        assert_eq!(normalize(&zero, SPAN), Id::Absent);
    }
    assert_eq!(normalize(b"span-4567-bad", SPAN), Id::Invalid);
    assert_eq!(normalize(b"zzzzzzzzzzzzzzzz", SPAN), Id::Invalid);
    assert_eq!(normalize(b"span-456", SPAN), valid(&hex_of(b"span-456")), "8 bytes are raw bytes");
}
